"""The Athena SQL, executed: compiled for the `athena` target offline, run in DuckDB.

Over the source rows of the suite's PostgreSQL build (conftest's `production_build`), the
Athena SQL must give the same export and deliveries as PostgreSQL, every dbt unit test must
pass on it, and only the known fix-ups may be needed (athena_duckdb.FIXUPS). A wrong
`athena__` macro makes the checks fail (the negative control below), and the two places where
Trino differs from PostgreSQL and DuckDB alike (trim, the regex `$`) are emulated in DuckDB and
tested on both engines.
"""

from __future__ import annotations

import re
from collections import Counter

import psycopg
import pytest

from scripts import athena_lint
from tests.support.athena_duckdb import (
    FIXUPS,
    AthenaOnDuckDB,
    Transpiler,
    compile_for_athena,
)
from tests.support.model_scenarios import (
    PRODUCTION,
    PROJECT_DIR,
    SCRATCH,
    Scenario,
    copy_project,
    seed_partial_parse,
)

# Every fix-up the project's Athena SQL needs today, and how often (athena_duckdb.FIXUPS says
# why each exists). A new one is a reviewable change of this line, never silent.
EXPECTED_FIXUPS = Counter(
    {
        "regexp_replace_group_reference": 1,  # format_decimal_plain
        "date_difference_milliseconds": 1,  # dbt.datediff in int_visit_measures_unioned
        "utc_timestamp_as_timestamptz": 2,  # appointments.starts_at, patient_forms.completed_at
        "trino_with_timezone": 2,  # local_day_starts_at, twice in int_program_years_parsed
    }
)
# What differs between the two builds by design, not by rule: each names its own relations and
# has its own invocation.
ENGINE_COLUMNS = {"export_relation", "dbt_invocation_id"}


def _load(engine: AthenaOnDuckDB, pg, scenario: Scenario) -> AthenaOnDuckDB:
    engine.load_sources_from_postgres(
        pg, {"app": scenario.app_schema, "forms": scenario.forms_schema}
    )
    engine.load_seeds()
    engine.build_models()
    return engine


@pytest.fixture(scope="module")
def athena_build(athena_compilation, production_build, cluster) -> AthenaOnDuckDB:
    assert production_build.success, production_build.error
    with psycopg.connect(cluster.conninfo(), autocommit=True) as pg:
        return _load(AthenaOnDuckDB(athena_compilation.manifest, PROJECT_DIR), pg, PRODUCTION)


def _postgres_rows(db, schema: str, relation: str) -> tuple[list[str], list[tuple]]:
    cursor = db.execute(f'select * from "{schema}"."{relation}"')
    return [column.name for column in cursor.description], cursor.fetchall()


def _as_multiset(columns: list[str], rows: list[tuple], keep: list[str]) -> Counter:
    positions = [columns.index(name) for name in keep]
    return Counter(tuple(row[i] for i in positions) for row in rows)


def _differences(expected: Counter, actual: Counter) -> str:
    missing, extra = expected - actual, actual - expected
    return (
        f"{sum(missing.values())} PostgreSQL rows missing on Athena, e.g. {list(missing)[:2]}; "
        f"{sum(extra.values())} Athena rows not in PostgreSQL, e.g. {list(extra)[:2]}"
    )


def _compare(engine: AthenaOnDuckDB, db, schema: str, model: str, version=None) -> tuple:
    pg_columns, pg_rows = _postgres_rows(db, schema, f"{model}_v{version}" if version else model)
    athena_columns, athena_rows = engine.fetch(engine.relation_of(model, version))
    # Athena moves the partition columns last; the contract matches columns by name
    assert sorted(athena_columns) == sorted(pg_columns)
    keep = [name for name in pg_columns if name not in ENGINE_COLUMNS]
    return (
        _as_multiset(pg_columns, pg_rows, keep),
        _as_multiset(athena_columns, athena_rows, keep),
        (athena_columns, athena_rows),
    )


def test_every_model_runs_on_the_athena_sql(athena_build, athena_compilation):
    models = {
        node["name"]
        for node in athena_compilation.manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral"
    }
    assert set(athena_build.built) == models


def test_athena_export_equals_postgres_in_every_cell(athena_build, db):
    expected, actual, (columns, rows) = _compare(
        athena_build, db, PRODUCTION.models_schema, "mips_export", 1
    )
    assert len(rows) > 1000 and len(columns) == 21
    assert actual == expected, _differences(expected, actual)


