"""The project parses and compiles for Athena offline, and its compiled SQL is clean Trino.

Also proves the linter itself: PostgreSQL-only snippets are flagged, clean Trino is not.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _load_linter():
    path = PROJECT_DIR / "scripts" / "athena_lint.py"
    spec = importlib.util.spec_from_file_location("athena_lint", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["athena_lint"] = module
    spec.loader.exec_module(module)
    return module


athena_lint = _load_linter()


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
    ],
)
def test_postgres_only_sql_is_flagged(sql, rule):
    findings = athena_lint.lint_sql(sql, "snippet.sql")
    assert rule in {finding.rule for finding in findings}, findings


def test_clean_trino_sql_passes():
    sql = """
    with listed as (
        select p.performance_year, upper(trim(x.item)) as state_code
        from program_years as p
        cross join unnest(split(p.states_value, ',')) as x (item)
        where regexp_like(p.setting_key, '^healthmonix_[0-9]{4}_states$')
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


def test_project_parses_compiles_and_lints_clean_for_athena(tmp_path, monkeypatch):
    from dbt.cli.main import dbtRunner

    for key, value in athena_lint.OFFLINE_ATHENA_ENV.items():
        monkeypatch.setenv(key, os.environ.get(key, value))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(PROJECT_DIR / "profiles.example.yml", profiles / "profiles.yml")
    common = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(profiles)]
    target = tmp_path / "target"

    parsed = dbtRunner().invoke(
        [
            "--quiet",
            "parse",
            "--target",
            "athena",
            "--target-path",
            str(target),
            "--log-path",
            str(tmp_path / "logs"),
            *common,
        ]
    )
    assert parsed.success, parsed.exception

    compiled = athena_lint.compile_for_athena(PROJECT_DIR, target, profiles)
    sql_files = list(compiled.rglob("*.sql"))
    assert len(sql_files) > 50
    assert athena_lint.lint_directory(compiled) == []

    # Athena wants the partition columns last in the CTAS select (macros/cross_database/).
    export_sql = next(p for p in sql_files if p.name == "mips_export_v1.sql").read_text()
    final_select = export_sql[export_sql.rindex("select") :]
    columns = [line.strip().rstrip(",") for line in final_select.splitlines()[1:22]]
    assert columns[-2:] == ["performance_year", "state_code"]
    assert columns[0] == "file_row_number"


def test_linter_command_line_reports_findings(tmp_path):
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "clean.sql").write_text("select cast(a as varchar) from t")
    assert athena_lint.main(["--compiled-dir", str(compiled)]) == 0
    (compiled / "dirty.sql").write_text("select a::text from t")
    assert athena_lint.main(["--compiled-dir", str(compiled)]) == 1
