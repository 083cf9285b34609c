"""What `mips-loader diff` prints: Markdown (for a pull-request comment), a plain table, JSON.

The same sections in every format, most dangerous first: the data tests the working tree
fails (its build fails: exit 2), the export columns added, removed or retyped, the deliveries
whose names or flags change (or that appear or disappear), then the rows per year and state,
the measure-code transitions (with the measure group, the seed lines behind them and the
files they change), the columns whose values changed, and the data tests only the base fails
(context). Nothing patient-level (ids, dates,
NPIs, values) is in any of them unless examples were asked for (`--show-rows`), which come
last: not even dbt's messages of failing tests, which may quote values.
"""

from __future__ import annotations

import json
from typing import Any

from loader.review.compare import CodeTransition, ExampleRow, SliceCounts
from loader.review.data_tests import PASSED, DataTest, Outcome
from loader.review.diff import DiffResult
from loader.run.report import table

FORMATS = ("markdown", "table", "json")
TEST_HEADERS = ("data test", "tests", "head", "base")
EXPORT_COLUMN_HEADERS = ("export", "column", "change", "base", "head")
NAME_HEADERS = ("year", "state", "what", "base", "head")
ROW_HEADERS = ("year", "state", "only in base", "only in head", "changed", "unchanged")
COLUMN_HEADERS = ("year", "state", "column", "rows changed")
NO_SEED_ROW = "no seed row of its codes or groups changed: a model or macro"
CONTEXT_NOTE = (
    "Not errors of the change: tests the base fails and the working tree passes (the change "
    "fixes them), and warnings."
)


def render(result: DiffResult, output_format: str) -> str:
    return {"markdown": markdown, "table": plain, "json": as_json}[output_format](result)


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`1 delivery`, `2 deliveries`, `1,772 rows`."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def title(result: DiffResult) -> str:
    return f"MIPS delivery diff: base {result.base.label} → {result.head_label}"


def verdict(result: DiffResult) -> str:
    if result.differs:
        changed = sum(1 for s in result.rows.slices if s.differs)
        parts = []
        if result.column_changes:
            parts.append(counted(len(result.column_changes), "export column change"))
        if result.delivery_changes:
            parts.append(counted(len(result.delivery_changes), "delivery name or flag change"))
        if changed:
            parts.append(
                f"rows change in {changed} of "
                f"{counted(result.deliveries_compared, 'delivery', 'deliveries')}"
            )
        return f"Changes deliveries: {'; '.join(parts)}."
    rows = sum(s.unchanged for s in result.rows.slices)
    return (
        f"No change: the working tree delivers exactly what base {result.base.label} delivers "
        f"({counted(result.deliveries_compared, 'delivery', 'deliveries')}, "
        f"{counted(rows, 'row')})."
    )


def run_date_line(result: DiffResult) -> str:
    if result.run_date is None:
        return "No deliveries on either side."
    return (
        f"Names as a run on {result.run_date.isoformat()} ({result.run_time_zone}) writes them; "
        f"{counted(result.deliveries_compared, 'delivery', 'deliveries')} compared."
    )


def base_reused_line(result: DiffResult) -> str:
    if not result.base_reused:
        return ""
    return (
        f"Base {result.base.label}: the schema an earlier diff built of this commit from the "
        "same source data, reused (--rebuild-base builds it again)."
    )


def outcome_text(outcome: Outcome | None) -> str:
    if outcome is None:
        return "not run"
    if outcome.status == PASSED:
        return "pass"
    if outcome.failing_rows is None:
        return outcome.status
    rows = counted(outcome.failing_rows, "failing row" if outcome.failed else "row")
    return rows if outcome.status == "fail" else f"{outcome.status}: {rows}"


def _test_rows(tests: list[DataTest]) -> list[list[Any]]:
    rows = []
    for test in tests:
        base = outcome_text(test.base)
        if test.fails_on_head and test.fails_on_base:
            base += ": fails on base too, not this change's doing"
        rows.append([test.name, test.subject, outcome_text(test.head), base])
    return rows


