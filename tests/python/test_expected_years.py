"""A new performance year never arrives silently (SPEC §7, expected years).

The demo's production settings end at 2025. Built by dbt on the embedded PostgreSQL, the
expected-years model makes `status` and `plan` name every year the registry expects on their
date that has no settings: the current year always, the previous one from January to March.
A year declared not reported (`healthmonix_{year}_reported = false`) is shown as such and is
not an error. The calendar edges (Dec 31 23:30 and Jan 1 00:30 in Los Angeles, the window's
last day) are the model's dbt unit tests; here the loader reads what dbt built.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from loader.cli import cli
from loader.environment.synthetic import generate
from tests.support.model_scenarios import (
    BUILD_WITHOUT_UNIT_TESTS,
    PROJECT_DIR,
    SCRATCH,
    fetch_all,
)

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# SPEC §5's 2025 codes (function, pain) per body part as the file writes it, typed out here.
CODES_2025 = {
    "NECK": {"MSK01", "MSK06"},
    "SHOULDER_ARM": {"MSK02", "MSK07"},
    "LOWER_BACK": {"MSK03", "MSK08"},
    "HIP": {"MSK04", "MSK09"},
    "HIP_JOINT_REPLACEMENT": {"MSK04", "MSK09"},
    "FOOT_AND_ANKLE": {"MSK04", "MSK09"},
    "KNEE": {"MSK05", "MSK10"},
    "KNEE_JOINT_REPLACEMENT": {"MSK05", "MSK10"},
}
# The daily build: status and plan read the published marts, and only a build that runs at
# least the daily build's nodes (its data tests included) publishes them.
SELECTION = ["--selector", "daily"]
MISSING_2026 = (
    "setting healthmonix_2026_states; a mips_program_years row; "
    "measure codes in mips_measure_codes; registrations in mips_registrations"
)


@pytest.fixture(scope="module")
def built(cluster, project_options) -> None:
    """SCRATCH afresh, with the production settings and 2027 declared not reported
    (`healthmonix_2027_reported`), and its daily build."""
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        SCRATCH.fresh(conn, seed=5, scale=0.02, settings="production")
        settings = f"{SCRATCH.app_schema}.settings"
        conn.execute(
            f"insert into {settings} select max(id) + 1, 'healthmonix_2027_reported', 'false', "
            f"'boolean' from {settings}"
        )
    outcome = SCRATCH.run(project_options, "build", *SELECTION)
    assert outcome.success, outcome.error


@pytest.fixture
def loader(built, profiles_dir, tmp_path, monkeypatch):
    """Runs a loader command against the scenario's models, with empty S3 and SFTP stand-ins."""
    return loader_for(SCRATCH, profiles_dir, tmp_path, monkeypatch)


def loader_for(scenario, profiles_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPS_DEV_SCHEMA", scenario.models_schema)
    s3, sftp = tmp_path / "s3", tmp_path / "sftp"
    s3.mkdir()
    sftp.mkdir()

    def run(command: str, *args: str):
        stores = ["--s3-url", s3.as_uri(), "--sftp-url", sftp.as_uri()]
        store = stores if command == "status" else []
        return CliRunner().invoke(
            cli,
            [command, *store, *args, "--profiles-dir", str(profiles_dir), "--target", "dev"],
            catch_exceptions=False,
        )

    return run


def expected_years(result) -> list[tuple[int, str]]:
    document = json.loads(result.stdout)
    return [(y["performance_year"], y["readiness"]) for y in document["expected_years"]]


def test_in_december_the_current_year_is_not_configured(loader):
    result = loader("status", "--date", "2026-12-02", "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["expected_years"] == [
        {
            "performance_year": 2026,
            "expected_from": "2026-01-01",
            "expected_until": "2027-03-31",
            "readiness": "not configured",
            "missing": MISSING_2026.split("; "),
            "needs_attention": True,
        }
    ]


def test_asking_for_the_year_shows_only_its_row(loader):
    result = loader("status", "--date", "2026-12-02", "--year", "2026")
    assert result.exit_code == 1, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("2026")]
    assert rows == [["2026", "all", "-", "-", "-", "-", "-", "not", "configured"]]
    assert (
        f"- 2026: not configured (expected 2026-01-01 to 2027-03-31); missing: {MISSING_2026}"
        in (result.stdout)
    )


