"""The comparison of two builds, in SQL: the rows never leave the warehouse.

A row of the export is keyed by (year, state, visit, measure kind). The export has no kind
column (every column it has is written to the file but the slice's), so the kind comes from
the model that states it, each side's own `int_visit_measures_unioned` (`measure_kind`, and
`measure_order` for the order kinds are reported in), joined on the row's place in its file.
Row numbers themselves are not the key: one visit more renumbers every row after it, which
would make the whole file look "changed". An export row that model does not place (a side
whose export and measure rows disagree) stops the diff.

The rows that differ are gathered once into a temporary table (key, outcome, the changed
columns' names, both treatment codes and body parts, both row numbers); the counts per slice,
per column and per code transition are aggregates over it. Only aggregates, and with
`show_rows` at most that many example rows per slice, reach Python. Values are compared as
text, as the file writes them (COPY's text form), so a column whose type changes is still
compared.

Before the rows, the export relations' own columns are compared (`compare_columns`): a column
added, removed or retyped changes every file of the layout.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from psycopg import sql

from loader.engines.postgres import file_columns
from loader.names import relation_parts
from loader.review.builds import DiffError

VISIT_COLUMN = "visit_id"
CODE_COLUMN = "treatment"
# The body part decides the measure group, hence the codes (seed mips_body_part_groups).
BODY_PART_COLUMN = "body_part"
# The model stating each export row's measure kind and its order (dbt builds it on both sides).
MEASURES_MODEL = "int_visit_measures_unioned"
OUTCOMES = ("only_in_base", "only_in_head", "changed")
PAIRS_TABLE = "mips_diff_rows"


@dataclass(frozen=True)
class SlicePair:
    """A delivered (year, state) and the export relation each side reads it from (None: the
    side does not deliver it)."""

    performance_year: int
    state_code: str
    base_relation: str | None
    head_relation: str | None


@dataclass
class SliceCounts:
    performance_year: int
    state_code: str
    only_in_base: int = 0
    only_in_head: int = 0
    changed: int = 0
    unchanged: int = 0
    # column name -> rows of the slice whose value in that column changed
    columns: dict[str, int] = field(default_factory=dict)

    @property
    def differs(self) -> bool:
        return bool(self.only_in_base or self.only_in_head or self.changed)


@dataclass(frozen=True)
class DeliveryRows:
    """The rows of one delivery (the transition's year, this state) a transition moves; the
    SFTP file name is the diff's to fill in (None: no SFTP, or not known)."""

    state_code: str
    rows: int
    sftp_file_name: str | None = None


@dataclass(frozen=True)
class CodeTransition:
    performance_year: int
    measure_kind: str
    base_code: str | None
    head_code: str | None
    rows: int
    # the measure group of the rows' body part on each side (None: not known there)
    base_group: str | None = None
    head_group: str | None = None
    deliveries: tuple[DeliveryRows, ...] = ()
    # the seed rows that changed and give these codes, `seeds/mips_measure_codes.csv:21`
    # (filled in by the diff, which reads the seed files; None: not looked up)
    seed_lines: tuple[str, ...] | None = None

    @property
    def measure_group(self) -> str:
        if self.base_group == self.head_group:
            return self.head_group or "?"
        return f"{self.base_group or '?'} → {self.head_group or '?'}"


@dataclass(frozen=True)
class ColumnChange:
    """A column of an export relation that only one side has, or whose type changes."""

    layout: str  # the relation's name, `mips_export_v1` (`… → mips_export_v2` if it changes)
    column: str
    change: str  # added, removed, retyped
    base_type: str | None
    head_type: str | None


@dataclass(frozen=True)
class ExampleRow:
    """One differing row, both sides' values (None: the side has no such row). Patient data:
    only ever collected when the user asked for examples."""

    performance_year: int
    state_code: str
    outcome: str
    measure_kind: str
    changed_columns: tuple[str, ...]
    columns: tuple[str, ...]
    base: tuple[str | None, ...] | None
    head: tuple[str | None, ...] | None


@dataclass
class RowComparison:
    slices: list[SliceCounts]
    transitions: list[CodeTransition]
    examples: list[ExampleRow]


def compare_rows(
    conn,
    pairs: list[SlicePair],
    *,
    show_rows: int = 0,
    body_part_groups: tuple[str | None, str | None] = (None, None),
) -> RowComparison:
    """Compare every slice of `pairs` (one statement per distinct pair of relations).
    `body_part_groups`: each side's relation of the mips_body_part_groups seed (None: it has
    none), which names the measure group of a code transition."""
    conn.execute(
        sql.SQL(
            "create temporary table {} (group_number int, performance_year int, state_code text,"
            " measure_order bigint, measure_kind text, outcome text, changed_columns text[],"
            " base_code text,"
            " head_code text, base_body_part text, head_body_part text, base_row bigint,"
            " head_row bigint) on commit preserve rows"
        ).format(sql.Identifier(PAIRS_TABLE))
    )
    try:
        groups = _groups(pairs)
        counts = {(p.performance_year, p.state_code): _empty(p) for p in pairs}
        examples: list[ExampleRow] = []
        for number, ((base, head), slices) in enumerate(groups.items()):
            columns = _compared_columns(conn, base, head)
            for relation, side in ((base, "base"), (head, "head")):
                if relation is not None:
                    _check_key(conn, relation, slices, side)
            _collect_differences(conn, number, base, head, columns, slices)
            _count_base_rows(conn, base, slices, counts)
            if show_rows:
                examples += _examples(conn, number, base, head, columns, show_rows)
        _count_differences(conn, counts)
        transitions = _transitions(conn, body_part_groups)
    finally:
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(PAIRS_TABLE)))
    return RowComparison(
        slices=sorted(counts.values(), key=lambda c: (c.performance_year, c.state_code)),
        transitions=transitions,
        examples=examples,
    )


