"""The build-speed macros of the big models, on a probe project that holds only them and the
models a test adds, built on the embedded PostgreSQL: contract-enforced tables built by
`create table as` with the constraints added after (macros/contract_tables_by_ctas.sql),
their own sort memory (macros/cross_database/statement_work_mem.sql), the export's cheap
date format (macros/cross_database/format_date_iso.sql), and the `unique` and
`accepted_values` tests the catalog answers (macros/unique_by_index.sql,
macros/accepted_values_by_check.sql).

What must hold whichever way dbt builds the table: the declared constraints exist on it, a row
that breaks one fails the model, and the table built before is left as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from loader.environment.dbt_invocation import run_dbt
from loader.environment.warehouse import ProjectOptions
from tests.support.model_scenarios import PROJECT_DIR, seed_partial_parse

SCHEMA = "contract_probe"
# The rows come from the environment, not from --vars: dbt reparses the whole project (its
# own macros included, ≈ 1 s) whenever the vars change, but only this file when an
# environment variable it reads does.
MODEL = """
select * from (values {{ env_var('MIPS_PROBE_ROWS') }}) as probe (k, v)
"""
PARSED_ROWS = "(0, 'parsed')"
# The macros under test, all in every probe: each changes only what it is about (a new macro
# file would also make dbt's partial parse miss the adapter's macros a test macro calls).
PROBE_MACROS = (
    "contract_tables_by_ctas.sql",
    "cross_database/statement_work_mem.sql",
    "cross_database/format_date_iso.sql",
    "unique_by_index.sql",
    "accepted_values_by_check.sql",
)
CONTRACT = """
models:
  - name: probe
    config:
      materialized: table
      contract:
        enforced: true
    columns:
      - name: k
        data_type: integer
        constraints:
          - type: not_null
          - type: primary_key
      - name: v
        data_type: text
        constraints:
          - type: not_null
"""


def probe_project(project: Path) -> Path:
    """The probe project: the macros under test and one contract-enforced model."""
    (project / "models").mkdir(parents=True)
    (project / "macros").mkdir()
    (project / "dbt_project.yml").write_text(
        "name: probe\nversion: '1.0'\nconfig-version: 2\nprofile: healthmonix_mips\n"
    )
    for macro in PROBE_MACROS:
        shutil.copy(PROJECT_DIR / "macros" / macro, project / "macros")
    (project / "models" / "probe.sql").write_text(MODEL)
    (project / "models" / "probe.yml").write_text(CONTRACT)
    return project


@pytest.fixture(scope="module")
def probe_parsed(tmp_path_factory, profiles_dir) -> Path:
    """The probe project parsed once (its target/; the module is one work unit): each test's
    target/ starts from this partial parse, so dbt reads only the files the test adds or
    changes, where a first parse reads dbt's own macros too (≈ 1 s a test)."""
    root = tmp_path_factory.mktemp("probe-parsed")
    options = ProjectOptions(probe_project(root / "probe"), profiles_dir, "dev")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIPS_DEV_SCHEMA", SCHEMA)
        patch.setenv("MIPS_PROBE_ROWS", PARSED_ROWS)
        parsed = run_dbt(options, ["parse", "--target-path", str(root / "target")], quiet=True)
    assert parsed.success, parsed.error
    return root / "target"


@pytest.fixture
def probe(tmp_path, profiles_dir, cluster, monkeypatch, probe_parsed):
    project = probe_project(tmp_path / "probe")
    seed_partial_parse(probe_parsed, tmp_path / "target")
    monkeypatch.setenv("MIPS_DEV_SCHEMA", SCHEMA)
    monkeypatch.setenv("MIPS_PROBE_ROWS", PARSED_ROWS)  # what a test without rows builds
    options = ProjectOptions(project_dir=project, profiles_dir=profiles_dir, target="dev")
    with psycopg.connect(cluster.conninfo(), autocommit=True) as db:
        db.execute(f"drop schema if exists {SCHEMA} cascade")

        def build(rows: str):
            monkeypatch.setenv("MIPS_PROBE_ROWS", rows)
            args = ["build", "--target-path", str(tmp_path / "target")]
            return run_dbt(options, args, quiet=True)

        yield build, db, tmp_path / "target", options


def test_the_contract_table_is_built_by_ctas_with_its_constraints(probe):
    build, db, target, _ = probe
    built = build("(1, 'a'), (2, 'b')")
    assert built.success, built.error
    statement = " ".join((target / "run" / "probe" / "models" / "probe.sql").read_text().split())
    assert "table" in statement and " as ( select cast(k as integer) as k" in statement
    assert "alter table" in statement and "add primary key (k)" in statement
    kinds = db.execute(
        "select contype from pg_constraint where conrelid = %s::regclass and contype <> 'n'",
        (f"{SCHEMA}.probe",),
    ).fetchall()
    assert kinds == [("p",)]
    not_null = db.execute(
        "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
        "and attnotnull order by attnum",
        (f"{SCHEMA}.probe",),
    ).fetchall()
    assert not_null == [("k",), ("v",)]


