"""The file layout's record encoder: the bytes PostgreSQL's CSV `COPY ... TO` writes.

The PostgreSQL path lets the server format the file; the Athena path re-encodes Athena's result
through `encode_record`, so both engines deliver byte-identical files. The rule is PostgreSQL's
`CopyAttributeOutCSV` (src/backend/commands/copyto.c) with the defaults the unload uses
(delimiter `,`, quote `"`, escape `"`, NULL as the empty string, UTF-8):

- NULL is an empty, unquoted field;
- a value is quoted when it equals the NULL string (so the empty string becomes `""`), when
  it contains the delimiter, a quote, `\\n` or `\\r`, or when it is exactly `\\.` and the
  record has a single column (so it cannot be read back as the end-of-data marker);
- inside quotes, a quote is doubled; nothing else is escaped or quoted;
- every record, the header included, ends with `\\n`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NEEDS_QUOTES = re.compile(r'[,"\n\r]')
END_OF_DATA_MARKER = "\\."


def _encode_field(value: str | None, single_field: bool) -> str:
    if value is None:
        return ""
    if value == "" or _NEEDS_QUOTES.search(value) or (single_field and value == END_OF_DATA_MARKER):
        return '"' + value.replace('"', '""') + '"'
    return value


def encode_record(fields: Sequence[str | None]) -> bytes:
    """One CSV record of the file layout, `\\n` included, as UTF-8 bytes."""
    single_field = len(fields) == 1
    return (",".join(_encode_field(f, single_field) for f in fields) + "\n").encode("utf-8")
