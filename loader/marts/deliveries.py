"""Deliveries as dbt's `mips_deliveries` model states them; the loader adds only the run.

Every name (S3 key, manifest, snapshot and run-log prefixes, run-log key, SFTP file name)
comes from the model; so does the zone of the run date (`run_time_zone`, read by the
engine's `run_time_zone`). Its templates carry only placeholders that
depend on the run: `{run_date}` (YYYY-MM-DD), `{run_date_compact}` (YYYYMMDD), and in run-log
keys `{run_time}` (HHMMSS.mmmZ, UTC) and `{run_id}`; any other is refused, naming it.
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
    "manifest_key_template",
    "snapshot_prefix",
    "run_log_key_template",
    "run_log_prefix",
    "sftp_enabled",
    "sftp_file_name_template",
    "file_header",
    "s3_default_prefix",
    "dbt_invocation_id",
)

# The placeholders each kind of template may carry; anything else in braces is an error.
SNAPSHOT_PLACEHOLDERS = ("run_date", "run_date_compact")
RUN_LOG_PLACEHOLDERS = ("run_date", "run_time", "run_id")
# A file or key name: no separators beyond the model's own '/', nothing a shell or SFTP
# server reads specially.
SAFE_NAME = re.compile(r"[A-Za-z0-9._/{}-]+")


class DeliveriesError(RelationNameError):
    """The deliveries model is missing or says something the loader cannot act on."""


@dataclass(frozen=True)
class Delivery:
    """One row of the deliveries model: every name the run gives the delivery's objects."""

    performance_year: int
    state_code: str
    export_relation: str
    s3_key_template: str
    manifest_key_template: str
    snapshot_prefix: str
    run_log_key_template: str
    run_log_prefix: str
    sftp_enabled: bool
    sftp_file_name_template: str | None
    file_header: str
    s3_default_prefix: str
    dbt_invocation_id: str | None

    def __post_init__(self) -> None:
        """Every value a name is built from is checked before anything is named after it."""
        label = f"{self.performance_year}/{self.state_code!r}"
        if not isinstance(self.performance_year, int) or not 2000 <= self.performance_year <= 2999:
            raise DeliveriesError(f"deliveries row {label}: performance year is not a year")
        if not isinstance(self.state_code, str) or not STATE_CODE.fullmatch(self.state_code):
            raise DeliveriesError(f"deliveries row {label}: state code must be two capital letters")
        relation_parts(self.export_relation, label)
        for name in ("s3_key_template", "manifest_key_template"):
            check_template(getattr(self, name), f"{label} {name}", SNAPSHOT_PLACEHOLDERS)
        check_template(
            self.run_log_key_template, f"{label} run_log_key_template", RUN_LOG_PLACEHOLDERS
        )
        for name in ("snapshot_prefix", "run_log_prefix", "s3_default_prefix"):
            check_template(getattr(self, name), f"{label} {name}", ())
        for name in ("s3_key_template", "manifest_key_template"):
            if not getattr(self, name).startswith(self.snapshot_prefix):
                raise DeliveriesError(f"{label} {name} is not below snapshot_prefix")
        if not self.run_log_key_template.startswith(self.run_log_prefix):
            raise DeliveriesError(f"{label} run_log_key_template is not below run_log_prefix")
        if self.sftp_file_name_template is not None:
            check_template(
                self.sftp_file_name_template,
                f"{label} sftp_file_name_template",
                SNAPSHOT_PLACEHOLDERS,
            )
            if "/" in self.sftp_file_name_template:
                raise DeliveriesError(f"{label} sftp_file_name_template must not contain '/'")

    @property
    def label(self) -> str:
        return f"{self.performance_year}/{self.state_code}"

    def s3_key(self, run_date: dt.date) -> str:
        return _fill(self.s3_key_template, _date_values(run_date))

    def manifest_key(self, run_date: dt.date) -> str:
        return _fill(self.manifest_key_template, _date_values(run_date))

    def manifest_file_name(self) -> str:
        """The manifest's own name in every snapshot folder (`manifest.json`)."""
        return self.manifest_key_template.rsplit("/", 1)[-1]

    def run_log_key(self, run_date: str, recorded_at: str, run_id: str) -> str:
        """The run-log key of one run's record (`recorded_at`: ISO 8601 UTC, ...THH:MM:SS.mmmZ,
        or ...THH:MM:SSZ as records before milliseconds have it; `{run_time}` is that time
        without its colons)."""
        stamp = recorded_at.replace(":", "").replace("-", "")
        return _fill(
            self.run_log_key_template,
            {"run_date": run_date, "run_time": stamp[9:], "run_id": run_id},
        )

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
        return _fill(self.sftp_file_name_template, _date_values(run_date))


def check_template(template: str | None, what: str, placeholders: tuple[str, ...]) -> None:
    """A template holds only safe characters and `{placeholders}` of its kind."""
    if not template or not SAFE_NAME.fullmatch(template):
        raise DeliveriesError(f"{what} is empty or has characters a file name must not have")
    # a relative name that stays below its root: no '.' or '..' segment, no '//' (a prefix
    # ends with one '/')
    segments = template.removesuffix("/").split("/")
    if template.startswith("/") or any(part in ("", ".", "..") for part in segments):
        raise DeliveriesError(
            f"{what} {template!r} must be a relative name without '.', '..' or empty segments"
        )
    try:
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
    except ValueError as exc:
        raise DeliveriesError(f"{what}: unbalanced braces ({exc})") from None
    unknown = sorted({f for f in fields if f not in placeholders})
    if unknown:
        known = ", ".join("{" + p + "}" for p in placeholders) or "none"
        raise DeliveriesError(
            f"{what} has unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {known}"
        )


def _date_values(run_date: dt.date) -> dict[str, str]:
    return {"run_date": run_date.isoformat(), "run_date_compact": run_date.strftime("%Y%m%d")}


def _fill(template: str, values: dict[str, str]) -> str:
    """The template with its placeholders filled (check_template has vetted their names)."""
    return template.format(**values)


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
