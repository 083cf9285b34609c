"""The publish gate and the run's refusals, through the command line on hand-made model tables.

`export` delivers only what the latest successful build of the marts produced (the build log
that dbt's on-run-end hook writes; here written by `record_build` as the hook would), and only
dates and selections that make sense. The build log written by real dbt builds is covered in
test_build_log.py; a real failed build followed by an export in test_deploy.py (the daily
job's failing day) and test_publication.py.
"""

from __future__ import annotations

import json

import pytest

from loader.errors import ConfigurationError
from loader.run.build_gate import parse_duration
from tests.support.handmade import HANDMADE_SCHEMA as SCHEMA
from tests.support.handmade import record_build
from tests.support.local_runs import export, files_under, invoke


def run_log(s3_root):
    return [json.loads(path.read_text()) for path in sorted((s3_root / "run-log").rglob("*.json"))]


def newest_build_fails(db, **fields):
    record_build(db, SCHEMA, invocation_id="failed-one", success=False, age="1 minute", **fields)


def test_a_failed_build_after_a_good_one_uploads_nothing(models, profiles_dir, stores):
    newest_build_fails(models, failed_nodes="model.healthmonix_mips.int_configuration_errors")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["exit_code"] == 1 and report["error"] is None
    assert "the latest build of the marts failed" in report["refused"]
    assert "failed-one" in report["refused"]
    assert "int_configuration_errors" in report["refused"]
    assert report["build"]["invocation_id"] == "failed-one"
    s3, sftp = stores
    assert files_under(sftp) == []
    assert not [name for name in files_under(s3) if not name.startswith("run-log/")]
    logged = run_log(s3)
    assert {(r["performance_year"], r["state_code"], r["status"]) for r in logged} == {
        (2022, "CA", "refused"),
        (2023, "CA", "refused"),
        (2025, "TX", "refused"),
    }
    assert all("failed-one" in r["error"] for r in logged)

    # The next good build (the one the deliveries rows come from) opens the gate again.
    record_build(models, SCHEMA, age="0 minutes")
    again = export(profiles_dir, stores)
    assert again.exit_code == 0, again.output
    assert "build: dbt build handmade-invocation" in again.output
    assert len(files_under(stores[1])) == 2


def test_text_output_names_the_build_and_what_failed(models, profiles_dir, stores):
    newest_build_fails(models, failed_nodes="test.healthmonix_mips.unique_x")
    result = export(profiles_dir, stores)
    assert result.exit_code == 1
    assert "refused, nothing uploaded: the latest build of the marts failed" in result.output
    assert "dbt build failed-one, finished" in result.output
    assert "failed: test unique_x errored (dbt build failed-one" in result.output


def test_builds_that_did_not_touch_the_marts_do_not_count(models, profiles_dir, stores):
    record_build(models, SCHEMA, invocation_id="staging-only", success=False, touched_marts=False)
    assert export(profiles_dir, stores).exit_code == 0


def test_a_build_older_than_max_build_age_is_refused(models, profiles_dir, stores):
    models.execute(f"delete from {SCHEMA}.mips_build_log")
    record_build(models, SCHEMA, age="30 hours")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 1
    assert "older than --max-build-age 24h" in json.loads(result.stdout)["refused"]
    assert files_under(stores[1]) == []
    # The age is the clock's: a backfill date does not make an old build fresh.
    backfill = export(profiles_dir, stores, date="2026-01-10")
    assert backfill.exit_code == 1
    assert export(profiles_dir, stores, "--max-build-age", "2d").exit_code == 0


def test_deliveries_from_another_invocation_are_refused(models, profiles_dir, stores):
    record_build(models, SCHEMA, invocation_id="newer-build")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 1
    assert "come from another dbt invocation" in json.loads(result.stdout)["refused"]


def test_a_build_that_did_not_build_every_mart_is_refused(models, profiles_dir, stores):
    record_build(models, SCHEMA, invocation_id="partial", marts_built="mips_deliveries")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 1
    refused = json.loads(result.stdout)["refused"]
    assert "(dbt build partial, finished" in refused
    assert "published nothing" in refused and "it built: mips_deliveries" in refused


def test_no_build_log_is_refused(models, profiles_dir, stores):
    models.execute(f"drop table {SCHEMA}.mips_build_log")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 1
    assert "no dbt build of the marts is recorded" in json.loads(result.stdout)["refused"]


