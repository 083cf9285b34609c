"""`dbt build` on generated data: it passes, and the export agrees with an independent oracle.

The oracle is one plain query over the source tables, written differently from the models
(PostgreSQL's age(), make_date(), DISTINCT ON; the SPEC's body-part list typed out here), so a
rule broken in the models does not break the oracle the same way.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from loader.clock import SYNTHETIC_TIME_ZONE, today_in
from loader.environment.warehouse import ProjectOptions
from tests.support.model_scenarios import (
    BUILD_WITHOUT_UNIT_TESTS,
    PRODUCTION,
    SCRATCH,
    copy_project,
    fetch_all,
    listed_nodes,
)

# SPEC §5's measure-map table, typed out independently of the seed.
MAPPED_BODY_PARTS = {
    "neck": ("MSK01", "MSK11", "MSK06"),
    "shoulder_arm": ("MSK02", "MSK12", "MSK07"),
    "lower_back": ("MSK03", "MSK13", "MSK08"),
    "hip": ("MSK04", "MSK14", "MSK09"),
    "hip_joint_replacement": ("MSK04", "MSK14", "MSK09"),
    "foot_and_ankle": ("MSK04", "MSK14", "MSK09"),
    "knee": ("MSK05", "MSK15", "MSK10"),
    "knee_joint_replacement": ("MSK05", "MSK15", "MSK10"),
}
# SPEC §4's production settings.
PRODUCTION_STATES = {
    2022: ["CA"],
    2023: ["AZ", "CA", "FL", "IL", "TX", "WA"],
    2024: ["AZ", "CA", "FL", "IL", "TX", "WA", "GA", "NY", "CO"],
    2025: ["AZ", "CA", "FL", "IL", "TX", "WA", "GA", "NY", "CO"],
}
STRICT_YEARS = {2022}

ORACLE = """
with latest_form as (
    select distinct on (appointment_id) appointment_id, functional_score, nprs_score
    from {forms}.patient_forms_mips
    where appointment_id is not null
    order by appointment_id, completed_at desc, id desc
)
select
    count(*) as visits,
    count(f.functional_score) as function_scores,
    count(f.nprs_score) as pain_scores
from {app}.appointments as a
join {app}.care_plans as cp on cp.id = a.care_plan_id
join {app}.regions as r on r.id = cp.region_id
join {app}.states as s on s.id = r.state_id
join {app}.patients as p on p.id = cp.patient_id
join {app}.injuries as i on i.id = cp.injury_id
left join latest_form as f on f.appointment_id = a.id
where s.postal_abbreviation = %(state)s
  and a.status = 'completed'
  and date_part('year', a.starts_at at time zone 'America/Los_Angeles') = %(year)s
  and cp.status != 'cancelled'
  -- the years field of age(), not `age(...) >= interval '18 years'`: interval comparison
  -- counts 17 years 11 months 30 days as 18 years (found by data as of 2026-01-15)
  and date_part('year', age(cp.start_date, p.date_of_birth)) >= 18
  and i.body_part_type = any(%(mapped)s)
  and case when %(strict)s
      then cp.start_date >= make_date(%(year)s, 1, 1)
           and cp.end_date <= make_date(%(year)s, 12, 31)
      else cp.start_date <= make_date(%(year)s, 12, 31)
           and (cp.end_date is null or cp.end_date >= make_date(%(year)s, 1, 1))
      end