def failing_tests_lines(result: DiffResult) -> list[str]:
    """What leads the report when the working tree fails: dbt's refusal to run its tests,
    then how many fail (their table follows)."""
    tests = result.data_tests
    lines = []
    if tests.head_error:
        lines.append(
            "The working tree's data tests of what it changes could not run (exit 2); dbt: "
            f"{tests.head_error}"
        )
    if tests.head_failures:
        lines.append(
            f"The working tree fails {counted(len(tests.head_failures), 'data test')} of what "
            "the change touches: its `dbt build` fails (exit 2)."
        )
    return lines


def failing_tests_message(result: DiffResult) -> str:
    """One line naming each failing test of the head, for the JSON error."""
    tests = result.data_tests
    failing = "; ".join(
        f"{t.name} ({t.subject}: {outcome_text(t.head)})" for t in tests.head_failures
    )
    parts = [f"data tests could not run: {tests.head_error}"] if tests.head_error else []
    parts += [f"fails data tests: {failing}"] if failing else []
    return f"{result.head_label} {'; '.join(parts)}"


def tests_line(result: DiffResult) -> str:
    """How many data tests of what the change touches ran, and where dbt's messages are."""
    tests = result.data_tests
    if tests is None:
        return ""
    head = "could not run" if tests.head_error else counted(tests.head_run, "data test")
    base = "could not run" if tests.base_error else str(tests.base_run)
    line = (
        f"Data tests of what the change touches (dbt's state:modified+): "
        f"{head} on the working tree, {base} on base"
    )
    if not (tests.tests or tests.head_error or tests.base_error):
        return line + ", all pass."
    return line + f"; dbt's messages (which may quote values) are in {tests.head_log}."


def base_error_line(result: DiffResult) -> str:
    """Why the base could not run the head's tests (then no failure says whether it was
    there before)."""
    tests = result.data_tests
    if tests is None or not tests.base_error:
        return ""
    return (
        f"The base's data tests of what the change touches could not run; dbt: {tests.base_error}"
    )


def context_tests(result: DiffResult) -> list[DataTest]:
    """Failures of the base only, and the head's warnings: said, but not the change's error."""
    if result.data_tests is None:
        return []
    return result.data_tests.base_only_failures + [
        t for t in result.data_tests.head_warnings if not t.fails_on_base
    ]


def transition_line(transition: CodeTransition, quote=lambda text: text) -> str:
    """`2025 pain MSK10 → MSK15: 1,772 rows, measure group knee
    (seeds/mips_measure_codes.csv:21), in 2 deliveries: Quality_….csv, 2025/NY (no SFTP)`;
    `quote` marks names up (Markdown's backticks)."""
    line = (
        f"{transition.performance_year} {transition.measure_kind} "
        f"{transition.base_code or '(empty)'} → {transition.head_code or '(empty)'}: "
        f"{counted(transition.rows, 'row')}, measure group {transition.measure_group}"
    )
    if transition.seed_lines is not None:
        source = ", ".join(quote(s) for s in transition.seed_lines) or NO_SEED_ROW
        line += f" ({source})"
    if transition.deliveries:
        files = ", ".join(
            quote(d.sftp_file_name)
            if d.sftp_file_name
            else f"{transition.performance_year}/{d.state_code} (no SFTP)"
            for d in transition.deliveries
        )
        line += f", in {counted(len(transition.deliveries), 'delivery', 'deliveries')}: {files}"
    return line


def _export_column_rows(result: DiffResult) -> list[list[Any]]:
    return [[c.layout, c.column, c.change, c.base_type, c.head_type] for c in result.column_changes]


def _name_rows(result: DiffResult) -> list[list[Any]]:
    return [
        [str(c.performance_year), c.state_code, c.what, c.base, c.head]
        for c in result.delivery_changes
    ]


def _row_rows(slices: list[SliceCounts]) -> list[list[Any]]:
    # years as text: a table shows counts with thousands separators, never a year
    return [
        [
            str(s.performance_year),
            s.state_code,
            s.only_in_base,
            s.only_in_head,
            s.changed,
            s.unchanged,
        ]
        for s in slices
    ]


def _column_rows(slices: list[SliceCounts]) -> list[list[Any]]:
    return [
        [str(s.performance_year), s.state_code, column, rows]
        for s in slices
        for column, rows in s.columns.items()
    ]


def _unchanged_note(result: DiffResult, shown: list[SliceCounts]) -> str:
    others = len(result.rows.slices) - len(shown)
    if not others:
        return ""
    return f"{counted(others, 'other delivery', 'other deliveries')}: no row changes."


