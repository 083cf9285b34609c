"""`mips-loader status`: is every configured delivery in S3 and on the registry's server now,
and is every performance year the registry expects today configured?

Reads only: the deliveries and expected-years models and the build log, the manifests and run
log in the S3 store, a HEAD of each snapshot object, and a stat of each delivered file on the
SFTP server. With `verify`, both stored files are read back and hashed. A verdict is "ok" only
when all of these agree with what the last delivery recorded, and the latest run of the
delivery did not fail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from dataclasses import dataclass, field

from loader.clock import today_in
from loader.destinations.base import Destination, Digest, UnreachableError
from loader.engines import open_engine
from loader.errors import MipsError
from loader.marts.build_log import BuildRecord
from loader.marts.deliveries import Delivery, select_deliveries
from loader.marts.expected_years import ExpectedYear, years_needing_a_look
from loader.retry import retrying
from loader.run.journal import Journal
from loader.run.records import DeliveryRecord, newest_sftp_delivered, run_log_newest_first
from loader.run.stores import open_stores

OK = "ok"
STALE = "stale"
MISSING_ON_SERVER = "missing on server"
ALTERED_ON_SERVER = "altered on server"
MISSING_IN_S3 = "missing in S3"
ALTERED_IN_S3 = "altered in S3"
LATEST_RUN_FAILED = "latest run failed"
NEVER_DELIVERED = "never delivered"
DISABLED = "disabled"
# The SFTP server could not be reached: whether the delivered file is on it is unknown.
SERVER_UNREACHABLE = "server unreachable"


class NothingPublishedError(MipsError):
    """No build has published the marts yet: there are no deliveries to report on."""


# Statuses of a run-log record that mean the delivery happened.
_SUCCEEDED = ("ok",)


@dataclass
class DeliveryStatus:
    performance_year: int
    state_code: str
    sftp_enabled: bool
    # The snapshot's own date, its S3 folder (a year with a fixed snapshot date keeps one
    # folder), and the run that last wrote it.
    last_snapshot_date: str | None
    last_snapshot_run_date: str | None
    last_snapshot_key: str | None
    last_snapshot_rows: int | None
    last_snapshot_bytes: int | None
    # The snapshot object as S3 holds it now: True when it matches the manifest.
    in_s3: bool | None
    last_sftp_run_date: str | None
    last_sftp_file_name: str | None
    on_server: bool | None
    verdict: str
    latest_run_status: str | None = None
    latest_run_error: str | None = None
    detail: str | None = None

    @property
    def needs_attention(self) -> bool:
        return self.verdict not in (OK, DISABLED)


@dataclass
class StatusReport:
    statuses: list[DeliveryStatus] = field(default_factory=list)
    # Years expected on the status date that are not configured, or declared not reported.
    years: list[ExpectedYear] = field(default_factory=list)
    build: BuildRecord | None = None
    verified: bool = False
    # Records kept in the local journal because S3 would not take them (they count).
    journal_pending: int = 0
    # Why the SFTP server could not be reached, once: no row's file was checked after that.
    sftp_unreachable: str | None = None

    @property
    def ok(self) -> bool:
        return not any(s.needs_attention for s in self.statuses) and not any(
            y.needs_attention for y in self.years
        )


def last_snapshot(store: Destination, delivery: Delivery, pending=()) -> DeliveryRecord | None:
    """The newest manifest below the snapshot prefix: snapshot folders are dates, names sort.
    A manifest waiting in the local journal counts (`pending`)."""
    suffix = "/" + delivery.manifest_file_name()
    waiting = {
        p.manifest_key: p.record
        for p in pending
        if p.manifest_key and p.manifest_key.startswith(delivery.snapshot_prefix)
    }
    manifests = [o.name for o in store.list(delivery.snapshot_prefix) if o.name.endswith(suffix)]
    newest = max([*manifests, *waiting], default=None)
    if newest is None:
        return None
    if newest in waiting:
        return waiting[newest]
    data = store.get_bytes(newest)
    return DeliveryRecord.from_json(data) if data else None


def _matches(
    store: Destination, name: str, recorded: DeliveryRecord, *, verify: bool
) -> tuple[bool, str | None]:
    """Whether `name` in `store` holds the recorded bytes, and if not, what differs."""
    stored = store.stat(name)
    if stored is None:
        return False, None
    if stored.size != recorded.bytes:
        return False, f"{name}: stored {stored.size} bytes, delivered {recorded.bytes}"
    if stored.checksum is not None and stored.checksum != recorded.sha256:
        return False, f"{name}: stored sha256 {stored.checksum}, delivered {recorded.sha256}"
    if stored.checksum is None and store.vouches_for_checksums and not verify:
        # missing proof is not proof: the loader writes every object with its SHA-256
        return False, (
            f"{name}: the object carries no sha256 metadata, so it is not the one the loader "
            "wrote (or was copied without it); `status --verify` reads it back"
        )
    if verify:
        digest = store.read_digest(name)
        expected = Digest(recorded.bytes, recorded.sha256)
        if digest is None:
            return False, None
        if digest != expected:
            return False, f"{name}: read back {digest}, delivered {expected}"
    return True, None


def _check(store, name, recorded, verify, missing: str, altered: str):
    """(matches, verdict if not, detail)."""
    matches, detail = _matches(store, name, recorded, verify=verify)
    if matches:
        return True, None, None
    return False, (altered if detail else missing), detail


def collect_status(
    warehouse,
    s3_url: str,
    sftp_url: str | None,
    *,
    today: dt.date | None,
    max_age_days: int,
    years=(),
    states=(),
    verify: bool = False,
) -> StatusReport:
    with open_engine(warehouse) as engine, engine.published() as read:
        if read.publication is None:
            raise NothingPublishedError(
                f"nothing is published in {warehouse.schema}: no dbt build of the marts has "
                "passed yet (run `dbt build`)"
                + (f"; the latest: {read.latest.describe()}" if read.latest else "")
            )
        if today is None:
            today = today_in(read.run_time_zone())
        stated = read.deliveries()
        expected = years_needing_a_look(read.expected_years(), today, tuple(years))
        deliveries = select_deliveries(
            stated,
            tuple(years),
            tuple(states),
            shown_years=tuple(y.performance_year for y in expected),
        )
        report = StatusReport(build=read.latest, verified=verify, years=expected)
    s3, sftp = open_stores(s3_url, sftp_url, deliveries, stated=stated)
    with s3, contextlib.ExitStack() as stack:
        if sftp is not None:
            stack.enter_context(sftp)
        pending = Journal(s3).pending()
        report.journal_pending = len(pending)
        server = _Server(sftp, verify) if sftp is not None else None
        for delivery in deliveries:
            report.statuses.append(
                _status(delivery, s3, server, today, max_age_days, verify, pending)
            )
        report.sftp_unreachable = server.unreachable if server is not None else None
    return report


class _Server:
    """The SFTP server as `status` checks it: once it cannot be reached (after the retries),
    it is not asked again, and the rows after say "unknown" instead of blaming each file."""

    def __init__(self, sftp: Destination, verify: bool):
        self.sftp = sftp
        self.verify = verify
        self.unreachable: str | None = None

    def check(self, delivered: DeliveryRecord):
        """(on server: True, False or None when unknown, verdict if not ok, detail)."""
        if self.unreachable is not None:
            return None, SERVER_UNREACHABLE, None
        try:
            return retrying(
                lambda: _check(
                    self.sftp,
                    delivered.sftp_file_name,
                    delivered,
                    self.verify,
                    MISSING_ON_SERVER,
                    ALTERED_ON_SERVER,
                )
            )
        except UnreachableError as error:
            self.unreachable = (
                f"{error.destination or 'SFTP'}: {error.reason}: whether the delivered files "
                "are on it is unknown"
            )
            return None, SERVER_UNREACHABLE, None


def snapshot_date(delivery: Delivery, snapshot: DeliveryRecord) -> str:
    """The snapshot's own date: its folder below the snapshot prefix (`2022/CA/2022-12-31/`
    for a year with a fixed snapshot date), which is the run date for the others."""
    folder = snapshot.s3_key.removeprefix(delivery.snapshot_prefix).split("/", 1)[0]
    try:
        return dt.date.fromisoformat(folder).isoformat()
    except ValueError:  # a layout without a date folder: the run that wrote it is its date
        return snapshot.run_date


def _status(delivery, s3, server, today, max_age_days, verify, pending=()) -> DeliveryStatus:
    year, state = delivery.performance_year, delivery.state_code
    snapshot = last_snapshot(s3, delivery, pending)
    # one listing of the delivery's run log, each record read once (the newest is both the
    # latest run and, often, the last delivery to the server)
    newest_first, again = itertools.tee(run_log_newest_first(s3, delivery, pending))
    latest = next(newest_first, None)
    delivered = newest_sftp_delivered(again) if delivery.sftp_enabled else None
    verdict, detail = None, None
    in_s3 = on_server = None
    if snapshot is not None:
        in_s3, problem, detail = _check(
            s3, snapshot.s3_key, snapshot, verify, MISSING_IN_S3, ALTERED_IN_S3
        )
        verdict = problem
    if delivered is not None and server is not None:
        on_server, problem, server_detail = server.check(delivered)
        verdict, detail = verdict or problem, detail or server_detail
    if latest is not None and latest.status not in _SUCCEEDED:
        # Whatever was delivered before, the newest attempt failed: never "ok".
        verdict = LATEST_RUN_FAILED
        detail = latest.error
    elif verdict is None:
        verdict = _age_verdict(delivery, delivered, today, max_age_days)
    return DeliveryStatus(
        performance_year=year,
        state_code=state,
        sftp_enabled=delivery.sftp_enabled,
        last_snapshot_date=snapshot_date(delivery, snapshot) if snapshot else None,
        last_snapshot_run_date=snapshot.run_date if snapshot else None,
        last_snapshot_key=snapshot.s3_key if snapshot else None,
        last_snapshot_rows=snapshot.rows if snapshot else None,
        last_snapshot_bytes=snapshot.bytes if snapshot else None,
        in_s3=in_s3,
        last_sftp_run_date=delivered.run_date if delivered else None,
        last_sftp_file_name=delivered.sftp_file_name if delivered else None,
        on_server=on_server,
        verdict=verdict,
        latest_run_status=latest.status if latest else None,
        latest_run_error=latest.error if latest else None,
        detail=detail,
    )


def _age_verdict(delivery, delivered, today: dt.date, max_age_days: int) -> str:
    if not delivery.sftp_enabled:
        return DISABLED
    if delivered is None:
        return NEVER_DELIVERED
    if dt.date.fromisoformat(delivered.run_date) < today - dt.timedelta(days=max_age_days):
        return STALE
    return OK