@pytest.mark.parametrize(
    ("rows", "refusal"),
    [("(1, 'a'), (1, 'b')", "is duplicated"), ("(1, 'a'), (2, null)", "contains null values")],
)
def test_a_row_that_breaks_the_contract_fails_and_leaves_the_table_as_it_was(probe, rows, refusal):
    build, db, _, _ = probe
    assert build("(7, 'kept')").success
    failed = build(rows)
    assert not failed.success
    assert any(refusal in f for f in failed.failures), failed.failures
    assert db.execute(f"select k, v from {SCHEMA}.probe").fetchall() == [(7, "kept")]


@pytest.mark.parametrize(("work_mem", "seen"), [(None, "256MB"), ("64MB", "64MB"), ("null", "4MB")])
def test_a_big_model_sorts_with_its_own_work_mem(probe, work_mem, seen):
    """The pre-hook of the big models (macros/cross_database/statement_work_mem.sql) sets
    var `mips_work_mem` (default 256MB; null: the server's own, 4MB here) for the model's
    statement."""
    _, db, target, options = probe
    project = options.project_dir
    (project / "models" / "memory.sql").write_text(
        "{{ config(materialized='table', pre_hook=\"{{ statement_work_mem() }}\") }}\n"
        "select current_setting('work_mem') as work_mem\n"
    )
    chosen = [] if work_mem is None else ["--vars", f"{{mips_work_mem: {work_mem}}}"]
    built = run_dbt(options, ["run", "-s", "memory", *chosen, "--target-path", str(target)])
    assert built.success, built.error
    assert db.execute(f"select work_mem from {SCHEMA}.memory").fetchall() == [(seen,)]


DATE_STYLES = {"iso": "ISO, MDY", "sql": "SQL, DMY", "german": "German"}


def test_a_date_is_written_yyyy_mm_dd_whatever_the_sessions_date_style(probe):
    """format_date_iso casts a date to text under an ISO DateStyle (cheap) and uses to_char
    under any other, where a plain cast would write the session's format. One model per
    DateStyle, each setting it for its own statement."""
    _, db, target, options = probe
    project = options.project_dir
    for name, style in DATE_STYLES.items():
        hook = f"set local datestyle = '{style}'"
        (project / "models" / f"dates_{name}.sql").write_text(
            f"{{{{ config(materialized='table', pre_hook=\"{hook}\") }}}}\n"
            "select\n"
            "    {{ format_date_iso(\"date '2024-01-12'\") }} as formatted,\n"
            "    {{ format_date_iso('cast(null as date)') }} as missing,\n"
            "    cast(date '2024-01-12' as text) as plain_cast\n"
        )
    built = run_dbt(options, ["run", "-s", "dates_*", "--target-path", str(target)])
    assert built.success, built.error
    for name, style in DATE_STYLES.items():
        row = db.execute(f"select * from {SCHEMA}.dates_{name}").fetchone()
        formatted, missing, plain_cast = row
        assert (formatted, missing) == ("2024-01-12", None), style
        assert (plain_cast == "2024-01-12") == style.startswith("ISO"), style


UNIQUE_TESTS = CONTRACT.replace(
    "          - type: primary_key\n",
    "          - type: primary_key\n        data_tests:\n          - unique\n",
).replace(
    "      - name: v\n        data_type: text\n",
    "      - name: v\n        data_type: text\n        data_tests:\n          - unique\n",
)


def with_unique_tests(project: Path, models_yml: str) -> None:
    """The probe project with these tests on its model (it has the checkout's `unique` macro)."""
    (project / "models" / "probe.yml").write_text(models_yml)


def test_unique_is_answered_by_a_unique_index_on_exactly_its_column(probe):
    """macros/unique_by_index.sql: `k` is the primary key, so its `unique` test never reads the
    table; `v` has no index of its own, so its test scans and finds the duplicate."""
    build, db, target, options = probe
    with_unique_tests(options.project_dir, UNIQUE_TESTS)
    built = build("(1, 'a'), (2, 'a'), (3, 'b')")
    assert not built.success and dict(built.statuses)["fail"] == 1, built.statuses

    def compiled(test: str) -> str:
        path = target / "compiled" / "probe" / "models" / "probe.yml" / f"{test}.sql"
        return path.read_text()

    def scan_of(test: str) -> str:
        plan = db.execute(f"explain (analyze, costs off, timing off) {compiled(test)}")
        [scan] = [row[0] for row in plan if "Seq Scan on probe" in row[0]]
        return scan

    assert db.execute(compiled("unique_probe_k")).fetchall() == []
    assert db.execute(compiled("unique_probe_v")).fetchall() == [("a", 2)]
    assert "never executed" in scan_of("unique_probe_k")
    assert "never executed" not in scan_of("unique_probe_v")