def _example_title(example: ExampleRow) -> str:
    what = example.outcome.replace("_", " ")
    if example.changed_columns:
        what += f": {', '.join(example.changed_columns)}"
    return f"{example.performance_year}/{example.state_code} {example.measure_kind} row, {what}"


def _example_rows(example: ExampleRow) -> list[list[Any]]:
    def value(side, index):
        return None if side is None else side[index]

    return [
        [("* " if c in example.changed_columns else "") + c, value(example.base, i),
         value(example.head, i)]
        for i, c in enumerate(example.columns)
    ]  # fmt: skip


# Markdown


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(headers, rows) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown(result: DiffResult) -> str:
    lines = [f"## {title(result)}"]
    if result.fails_tests:
        lines += ["", "### ❌ Failing data tests"]
        for line in failing_tests_lines(result):
            lines += ["", f"**{line}**"]
        if result.data_tests.head_failures:
            lines.append("")
            lines += _markdown_table(TEST_HEADERS, _test_rows(result.data_tests.head_failures))
    lines += ["", f"**{verdict(result)}**", "", run_date_line(result)]
    for line in (tests_line(result), base_reused_line(result)):
        if line:
            lines.append(line)
    if result.column_changes:
        lines += ["", "### ⚠️ Export columns", ""]
        lines += [
            "Checked first: a column added, removed or retyped changes every file of the layout.",
            "",
        ]
        lines += _markdown_table(EXPORT_COLUMN_HEADERS, _export_column_rows(result))
    if result.delivery_changes:
        lines += ["", "### ⚠️ Delivery names and flags", ""]
        lines += [
            "Checked first: a file under a name the registry does not expect is never read.",
            "",
        ]
        lines += _markdown_table(NAME_HEADERS, _name_rows(result))
    shown = [s for s in result.rows.slices if s.differs]
    if shown:
        lines += ["", "### Rows per year and state", "", "Keyed by (visit, measure kind).", ""]
        lines += _markdown_table(ROW_HEADERS, _row_rows(shown))
        if note := _unchanged_note(result, shown):
            lines += ["", note]
    if result.rows.transitions:
        lines += ["", "### Measure-code transitions", ""]
        lines += [f"- {transition_line(t, lambda s: f'`{s}`')}" for t in result.rows.transitions]
    if columns := _column_rows(shown):
        lines += ["", "### Changed columns", ""]
        lines += _markdown_table(COLUMN_HEADERS, columns)
    context, base_error = context_tests(result), base_error_line(result)
    if context or base_error:
        lines += ["", "### Data tests: context", "", CONTEXT_NOTE]
        lines += ["", base_error] if base_error else []
        lines += ["", *_markdown_table(TEST_HEADERS, _test_rows(context))] if context else []
    if result.rows.examples:
        lines += ["", f"### Example rows (at most {result.show_rows} per delivery; patient data)"]
        for example in result.rows.examples:
            lines += ["", f"**{_example_title(example)}**", ""]
            lines += _markdown_table(("column", "base", "head"), _example_rows(example))
    return "\n".join(lines)


# Plain text


def plain(result: DiffResult) -> str:
    lines = [title(result)]
    if result.fails_tests:
        lines += ["", "FAILING DATA TESTS", *failing_tests_lines(result)]
        if result.data_tests.head_failures:
            lines.append(table(TEST_HEADERS, _test_rows(result.data_tests.head_failures)))
        lines.append("")
    lines += [verdict(result), run_date_line(result)]
    lines += [line for line in (tests_line(result), base_reused_line(result)) if line]
    if result.column_changes:
        lines += ["", "EXPORT COLUMNS (checked first)"]
        lines.append(table(EXPORT_COLUMN_HEADERS, _export_column_rows(result)))
    if result.delivery_changes:
        lines += ["", "DELIVERY NAMES AND FLAGS (checked first)"]
        lines.append(table(NAME_HEADERS, _name_rows(result)))
    shown = [s for s in result.rows.slices if s.differs]
    if shown:
        lines += ["", "ROWS PER YEAR AND STATE (keyed by visit and measure kind)"]
        lines.append(table(ROW_HEADERS, _row_rows(shown)))
        if note := _unchanged_note(result, shown):
            lines.append(note)
    if result.rows.transitions:
        lines += ["", "MEASURE-CODE TRANSITIONS"]
        lines += [transition_line(t) for t in result.rows.transitions]
    if columns := _column_rows(shown):
        lines += ["", "CHANGED COLUMNS"]
        lines.append(table(COLUMN_HEADERS, columns))
    context, base_error = context_tests(result), base_error_line(result)
    if context or base_error:
        lines += ["", "DATA TESTS: CONTEXT", CONTEXT_NOTE]
        lines += [base_error] if base_error else []
        lines += [table(TEST_HEADERS, _test_rows(context))] if context else []
    if result.rows.examples:
        lines += ["", f"EXAMPLE ROWS (at most {result.show_rows} per delivery; patient data)"]
        for example in result.rows.examples:
            lines += ["", _example_title(example)]
            lines.append(table(("column", "base", "head"), _example_rows(example)))
    return "\n".join(lines)


