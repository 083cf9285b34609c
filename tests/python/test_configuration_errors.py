"""Every configuration error of SPEC §4/§6 fails `dbt build`, naming the key or the year+state.

Settings errors are made in the scenario's `settings` table; seed errors in a copy of the
project (the checkout's seeds are never touched). Each build must fail, say what is wrong, and
leave the marts unbuilt, so a loader run afterwards finds nothing new to deliver.

Each test builds what decides that (`CHECK`): the configuration check, everything it reads,
and everything after it (the marts it guards), with their data tests as the daily build runs
them; not the models of visits and forms, which the check does not read, nor the unit tests
(they do not read the settings; test_dbt_build runs them).
"""

from __future__ import annotations

import psycopg
import pytest

from loader.environment.synthetic import generate
from tests.support.model_scenarios import Scenario, edit_seed, fetch_all

SCENARIO = Scenario(app_schema="config_app", forms_schema="config_app", models_schema="config")
# `dbt build` of the configuration check (int_configuration_errors), its parents and its
# children: mips_deliveries, whose every parent is among them, is built unless the check fails.
CHECK = (
    "build", "--select", "+int_configuration_errors+",
    "--exclude-resource-type", "unit_test",
)  # fmt: skip


@pytest.fixture(scope="module")
def source_data(cluster):
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        generate(
            conn,
            seed=3,
            scale=0.02,
            app_schema=SCENARIO.app_schema,
            forms_schema=SCENARIO.forms_schema,
            settings="production",
        )
        production_settings = conn.execute(
            f"select id, key, value, setting_type from {SCENARIO.app_schema}.settings"
        ).fetchall()
    return production_settings


@pytest.fixture
def settings(db, source_data):
    """The production settings, restored before each test; returns a function to change one."""
    table = f"{SCENARIO.app_schema}.settings"
    db.execute(f"delete from {table}")
    with db.cursor() as cur:
        cur.executemany(f"insert into {table} values (%s, %s, %s, %s)", source_data)

    def set_value(key: str, value: str | None) -> None:
        updated = db.execute(f"update {table} set value = %s where key = %s", (value, key))
        if updated.rowcount == 0:
            db.execute(
                f"insert into {table} select max(id) + 1, %s, %s, 'string' from {table}",
                (key, value),
            )

    return set_value


def assert_build_fails_naming(outcome, db, *expected: str) -> None:
    assert not outcome.success
    reported = "\n".join([*outcome.failures, outcome.error or ""])
    assert "MIPS configuration is invalid" in reported, reported
    for text in expected:
        assert text in reported, reported
    # the marts were skipped: nothing built from a broken configuration
    assert fetch_all(
        db, "select to_regclass(%s)", (f"{SCENARIO.models_schema}.mips_deliveries",)
    ) == [(None,)]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("healthmonix_2024_integration_enabled", "yes"),
        ("healthmonix_2022_strictly_contained", " "),
        ("healthmonix_2026_reported", "nope"),
    ],
)
def test_malformed_boolean_names_the_key(settings, db, project_options, key, value):
    settings(key, value)
    outcome = SCENARIO.run(project_options, *CHECK)
    assert_build_fails_naming(outcome, db, f"setting {key}: '{value}' is not a boolean")


def test_unknown_state_code_names_the_key(settings, db, project_options):
    settings("healthmonix_2025_states", "AZ, CA,zz")
    outcome = SCENARIO.run(project_options, *CHECK)
    assert_build_fails_naming(
        outcome, db, "setting healthmonix_2025_states: 'ZZ' is not a postal_abbreviation"
    )


def test_enabled_state_without_registration_names_year_and_state(settings, db, project_options):
    # Nevada exists in the states table; the shipped registrations know nothing of it.
    settings("healthmonix_2025_states", "AZ,CA,FL,IL,TX,WA,GA,NY,CO,NV")
    outcome = SCENARIO.run(project_options, *CHECK)
    assert_build_fails_naming(
        outcome, db, "performance year 2025, state NV: SFTP integration is enabled"
    )


def test_year_declared_not_reported_but_with_states_names_both_keys(settings, db, project_options):
    settings("healthmonix_2025_reported", "false")
    outcome = SCENARIO.run(project_options, *CHECK)
    assert_build_fails_naming(
        outcome,
        db,
        "setting healthmonix_2025_reported declares performance year 2025 not reported, but "
        "healthmonix_2025_states lists states to deliver: remove one of the two",
    )


def test_malformed_registration_names_year_and_state(settings, db, project_copy):
    def break_key(rows):
        for row in rows:
            if (row["performance_year"], row["state_code"]) == ("2024", "TX"):
                row["integration_key"] = "short-key"
        return rows

    edit_seed(project_copy, "mips_registrations", break_key)
    outcome = SCENARIO.run(project_copy, *CHECK)
    assert_build_fails_naming(
        outcome,
        db,
        "performance year 2024, state TX: seed mips_registrations has integration_key "
        "'short-key', which is not 10 letters and digits",
    )


def test_configured_year_without_measure_codes_names_the_key(settings, db, project_copy):
    def add_2026(rows):
        return [*rows, {**rows[-1], "performance_year": "2026", "notes": "test year"}]

    edit_seed(project_copy, "mips_program_years", add_2026)
    settings("healthmonix_2026_states", "CA")
    outcome = SCENARIO.run(project_copy, *CHECK)
    assert_build_fails_naming(
        outcome,
        db,
        "setting healthmonix_2026_states: performance year 2026 has no rows in seed "
        "mips_measure_codes",
    )