NOT_CONFIGURED_2026 = (2026, "not configured")
NOT_REPORTED_2027 = (2027, "not reported")


@pytest.mark.parametrize(
    ("date", "years"),
    [
        # the submission window of 2026 runs to March 31, 2027, its last day included
        ("2027-01-01", [NOT_CONFIGURED_2026, NOT_REPORTED_2027]),
        ("2027-02-15", [NOT_CONFIGURED_2026, NOT_REPORTED_2027]),
        ("2027-03-31", [NOT_CONFIGURED_2026, NOT_REPORTED_2027]),
        ("2027-04-01", [NOT_REPORTED_2027]),
        # 2025 is configured: its deliveries speak for it, not a year row
        ("2026-02-15", [NOT_CONFIGURED_2026]),
    ],
)
def test_the_window_decides_which_years_are_listed(loader, date, years):
    """Each year in its window is listed, the one declared not reported (2027) too."""
    result = loader("status", "--date", date, "--json")
    assert result.exit_code == 1, result.output
    assert expected_years(result) == years


def test_plan_lists_them_too_without_changing_its_exit_status(loader):
    result = loader("plan", "--date", "2026-12-02", "--json")
    assert result.exit_code == 0, result.output
    assert expected_years(result) == [(2026, "not configured")]
    text = loader("plan", "--date", "2026-12-02")
    assert "performance years expected on 2026-12-02:\n- 2026: not configured" in text.stdout


def test_a_run_date_the_build_did_not_consider_is_an_error(loader):
    result = loader("status", "--date", "2031-06-01", "--year", "2025", "--json")
    assert result.exit_code == 2, result.output
    message = json.loads(result.stdout)["error"]["message"]
    assert message.startswith("run date 2031-06-01 is in 2031, a year mips_expected_years does")


def test_a_year_declared_not_reported_is_shown_and_is_not_an_error(loader):
    """2027 is declared not reported in SCRATCH's settings (`built`)."""
    result = loader("status", "--date", "2027-02-15", "--year", "2027", "--json")
    assert result.exit_code == 0, result.output
    assert expected_years(result) == [NOT_REPORTED_2027]
    assert json.loads(result.stdout)["expected_years"][0]["needs_attention"] is False
    text = loader("status", "--date", "2027-02-15", "--year", "2027")
    assert "- 2027: not reported, declared with setting healthmonix_2027_reported" in text.stdout
    # the year before, in its window too, is still expected and still not configured
    both = loader("status", "--date", "2027-02-15", "--year", "2026", "--year", "2027")
    assert both.exit_code == 1, both.output


def rollover_procedure() -> tuple[dict[str, list[str]], str]:
    """The year-rollover section of docs/operations.md: the rows its diff adds, per seed file,
    and its settings SQL, exactly as a reader would copy them."""
    text = OPERATIONS.read_text()
    section = text.split("## A new performance year (year rollover)", 1)[1]
    section = section.split("### A year the company does not report", 1)[0]
    added: dict[str, list[str]] = {}
    for block in re.findall(r"```diff\n(.*?)```", section, flags=re.S):
        path = None
        for line in block.splitlines():
            if line.startswith("+++ b/"):
                path = line.removeprefix("+++ b/")
            elif line.startswith("+") and not line.startswith("+++"):
                added.setdefault(path, []).append(line[1:])
    (settings_sql,) = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    return added, settings_sql


