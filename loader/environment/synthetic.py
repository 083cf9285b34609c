"""Deterministic synthetic source data for any PostgreSQL target (docs/synthetic-data.md).

Everything is generated inside the database, set-based, by `sql/synthetic_data.sql`: each value
is a hash of (seed, stream, row key), so the same seed, scale and `as_of` date give identical
tables. The data is anchored to `as_of` (default: today in the business time zone): care plans
start from 2021-06-01 to `as_of`, visits up to `as_of` have happened, later ones are scheduled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg import sql

from loader.clock import SYNTHETIC_TIME_ZONE, today_in
from loader.environment.source_schema import (
    APP_TABLES,
    FORMS_TABLE,
    add_source_keys,
    create_source_schema,
    read_sql,
    split_marked,
)

log = logging.getLogger(__name__)

SETTINGS_CHOICES = ("production", "none")
# The demo's data set (`mips-loader demo` defaults), for an embedded cluster without data.
DEMO_SEED, DEMO_SCALE = 42, 1.0
# Table order of the returned counts: parents before children, as an application fills them.
COUNTED_TABLES = (
    "states",
    "regions",
    "clinicians",
    "patients",
    "injuries",
    "care_plans",
    "appointments",
    FORMS_TABLE,
    "settings",
)
_BIGINT_MAX = 2**63 - 1
# The first care plan start of every data set; `as_of` must come after it.
DATA_START = dt.date(2021, 6, 1)


@dataclass(frozen=True)
class SyntheticSize:
    """Row targets for a scale: scale 1 is 10,000 care plans (about 100,000 appointments)."""

    care_plans: int
    patients: int
    clinicians: int
    practices: int

    @classmethod
    def for_scale(cls, scale: float) -> SyntheticSize:
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive number, not {scale}")
        care_plans = max(1, round(10_000 * scale))
        clinicians = max(16, round(200 * scale))
        return cls(
            care_plans=care_plans,
            # some patients come back with a second injury
            patients=max(1, round(care_plans * 0.8)),
            clinicians=clinicians,
            practices=max(1, math.ceil(clinicians / 8)),
        )

    def injury_stride(self) -> int:
        """A multiplier coprime to the plan count: injury ids become a permutation of plan ids."""
        stride = 7919
        while math.gcd(stride, self.care_plans) != 1:
            stride += 2
        return stride


def has_source_data(conn, app_schema: str) -> bool:
    """Whether `app_schema` has appointments (no such schema or table: no). `diff` and
    `dev start` fill an embedded cluster without source data with the demo's data set."""
    relation = sql.Identifier(app_schema, "appointments")
    if conn.execute("select to_regclass(%s)", (relation.as_string(conn),)).fetchone()[0] is None:
        return False
    query = sql.SQL("select exists (select from {})").format(relation)
    return bool(conn.execute(query).fetchone()[0])


def generate(
    conn,
    *,
    seed: int,
    scale: float,
    app_schema: str,
    forms_schema: str,
    settings: str = "production",
    as_of: dt.date | None = None,
) -> dict[str, int]:
    """Drop and recreate the source tables and fill them; returns rows per table.

    `settings="none"` leaves out the healthmonix program-year settings (like the company's
    alpha environment, which delivers nothing). Runs in one transaction: on any error the
    previous tables stay as they were.

    `as_of` is the data's "today": the last day with completed visits and forms (None: today
    in the synthetic clinic's zone, America/Los_Angeles).
    """
    if settings not in SETTINGS_CHOICES:
        raise ValueError(f"settings must be one of {SETTINGS_CHOICES}, not {settings!r}")
    if not -_BIGINT_MAX <= seed <= _BIGINT_MAX:
        raise ValueError("seed must fit in a signed 64-bit integer")
    size = SyntheticSize.for_scale(scale)
    if as_of is None:
        as_of = today_in(SYNTHETIC_TIME_ZONE)
    if isinstance(as_of, dt.datetime) or not isinstance(as_of, dt.date):
        raise ValueError(f"as_of must be a date, not {as_of!r}")
    if as_of <= DATA_START:
        raise ValueError(f"as_of must be after {DATA_START.isoformat()}, not {as_of.isoformat()}")
    placeholders = {
        "app_schema": sql.Identifier(app_schema),
        "forms_schema": sql.Identifier(forms_schema),
        "seed": sql.Literal(seed),
        "care_plans": sql.Literal(size.care_plans),
        "patients": sql.Literal(size.patients),
        "clinicians": sql.Literal(size.clinicians),
        "practices": sql.Literal(size.practices),
        "injury_stride": sql.Literal(size.injury_stride()),
        "program_settings": sql.Literal(settings == "production"),
        "as_of": sql.Literal(as_of),
    }
    counts = dict.fromkeys(COUNTED_TABLES, 0)
    started = time.monotonic()
    with conn.transaction(), conn.cursor() as cur:
        # Sorting and index builds of the bigger scales fit in memory; local to this transaction.
        cur.execute("set local work_mem = '256MB'")
        cur.execute("set local maintenance_work_mem = '512MB'")
        with _timed("tables"):
            create_source_schema(
                conn, app_schema, forms_schema, drop_existing=True, with_keys=False
            )
        for step, statement in split_marked(read_sql("synthetic_data.sql"), "step"):
            with _timed(step):
                cur.execute(sql.SQL(statement.strip()).format(**placeholders))
            if step in counts:
                counts[step] += cur.rowcount
        with _timed("keys and indexes"):
            add_source_keys(conn, app_schema, forms_schema)
        tables = [sql.Identifier(app_schema, table) for table in APP_TABLES]
        tables.append(sql.Identifier(forms_schema, FORMS_TABLE))
        with _timed("analyze"):
            cur.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(tables)))
    log.info(
        "generated scale %s seed %s as of %s in %.1f s",
        scale,
        seed,
        as_of.isoformat(),
        time.monotonic() - started,
    )
    return counts


@contextlib.contextmanager
def _timed(step: str) -> Iterator[None]:
    step_started = time.monotonic()
    yield
    log.info("%s: %.2f s", step, time.monotonic() - step_started)