def test_athena_deliveries_equal_postgres(athena_build, db):
    expected, actual, (columns, rows) = _compare(
        athena_build, db, PRODUCTION.models_schema, "mips_deliveries"
    )
    assert len(rows) == 25
    assert actual == expected, _differences(expected, actual)
    # the mapped column: each engine names its own export relation
    relations = {row[columns.index("export_relation")] for row in rows}
    assert relations == {'"awsdatacatalog"."mips_analytics"."mips_export_v1"'}


def test_only_the_known_fixups_were_needed(athena_build):
    assert set(EXPECTED_FIXUPS) <= set(FIXUPS)
    assert athena_build.transpiler.fixups == EXPECTED_FIXUPS


def test_every_unit_test_passes_on_the_athena_sql(athena_build, athena_compilation):
    results = athena_build.run_unit_tests(athena_compilation.unit_test_code)
    assert len(results) == len(athena_compilation.manifest["unit_tests"]) >= 21
    failed = [result for result in results if not result.passed]
    assert failed == []


def test_trino_semantics_are_emulated_where_duckdb_differs(db):
    """Trino's trim and `$` (as its docs say), against PostgreSQL's, and the project's forms."""
    duckdb = AthenaOnDuckDB({"nodes": {}, "sources": {}, "unit_tests": {}}, PROJECT_DIR)

    def on_trino(sql: str):
        return duckdb.connection.execute(Transpiler().to_duckdb(sql)).fetchone()[0]

    def on_postgres(sql: str):
        return db.execute(sql).fetchone()[0]

    bare_trim = "select trim(chr(9) || ' CA ' || chr(10))"
    assert on_trino(bare_trim) == "CA"  # every whitespace character
    assert on_postgres(bare_trim) == "\t CA \n"  # spaces only
    spaces_only = "select trim(both ' ' from chr(9) || ' CA ' || chr(10))"  # macro trim_spaces
    assert on_trino(spaces_only) == on_postgres(spaces_only) == "\t CA \n"

    newline_id = "'12345' || chr(10)"
    assert on_trino(f"select regexp_like({newline_id}, '^[0-9]+$')") is True
    assert on_postgres(f"select {newline_id} ~ '^[0-9]+$'") is False
    # macro fully_matches: \z on Athena, $ on PostgreSQL, the same answer on both
    assert on_trino(f"select regexp_like({newline_id}, '^(?:[0-9]+)\\z')") is False
    assert on_trino("select regexp_like('12345', '^(?:[0-9]+)\\z')") is True
    assert on_postgres(f"select {newline_id} ~ '^(?:[0-9]+)$'") is False


@pytest.fixture(scope="module")
def hostile_source(cluster) -> Scenario:
    """SCRATCH, afresh, for the tests that put hostile values into its sources."""
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        SCRATCH.fresh(conn, seed=5, scale=0.02, settings="production")
    return SCRATCH


def test_whitespace_and_newlines_are_read_alike_on_both_engines(
    hostile_source, db, project_options, athena_compilation
):
    """A tab after a boolean, a newline after a key, a tab in an NPI: same reading on both."""
    app = hostile_source.app_schema
    db.execute(
        f"update {app}.settings set value = value || chr(9)"
        " where key = 'healthmonix_2024_integration_enabled'"
    )
    db.execute(
        f"insert into {app}.settings (id, key, value, setting_type) select max(id) + 1,"
        f" 'healthmonix_2031_states' || chr(10), 'CA', 'string' from {app}.settings"
    )
    # the generator's own schema keeps NPIs tidy; an application database need not
    db.execute(f"alter table {app}.clinicians drop constraint if exists clinicians_npi_check")
    db.execute(
        f"update {app}.clinicians set npi = npi || chr(9)"
        f" where id = (select min(id) from {app}.clinicians)"
    )

    outcome = SCRATCH.run(
        project_options, "build", "--select", "+int_configuration_errors", "stg_app__clinicians"
    )
    assert not outcome.success
    message = "setting healthmonix_2024_integration_enabled: 'true\t' is not a boolean"
    assert any(message in failure for failure in outcome.failures), outcome.failures

    athena = _load(AthenaOnDuckDB(athena_compilation.manifest, PROJECT_DIR), db, SCRATCH)
    errors = [row[-1] for row in athena.fetch(athena.relation_of("int_configuration_errors"))[1]]
    assert [error for error in errors if "healthmonix_2024_integration_enabled" in error] == [
        message + " (accepted: true, false, t, f, 1, 0, in any case)"
    ]
    # the key with a newline is nobody's setting, on either engine
    for model in ("int_program_years_parsed", "stg_app__clinicians"):
        expected, actual, _ = _compare(athena, db, SCRATCH.models_schema, model)
        assert actual == expected, f"{model}: {_differences(expected, actual)}"
    years = db.execute(
        f"select performance_year from {SCRATCH.models_schema}.int_program_years_parsed"
    ).fetchall()
    assert (2031,) not in years
    npis = [
        row[0] for row in db.execute(f"select npi from {SCRATCH.models_schema}.stg_app__clinicians")
    ]
    assert sum(npi.endswith("\t") for npi in npis) == 1