def test_the_documented_rollover_configures_the_year_and_one_groups_code_only_its_rows(
    built, cluster, db, project_copy, profiles_dir, tmp_path, monkeypatch
):
    """The documented rollover, step by step: the seeds (a build: nothing changes yet), then
    the settings (a build: the year is configured). With the settings, one of the seeds' rows
    is changed as a renumbering would change it (the knee group's 2027 pain code): the 2027
    export carries the new code on the knee and knee joint replacement rows only, every other
    body part the codes of its group's row, and 2025 is untouched. The data runs to November
    2027, so 2027 has visits. Last in the module: it replaces SCRATCH's data with its own and
    builds a project copy into SCRATCH's schemas and dbt target/, whose parse the copy's first
    parse starts from."""
    added, settings_sql = rollover_procedure()
    assert sorted(added) == [
        "seeds/mips_measure_codes.csv",
        "seeds/mips_program_years.csv",
        "seeds/mips_registrations.csv",
    ]
    # the year's codes are one row per measure group, not per body part
    with (PROJECT_DIR / "seeds" / "mips_body_part_groups.csv").open(newline="") as groups:
        measure_groups = {row["measure_group"] for row in csv.DictReader(groups)}
    new_codes = added["seeds/mips_measure_codes.csv"]
    assert sorted(row.split(",")[1] for row in new_codes) == sorted(measure_groups)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        generate(
            conn,
            seed=7,
            scale=0.03,
            app_schema=SCRATCH.app_schema,
            forms_schema=SCRATCH.forms_schema,
            settings="production",
            as_of=dt.date(2027, 11, 30),
        )
    for path, rows in added.items():
        with (project_copy.project_dir / path).open("a") as seed:
            seed.writelines(f"{row}\n" for row in rows)
    run = loader_for(SCRATCH, profiles_dir, tmp_path, monkeypatch)

    # the seeds alone change no delivery: 2027 is still expected and still not configured
    assert SCRATCH.run(project_copy, "build", *SELECTION).success
    february = run("status", "--date", "2027-02-15", "--year", "2027", "--json")
    assert json.loads(february.stdout)["expected_years"][0]["missing"] == [
        "setting healthmonix_2027_states"
    ]

    db.execute(settings_sql.replace("app.settings", f"{SCRATCH.app_schema}.settings"))
    # one group's 2027 code renumbered in the seed, and the whole project built
    codes_seed = project_copy.project_dir / "seeds" / "mips_measure_codes.csv"
    (knee,) = [row for row in new_codes if row.startswith("2027,knee,")]
    assert ",MSK10," in knee
    text = codes_seed.read_text()
    assert text.count(f"{knee}\n") == 1
    codes_seed.write_text(text.replace(f"{knee}\n", knee.replace(",MSK10,", ",MSK20,") + "\n"))
    outcome = SCRATCH.run(project_copy, *BUILD_WITHOUT_UNIT_TESTS)
    assert outcome.success, (outcome.error, outcome.failures)

    # 2027 is configured (no year row); 2026, in its window, is still not
    status = run("status", "--date", "2027-02-15", "--json")
    assert expected_years(status) == [(2026, "not configured")]
    planned = run("plan", "--date", "2027-01-04", "--year", "2027", "--json")
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert plan["expected_years"] == []
    assert [(d["state_code"], d["s3_key"]) for d in plan["deliveries"]][:2] == [
        ("AZ", "2027/AZ/2027-01-04/data.csv"),
        ("CA", "2027/CA/2027-01-04/data.csv"),
    ]
    assert len(plan["deliveries"]) == 9

    exported: dict[int, dict[str, set[str]]] = {}
    for year, body_part, code in fetch_all(
        db,
        f"select distinct performance_year, body_part, treatment "
        f"from {SCRATCH.models_schema}.mips_export_v1 "
        f"where performance_year in (2025, 2027) and treatment <> 'LOS'",
    ):
        exported.setdefault(year, {}).setdefault(body_part, set()).add(code)
    renumbered = {
        body_part: {"MSK20" if code == "MSK10" else code for code in pair}
        for body_part, pair in CODES_2025.items()
    }
    # every mapped body part has 2027 visits in this data (seed 7)
    assert exported[2027] == renumbered
    assert {"KNEE", "KNEE_JOINT_REPLACEMENT"} <= set(exported[2025])
    assert exported[2025] == {body_part: CODES_2025[body_part] for body_part in exported[2025]}
    assert fetch_all(
        db,
        f"select count(*) from {SCRATCH.models_schema}.mips_deliveries "
        f"where performance_year = 2027",
    ) == [(9,)]