def _empty(pair: SlicePair) -> SliceCounts:
    return SliceCounts(pair.performance_year, pair.state_code)


def _groups(pairs: list[SlicePair]) -> dict[tuple[str | None, str | None], list[SlicePair]]:
    groups: dict[tuple[str | None, str | None], list[SlicePair]] = defaultdict(list)
    for pair in pairs:
        groups[(pair.base_relation, pair.head_relation)].append(pair)
    return groups


def _identifier(relation: str) -> sql.Identifier:
    return sql.Identifier(*relation_parts(relation))


def _compared_columns(conn, base: str | None, head: str | None) -> list[str]:
    """The file columns both sides have, in the head's order (a column only one side has shows
    as a header change of the deliveries)."""
    head_columns = file_columns(conn, head) if head else None
    base_columns = file_columns(conn, base) if base else None
    if head_columns is None or base_columns is None:
        columns = head_columns or base_columns or []
    else:
        columns = [c for c in head_columns if c in set(base_columns)]
    if VISIT_COLUMN not in columns:
        raise DiffError(
            f"the export has no column {VISIT_COLUMN} on both sides: rows cannot be keyed by visit"
        )
    return columns


def _in_slices(slices: list[SlicePair], alias: str = "") -> sql.Composable:
    prefix = f"{alias}." if alias else ""
    return sql.SQL(
        "({}performance_year, {}state_code) in (select * from unnest({}::int[], {}::text[]))"
    ).format(
        sql.SQL(prefix),
        sql.SQL(prefix),
        sql.Literal([s.performance_year for s in slices]),
        sql.Literal([s.state_code for s in slices]),
    )


def _measures(relation: str) -> sql.Identifier:
    """The side's measures model: beside its export, in the schema dbt built both into."""
    return sql.Identifier(*relation_parts(relation)[:-1], MEASURES_MODEL)


