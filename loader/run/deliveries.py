"""Deliveries as dbt's `mips_deliveries` model states them; the loader adds only the run date.

Every name (S3 key, SFTP file name) is built by the model. Its templates carry two
placeholders that depend on the run, not on business rules: `{run_date}` (YYYY-MM-DD) and
`{run_date_compact}` (YYYYMMDD).
"""

from __future__ import annotations

import datetime as dt
import re
import string
from dataclasses import dataclass

from loader.errors import ConfigurationError
from loader.names import STATE_CODE, RelationNameError, relation_parts

DELIVERIES_MODEL = "mips_deliveries"

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


# The placeholders a template may carry; anything else in braces is a configuration error.
PLACEHOLDERS = ("run_date", "run_date_compact")
# A file or key name: no separators beyond the model's own '/', nothing a shell or SFTP
# server reads specially.
SAFE_NAME = re.compile(r"[A-Za-z0-9._/{}-]+")


class DeliveriesError(RelationNameError):
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

    def __post_init__(self) -> None:
        """Every value a name is built from is checked before anything is named after it."""
        label = f"{self.performance_year}/{self.state_code!r}"
        if not isinstance(self.performance_year, int) or not 2000 <= self.performance_year <= 2999:
            raise DeliveriesError(f"deliveries row {label}: performance year is not a year")
        if not isinstance(self.state_code, str) or not STATE_CODE.fullmatch(self.state_code):
            raise DeliveriesError(f"deliveries row {label}: state code must be two capital letters")
        relation_parts(self.export_relation, label)
        check_template(self.s3_key_template, f"{label} s3_key_template")
        if self.sftp_file_name_template is not None:
            check_template(self.sftp_file_name_template, f"{label} sftp_file_name_template")
            if "/" in self.sftp_file_name_template:
                raise DeliveriesError(f"{label} sftp_file_name_template must not contain '/'")

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


def check_template(template: str | None, what: str) -> None:
    """A template holds only safe characters and known `{placeholders}`."""
    if not template or not SAFE_NAME.fullmatch(template):
        raise DeliveriesError(f"{what} is empty or has characters a file name must not have")
    try:
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
    except ValueError as exc:
        raise DeliveriesError(f"{what}: unbalanced braces ({exc})") from None
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise DeliveriesError(
            f"{what} has unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
        )


def _fill(template: str, run_date: dt.date) -> str:
    return template.format(
        run_date=run_date.isoformat(), run_date_compact=run_date.strftime("%Y%m%d")
    )


def deliveries_relation(schema: str) -> str:
    from psycopg import sql

    return sql.Identifier(schema, DELIVERIES_MODEL)


def read_deliveries(conn, schema: str) -> list[Delivery]:
    """Every delivery the model states, in (year, state) order."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("select {columns} from {relation} order by 1, 2").format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in DELIVERIES_COLUMNS),
        relation=deliveries_relation(schema),
    )
    try:
        rows = conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        raise DeliveriesError(
            f"{schema}.{DELIVERIES_MODEL} does not exist: run `dbt build` for this target first"
        ) from None
    return [Delivery(*row) for row in rows]


def select_deliveries(
    deliveries: list[Delivery],
    years: tuple[int, ...] = (),
    states: tuple[str, ...] = (),
    *,
    shown_years: tuple[int, ...] = (),
) -> list[Delivery]:
    """The deliveries of the years and states asked for (all when none is asked for).

    A selection that matches nothing is a usage error, not an empty success: `--state XX`
    with a typo must not look like a run that had nothing to do. `shown_years` are years the
    command reports without deliveries (an expected year that is not configured): asking for
    one of them is an answer, not a typo.
    """
    wanted_states = {s.strip().upper() for s in states}
    selected = [
        d
        for d in deliveries
        if (not years or d.performance_year in years)
        and (not wanted_states or d.state_code in wanted_states)
    ]
    if (years or states) and not selected and not set(years) & set(shown_years):
        asked = ", ".join(
            [f"--year {y}" for y in years] + [f"--state {s}" for s in sorted(wanted_states)]
        )
        configured = ", ".join(d.label for d in deliveries) or "none"
        raise ConfigurationError(
            f"{asked} matches no configured delivery (configured: {configured})"
        )
    return selected
