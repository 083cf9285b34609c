"""The values the loader names files after are checked by dbt with error severity, naming the
row: state codes, clinician NPI and TIN. The source constraints exist only in the synthetic
DDL, not in production or Athena, so each test drops the constraint first, as production has
none. A real `dbt build` on the embedded PostgreSQL, one for every case: each bad value is in a
row of its own, and each test finds its row named."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.support.model_scenarios import SCRATCH

APP_SCHEMA = SCRATCH.app_schema
TARGET_SCHEMA = SCRATCH.models_schema


@pytest.fixture(scope="module")
def source(cluster):
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        SCRATCH.fresh(conn, seed=3, scale=0.02)
        for table, constraint in [
            ("states", "states_postal_abbreviation_check"),
            ("clinicians", "clinicians_npi_check"),
            ("clinicians", "clinicians_tin_check"),
        ]:
            conn.execute(f"alter table {APP_SCHEMA}.{table} drop constraint {constraint}")
        yield conn


CASES = [
    (
        "states",
        "postal_abbreviation",
        "X/Y",
        "stg_app__states.state_code must match [A-Z]{2} as a whole",
    ),
    (
        "clinicians",
        "npi",
        "123456789",
        "stg_app__clinicians.npi must match [0-9]{10} as a whole",
    ),
    (
        "clinicians",
        "tin",
        "12345678A",
        "stg_app__clinicians.tin must match [0-9]{9} as a whole",
    ),
    # only spaces are trimmed (trim_spaces): a stray tab stays and fails, on Athena too
    (
        "clinicians",
        "npi",
        "1234567890\t",
        "stg_app__clinicians.npi must match [0-9]{10} as a whole",
    ),
]


# `dbt build` of the staging models whose values are checked, their tests and every model
# after them (the marts among them); not the unit tests, which read none of these rows.
CHECKED_AND_AFTER = (
    "build", "--select", "stg_app__states+", "stg_app__clinicians+",
    "--exclude-resource-type", "unit_test",
)  # fmt: skip


@pytest.fixture(scope="module")
def broken_build(source, project_options):
    """One `dbt build` over every case's bad value, each in a row of its own (the rows are
    put back afterwards): {case index: row id}, the outcome, and its build-log row."""
    rows, originals = {}, []
    try:
        for index, (table, column, bad, _) in enumerate(CASES):
            offset = sum(1 for other in CASES[:index] if other[0] == table)
            row_id, original = source.execute(
                f"select id, {column} from {APP_SCHEMA}.{table} order by id desc limit 1 offset %s",
                (offset,),
            ).fetchone()
            originals.append((table, column, original, row_id))
            source.execute(
                f"update {APP_SCHEMA}.{table} set {column} = %s where id = %s", (bad, row_id)
            )
            rows[index] = row_id
        outcome = SCRATCH.run(project_options, *CHECKED_AND_AFTER)
    finally:
        for table, column, original, row_id in originals:
            source.execute(
                f"update {APP_SCHEMA}.{table} set {column} = %s where id = %s", (original, row_id)
            )
    logged = source.execute(
        f"select marts_built, success from {TARGET_SCHEMA}.mips_build_log "
        "where invocation_id = %s and event = 'finished'",
        (outcome.invocation_id,),
    ).fetchone()
    return rows, outcome, logged


@pytest.mark.parametrize(
    "case", range(len(CASES)), ids=[f"{t}-{c}-{b}-{e}" for t, c, b, e in CASES]
)
def test_a_bad_identifier_fails_the_build_naming_the_row(broken_build, case):
    rows, outcome, (marts_built, success) = broken_build
    _, _, bad, expected = CASES[case]
    assert not outcome.success
    [message] = [m for m in outcome.failures if expected in m]
    assert f"{rows[case]}: {json.dumps(bad)}" in message  # the value as JSON: a tab is \t
    assert not success
    # the delivery marts are not built from such rows (mips_expected_years, which reads only
    # settings, states and seeds, may be, so that status still knows the calendar)
    assert set(marts_built) <= {"mips_expected_years"}, marts_built
