"""Deliveries as dbt's `mips_deliveries` model states them; the loader adds only the run date.

Every name (S3 key, SFTP file name) is built by the model. Its templates carry two
placeholders that depend on the run, not on business rules: `{run_date}` (YYYY-MM-DD) and
`{run_date_compact}` (YYYYMMDD).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DELIVERIES_MODEL = "mips_deliveries"
RUN_TIME_ZONE_ENV = "MIPS_TIME_ZONE"
DEFAULT_RUN_TIME_ZONE = "America/Los_Angeles"

DELIVERIES_COLUMNS = (
    "performance_year",
    "state_code",
    "export_relation",
    "s3_key_template",
    "fixed_snapshot_date",
    "sftp_enabled",
    "registration_id",
    "integration_key",
    "sftp_file_name_template",
    "strictly_contained",
    "file_header",
    "dbt_invocation_id",
)


class DeliveriesError(Exception):
    """The deliveries model is missing or says something the loader cannot act on."""


@dataclass(frozen=True)
class Delivery:
    performance_year: int
    state_code: str
    export_relation: str
    s3_key_template: str
    fixed_snapshot_date: dt.date | None
    sftp_enabled: bool
    registration_id: str | None
    integration_key: str | None
    sftp_file_name_template: str | None
    strictly_contained: bool
    file_header: str
    dbt_invocation_id: str | None

    @property
    def label(self) -> str:
        return f"{self.performance_year}/{self.state_code}"

    def s3_key(self, run_date: dt.date) -> str:
        return _fill(self.s3_key_template, run_date)

    def file_header_fields(self) -> list[str]:
        """The CSV header's column names (the model guarantees none holds a comma or quote)."""
        return self.file_header.split(",")

    def sftp_file_name(self, run_date: dt.date) -> str | None:
        if not self.sftp_enabled:
            return None
        if not self.sftp_file_name_template:
            raise DeliveriesError(
                f"{self.label}: SFTP is enabled but the deliveries model has no file name"
            )
        return _fill(self.sftp_file_name_template, run_date)


def _fill(template: str, run_date: dt.date) -> str:
    return template.replace("{run_date}", run_date.isoformat()).replace(
        "{run_date_compact}", run_date.strftime("%Y%m%d")
    )


def run_time_zone() -> ZoneInfo:
    return ZoneInfo(os.environ.get(RUN_TIME_ZONE_ENV, DEFAULT_RUN_TIME_ZONE))


def today_for_run() -> dt.date:
    """The run date: today in the business time zone, never the machine's UTC date."""
    return dt.datetime.now(run_time_zone()).date()


def deliveries_relation(schema: str) -> str:
    from psycopg import sql

    return sql.Identifier(schema, DELIVERIES_MODEL)


def read_deliveries(
    conn, schema: str, *, years: tuple[int, ...] = (), states: tuple[str, ...] = ()
) -> list[Delivery]:
    """The deliveries to make, filtered by year and state, in (year, state) order."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("select {columns} from {relation} order by 1, 2").format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in DELIVERIES_COLUMNS),
        relation=deliveries_relation(schema),
    )
    try:
        rows = conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        raise DeliveriesError(
            f"{schema}.{DELIVERIES_MODEL} does not exist: run `dbt build` for this target first"
        ) from None
    deliveries = [Delivery(*row) for row in rows]
    wanted_states = {s.upper() for s in states}
    return [
        d
        for d in deliveries
        if (not years or d.performance_year in years)
        and (not wanted_states or d.state_code in wanted_states)
    ]