# JSON


def as_json(result: DiffResult) -> str:
    """The review's own fields; the command line puts them in the envelope every command's
    JSON shares (`ok`, `exit_code`, `command`, `error`: loader/run/report.py). A failing data
    test is `data_tests.failing`, first in `summary`, and exit code 2."""
    document: dict[str, Any] = {
        "differs": result.differs,
        "fails_tests": result.fails_tests,
        "summary": failing_tests_message(result) if result.fails_tests else verdict(result),
        "base": {
            "ref": result.base.ref,
            "commit": result.base.commit,
            "reused": result.base_reused,
        },
        "head": result.head_label,
        "run_date": result.run_date.isoformat() if result.run_date else None,
        "run_time_zone": result.run_time_zone,
        "deliveries_compared": result.deliveries_compared,
        "column_changes": [
            {"export": c.layout, "column": c.column, "change": c.change,
             "base_type": c.base_type, "head_type": c.head_type}
            for c in result.column_changes
        ],
        "delivery_changes": [
            {"performance_year": c.performance_year, "state_code": c.state_code,
             "what": c.what, "base": c.base, "head": c.head}
            for c in result.delivery_changes
        ],
        "slices": [
            {"performance_year": s.performance_year, "state_code": s.state_code,
             "only_in_base": s.only_in_base, "only_in_head": s.only_in_head,
             "changed": s.changed, "unchanged": s.unchanged, "changed_columns": s.columns}
            for s in result.rows.slices
        ],
        "code_transitions": [
            {"performance_year": t.performance_year, "measure_kind": t.measure_kind,
             "base_code": t.base_code, "head_code": t.head_code, "rows": t.rows,
             "base_measure_group": t.base_group, "head_measure_group": t.head_group,
             "seed_lines": None if t.seed_lines is None else list(t.seed_lines),
             "deliveries": [
                 {"state_code": d.state_code, "rows": d.rows, "sftp_file_name": d.sftp_file_name}
                 for d in t.deliveries
             ]}
            for t in result.rows.transitions
        ],
    }  # fmt: skip
    if result.data_tests is not None:
        document["data_tests"] = _tests_json(result)
    if result.show_rows:
        document["examples"] = [
            {"performance_year": e.performance_year, "state_code": e.state_code,
             "outcome": e.outcome, "measure_kind": e.measure_kind,
             "changed_columns": list(e.changed_columns),
             "base": None if e.base is None else dict(zip(e.columns, e.base, strict=True)),
             "head": None if e.head is None else dict(zip(e.columns, e.head, strict=True))}
            for e in result.rows.examples
        ]  # fmt: skip
    return json.dumps(document, indent=2)


def _outcome_json(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {"status": outcome.status, "failing_rows": outcome.failing_rows}


def _tests_json(result: DiffResult) -> dict[str, Any]:
    tests = result.data_tests

    def entry(test: DataTest) -> dict[str, Any]:
        return {"name": test.name, "model": test.model, "column": test.column,
                "head": _outcome_json(test.head), "base": _outcome_json(test.base)}  # fmt: skip

    return {
        "selection": "state:modified+",
        "head_run": tests.head_run,
        "base_run": tests.base_run,
        "head_error": tests.head_error,
        "base_error": tests.base_error,
        "failing": [entry(t) for t in tests.tests if t.fails_on_head or t.fails_on_base],
        "warnings": [entry(t) for t in tests.tests if not (t.fails_on_head or t.fails_on_base)],
    }
