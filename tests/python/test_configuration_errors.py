"""Every configuration error of SPEC §4/§6 fails `dbt build`, naming the key or the year+state.

One build serves every case: the production settings and a copy of the project, each case's
error made in them at once (settings errors in the scenario's `settings` table, seed errors
in the copy's seeds; the checkout's seeds are never touched). The build must fail, list every
error, and leave the marts unbuilt, so a loader run afterwards finds nothing new to deliver.
Each case is then a test of its own line in that one message: the raw setting or seed row, as
the application stores it, through the staging and parsing models to the message. (The
message of each kind of error, from parsed rows, is also the dbt unit test
`configuration_errors_name_the_key_or_the_year_and_state`.)

The build is what decides that (`CHECK`): the configuration check, everything it reads, and
everything after it (the marts it guards), with their data tests as the daily build runs them;
not the models of visits and forms, which the check does not read, nor the unit tests (they do
not read the settings; test_dbt_build runs them).
"""

from __future__ import annotations

import psycopg
import pytest

from loader.environment.dbt_invocation import DbtOutcome
from loader.environment.warehouse import ProjectOptions
from tests.support.model_scenarios import SCRATCH, copy_project, edit_seed, fetch_all

# `dbt build` of the configuration check (int_configuration_errors), its parents and its
# children: mips_deliveries, whose every parent is among them, is built unless the check fails.
CHECK = (
    "build", "--select", "+int_configuration_errors+",
    "--exclude-resource-type", "unit_test",
)  # fmt: skip

# The settings each case breaks, as the application stores them (key: value), all in one table.
BROKEN_SETTINGS = {
    # malformed booleans: an enabled flag, a blank one, one of a year with no states
    "healthmonix_2024_integration_enabled": "yes",
    "healthmonix_2022_strictly_contained": " ",
    "healthmonix_2026_reported": "nope",
    # 2025: a state code that is no state (after trimming and upper-casing), an enabled state
    # (Nevada, in the states table) without registration, and the year declared not reported
    "healthmonix_2025_states": "AZ, CA,FL,IL,TX,WA,GA,NY,CO,NV,zz",
    "healthmonix_2025_reported": "false",
    # a year configured with states (its program year added to the seed below) but no codes
    "healthmonix_2026_states": "CA",
}


def _break_registration(rows: list[dict]) -> list[dict]:
    for row in rows:
        if (row["performance_year"], row["state_code"]) == ("2024", "TX"):
            row["integration_key"] = "short-key"
    return rows


def _add_program_year_2026(rows: list[dict]) -> list[dict]:
    return [*rows, {**rows[-1], "performance_year": "2026", "notes": "test year"}]


@pytest.fixture(scope="module")
def broken_build(cluster, tmp_path_factory, project_options) -> DbtOutcome:
    """The check's build over every case's error at once."""
    copy = ProjectOptions(
        project_dir=copy_project(tmp_path_factory.mktemp("config") / "project"),
        profiles_dir=project_options.profiles_dir,
        target=project_options.target,
    )
    edit_seed(copy, "mips_registrations", _break_registration)
    edit_seed(copy, "mips_program_years", _add_program_year_2026)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        SCRATCH.fresh(conn, seed=3, scale=0.02, settings="production")
        table = f"{SCRATCH.app_schema}.settings"
        for key, value in BROKEN_SETTINGS.items():
            updated = conn.execute(f"update {table} set value = %s where key = %s", (value, key))
            if updated.rowcount == 0:
                conn.execute(
                    f"insert into {table} select max(id) + 1, %s, %s, 'string' from {table}",
                    (key, value),
                )
    return SCRATCH.run(copy, *CHECK)


def reported(outcome: DbtOutcome) -> str:
    return "\n".join([*outcome.failures, outcome.error or ""])


def test_the_build_fails_listing_every_error_and_builds_no_mart(broken_build, db):
    assert not broken_build.success
    message = reported(broken_build)
    # one line per case below, none hiding another
    assert "MIPS configuration is invalid (8 errors; see docs/models.md):" in message, message
    # the marts were skipped: nothing built from a broken configuration
    assert fetch_all(
        db, "select to_regclass(%s)", (f"{SCRATCH.models_schema}.mips_deliveries",)
    ) == [(None,)]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("healthmonix_2024_integration_enabled", "yes"),
        ("healthmonix_2022_strictly_contained", " "),
        ("healthmonix_2026_reported", "nope"),
    ],
)
def test_malformed_boolean_names_the_key(broken_build, key, value):
    assert f"setting {key}: '{value}' is not a boolean" in reported(broken_build)


def test_unknown_state_code_names_the_key(broken_build):
    assert "setting healthmonix_2025_states: 'ZZ' is not a postal_abbreviation" in reported(
        broken_build
    )


def test_enabled_state_without_registration_names_year_and_state(broken_build):
    assert "performance year 2025, state NV: SFTP integration is enabled" in reported(broken_build)


def test_year_declared_not_reported_but_with_states_names_both_keys(broken_build):
    assert (
        "setting healthmonix_2025_reported declares performance year 2025 not reported, but "
        "healthmonix_2025_states lists states to deliver: remove one of the two"
    ) in reported(broken_build)


def test_malformed_registration_names_year_and_state(broken_build):
    assert (
        "performance year 2024, state TX: seed mips_registrations has integration_key "
        "'short-key', which is not 10 letters and digits"
    ) in reported(broken_build)


def test_configured_year_without_measure_codes_names_the_key(broken_build):
    assert (
        "setting healthmonix_2026_states: performance year 2026 has no rows in seed "
        "mips_measure_codes"
    ) in reported(broken_build)