def _check_key(conn, relation: str, slices: list[SlicePair], side: str) -> None:
    """Every export row has its measure kind, stated by the side's measures model."""
    query = sql.SQL(
        "select e.performance_year, e.state_code, count(*) from {relation} as e"
        " left join {measures} as m on m.performance_year = e.performance_year"
        " and m.state_code = e.state_code and m.file_row_number = e.file_row_number"
        " where {selected} and (m.measure_kind is null or e.{visit} is null)"
        " group by 1, 2 order by 1, 2 limit 1"
    ).format(
        visit=sql.Identifier(VISIT_COLUMN),
        relation=_identifier(relation),
        measures=_measures(relation),
        selected=_in_slices(slices, "e"),
    )
    found = conn.execute(query).fetchone()
    if found:
        year, state, rows = found
        raise DiffError(
            f"{side} export {year}/{state}: {rows} row(s) without a visit or a measure kind in "
            f"{MEASURES_MODEL}, so rows cannot be keyed by (visit, measure kind)"
        )


def _side_rows(relation: str | None, columns: list[str], slices: list[SlicePair]):
    """A side's rows of the slices with their measure kind and its order, every file column as
    text; no rows for a missing side."""
    if relation is None:
        nulls = [sql.SQL("null::int as performance_year, null::text as state_code")]
        nulls.append(sql.SQL("null::bigint as file_row_number, null::bigint as measure_order"))
        nulls.append(sql.SQL("null::text as measure_kind"))
        nulls += [sql.SQL("null::text as {}").format(sql.Identifier(c)) for c in columns]
        return sql.SQL("select {} where false").format(sql.SQL(", ").join(nulls))
    return sql.SQL(
        "select e.performance_year, e.state_code, e.file_row_number, {columns},"
        " m.measure_order, m.measure_kind"
        " from {relation} as e join {measures} as m on m.performance_year = e.performance_year"
        " and m.state_code = e.state_code and m.file_row_number = e.file_row_number"
        " where {selected}"
    ).format(
        columns=sql.SQL(", ").join(
            sql.SQL("e.{0}::text as {0}").format(sql.Identifier(c)) for c in columns
        ),
        relation=_identifier(relation),
        measures=_measures(relation),
        selected=_in_slices(slices, "e"),
    )


def _collect_differences(conn, number, base, head, columns, slices) -> None:
    changed = sql.SQL(", ").join(
        sql.SQL("case when b.{0} is distinct from h.{0} then {1} end").format(
            sql.Identifier(c), sql.Literal(c)
        )
        for c in columns
    )
    code, body_part = _both_sides(CODE_COLUMN, columns), _both_sides(BODY_PART_COLUMN, columns)
    query = sql.SQL(
        "insert into {pairs} select {number}, coalesce(b.performance_year, h.performance_year),"
        " coalesce(b.state_code, h.state_code), coalesce(b.measure_order, h.measure_order),"
        " coalesce(b.measure_kind, h.measure_kind),"
        " case when h.performance_year is null then 'only_in_base'"
        "  when b.performance_year is null then 'only_in_head' else 'changed' end,"
        " changed_columns, {base_code}, {head_code}, {base_body_part}, {head_body_part},"
        " b.file_row_number, h.file_row_number"
        " from ({base}) as b full join ({head}) as h"
        " on b.performance_year = h.performance_year and b.state_code = h.state_code"
        " and b.{visit} = h.{visit} and b.measure_kind = h.measure_kind"
        " cross join lateral (select array_remove(array[{changed}], null) as changed_columns)"
        " as difference"
        " where h.performance_year is null or b.performance_year is null"
        " or cardinality(changed_columns) > 0"
    ).format(
        pairs=sql.Identifier(PAIRS_TABLE),
        number=sql.Literal(number),
        base_code=code[0],
        head_code=code[1],
        base_body_part=body_part[0],
        head_body_part=body_part[1],
        base=_side_rows(base, columns, slices),
        head=_side_rows(head, columns, slices),
        visit=sql.Identifier(VISIT_COLUMN),
        changed=changed,
    )
    conn.execute(query)


