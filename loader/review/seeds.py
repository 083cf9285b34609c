"""Which seed rows give a code transition its new codes: `seeds/mips_measure_codes.csv:21`.

The seeds are compared as rows, not as text: a rewrite that only changes the CSV quoting (a
spreadsheet's export) changes every line of a text diff and no row. A transition of year Y,
measure kind K, from measure group Gb to Gh is explained by
- the `mips_measure_codes` row (Y, Gh) when it is new or its K code differs from the base's
  (the head's line), or the base's row (Y, Gb) when the head no longer has it (the base's);
- when the group changes, each `mips_body_part_groups` row that moves a body part from Gb
  to Gh (the head's line).
A transition no seed row explains comes from a model: the report says so.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

MEASURE_CODES = "seeds/mips_measure_codes.csv"
BODY_PART_GROUPS = "seeds/mips_body_part_groups.csv"
SEEDS = (MEASURE_CODES, BODY_PART_GROUPS)
# the mips_measure_codes column of each measure kind's code (length of stay has none)
CODE_COLUMNS = {"function": "function_measure_code", "pain": "pain_measure_code"}


@dataclass(frozen=True)
class SeedRow:
    line: int  # where the row starts in its file, 1-based (the header is line 1)
    values: dict[str, str]


def seed_rows(text: str | None) -> list[SeedRow]:
    """The rows of a seed file with their line numbers; none for a file a side lacks."""
    if not text:
        return []
    reader = csv.DictReader(io.StringIO(text))
    rows, previous_end = [], 1
    for row in reader:
        values = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        rows.append(SeedRow(previous_end + 1, values))
        previous_end = reader.line_num
    return rows


@dataclass(frozen=True)
class SeedFiles:
    """The text of each seed of `SEEDS` on each side (None: that side has no such file)."""

    base: dict[str, str | None]
    head: dict[str, str | None]

    def rows(self, seed: str) -> tuple[list[SeedRow], list[SeedRow]]:
        return seed_rows(self.base.get(seed)), seed_rows(self.head.get(seed))


def _by(rows: list[SeedRow], *columns: str) -> dict[tuple[str, ...], SeedRow]:
    return {tuple(row.values.get(c, "") for c in columns): row for row in rows}


def explaining_lines(
    seeds: SeedFiles, year: int, kind: str, base_group: str | None, head_group: str | None
) -> tuple[str, ...]:
    """`path:line` of every seed row that explains the transition (a base line is marked)."""
    lines = []
    code = CODE_COLUMNS.get(kind)
    base_codes, head_codes = (_by(r, "performance_year", "measure_group") for r in
                              seeds.rows(MEASURE_CODES))  # fmt: skip
    if code and head_group:
        key = (str(year), head_group)
        head_row, base_row = head_codes.get(key), base_codes.get(key)
        if head_row and (base_row is None or base_row.values.get(code) != head_row.values[code]):
            lines.append(f"{MEASURE_CODES}:{head_row.line}")
    if code and base_group and base_group != head_group:
        key = (str(year), base_group)
        if key in base_codes and key not in head_codes:
            lines.append(f"{MEASURE_CODES}:{base_codes[key].line} (base)")
    if base_group and head_group and base_group != head_group:
        base_parts, head_parts = (_by(r, "body_part_type") for r in seeds.rows(BODY_PART_GROUPS))
        for key, head_row in head_parts.items():
            base_row = base_parts.get(key)
            if (
                head_row.values.get("measure_group") == head_group
                and base_row is not None
                and base_row.values.get("measure_group") == base_group
            ):
                lines.append(f"{BODY_PART_GROUPS}:{head_row.line}")
    return tuple(lines)
