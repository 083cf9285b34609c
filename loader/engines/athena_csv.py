"""Athena's result CSV, tokenized and re-encoded to the file layout.

Athena writes every query result as a CSV object in S3: every non-NULL value in double quotes
(quotes inside doubled), NULL as an empty unquoted field, so the empty string is `""`, and
`\\n` after each record. The file layout is PostgreSQL's CSV instead (quotes only where
needed), so a slice is re-encoded record by record through `csv_layout.encode_record`: both
engines deliver the same bytes.

Python's `csv` module cannot tell NULL from the empty string, so this module carries its own
small RFC 4180 tokenizer. Records that hold no quote, comma, CR or NUL inside a value and no
empty string take a bulk path (one regular expression over a whole block, then three byte
replacements); anything else is parsed field by field. Memory stays flat: one S3 chunk (plus
the one record spanning it) at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from loader.engines.athena_client import AthenaResultError
from loader.engines.csv_layout import encode_record

_QUOTED_FIELD = re.compile(rb'"([^"]*(?:""[^"]*)*)"')
_BARE_FIELD = re.compile(rb'[^,"\r\n]*')
# A value the bulk path may copy without its quotes: PostgreSQL would not quote it either.
# NUL is excluded because the bulk path uses it as a placeholder for "".
_PLAIN_FIELD = rb'(?:"[^",\r\n\x00]+"|""|)'


class CsvRecordSplitter:
    """Cuts a CSV byte stream into blocks of whole records, whatever the chunk boundaries.

    A newline ends a record only outside quotes, i.e. where the number of quotes since the
    start of the record is even (a doubled quote inside a value counts twice).
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._odd_quotes = False  # quote parity of the pending (incomplete) record
        self.offset = 0  # stream offset of the first pending byte, for error messages

    def feed(self, chunk: bytes) -> bytes:
        """The whole records completed by `chunk` (possibly b""); the rest waits."""
        quotes = chunk.count(b'"')
        end_parity = self._odd_quotes ^ bool(quotes & 1)
        quotes_after = 0
        stop = len(chunk)
        newline = chunk.rfind(b"\n")
        while newline >= 0:
            quotes_after += chunk.count(b'"', newline, stop)
            if not (end_parity ^ bool(quotes_after & 1)):
                break  # even parity before this newline: it ends a record
            stop = newline
            newline = chunk.rfind(b"\n", 0, newline)
        if newline < 0:
            self._pending.append(chunk)
            self._odd_quotes = end_parity
            return b""
        block = b"".join([*self._pending, chunk[: newline + 1]])
        rest = chunk[newline + 1 :]
        self._pending = [rest] if rest else []
        self._odd_quotes = bool(quotes_after & 1)
        self.offset += len(block)
        return block

    def finish(self) -> bytes:
        """What is left at the end of the stream: a last record without its newline, or b""."""
        rest = b"".join(self._pending)
        self._pending = []
        if self._odd_quotes:
            raise AthenaResultError(
                f"result is not valid CSV: it ends inside a quoted value (byte {self.offset})"
            )
        if not rest:
            return b""
        self.offset += len(rest)
        return rest + b"\n"