def test_a_wrong_athena_macro_is_caught(
    tmp_path, profiles_dir, production_build, athena_compilation, cluster
):
    """Negative control: break Athena-only SQL in a project copy; every check must notice."""
    project = copy_project(tmp_path / "project")
    local_date = project / "macros" / "cross_database" / "local_date.sql"
    text = local_date.read_text()
    athena_body = re.search(r"macro athena__local_date.*?endmacro", text, re.S).group(0)
    local_in_zone = "cast(({{ timestamp_expression }} at time zone '{{ var(\"mips_time_zone\") }}')"
    utc_date = "cast(({{ timestamp_expression }})"
    local_date.write_text(text.replace(athena_body, athena_body.replace(local_in_zone, utc_date)))
    assert local_date.read_text() != text
    trim_spaces = project / "macros" / "trim_spaces.sql"
    trim_spaces.write_text(
        trim_spaces.read_text().replace("trim(both ' ' from {{ text_expression }})",
                                        "trim({{ text_expression }})")
    )  # fmt: skip
    fully_matches = project / "macros" / "cross_database" / "fully_matches.sql"
    fully_matches.write_text(
        fully_matches.read_text().replace("'^(?:{{ pattern }})\\z'", "'^{{ pattern }}$'")
    )

    # the session's parse of the project: only the three macros and what calls them are parsed
    seed_partial_parse(athena_compilation.target_dir, tmp_path / "target")
    compiled = compile_for_athena(project, tmp_path / "target", profiles_dir)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as pg:
        athena = _load(AthenaOnDuckDB(compiled.manifest, project), pg, PRODUCTION)
        expected, actual, _ = _compare(athena, pg, PRODUCTION.models_schema, "mips_export", 1)
    assert actual != expected  # the UTC date of evening visits is the next day

    failed = {r.name for r in athena.run_unit_tests(compiled.unit_test_code) if not r.passed}
    assert {"visit_dates_are_los_angeles_dates", "boolean_settings_parse_strictly",
            "states_lists_are_cleaned"} <= failed  # fmt: skip
    assert athena.transpiler.fixups["trino_trim_whitespace"] > 0
    assert athena.transpiler.fixups["trino_regex_end_anchor"] > 0

    # the lint, on each file the broken macros changed (test_athena_lint lints every file of
    # the project's own compilation, clean)
    changed = [
        path
        for path in sorted(compiled.compiled_dir.rglob("*.sql"))
        if (athena_compilation.compiled_dir / path.relative_to(compiled.compiled_dir)).read_text()
        != path.read_text()
    ]
    assert changed
    rules = {
        finding.rule
        for path in changed
        for finding in athena_lint.lint_sql(path.read_text(), str(path))
    }
    assert {"trim", "regex-end-anchor"} <= rules


def test_a_source_timestamp_without_zone_fails_its_type_test(hostile_source, db, project_options):
    """holds_instants reads the column's type from the catalog; zone-less is refused."""
    app = hostile_source.app_schema
    db.execute(f"alter table {app}.appointments alter column starts_at type timestamp")
    try:
        outcome = SCRATCH.run(project_options, "test", "--select", "test_name:holds_instants")
    finally:
        db.execute(
            f"alter table {app}.appointments alter column starts_at type timestamptz"
            " using starts_at at time zone 'UTC'"
        )
    assert not outcome.success
    [failure] = outcome.failures
    assert (
        "appointments.starts_at is timestamp without time zone, which holds no instant" in failure
    ), failure
    assert "it must be timestamp with time zone" in failure
    passing = SCRATCH.run(project_options, "test", "--select", "test_name:holds_instants")
    assert passing.success, passing.failures
