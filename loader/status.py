"""`mips-loader status`: is every configured delivery in S3 and on the registry's server now?

Reads only: the deliveries model, the manifests and run log in the S3 store, and a listing of
the SFTP directory.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from loader.deliveries import Delivery
from loader.export import ExportConfigError
from loader.records import DeliveryRecord, last_sftp_delivery
from loader.slices import open_slice_source

OK = "ok"
STALE = "stale"
MISSING_ON_SERVER = "missing on server"
NEVER_DELIVERED = "never delivered"
DISABLED = "disabled"

STATUS_COLUMNS = (
    "year", "state", "last snapshot", "rows", "bytes", "last SFTP delivery", "SFTP name",
    "on server", "verdict",
)  # fmt: skip


@dataclass
class DeliveryStatus:
    performance_year: int
    state_code: str
    sftp_enabled: bool
    last_snapshot_run_date: str | None
    last_snapshot_key: str | None
    last_snapshot_rows: int | None
    last_snapshot_bytes: int | None
    last_sftp_run_date: str | None
    last_sftp_file_name: str | None
    on_server: bool | None
    verdict: str

    @property
    def needs_attention(self) -> bool:
        return self.sftp_enabled and self.verdict != OK


def last_snapshot(store, delivery: Delivery) -> DeliveryRecord | None:
    """The newest manifest under `{year}/{state}/`: snapshot folders are dates, so names sort."""
    prefix = f"{delivery.performance_year}/{delivery.state_code}/"
    manifests = [o.name for o in store.list(prefix) if o.name.endswith("/manifest.json")]
    data = store.get_bytes(max(manifests)) if manifests else None
    return DeliveryRecord.from_json(data) if data else None


def verdict_for(
    delivery: Delivery,
    delivered: DeliveryRecord | None,
    on_server: bool | None,
    today: dt.date,
    max_age_days: int,
) -> str:
    if not delivery.sftp_enabled:
        return DISABLED
    if delivered is None:
        return NEVER_DELIVERED
    if not on_server:
        return MISSING_ON_SERVER
    if dt.date.fromisoformat(delivered.run_date) < today - dt.timedelta(days=max_age_days):
        return STALE
    return OK


def collect_status(
    warehouse, s3, sftp, *, today: dt.date, max_age_days: int, years=(), states=()
) -> list[DeliveryStatus]:
    with open_slice_source(warehouse) as source:
        deliveries = source.deliveries(years=years, states=states)
    if sftp is None and any(d.sftp_enabled for d in deliveries):
        raise ExportConfigError("SFTP is enabled for some years: pass --sftp-url or MIPS_SFTP_URL")
    on_server_sizes = {o.name: o.size for o in sftp.list("")} if sftp is not None else {}
    statuses = []
    for delivery in deliveries:
        snapshot = last_snapshot(s3, delivery)
        delivered = last_sftp_delivery(s3, delivery.performance_year, delivery.state_code)
        on_server = None
        if delivery.sftp_enabled and delivered is not None:
            on_server = on_server_sizes.get(delivered.sftp_file_name) == delivered.bytes
        statuses.append(
            DeliveryStatus(
                performance_year=delivery.performance_year,
                state_code=delivery.state_code,
                sftp_enabled=delivery.sftp_enabled,
                last_snapshot_run_date=snapshot.run_date if snapshot else None,
                last_snapshot_key=snapshot.s3_key if snapshot else None,
                last_snapshot_rows=snapshot.rows if snapshot else None,
                last_snapshot_bytes=snapshot.bytes if snapshot else None,
                last_sftp_run_date=delivered.run_date if delivered else None,
                last_sftp_file_name=delivered.sftp_file_name if delivered else None,
                on_server=on_server,
                verdict=verdict_for(delivery, delivered, on_server, today, max_age_days),
            )
        )
    return statuses


def status_rows(statuses: list[DeliveryStatus]) -> list[list]:
    def yes_no(value: bool | None) -> str:
        return "-" if value is None else ("yes" if value else "NO")

    return [
        [
            s.performance_year,
            s.state_code,
            s.last_snapshot_run_date or "never",
            s.last_snapshot_rows,
            s.last_snapshot_bytes,
            s.last_sftp_run_date or ("-" if not s.sftp_enabled else "never"),
            s.last_sftp_file_name or "-",
            yes_no(s.on_server),
            s.verdict,
        ]
        for s in statuses
    ]


def status_json(statuses: list[DeliveryStatus]) -> str:
    return json.dumps(
        {
            "ok": not any(s.needs_attention for s in statuses),
            "deliveries": [asdict(s) for s in statuses],
        },
        indent=2,
        sort_keys=True,
    )