def test_a_unique_test_with_a_where_runs_dbts_own_query(probe):
    """A `where` makes the tested relation a subquery, which has no index to ask: dbt's own
    test runs (and still finds the duplicate among the rows it keeps)."""
    build, db, target, options = probe
    with_unique_tests(
        options.project_dir,
        UNIQUE_TESTS.replace("          - unique\n", "          - unique:\n              "
                             "config: {where: \"v <> 'b'\"}\n"),
    )  # fmt: skip
    built = build("(1, 'a'), (2, 'a'), (3, 'b'), (4, 'b')")
    assert not built.success and dict(built.statuses)["fail"] == 1, built.statuses
    compiled = target / "compiled" / "probe" / "models" / "probe.yml"
    assert "pg_index" not in (compiled / "unique_probe_k.sql").read_text()
    assert db.execute((compiled / "unique_probe_v.sql").read_text()).fetchall() == [("a", 2)]


# A source table whose columns carry the CHECK constraints an application may have: the
# accepted-values test of each column, and what it must do (answered: the table is not read).
CODED_SOURCE = """
sources:
  - name: probe
    schema: contract_probe
    tables:
      - name: coded
        columns:
          - name: checked
            data_tests: [{accepted_values: {arguments: {values: [x, y, z]}}}]
          - name: quoted
            data_tests: [{accepted_values: {arguments: {values: ["it's", x]}}}]
          - name: wider
            data_tests: [{accepted_values: {arguments: {values: [x, y]}}}]
          - name: unchecked
            data_tests: [{accepted_values: {arguments: {values: [x, y]}}}]
          - name: not_valid
            data_tests: [{accepted_values: {arguments: {values: [x, y]}}}]
          - name: not_enforced
            data_tests: [{accepted_values: {arguments: {values: [x, y]}}}]
          - name: more
            data_tests: [{accepted_values: {arguments: {values: [x, y]}}}]
"""
CODED_TABLE = f"""
create table {SCHEMA}.coded (
    checked text check (checked in ('x', 'y')),
    quoted text check (quoted in ('it''s', 'x')),
    wider text check (wider in ('x', 'w')),
    unchecked text,
    not_valid text,
    not_enforced text check (not_enforced in ('x', 'y')) not enforced,
    more text check (more in ('x', 'y') and length(more) = 1)
)
"""


def test_accepted_values_is_answered_by_a_check_constraint_that_allows_no_other(probe):
    """macros/accepted_values_by_check.sql: where a validated, enforced CHECK constraint lets
    only accepted values in (`checked`, `quoted`), the test never reads the table. A value the
    constraint allows but the test does not (`wider`), no constraint, a constraint added `not
    valid` over rows already there or declared `not enforced`, or one with more conditions
    (`more`): the rows are read, and a value outside the list fails the test."""
    build, db, target, options = probe
    (options.project_dir / "models" / "coded.yml").write_text(CODED_SOURCE)
    db.execute(f"create schema {SCHEMA}")
    db.execute(CODED_TABLE)
    db.execute(
        f"insert into {SCHEMA}.coded values ('x', 'it''s', 'x', 'x', 'w', 'w', 'x'), "
        "('y', 'x', 'w', 'w', 'x', 'x', 'y'), (null, null, null, null, null, null, null)"
    )
    db.execute(
        f"alter table {SCHEMA}.coded add constraint coded_not_valid_check "
        "check (not_valid in ('x', 'y')) not valid"
    )
    built = build("(1, 'a')")
    assert not built.success and dict(built.statuses)["fail"] == 4, built.statuses

    def outcome(column: str) -> tuple[list, bool]:
        """The test's failing rows, and whether it read the table."""
        [path] = (target / "compiled" / "probe" / "models" / "coded.yml").glob(
            f"source_accepted_values_probe_coded_{column}__*.sql"
        )
        plan = db.execute(f"explain (analyze, costs off, timing off) {path.read_text()}")
        [scan] = [row[0] for row in plan if "Seq Scan on coded" in row[0]]
        return db.execute(path.read_text()).fetchall(), "never executed" not in scan

    assert outcome("checked") == ([], False)
    assert outcome("quoted") == ([], False)
    for column in ("wider", "unchecked", "not_valid", "not_enforced"):
        assert outcome(column) == ([("w", 1)], True), column
    assert outcome("more") == ([], True)
