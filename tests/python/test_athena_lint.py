"""The project parses and compiles for Athena offline, and its compiled SQL is clean Trino.

Also proves the linter itself: PostgreSQL-only snippets are flagged, clean Trino is not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dbt.cli.main import dbtRunner

from scripts import athena_lint


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("select a::int from t", "operator"),
        ("select a from t where a ~ '^x'", "operator"),
        ("select a ->> 'b' from t", "operator"),
        ("select a from t where b ilike 'x%'", "ilike"),
        ("select distinct on (a) a, b from t order by a, b", "distinct-on"),
        ("select * from generate_series(1, 10) as g (n)", "function"),
        ("select * from t cross join unnest(string_to_array(a, ',')) as x (item)", "function"),
        ("select * from t, regexp_split_to_table(a, ',') as x (item)", "function"),
        ("select to_char(d, 'YYYY-MM-DD') from t", "function"),
        ("select cast(trim_scale(x) as varchar) from t", "function"),
        ("select make_date(2024, 1, 1)", "function"),
        ("select string_agg(a, ',') from t", "function"),
        ("select cast(a as text) from t", "type"),
        ("select cast(a as numeric(28, 6)) from t", "type"),
        ("select cast(a as timestamptz) from t", "type"),
        ("select d + interval '1 day' from t", "interval"),
        ("select extract(epoch from ts) from t", "extract-epoch"),
        ("select * from t cross join lateral unnest(split(a, ',')) as x (item)", "lateral"),
        ("select a from t where a similar to 'x%'", "similar-to"),
        ("select upper(trim(a)) from t", "trim"),
        ("select a from t where regexp_like(a, '^[0-9]+$')", "regex-end-anchor"),
        ("select a from t where regexp_like(a, '^(?:x|y$)')", "regex-end-anchor"),
    ],
)
def test_postgres_only_sql_is_flagged(sql, rule):
    findings = athena_lint.lint_sql(sql, "snippet.sql")
    assert rule in {finding.rule for finding in findings}, findings


def test_clean_trino_sql_passes():
    sql = """
    with listed as (
        select p.performance_year, upper(trim(both ' ' from x.item)) as state_code
        from program_years as p
        cross join unnest(split(p.states_value, ',')) as x (item)
        where regexp_like(p.setting_key, '^(?:healthmonix_[0-9]{4}_states)\\z')
          and regexp_like(p.setting_value, '^[$0-9]+\\$')
    )
    select
        cast(performance_year as integer) as performance_year,
        date_format(cast(starts_at at time zone 'America/Los_Angeles' as date), '%Y-%m-%d'),
        date_add('year', 18, date_of_birth) <= start_date as is_adult,
        regexp_replace(cast(cast(score as decimal(38, 10)) as varchar), '(\\.[0-9]*?)0+$', '$1'),
        try_cast(v as bigint),
        to_milliseconds(cast(b as date) - cast(a as date)) / 86400000 as days,
        row_number() over (partition by a order by b desc nulls last, c desc) as rank_in_visit,
        count(*) filter (where status = 'completed') as completed
    from listed
    left join t on listed.state_code = t.state_code
    group by 1, 2, 3, 4, 5, 6
    """
    assert athena_lint.lint_sql(sql, "clean.sql") == []


def test_unknown_functions_are_reported_not_ignored():
    findings = athena_lint.lint_sql("select frobnicate(a) from t", "snippet.sql")
    assert [finding.rule for finding in findings] == ["function"]
    assert "frobnicate" in findings[0].message


def test_project_compiles_and_lints_clean_for_athena(athena_compilation):
    compiled = athena_compilation.compiled_dir
    sql_files = list(compiled.rglob("*.sql"))
    assert len(sql_files) > 50
    assert any("/tests/" in str(path) for path in sql_files)  # data tests are linted too
    assert athena_lint.lint_directory(compiled) == []

    # Athena wants the partition columns last in the CTAS select (macros/cross_database/).
    export_sql = next(p for p in sql_files if p.name == "mips_export_v1.sql").read_text()
    final_select = export_sql[export_sql.rindex("select") :]
    columns = [line.strip().rstrip(",") for line in final_select.splitlines()[1:22]]
    assert columns[-2:] == ["performance_year", "state_code"]
    assert columns[0] == "file_row_number"


@pytest.mark.parametrize(
    "sql",
    [
        "select a::int from t",
        "select a from t where a ~ '^x'",
        "select distinct on (a) a, b from t",
        "select a from t where b ilike 'x%'",
        "select a from t where b similar to 'x%'",
        "select a ->> 'b' from t",
    ],
)
def test_trinos_own_grammar_rejects_postgres_syntax(sql):
    [finding] = athena_lint.trino_grammar_findings(sql, "snippet.sql")
    assert finding.rule == "trino-grammar" and finding.line == 1
    assert "Trino's grammar rejects it at 1:" in finding.message


def test_trinos_own_grammar_accepts_what_the_project_writes():
    sql = """
    select cast(a as decimal(28, 6)), trim(both ' ' from b), regexp_like(c, '^(?:x)\\z'),
        date_format(d, '%Y-%m-%d'), count(*) filter (where e = 'completed')
    from "awsdatacatalog"."mips_analytics"."t"
    cross join unnest(split(f, ',')) as listed (item)
    group by 1, 2, 3, 4
    """
    assert athena_lint.trino_grammar_findings(sql) == []


def test_linter_command_line_reports_findings(tmp_path):
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "clean.sql").write_text("select cast(a as varchar) from t")
    assert athena_lint.main(["--compiled-dir", str(compiled)]) == 0
    (compiled / "dirty.sql").write_text("select a::text from t")
    assert athena_lint.main(["--compiled-dir", str(compiled)]) == 1


# Dispatched macros whose default__ is plain SQL every engine runs the same way. Any other
# default would hand a third adapter some engine's SQL silently; without one, dbt stops with
# "no implementation" for that adapter, which is what we want (as does a default that raises).
PORTABLE_DEFAULTS = {
    "analyze_table": "does nothing, right for an engine that plans without statistics",
    "first_row_per": "row_number() = 1 over the key: standard SQL",
    "select_columns_for_layout": "the column list in the contract's order",
    "statement_work_mem": "does nothing: the engine's own memory settings",
}


def test_a_default_is_portable_or_absent(athena_compilation):
    macros = {
        macro["name"]: macro["macro_sql"]
        for macro in athena_compilation.manifest["macros"].values()
        if macro["package_name"] == "healthmonix_mips"
    }
    prefixes = ("default__", "postgres__", "athena__")
    dispatched = {name.split("__", 1)[1] for name in macros if name.startswith(prefixes)}
    assert {"local_date", "fully_matches", "format_decimal_plain"} <= dispatched
    # an override of one adapter's implementation of dbt's own macro (postgres__create_table_as):
    # dbt dispatches it, and dbt and the other adapters bring their own default__ and athena__
    dbt_own = {
        macro["name"].split("__", 1)[1]
        for macro in athena_compilation.manifest["macros"].values()
        if macro["package_name"] == "dbt" and macro["name"].startswith("default__")
    }
    assert "create_table_as" in dbt_own & dispatched
    dispatched -= dbt_own
    for name in sorted(dispatched):
        if f"default__{name}" in macros:
            loud = "raise_compiler_error" in macros[f"default__{name}"]
            assert name in PORTABLE_DEFAULTS or loud, f"default__{name} is not known portable"
        else:
            assert f"postgres__{name}" in macros and f"athena__{name}" in macros, name
        for adapter in ("postgres", "athena"):
            body = macros.get(f"{adapter}__{name}", "")
            inner = re.search(r"%}(.*){%-?\s*endmacro", body, re.S)
            calls_default_only = inner and re.fullmatch(
                r"\s*\{\{\s*default__\w+\(.*\)\s*\}\}\s*", inner.group(1), re.S
            )
            assert not calls_default_only, f"{adapter}__{name} only calls the default: drop it"


@pytest.fixture(scope="module")
def parsed_for_athena(athena_compilation):
    """The session's parse of the project for the athena target: (manifest, dbt options)."""
    return athena_compilation.parsed, list(athena_compilation.dbt_args)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("{{ fully_matches('x', '^[0-9]+$') }}", "write the pattern without ^ and $"),
        ("{{ format_decimal_plain('x', 40, 6) }}", "precision must be an integer from 1 to 38"),
        ("{{ format_decimal_plain('x', 6, 8) }}", "scale an integer from 0 to precision"),
    ],
)
def test_the_macros_refuse_what_would_differ_between_engines(sql, message, parsed_for_athena):
    """Compile-time guards: an anchored pattern, a decimal type past what both engines share."""
    manifest, common = parsed_for_athena
    log = Path(common[common.index("--log-path") + 1]) / "dbt.log"
    log.unlink(missing_ok=True)
    with athena_lint.offline_env():
        compiled = dbtRunner(manifest=manifest).invoke(
            ["compile", "--no-populate-cache", "--inline", sql, *common]
        )
    assert not compiled.success
    # dbt wraps it as "Error parsing inline query"; its log keeps the macro's own message
    assert message in str(compiled.exception) + log.read_text()