def _decode(raw: bytes, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AthenaResultError(
            f"result is not valid UTF-8 near byte {offset + exc.start}"
        ) from None


def parse_record(block: bytes, pos: int, offset: int = 0) -> tuple[list[str | None], int]:
    """The record starting at `pos` of a block of whole records, and where the next starts.

    A quoted field is a string (`""` is the empty string); an empty unquoted field is None.
    `offset` is the block's position in the stream, for error messages.
    """
    fields: list[str | None] = []
    while True:
        if block.startswith(b'"', pos):
            match = _QUOTED_FIELD.match(block, pos)
            if match is None:
                raise AthenaResultError(
                    f"result is not valid CSV: unterminated quoted value at byte {offset + pos}"
                )
            raw = match.group(1)
            value = raw.replace(b'""', b'"') if b'"' in raw else raw
            fields.append(_decode(value, offset + pos + 1))
        else:
            match = _BARE_FIELD.match(block, pos)
            raw = match.group()
            fields.append(_decode(raw, offset + pos) if raw else None)
        pos = match.end()
        if block.startswith(b",", pos):
            pos += 1
        elif block.startswith(b"\n", pos):
            return fields, pos + 1
        elif block.startswith(b"\r\n", pos):
            return fields, pos + 2
        else:
            raise AthenaResultError(
                f"result is not valid CSV: unexpected byte {block[pos : pos + 1]!r} "
                f"at byte {offset + pos}"
            )


def iter_csv_records(chunks: Iterable[bytes]) -> Iterator[list[str | None]]:
    """Every record of a CSV byte stream, NULL (unquoted empty) kept apart from ""."""
    splitter = CsvRecordSplitter()

    def records(block: bytes, offset: int) -> Iterator[list[str | None]]:
        pos = 0
        while pos < len(block):
            fields, pos = parse_record(block, pos, offset)
            yield fields

    for chunk in chunks:
        offset = splitter.offset
        yield from records(splitter.feed(chunk), offset)
    offset = splitter.offset
    yield from records(splitter.finish(), offset)


class AthenaCsvReencoder:
    """Athena's result CSV in, the file layout's bytes out, block by block.

    The first record is Athena's header: when `columns` is given it must name them (compared
    case-insensitively, as Athena/Glue lower-case column names) and the header written is
    `header` (default: `columns`; else Athena's own). Every record must have as many fields
    as the header. `rows` counts the data records written so far.
    """

    def __init__(
        self, columns: Sequence[str] | None = None, *, header: Sequence[str] | None = None
    ):
        self.columns = list(columns) if columns is not None else None
        self.header = list(header) if header is not None else self.columns
        if (
            self.header is not None
            and self.columns is not None
            and (len(self.header) != len(self.columns))
        ):
            raise ValueError("header and columns differ in length")
        self.rows = 0
        self._splitter = CsvRecordSplitter()
        self._width: int | None = None
        self._bulk: re.Pattern[bytes] | None = None

    def reencode(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            block = self.feed(chunk)
            if block:
                yield block
        block = self.finish()
        if block:
            yield block

    def feed(self, chunk: bytes) -> bytes:
        offset = self._splitter.offset
        return self._convert(self._splitter.feed(bytes(chunk)), offset)

    def finish(self) -> bytes:
        offset = self._splitter.offset
        out = self._convert(self._splitter.finish(), offset)
        if self._width is None:
            # No header at all (an empty object): the file still gets one.
            if self.header is None:
                raise AthenaResultError("result is empty: not even a header row")
            self._width = len(self.header)
            out = encode_record(self.header)
        return out

    def _start(self, athena_header: list[str | None], offset: int) -> bytes:
        names = [name or "" for name in athena_header]
        if self.columns is not None and [n.lower() for n in names] != [
            c.lower() for c in self.columns
        ]:
            raise AthenaResultError(
                f"result columns {names} are not the ones selected {self.columns}"
            )
        if self.header is None:
            self.header = names
        self._width = len(names)
        if self._width > 1:
            # Whole records of plain values; one regex pass, no Python per field.
            record = _PLAIN_FIELD + (rb"," + _PLAIN_FIELD) * (self._width - 1) + rb"\n"
            self._bulk = re.compile(rb"(?:" + record + rb")*")
        return encode_record(self.header)

    def _convert(self, block: bytes, offset: int) -> bytes:
        out: list[bytes] = []
        pos = 0
        if block and self._width is None:
            athena_header, pos = parse_record(block, 0, offset)
            out.append(self._start(athena_header, offset))
        while pos < len(block):
            if self._bulk is not None:
                end = self._bulk.match(block, pos).end()
                if end > pos:
                    plain = block[pos:end]
                    _decode(plain, offset + pos)  # validates UTF-8; the bytes pass through
                    out.append(
                        plain.replace(b'""', b"\x00").replace(b'"', b"").replace(b"\x00", b'""')
                    )
                    self.rows += plain.count(b"\n")
                    pos = end
                    continue
            fields, next_pos = parse_record(block, pos, offset)
            if len(fields) != self._width:
                raise AthenaResultError(
                    f"result is not valid CSV: a record at byte {offset + pos} has "
                    f"{len(fields)} fields, the header {self._width}"
                )
            out.append(encode_record(fields))
            self.rows += 1
            pos = next_pos
        return b"".join(out)