def _both_sides(column: str, columns: list[str]) -> tuple[sql.Composable, sql.Composable]:
    """The column of the base row and of the head row (null when the export has none)."""
    if column not in columns:
        return sql.SQL("null"), sql.SQL("null")
    return (
        sql.SQL("b.{}").format(sql.Identifier(column)),
        sql.SQL("h.{}").format(sql.Identifier(column)),
    )


def _count_base_rows(conn, base: str | None, slices, counts) -> None:
    """Every base row is only in base, changed or unchanged: unchanged is what is left."""
    if base is None:
        return
    query = sql.SQL(
        "select performance_year, state_code, count(*) from {} where {} group by 1, 2"
    ).format(_identifier(base), _in_slices(slices))
    for year, state, rows in conn.execute(query).fetchall():
        counts[(year, state)].unchanged = rows


def _count_differences(conn, counts: dict[tuple[int, str], SliceCounts]) -> None:
    table = sql.Identifier(PAIRS_TABLE)
    outcomes = sql.SQL(
        "select performance_year, state_code, outcome, count(*) from {} group by 1, 2, 3"
    ).format(table)
    for year, state, outcome, rows in conn.execute(outcomes).fetchall():
        setattr(counts[(year, state)], outcome, rows)
    for slice_counts in counts.values():
        slice_counts.unchanged -= slice_counts.only_in_base + slice_counts.changed
    per_column = sql.SQL(
        "select performance_year, state_code, changed_column, count(*) from {},"
        " unnest(changed_columns) as changed_column where outcome = 'changed'"
        " group by 1, 2, 3 order by 1, 2, 4 desc, 3"
    ).format(table)
    for year, state, column, rows in conn.execute(per_column).fetchall():
        counts[(year, state)].columns[column] = rows


def _group_of(relation: str | None, body_part: str) -> sql.Composable:
    """The measure group of a side's body part, from that side's seed (null: no seed)."""
    if relation is None:
        return sql.SQL("null::text")
    return sql.SQL("(select max(measure_group) from {} where upper(body_part_type) = p.{})").format(
        _identifier(relation), sql.Identifier(body_part)
    )


def _transitions(conn, body_part_groups) -> list[CodeTransition]:
    """Per year, measure kind, codes and measure groups: the rows whose code moves, and how
    many of them each delivery (state) has."""
    base_groups, head_groups = body_part_groups
    query = sql.SQL(
        "select performance_year, measure_order, measure_kind, base_code, head_code, base_group,"
        " head_group, state_code, count(*)"
        " from (select *, {base_group} as base_group, {head_group} as head_group from {pairs} as p"
        "  where outcome = 'changed' and base_code is distinct from head_code) as moved"
        " group by 1, 2, 3, 4, 5, 6, 7, 8 order by 1, 2, 3, 4, 5, 6, 7, 8"
    ).format(
        base_group=_group_of(base_groups, "base_body_part"),
        head_group=_group_of(head_groups, "head_body_part"),
        pairs=sql.Identifier(PAIRS_TABLE),
    )
    per_state: dict[tuple, list[DeliveryRows]] = defaultdict(list)
    for *key, state, rows in conn.execute(query).fetchall():
        per_state[tuple(key)].append(DeliveryRows(state, rows))
    # by year and kind (in the model's order), the most rows first
    ordered = sorted(
        per_state.items(),
        key=lambda item: (item[0][0], item[0][1], -sum(d.rows for d in item[1]),
                          item[0][3] or "", item[0][4] or "", item[0][5] or "", item[0][6] or ""),
    )  # fmt: skip
    return [
        CodeTransition(
            year, kind, base_code, head_code, sum(d.rows for d in deliveries),
            base_group, head_group, tuple(deliveries),
        )
        for (year, _order, kind, base_code, head_code, base_group, head_group), deliveries
        in ordered
    ]  # fmt: skip


