"""The build log (`{target schema}.mips_build_log`, written by dbt's hooks, macros/record_build.sql)
as the loader reads it: one `BuildRecord` per invocation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass

BUILD_LOG_MODEL = "mips_build_log"
BUILD_LOG_COLUMNS = (
    "invocation_id",
    "command",
    "selection",
    "started_at",
    "completed_at",
    "success",
    "touched_marts",
    "marts_built",
    "errors",
    "failures",
    "warnings",
    "skipped",
    "failed_nodes",
)


@dataclass(frozen=True)
class BuildRecord:
    invocation_id: str
    command: str
    selection: str
    started_at: dt.datetime
    completed_at: dt.datetime
    success: bool
    touched_marts: bool
    marts_built: str
    errors: int
    failures: int
    warnings: int
    skipped: int
    failed_nodes: str

    def describe(self) -> str:
        selection = f" ({self.selection})" if self.selection else ""
        finished = self.completed_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return f"dbt {self.command}{selection} {self.invocation_id}, finished {finished}"

    def built(self) -> set[str]:
        return {name.strip() for name in self.marts_built.split(",") if name.strip()}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["completed_at"] = self.completed_at.isoformat()
        return data


def build_record(values: Sequence) -> BuildRecord:
    """A row of the build log (native values from PostgreSQL, or text from Athena)."""
    row = dict(zip(BUILD_LOG_COLUMNS, values, strict=True))

    def timestamp(value) -> dt.datetime:
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.strip().replace(" UTC", ""))
        if value.tzinfo is None:  # Athena keeps UTC in a zone-less timestamp
            value = value.replace(tzinfo=dt.timezone.utc)
        return value

    def boolean(value) -> bool:
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"

    return BuildRecord(
        invocation_id=str(row["invocation_id"]),
        command=str(row["command"] or ""),
        selection=str(row["selection"] or ""),
        started_at=timestamp(row["started_at"]),
        completed_at=timestamp(row["completed_at"]),
        success=boolean(row["success"]),
        touched_marts=boolean(row["touched_marts"]),
        marts_built=str(row["marts_built"] or ""),
        errors=int(row["errors"] or 0),
        failures=int(row["failures"] or 0),
        warnings=int(row["warnings"] or 0),
        skipped=int(row["skipped"] or 0),
        failed_nodes=str(row["failed_nodes"] or ""),
    )
