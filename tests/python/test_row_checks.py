"""The values the loader names files after are checked by dbt with error severity, naming the
row: state codes, clinician NPI and TIN. The source constraints exist only in the synthetic
DDL, not in production or Athena, so each test drops the constraint first, as production has
none. Real `dbt build`s on the embedded PostgreSQL."""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from loader.environment.dbt_invocation import run_dbt
from loader.environment.synthetic import generate

APP_SCHEMA = "app_rowcheck"
TARGET_SCHEMA = "analytics_rowcheck"
VARS = ["--vars", f"{{app_schema: {APP_SCHEMA}}}"]


@pytest.fixture(scope="module")
def source(cluster):
    saved = os.environ.get("MIPS_DEV_SCHEMA")
    os.environ["MIPS_DEV_SCHEMA"] = TARGET_SCHEMA
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(f"drop schema if exists {TARGET_SCHEMA} cascade")
        generate(conn, seed=3, scale=0.02, app_schema=APP_SCHEMA, forms_schema=APP_SCHEMA)
        for table, constraint in [
            ("states", "states_postal_abbreviation_check"),
            ("clinicians", "clinicians_npi_check"),
            ("clinicians", "clinicians_tin_check"),
        ]:
            conn.execute(f"alter table {APP_SCHEMA}.{table} drop constraint {constraint}")
        yield conn
    if saved is None:
        os.environ.pop("MIPS_DEV_SCHEMA", None)
    else:
        os.environ["MIPS_DEV_SCHEMA"] = saved


@pytest.mark.parametrize(
    "table, column, bad, expected",
    [
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
    ],
)
def test_a_bad_identifier_fails_the_build_naming_the_row(
    source, project_options, table, column, bad, expected
):
    row_id, original = source.execute(
        f"select id, {column} from {APP_SCHEMA}.{table} order by id desc limit 1"
    ).fetchone()
    source.execute(f"update {APP_SCHEMA}.{table} set {column} = %s where id = %s", (bad, row_id))
    try:
        outcome = run_dbt(project_options, ["build", *VARS], quiet=True)
    finally:
        source.execute(
            f"update {APP_SCHEMA}.{table} set {column} = %s where id = %s", (original, row_id)
        )
    assert not outcome.success
    [message] = [m for m in outcome.failures if expected in m]
    assert f"{row_id}: {json.dumps(bad)}" in message  # the value as JSON: a tab is \t
    built = source.execute(
        f"select marts_built, success from {TARGET_SCHEMA}.mips_build_log "
        "where invocation_id = %s and event = 'finished'",
        (outcome.invocation_id,),
    ).fetchone()
    marts_built, success = built
    assert not success
    # the delivery marts are not built from such rows (mips_expected_years, which reads only
    # settings, states and seeds, may be, so that status still knows the calendar)
    assert set(marts_built) <= {"mips_expected_years"}, marts_built
