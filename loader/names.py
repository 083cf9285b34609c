"""Names the loader puts into SQL, file names and keys, checked before it uses them."""

from __future__ import annotations

import re

from loader.errors import ConfigurationError

# A state code as files and keys carry it.
STATE_CODE = re.compile(r"[A-Z]{2}")
# `"schema"."table"` or `"catalog"."schema"."table"`, as dbt renders a relation.
QUOTED_PART = re.compile(r'"((?:[^"]|"")+)"')


class RelationNameError(ConfigurationError):
    """A relation name that is not one dbt renders."""


def relation_parts(relation: str, what: str = "export_relation") -> tuple[str, ...]:
    """The identifiers of a dbt-rendered relation (`"schema"."table"`), checked."""
    parts = []
    rest = relation or ""
    while rest:
        match = QUOTED_PART.match(rest)
        if not match:
            break
        parts.append(match.group(1).replace('""', '"'))
        rest = rest[match.end() :]
        if rest.startswith("."):
            rest = rest[1:]
            if not rest:
                parts = []
                break
        elif rest:
            parts = []
            break
    if not 2 <= len(parts) <= 3:
        raise RelationNameError(
            f'{what}: export_relation must be a quoted relation like "schema"."table"'
        )
    return tuple(parts)
