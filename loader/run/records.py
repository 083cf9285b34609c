"""What each delivery leaves behind in the S3 store: a manifest beside the file and a run log.

Where they go is the deliveries model's (`manifest_key_template`, `run_log_key_template`,
`run_log_prefix`; today `{year}/{state}/{snapshot}/manifest.json` and
`run-log/{year}/{state}/{run_date}T{time}Z-{run_id}.json`). The manifest describes the
snapshot it sits beside (overwritten when the same snapshot is written again the same day);
the run log has one JSON line per delivery per run, never overwritten, so the history
survives and `status` can read it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

# SFTP outcomes recorded per delivery.
SFTP_DELIVERED = "delivered"
SFTP_DISABLED = "disabled"
SFTP_REFUSED_SHRINK = "refused: shrink"
SFTP_FAILED = "failed"
SFTP_NOT_ATTEMPTED = "not attempted"


def recorded_now() -> str:
    """Now in UTC, ISO 8601 to the millisecond: `2026-01-15T16:09:31.123Z`."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass
class DeliveryRecord:
    """One delivery of one run; the manifest and the run-log line carry the same fields."""

    performance_year: int
    state_code: str
    run_id: str
    run_date: str
    dbt_invocation_id: str | None
    s3_key: str
    rows: int
    # None in a plan's rows: nothing was unloaded
    bytes: int | None
    sha256: str | None
    sftp_file_name: str | None
    sftp_outcome: str
    status: str
    error: str | None = None
    # ISO 8601 UTC to the millisecond (the run-log key's time: two runs of one second must
    # still sort in the order they ran)
    recorded_at: str = field(default_factory=recorded_now)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DeliveryRecord:
        data: dict[str, Any] = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def run_log_newest_first(store, delivery, pending=()) -> Iterator[DeliveryRecord]:
    """Recorded runs of a delivery, newest run date first; read lazily, one by one.

    `pending` are records kept in the local journal (loader.run.journal) because the store
    would not take them: they count as recorded."""
    waiting = {
        p.run_log_key: p.record
        for p in pending
        if p.run_log_key.startswith(delivery.run_log_prefix)
    }
    names = {o.name for o in store.list(delivery.run_log_prefix)} | set(waiting)
    for name in sorted(names, reverse=True):
        if name in waiting:
            yield waiting[name]
            continue
        data = store.get_bytes(name)
        if data:
            yield DeliveryRecord.from_json(data)


def last_sftp_delivery(store, delivery, pending=()) -> DeliveryRecord | None:
    """The newest run-log record whose file reached the SFTP server."""
    return newest_sftp_delivered(run_log_newest_first(store, delivery, pending))


def newest_sftp_delivered(newest_first: Iterable[DeliveryRecord]) -> DeliveryRecord | None:
    """The first record, of records newest first, whose file reached the SFTP server."""
    return next((r for r in newest_first if r.sftp_outcome == SFTP_DELIVERED), None)