def compare_columns(conn, pairs: list[SlicePair]) -> list[ColumnChange]:
    """The columns (with their exact types) that differ between each distinct pair of export
    relations both sides deliver from: removed and retyped in the base's order, then added in
    the head's."""
    changes = []
    relations = sorted(
        {(p.base_relation, p.head_relation) for p in pairs if p.base_relation and p.head_relation}
    )
    for base, head in relations:
        base_columns, head_columns = column_types(conn, base), column_types(conn, head)
        base_name, head_name = relation_parts(base)[-1], relation_parts(head)[-1]
        layout = base_name if base_name == head_name else f"{base_name} → {head_name}"
        for column, base_type in base_columns.items():
            head_type = head_columns.get(column)
            if head_type is None:
                changes.append(ColumnChange(layout, column, "removed", base_type, None))
            elif head_type != base_type:
                changes.append(ColumnChange(layout, column, "retyped", base_type, head_type))
        changes += [
            ColumnChange(layout, column, "added", None, head_type)
            for column, head_type in head_columns.items()
            if column not in base_columns
        ]
    return changes


def column_types(conn, relation: str) -> dict[str, str]:
    """The relation's columns in table order, each with its exact type as PostgreSQL states
    it (`character varying`, `numeric(28,6)`)."""
    query = sql.SQL(
        "select attname, format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = {}::regclass and attnum > 0 and not attisdropped order by attnum"
    ).format(sql.Literal(relation))
    return dict(conn.execute(query).fetchall())


def _side_values(relation: str | None, columns: list[str], alias: str, row: str):
    """The join that brings one side's values of an example row back (nothing: nulls)."""
    if relation is None:
        return sql.SQL(""), sql.SQL(", ").join(sql.SQL("null") for _ in columns)
    join = sql.SQL(
        " left join {relation} as {alias} on {alias}.performance_year = p.performance_year"
        " and {alias}.state_code = p.state_code and {alias}.file_row_number = p.{row}"
    ).format(relation=_identifier(relation), alias=sql.Identifier(alias), row=sql.Identifier(row))
    values = sql.SQL(", ").join(
        sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns
    )
    return join, values


def _examples(conn, number, base, head, columns, limit: int) -> list[ExampleRow]:
    base_join, base_values = _side_values(base, columns, "b", "base_row")
    head_join, head_values = _side_values(head, columns, "h", "head_row")
    query = sql.SQL(
        "select p.performance_year, p.state_code, p.outcome, p.measure_kind,"
        " p.changed_columns, p.base_row is not null, p.head_row is not null,"
        " {base_values}, {head_values}"
        " from (select *, row_number() over (partition by performance_year, state_code"
        "  order by case outcome when 'changed' then 0 when 'only_in_base' then 1 else 2 end,"
        "  coalesce(base_row, head_row)) as example_number"
        "  from {pairs} where group_number = {number}) as p"
        "{base_join}{head_join}"
        " where p.example_number <= {limit}"
        " order by 1, 2, p.example_number"
    ).format(
        base_values=base_values,
        head_values=head_values,
        pairs=sql.Identifier(PAIRS_TABLE),
        number=sql.Literal(number),
        base_join=base_join,
        head_join=head_join,
        limit=sql.Literal(limit),
    )
    width = len(columns)
    examples = []
    for row in conn.execute(query).fetchall():
        year, state, outcome, kind, changed, has_base, has_head = row[:7]
        values = row[7:]
        examples.append(
            ExampleRow(
                performance_year=year,
                state_code=state,
                outcome=outcome,
                measure_kind=kind,
                changed_columns=tuple(changed or ()),
                columns=tuple(columns),
                base=tuple(values[:width]) if has_base else None,
                head=tuple(values[width:]) if has_head else None,
            )
        )
    return examples
