"""What each delivery leaves behind in the S3 store: a manifest beside the file and a run log.

- `{snapshot dir}/manifest.json` describes the snapshot it sits beside (overwritten when the
  same snapshot is written again the same day).
- `run-log/{year}/{state}/{run_date}T{time}Z-{run_id}.json` is one JSON line per delivery per
  run, never overwritten, so the history survives and `status` can read it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

RUN_LOG_PREFIX = "run-log"

# SFTP outcomes recorded per delivery.
SFTP_DELIVERED = "delivered"
SFTP_DISABLED = "disabled"
SFTP_REFUSED_SHRINK = "refused: shrink"
SFTP_FAILED = "failed"
SFTP_NOT_ATTEMPTED = "not attempted"


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
    bytes: int
    sha256: str
    sftp_file_name: str | None
    sftp_outcome: str
    status: str
    error: str | None = None
    recorded_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DeliveryRecord:
        data: dict[str, Any] = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def run_log_name(self) -> str:
        stamp = self.recorded_at.replace(":", "").replace("-", "")
        return (
            f"{RUN_LOG_PREFIX}/{self.performance_year}/{self.state_code}/"
            f"{self.run_date}T{stamp[9:]}-{self.run_id}.json"
        )


def manifest_name(snapshot_dir: str) -> str:
    return f"{snapshot_dir}/manifest.json"


def run_log_newest_first(store, year: int, state: str) -> Iterator[DeliveryRecord]:
    """Recorded deliveries of (year, state), newest run date first; read lazily, one by one."""
    names = sorted((o.name for o in store.list(f"{RUN_LOG_PREFIX}/{year}/{state}/")), reverse=True)
    for name in names:
        data = store.get_bytes(name)
        if data:
            yield DeliveryRecord.from_json(data)


def last_sftp_delivery(store, year: int, state: str) -> DeliveryRecord | None:
    """The newest run-log record whose file reached the SFTP server."""
    return next(
        (r for r in run_log_newest_first(store, year, state) if r.sftp_outcome == SFTP_DELIVERED),
        None,
    )