"""


def test_build_passes_on_production_like_data(production_build):
    assert production_build.success, (production_build.error, production_build.failures)


def test_deliveries_are_the_configured_years_and_states(production_build, db):
    assert production_build.success
    rows = fetch_all(
        db,
        "select performance_year, state_code, s3_key_template, sftp_enabled,"
        " sftp_file_name_template, strictly_contained, export_relation"
        f" from {PRODUCTION.models_schema}.mips_deliveries order by 1, 2",
    )
    expected = {(year, state) for year, states in PRODUCTION_STATES.items() for state in states}
    assert {(row[0], row[1]) for row in rows} == expected
    by_key = {(row[0], row[1]): row for row in rows}
    assert by_key[(2022, "CA")][2:6] == ("2022/CA/2022-12-31/data.csv", False, None, True)
    assert by_key[(2023, "TX")][4].endswith("_{run_date_compact}.csv")
    assert by_key[(2025, "CO")][2] == "2025/CO/{run_date}/data.csv"
    assert by_key[(2025, "CO")][4].startswith("Quality_")
    assert "{run_date_compact}" not in by_key[(2025, "CO")][4]
    assert {row[6] for row in rows} == {f'"mips"."{PRODUCTION.models_schema}"."mips_export_v1"'}


@pytest.mark.parametrize(
    ("year", "state"), [(2022, "CA"), (2023, "TX"), (2024, "CO"), (2025, "CA")]
)
def test_export_slice_matches_the_oracle(production_build, db, year, state):
    assert production_build.success
    visits, function_scores, pain_scores = db.execute(
        ORACLE.format(app=PRODUCTION.app_schema, forms=PRODUCTION.forms_schema),
        {
            "state": state,
            "year": year,
            "mapped": list(MAPPED_BODY_PARTS),
            "strict": year in STRICT_YEARS,
        },
    ).fetchone()
    assert visits > 0, "the generated data should give every checked slice some visits"
    rows, scored_functions, scored_pains = db.execute(
        f"""
        select
            count(*),
            count(*) filter (where file_row_number %% 3 = 1 and score is not null),
            count(*) filter (where file_row_number %% 3 = 2 and score is not null)
        from {PRODUCTION.models_schema}.mips_export_v1
        where performance_year = %s and state_code = %s
        """,
        (year, state),
    ).fetchone()
    assert rows == 3 * visits
    assert scored_functions == function_scores
    assert scored_pains == pain_scores


@pytest.mark.parametrize(("year", "state"), [(2023, "CA"), (2025, "IL")])
def test_export_slice_honours_the_file_order(production_build, db, year, state):
    assert production_build.success
    rows = fetch_all(
        db,
        f"""
        select file_row_number, episode_id, date_of_service, visit_id, treatment,
               body_part, instrument, score, episode_start_date
        from {PRODUCTION.models_schema}.mips_export_v1
        where performance_year = %s and state_code = %s
        order by file_row_number
        """,
        (year, state),
    )
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
    visit_keys = [(int(row[1]), row[2], int(row[3])) for row in rows[::3]]
    assert visit_keys == sorted(visit_keys)
    assert len(set(visit_keys)) == len(visit_keys)
    pain_column = 1 if year < 2025 else 2
    for function_row, pain_row, los_row in zip(rows[::3], rows[1::3], rows[2::3], strict=True):
        assert function_row[3] == pain_row[3] == los_row[3]
        codes = MAPPED_BODY_PARTS[function_row[5].lower()]
        assert (function_row[4], pain_row[4], los_row[4]) == (codes[0], codes[pain_column], "LOS")
        assert los_row[6] is None
        assert pain_row[6] in ("NPRS", None)
        # LOS: days from the episode's start to the date of service, as plain digits
        days = (dt.date.fromisoformat(los_row[2]) - dt.date.fromisoformat(los_row[8])).days
        assert los_row[7] == str(days), (los_row[2], los_row[8], los_row[7])
        assert function_row[2].startswith(str(year))


def test_alpha_environment_without_settings_delivers_nothing(db, project_options):
    SCRATCH.fresh(db, seed=5, scale=0.02, settings="none")
    outcome = SCRATCH.run(project_options, *BUILD_WITHOUT_UNIT_TESTS)
    assert outcome.success, (outcome.error, outcome.failures)
    deliveries = fetch_all(db, f"select count(*) from {SCRATCH.models_schema}.mips_deliveries")
    export_rows = fetch_all(db, f"select count(*) from {SCRATCH.models_schema}.mips_export_v1")
    assert deliveries == [(0,)]
    assert export_rows == [(0,)]


def source_freshness(db, project_options, *, days_ago: int) -> tuple[bool, dict[str, str]]:
    """Generate data as of `days_ago` days before today, then `dbt source freshness` on it:
    (command succeeded, status per checked source table)."""
    SCRATCH.fresh(
        db, seed=11, scale=0.1, as_of=today_in(SYNTHETIC_TIME_ZONE) - dt.timedelta(days=days_ago)
    )
    results_file = SCRATCH.target_path() / "sources.json"
    results_file.unlink(missing_ok=True)
    outcome = SCRATCH.run(project_options, "source", "freshness", "--write-json")
    results = json.loads(results_file.read_text())["results"]
    return outcome.success, {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results}


def test_source_freshness_passes_on_freshly_generated_data(db, project_options):
    success, statuses = source_freshness(db, project_options, days_ago=0)
    assert success
    assert statuses == {"appointments": "pass", "patient_forms_mips": "pass"}


def test_source_freshness_warns_after_three_quiet_days_and_errors_after_a_week(db, project_options):
    # the data still has `scheduled` bookings after its last day: they must not look fresh
    success, statuses = source_freshness(db, project_options, days_ago=4)
    assert fetch_all(
        db,
        f"select count(*) > 0 from {SCRATCH.app_schema}.appointments"
        " where status = 'scheduled' and starts_at > now()",
    ) == [(True,)]
    assert success  # a warning does not fail the command
    assert statuses == {"appointments": "warn", "patient_forms_mips": "warn"}

    success, statuses = source_freshness(db, project_options, days_ago=8)
    assert not success
    assert statuses == {"appointments": "error", "patient_forms_mips": "error"}


def test_the_export_parts_hold_whole_files_and_about_half_of_the_rows_each(production_build, db):
    """On PostgreSQL the export is the view of two tables built side by side (docs/models.md,
    "The export in two parts"): a file lies whole in one of them, so their keys cannot collide
    and a slice is read from one table; the files are dealt so that each holds about half."""
    assert production_build.success
    schema = PRODUCTION.models_schema
    files = {
        part: dict(
            fetch_all(
                db,
                f"select performance_year || '/' || state_code, count(*) from {schema}.{part} "
                "group by performance_year, state_code",
            )
        )
        for part in ("mips_export_v1_part_0", "mips_export_v1_part_1")
    }
    zero, one = files.values()
    assert zero and one and not set(zero) & set(one)
    (total,) = fetch_all(db, f"select count(*) from {schema}.mips_export_v1")[0]
    assert sum(zero.values()) + sum(one.values()) == total
    assert 0.35 < sum(zero.values()) / total < 0.65, files


@pytest.mark.parametrize(
    ("row", "refusal"),
    [
        ("performance_year, state_code, file_row_number + 0", "duplicate key"),
        ("performance_year, null, file_row_number + 1000000", "null value"),
        ("null, state_code, file_row_number + 1000000", "null value"),
        ("performance_year, state_code, null", "null value"),
    ],
)
def test_the_export_constraints_refuse_what_its_skipped_tests_would_find(
    production_build, db, row, refusal
):
    """On PostgreSQL the export's not-null tests are off and its key test is weekly (models.md,
    "The daily build"): the primary key and not-null constraints of its parts, the tables it is
    the view of, refuse such a row."""
    import psycopg

    assert production_build.success
    columns = "performance_year, state_code, file_row_number"
    for part in ("mips_export_v1_part_0", "mips_export_v1_part_1"):
        relation = f"{PRODUCTION.models_schema}.{part}"
        with (
            db.transaction(force_rollback=True),
            pytest.raises(psycopg.errors.IntegrityError) as err,
        ):
            db.execute(f"insert into {relation} ({columns}) select {row} from {relation} limit 1")
        assert refusal in str(err.value), part


def test_the_exports_guards_run_daily_on_athena(athena_compilation):
    """On PostgreSQL the export's key and row-order tests are weekly and its not-null tests off:
    the enforced primary key refuses what they would find, a visit numbered twice included
    (models.md, "The daily build"). Athena enforces no constraint, so there every test of the
    export is enabled and in the daily build."""
    export = "model.healthmonix_mips.mips_export.v1"
    tests = {
        node["name"]: node["config"]
        for node in athena_compilation.manifest["nodes"].values()
        if node["resource_type"] == "test" and export in node["depends_on"]["nodes"]
    }
    assert "assert_export_rows_are_numbered_without_gaps" in tests
    assert len(tests) >= 5, sorted(tests)
    for name, config in tests.items():
        assert config["enabled"] and "weekly" not in config["tags"], name


def test_a_macro_change_leaves_the_weekly_tests_out_of_the_daily_build(tmp_path, project_options):
    """dbt's partial parse drops a singular test's YAML config when a macro file changes (seen
    with dbt 1.11): a `weekly` tag set there was lost until the next full parse, and the daily
    build ran the row-order test (4 s at the benchmark's scale 100). The tag is in the test's
    own SQL, which every parse of it reads."""
    copy = copy_project(tmp_path / "project")
    options = ProjectOptions(copy, project_options.profiles_dir, project_options.target)
    target = ("--target-path", str(tmp_path / "target"))  # one saved parse for all three
    row_order = "test.healthmonix_mips.assert_export_rows_are_numbered_without_gaps"
    assert row_order in listed_nodes(options, "--selector", "weekly", *target)  # a full parse
    assert row_order not in listed_nodes(options, "--selector", "daily", *target)
    macro = copy / "macros" / "cross_database" / "local_date.sql"
    macro.write_text(macro.read_text() + "\n{#- a reviewer's note -#}\n")
    assert row_order not in listed_nodes(options, "--selector", "daily", *target)  # partial


def test_intermediate_tables_skip_the_wal_and_the_marts_do_not(production_build, db):
    """Unlogged: emptied by a crash, not replicated; only what the next build recreates anyway."""
    assert production_build.success
    persistence = dict(
        fetch_all(
            db,
            "select n.nspname || '.' || c.relname, c.relpersistence from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname in (%s, %s) and c.relkind = 'r'",
            (PRODUCTION.models_schema, f"{PRODUCTION.models_schema}_published"),
        )
    )
    built, published = PRODUCTION.models_schema, f"{PRODUCTION.models_schema}_published"
    intermediate = [t for t in persistence if t.startswith(f"{built}.int_")]
    assert {
        f"{built}.{table}"
        for table in ("int_visits_dated", "int_visit_forms_selected", "int_care_plans_eligible")
    } <= set(intermediate)
    for table in intermediate:
        assert persistence[table] == "u", table
    # the marts the loader reads are the published ones (the build's are views of them now);
    # the export is the view of its two parts
    for table in ("mips_export_v1_part_0", "mips_export_v1_part_1"):
        assert persistence[f"{published}.{table}"] == "p", table
    for table in ("mips_deliveries", "mips_expected_years"):
        assert persistence[f"{published}.{table}"] == "p", table
    assert persistence[f"{built}.mips_build_log"] == "p"
