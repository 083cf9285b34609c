"""The build log (`{target schema}.mips_build_log`, written by dbt's hooks, macros/record_build.sql)
as the loader reads it: one `BuildRecord` per dbt invocation.

Each invocation writes a `started` row when it begins and a `finished` row when it ends; the
`finished` row repeats what `started` said and adds the outcome and whether the marts were
published. An invocation with only its `started` row never finished: it was killed, or is
still running.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BUILD_LOG_MODEL = "mips_build_log"
BUILD_LOG_COLUMNS = (
    "invocation_id",
    "event",
    "command",
    "selection",
    "started_at",
    "completed_at",
    "success",
    "touched_marts",
    "published",
    "published_schema",
    "publication_suffix",
    "marts_built",
    "failed_nodes",
    "errors",
    "failures",
    "warnings",
    "skipped",
)
STARTED = "started"
FINISHED = "finished"
# The deliveries mart: published first, and locked first by an export (macros/record_build.sql).
DELIVERIES_MART = "mips_deliveries"
# Rows of the build log read to find the newest invocation that touched the marts.
HISTORY_ROWS = 200
# How many failed nodes a refusal names before "and N more".
NAMED_FAILURES = 10
_TEST_HASH = re.compile(r"[0-9a-f]{10}")


@dataclass(frozen=True)
class BuildRecord:
    """One dbt invocation as the build log tells it."""

    invocation_id: str
    command: str
    selection: str
    started_at: dt.datetime
    touched_marts: bool
    finished: bool
    completed_at: dt.datetime | None = None
    success: bool | None = None
    published: bool = False
    published_schema: str | None = None
    publication_suffix: str = ""
    marts_built: tuple[str, ...] = ()
    # The nodes that errored, then those that failed, in run order (dbt unique ids).
    failed_nodes: tuple[str, ...] = ()
    errors: int = 0
    failures: int = 0
    warnings: int = 0
    skipped: int = 0

    def describe(self) -> str:
        """`dbt build (selector=daily) 1a2b…, finished 2026-12-04 09:30 UTC`, or for an
        invocation without its end, when it started and that it never finished."""
        selection = f" ({self.selection})" if self.selection else ""
        what = f"dbt {self.command}{selection} {self.invocation_id}"
        if self.completed_at is None:
            return f"{what}, started {_utc(self.started_at)}, never finished"
        return f"{what}, finished {_utc(self.completed_at)}"

    def what_failed(self) -> str:
        """The erroring and failing nodes by name, then the skipped ones as a count:
        `test unique_x errored, test not_null_y failed; +19 skipped`."""
        errored = set(self.failed_nodes[: self.errors])
        named = [
            f"{node_name(node)} {'errored' if node in errored else 'failed'}"
            for node in self.failed_nodes[:NAMED_FAILURES]
        ]
        more = len(self.failed_nodes) - len(named)
        text = ", ".join(named) + (f" and {more} more" if more > 0 else "")
        if self.skipped:
            text = f"{text}; +{self.skipped} skipped" if text else f"+{self.skipped} skipped"
        return text or "no node named"

    def to_dict(self) -> dict:
        return {
            "invocation_id": self.invocation_id,
            "command": self.command,
            "selection": self.selection,
            "started_at": self.started_at.isoformat(),
            "finished": self.finished,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "success": self.success,
            "published": self.published,
            "published_schema": self.published_schema,
            "marts_built": list(self.marts_built),
            "failed_nodes": list(self.failed_nodes),
            "errors": self.errors,
            "failures": self.failures,
            "warnings": self.warnings,
            "skipped": self.skipped,
        }


def node_name(unique_id: str) -> str:
    """`test unique_mips_deliveries_state_code` for `test.healthmonix_mips.unique_….1a2b3c4d5e`:
    the resource type and name, without the package and a generic test's hash."""
    parts = unique_id.split(".")
    if len(parts) < 3:
        return unique_id
    name = parts[2:]
    if parts[0] == "test" and len(name) > 1 and _TEST_HASH.fullmatch(name[-1]):
        name = name[:-1]
    return f"{parts[0]} {'.'.join(name)}"


def build_records(rows: Iterable[Sequence]) -> list[BuildRecord]:
    """The invocations of build-log rows (native values from PostgreSQL, or text from
    Athena), in the order their first row comes; a `finished` row wins over `started`."""
    by_invocation: dict[str, BuildRecord] = {}
    for values in rows:
        row = dict(zip(BUILD_LOG_COLUMNS, values, strict=True))
        record = _record(row)
        known = by_invocation.get(record.invocation_id)
        if known is None or (record.finished and not known.finished):
            by_invocation[record.invocation_id] = record
    return list(by_invocation.values())


def latest_of_the_marts(records: Iterable[BuildRecord]) -> BuildRecord | None:
    """The newest invocation that touched the marts and can change what may be delivered: a
    `dbt test` of the marts that passed changes nothing, one that failed closes the gate."""
    candidates = [
        r
        for r in records
        if r.touched_marts and not (r.command == "test" and r.finished and r.success)
    ]
    return max(candidates, key=lambda r: r.started_at, default=None)


def history_queries(relation: str) -> tuple[str, str]:
    """The queries of the build log `relation` (quoted) that `build_history` reads: the newest
    rows of invocations that touched the marts, and the newest publication."""
    columns = ", ".join(BUILD_LOG_COLUMNS)
    return (
        f"select {columns} from {relation} where touched_marts "
        f"order by started_at desc, event desc limit {HISTORY_ROWS}",
        f"select {columns} from {relation} where event = '{FINISHED}' and published "
        "order by completed_at desc limit 1",
    )


def build_history(
    history: Iterable[Sequence], published: Iterable[Sequence]
) -> tuple[BuildRecord | None, BuildRecord | None]:
    """(the newest invocation that touched the marts, the newest publication) from the rows of
    `history_queries`."""
    return latest_of_the_marts(build_records(history)), next(iter(build_records(published)), None)


def publication_order(marts: Iterable[str]) -> list[str]:
    """The marts in the order a publication replaces them and an export locks them."""
    names = sorted(set(marts))
    if DELIVERIES_MART in names:
        names.remove(DELIVERIES_MART)
        names.insert(0, DELIVERIES_MART)
    return names


def _record(row: dict) -> BuildRecord:
    finished = str(row["event"]) == FINISHED
    return BuildRecord(
        invocation_id=str(row["invocation_id"]),
        command=str(row["command"] or ""),
        selection=str(row["selection"] or ""),
        started_at=_timestamp(row["started_at"]),
        touched_marts=_boolean(row["touched_marts"]),
        finished=finished,
        completed_at=_timestamp(row["completed_at"]) if finished else None,
        success=_boolean(row["success"]) if finished else None,
        published=finished and _boolean(row["published"]),
        published_schema=row["published_schema"] or None,
        publication_suffix=row["publication_suffix"] or "",
        marts_built=_names(row["marts_built"]),
        failed_nodes=_names(row["failed_nodes"]),
        errors=int(row["errors"] or 0),
        failures=int(row["failures"] or 0),
        warnings=int(row["warnings"] or 0),
        skipped=int(row["skipped"] or 0),
    )


def _timestamp(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace(" UTC", ""))
    if value.tzinfo is None:  # Athena keeps UTC in a zone-less timestamp
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def _boolean(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def _names(value) -> tuple[str, ...]:
    """A list column: a list from PostgreSQL, `[a, b]` text from Athena's CSV results (node
    ids hold no comma or space)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.strip().strip("[]").split(",")]
    return tuple(str(part) for part in value if part)


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