def test_plan_shows_the_build_and_the_gate(models, profiles_dir):
    ok = invoke(profiles_dir, "plan", "--json")
    assert ok.exit_code == 0
    planned = json.loads(ok.stdout)
    assert planned["build"]["invocation_id"] == "handmade-invocation"
    assert {d["status"] for d in planned["deliveries"]} == {"planned"}
    # plan unloads nothing: no byte count, no hash (not zero bytes)
    assert {(d["bytes"], d["sha256"]) for d in planned["deliveries"]} == {(None, None)}
    text = invoke(profiles_dir, "plan")
    rows = [line.split() for line in text.output.splitlines() if line[:3] == "202"]
    assert [(row[3], row[-1]) for row in rows] == [("-", "planned")] * 3, text.output
    assert text.output.startswith("run plan for ")

    newest_build_fails(models, failed_nodes="test.healthmonix_mips.unique_x")
    refused = invoke(profiles_dir, "plan")
    assert refused.exit_code == 1
    lines = refused.output.splitlines()
    # the refusal first, and why; every row says refused, as export's do
    assert lines[0].startswith("export would refuse: the latest build of the marts failed")
    assert "test unique_x errored" in lines[0]
    rows = [line.split() for line in lines if line[:3] == "202"]
    assert len(rows) == 3 and {row[-1] for row in rows} == {"refused"}
    assert {row[3] for row in rows} == {"-"}
    assert refused.output.count("export would refuse") == 1
    document = json.loads(invoke(profiles_dir, "plan", "--json").stdout)
    assert document["exit_code"] == 1 and document["ok"] is False
    assert {d["status"] for d in document["deliveries"]} == {"refused"}


def test_a_date_after_tomorrow_is_refused(models, profiles_dir, stores):
    result = export(profiles_dir, stores, "--json", date="2999-01-01")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert "later than tomorrow" in document["error"]["message"]
    assert files_under(stores[0]) == [] and files_under(stores[1]) == []


def test_a_zero_build_age_is_a_usage_error(models, profiles_dir, stores):
    result = export(profiles_dir, stores, "--max-build-age", "0h", "--json")
    assert result.exit_code == 2
    assert "--max-build-age '0h' is zero" in json.loads(result.stdout)["error"]["message"]
    assert files_under(stores[0]) == []


def test_a_selection_matching_nothing_is_a_usage_error(models, profiles_dir, stores):
    result = export(profiles_dir, stores, "--state", "XX")
    assert result.exit_code == 2
    assert "--state XX matches no configured delivery" in result.output
    assert "2025/TX" in result.output
    assert files_under(stores[0]) == []


@pytest.mark.parametrize(
    "bad, message",
    [
        ("state_code = 'X/Y'", "state code must be two capital letters"),
        ("s3_key_template = '2025/TX/{run_day}/data.csv'", "unknown placeholder(s) {run_day}"),
        ("export_relation = 'x; drop table y'", "must be a quoted relation"),
        ("sftp_file_name_template = '../Quality.csv'", "must be a relative name without"),
        ("sftp_file_name_template = 'in/Quality.csv'", "must not contain '/'"),
        (
            "s3_key_template = '2025/TX/../../../../escape/{run_date}/data.csv'",
            "must be a relative name without '.', '..' or empty segments",
        ),
        ("run_log_prefix = 'run-log//2025/TX/'", "without '.', '..' or empty segments"),
    ],
)
def test_unusable_deliveries_rows_are_configuration_errors(
    models,
    profiles_dir,
    stores,
    bad,
    message,
):
    models.execute(f"update {SCHEMA}.mips_deliveries set {bad} where performance_year = 2025")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 2, result.output
    assert message in json.loads(result.stdout)["error"]["message"]
    assert files_under(stores[0]) == []


def test_an_invalid_run_time_zone_is_one_line(models, profiles_dir, stores):
    models.execute(f"update {SCHEMA}.mips_deliveries set run_time_zone = 'Mars/Olympus'")
    models.execute(f"update {SCHEMA}.mips_expected_years set run_time_zone = 'Mars/Olympus'")
    result = export(profiles_dir, stores)
    assert result.exit_code == 2
    assert "run_time_zone 'Mars/Olympus' is not a time zone name" in result.output
    assert "Traceback" not in result.output
    assert files_under(stores[0]) == []


def test_deliveries_that_disagree_on_the_run_time_zone_are_refused(models, profiles_dir, stores):
    models.execute(
        f"update {SCHEMA}.mips_deliveries set run_time_zone = 'UTC' where performance_year = 2022"
    )
    result = export(profiles_dir, stores)
    assert result.exit_code == 2
    assert "the models state 2 run time zones (America/Los_Angeles, UTC)" in result.output


def test_an_unknown_placeholder_is_refused_naming_it(models, profiles_dir, stores):
    models.execute(
        f"update {SCHEMA}.mips_deliveries set run_log_key_template = "
        "run_log_prefix || '{run_date}-{run_hour}.json' where performance_year = 2025"
    )
    result = export(profiles_dir, stores)
    assert result.exit_code == 2
    assert "run_log_key_template has unknown placeholder(s) {run_hour}" in result.output
    assert "known: {run_date}, {run_time}, {run_id}" in result.output
    assert files_under(stores[0]) == []


@pytest.mark.parametrize("text, hours", [("24h", 24), ("90m", 1.5), ("2d", 48), ("1d12h", 36)])
def test_build_age_durations(text, hours):
    assert parse_duration(text).total_seconds() == hours * 3600


@pytest.mark.parametrize("text", ["", "24", "h", "1w", "-1h", "1h30", "0h", "0d0m"])
def test_bad_build_age_durations(text):
    with pytest.raises(ConfigurationError):
        parse_duration(text)
