"""The export run: for each delivery, unload the slice, put it in S3, upload it to SFTP, record.

One failed delivery never stops the others. Nothing here decides a name, a key or whether a
year goes to SFTP: the deliveries model does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from loader.clock import today_in
from loader.destinations.base import DeliveryError, UnreachableError
from loader.engines import open_engine
from loader.engines.slice_files import UnloadedSlice, private_work_dir
from loader.errors import INTERRUPTED, ConfigurationError
from loader.marts.build_log import BuildRecord
from loader.marts.deliveries import Delivery, select_deliveries
from loader.marts.expected_years import ExpectedYear, years_needing_a_look
from loader.retry import retrying
from loader.run.build_gate import DEFAULT_MAX_BUILD_AGE, gate_refusal
from loader.run.journal import Journal
from loader.run.records import (
    SFTP_DELIVERED,
    SFTP_DISABLED,
    SFTP_FAILED,
    SFTP_NOT_ATTEMPTED,
    SFTP_REFUSED_SHRINK,
    DeliveryRecord,
    last_sftp_delivery,
)
from loader.run.stores import StoreUnusable, open_stores
from loader.run.unloads_ahead import DEFAULT_JOBS, UnloadsAhead

# A slice that fell by more than this since its last SFTP delivery is not uploaded there.
DEFAULT_MAX_SHRINK = Decimal("0.2")

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_DRY_RUN = "dry run"
STATUS_PLANNED = "planned"
# Nothing was uploaded because the publish gate is closed (see loader.run.build_gate).
STATUS_REFUSED = "refused"
# A signal (Ctrl-C, SIGTERM, SIGHUP) stopped the run during this delivery.
STATUS_INTERRUPTED = "interrupted"
# The run stopped before this delivery (a destination became unreachable): nothing was tried.
STATUS_NOT_ATTEMPTED = "not attempted"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportRequest:
    run_date: dt.date | None  # None: today in the deliveries model's run_time_zone
    s3_url: str | None
    sftp_url: str | None
    years: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    dry_run: bool = False
    allow_shrink: bool = False
    max_shrink: Decimal = DEFAULT_MAX_SHRINK
    max_build_age: dt.timedelta = DEFAULT_MAX_BUILD_AGE
    # Slices in flight: the one being uploaded and up to jobs - 1 unloaded ahead of it.
    jobs: int = DEFAULT_JOBS


@dataclass
class ExportReport:
    run_id: str
    run_date: dt.date
    results: list[DeliveryRecord] = field(default_factory=list)
    # The build the deliveries come from (the latest that touched the marts), if any.
    build: BuildRecord | None = None
    # Why the publish gate refused the whole run, or None.
    refused: str | None = None
    # Set when a signal stopped the run; `not_attempted` deliveries were never started.
    interrupted: bool = False
    not_attempted: int = 0
    # Why the run stopped early (a destination unreachable), or None.
    stopped: str | None = None
    # How many deliveries the run set out to make (the selection), and how many records an
    # earlier run had kept in the local journal were written to the store first.
    selected: int = 0
    journal_replayed: int = 0
    # `plan` and the demo: years expected on the run date not configured or not reported.
    expected_years: list[ExpectedYear] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return (
            self.refused is None
            and self.stopped is None
            and not self.interrupted
            and all(r.status in (STATUS_OK, STATUS_DRY_RUN, STATUS_PLANNED) for r in self.results)
        )


def resolve_run_date(run_date: dt.date | None, zone: str) -> dt.date:
    """The run date asked for, else today in the model's run zone."""
    return run_date if run_date is not None else today_in(zone)


def check_run_date(run_date: dt.date, zone: str) -> None:
    """A backfill may name a past snapshot; a snapshot dated after tomorrow is a mistake."""
    tomorrow = today_in(zone) + dt.timedelta(days=1)
    if run_date > tomorrow:
        raise ConfigurationError(
            f"--date {run_date.isoformat()} is later than tomorrow ({tomorrow.isoformat()} in "
            f"{zone}): a snapshot cannot be dated in the future"
        )


STAGE_UNLOAD = "unload"
STAGE_S3 = "S3"
STAGE_SFTP = "SFTP"
STAGE_DONE = "done"


@dataclass(frozen=True)
class Step:
    """Where the run is, for a progress display; `str()` is the plain line a terminal gets."""

    label: str
    stage: str
    index: int  # of the delivery, 0-based, in run order
    total: int
    rows: int | None = None
    bytes: int | None = None
    detail: str = ""  # the SFTP file name (SFTP), the status (done)

    def __str__(self) -> str:
        if self.stage == STAGE_UNLOAD:
            return f"{self.label}: unloading"
        if self.stage == STAGE_S3:
            return f"{self.label}: {self.rows} rows, {self.bytes} bytes to S3"
        if self.stage == STAGE_SFTP:
            return f"{self.label}: uploading {self.detail} to SFTP"
        return f"{self.label}: {self.detail}"


Progress = Callable[[Step], None]


def shrink_refusal(previous_rows: int, rows: int, max_shrink: Decimal) -> str | None:
    """Why a slice may not go to SFTP: it fell to zero or by more than `max_shrink`."""
    if previous_rows <= 0:
        return None
    if rows == 0 or Decimal(previous_rows - rows) > max_shrink * previous_rows:
        return (
            f"rows fell from {previous_rows} at the last delivery to {rows} "
            f"(more than {max_shrink:.0%}); pass --allow-shrink if this is expected"
        )
    return None


def _preflight(*destinations) -> None:
    """Prove each destination usable before the first byte goes anywhere."""
    for destination in destinations:
        if destination is None:
            continue
        try:
            retrying(destination.preflight)
        except DeliveryError as exc:
            raise StoreUnusable(f"nothing was written: {exc}").keeping_kind_of(exc) from None


def run_export(
    warehouse,
    request: ExportRequest,
    *,
    progress: Progress = lambda step: None,
) -> ExportReport:
    """The run: under the run lock, from one consistent read of the published build."""
    with open_engine(warehouse) as engine, engine.run_lock(), engine.published() as read:
        return _export(read, warehouse, request, progress)


def _export(read, warehouse, request: ExportRequest, progress) -> ExportReport:
    """The run under its lock: gate, destinations, then one delivery after another."""
    report = _new_report(read, request)
    if read.publication is None:
        _judge_build(report, read, [], request, warehouse.schema)
        return report
    check_run_date(report.run_date, read.run_time_zone())
    deliveries = select_deliveries(read.deliveries(), request.years, request.states)
    _judge_build(report, read, deliveries, request, warehouse.schema)
    report.selected = len(deliveries)
    s3, sftp = (
        (None, None)
        if request.dry_run
        else open_stores(request.s3_url, request.sftp_url, deliveries)
    )
    with contextlib.ExitStack() as stack:
        for destination in (s3, sftp):
            if destination is not None:
                stack.enter_context(destination)
        recorder = _Recorder(s3, Journal(s3)) if s3 is not None else None
        if report.refused:
            _refuse(report, deliveries, recorder)
            return report
        if recorder is not None:
            _preflight(s3, sftp)
            report.journal_replayed = recorder.replay()
        work_dir = None if request.dry_run else Path(stack.enter_context(private_work_dir()))
        ahead = stack.enter_context(UnloadsAhead(read, deliveries, work_dir, request.jobs))
        try:
            _deliver_each(deliveries, ahead, request, report, recorder, sftp, progress)
        except KeyboardInterrupt:
            # the signal landed between two deliveries (none under way): the run stops there
            report.interrupted = True
            report.not_attempted = len(deliveries) - len(report.results)
    return report


def _deliver_each(deliveries, ahead, request, report, recorder, sftp, progress) -> None:
    """One delivery after another, each recorded in `report`; a signal during one records it
    as interrupted and stops the run."""
    for index, delivery in enumerate(deliveries):

        def step(stage: str, record=None, detail: str = "", i=index, d=delivery) -> None:
            rows, size = (record.rows, record.bytes) if record is not None else (None, None)
            progress(Step(d.label, stage, i, len(deliveries), rows, size, detail))

        step(STAGE_UNLOAD)
        record = _new_record(delivery, report, STATUS_FAILED)
        failure = None
        try:
            failure = _deliver(
                lambda i=index: ahead.take(i), delivery, request, record, recorder, sftp, step
            )
            interrupted = INTERRUPTED.is_set()
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            _interrupted(report, delivery, record, recorder)
            report.not_attempted = len(deliveries) - index - 1
            break
        report.results.append(record)
        step(STAGE_DONE, record, record.status)
        if isinstance(failure, UnreachableError):
            _stop(report, deliveries[index + 1 :], failure)
            break


def _stop(report: ExportReport, rest: list[Delivery], cause: UnreachableError) -> None:
    """A store could not be reached at all, after the retries: the deliveries after this one
    would only fail the same way, slowly. They are not started; the report says why once."""
    report.stopped = (
        f"{cause.destination or 'a destination'} is unreachable ({cause.reason}): "
        f"stopped before the remaining {len(rest)} deliveries"
    )
    report.not_attempted = len(rest)
    for delivery in rest:
        report.results.append(_new_record(delivery, report, STATUS_NOT_ATTEMPTED))


def _new_report(read, request: ExportRequest, run_id: str | None = None) -> ExportReport:
    """A report dated the run date: `--date`, else today in the published marts' zone (with
    nothing published there is no zone and nothing to name: the UTC date)."""
    if read.publication is None:
        run_date = request.run_date or dt.datetime.now(dt.timezone.utc).date()
    else:
        run_date = resolve_run_date(request.run_date, read.run_time_zone())
    return ExportReport(run_id=run_id or uuid.uuid4().hex[:12], run_date=run_date)


def _judge_build(report: ExportReport, read, deliveries, request, schema: str) -> None:
    """The build the deliveries come from, and whether the publish gate lets them out."""
    report.build = read.latest
    report.refused = gate_refusal(
        read.latest,
        read.publication,
        deliveries,
        now=dt.datetime.now(dt.timezone.utc),
        max_age=request.max_build_age,
        schema=schema,
    )


class _Recorder:
    """Where a run's records go: the S3 store, or the local journal (loader.run.journal) when
    the store will not take them. Once the store is unreachable it is not asked again: every
    later record goes straight to the journal."""

    def __init__(self, s3, journal: Journal | None):
        self.s3 = s3
        self.journal = journal
        self.unreachable: UnreachableError | None = None
        # records a previous run kept in the journal (the shrink guard reads them too)
        self.pending = journal.pending() if journal is not None else []

    def replay(self) -> int:
        """The records an earlier run could not store, written first (best effort)."""
        if self.journal is None or not self.pending:
            return 0
        try:
            written = self.journal.replay()
        except DeliveryError as exc:
            logger.warning("the journal's records stay pending: %s", exc)
            return 0
        self.pending = self.journal.pending()
        return written

    def record(self, delivery: Delivery, record: DeliveryRecord, *, with_manifest: bool):
        """Manifest beside the snapshot, then the run-log line. When the store fails, the
        record goes to the journal, the delivery is reported failed, and the error is
        returned."""
        run_date = dt.date.fromisoformat(record.run_date)
        manifest = delivery.manifest_key(run_date) if with_manifest else None
        run_log = delivery.run_log_key(record.run_date, record.recorded_at, record.run_id)
        body = (record.to_json() + "\n").encode()
        try:
            if self.unreachable is not None:
                raise self.unreachable
            if manifest is not None:
                retrying(lambda: self.s3.put_bytes(manifest, body))
            retrying(lambda: self.s3.put_bytes(run_log, body))
            return None
        except DeliveryError as exc:
            if isinstance(exc, UnreachableError):
                self.unreachable = exc
            kept = ""
            if self.journal is not None:
                path = self.journal.keep(run_log, manifest, record)
                kept = f"; the record is kept in the local journal ({path}) until S3 takes it"
            record.status = STATUS_FAILED
            earlier = f"{record.error}; " if record.error else ""
            record.error = f"{earlier}recording failed: {exc}{kept}"
            return exc


def _refuse(report: ExportReport, deliveries: list[Delivery], recorder: _Recorder | None) -> None:
    """The gate is closed: nothing is uploaded; the run log says why, for every delivery."""
    for delivery in deliveries:
        record = _new_record(delivery, report, STATUS_REFUSED)
        record.error = f"{delivery.label}: not delivered: {report.refused}"
        report.results.append(record)
        if recorder is not None:
            recorder.record(delivery, record, with_manifest=False)


def _interrupted(
    report: ExportReport, delivery: Delivery, record: DeliveryRecord, recorder: _Recorder | None
) -> None:
    """A signal arrived during `record`'s delivery: say so in the run log, best effort."""
    report.interrupted = True
    record.status = STATUS_INTERRUPTED
    if record.sftp_outcome == SFTP_NOT_ATTEMPTED:
        record.sftp_outcome = SFTP_FAILED
    record.error = "interrupted by a signal"
    report.results.append(record)
    if recorder is not None:
        with contextlib.suppress(Exception):
            recorder.record(delivery, record, with_manifest=False)


def _new_record(delivery: Delivery, report: ExportReport, status: str) -> DeliveryRecord:
    run_date = report.run_date
    return DeliveryRecord(
        performance_year=delivery.performance_year,
        state_code=delivery.state_code,
        run_id=report.run_id,
        run_date=run_date.isoformat(),
        dbt_invocation_id=delivery.dbt_invocation_id,
        s3_key=delivery.s3_key(run_date),
        rows=0,
        bytes=0,
        sha256="",
        sftp_file_name=delivery.sftp_file_name(run_date),
        sftp_outcome=SFTP_NOT_ATTEMPTED if delivery.sftp_enabled else SFTP_DISABLED,
        status=status,
    )


class _SnapshotNotStored(Exception):
    """The S3 leg failed while the SFTP leg waited for it (`_SnapshotLeg.stored`): the SFTP
    upload is discarded and the delivery fails with S3's error, as if S3 had failed first. Not
    a DeliveryError, so the SFTP leg's retries and error mapping let it through."""

    def __init__(self, error: DeliveryError):
        super().__init__(str(error))
        self.error = error


class _SnapshotLeg:
    """The S3 upload of one slice, started before the SFTP leg and ended by the first of
    them to need it: the SFTP file takes its final name only once the snapshot is stored and
    verified (`before_rename`), so the registry never holds a file S3 does not."""

    def __init__(self, started):
        self._started = started
        self._ended = False
        self._error: DeliveryError | None = None

    def stored(self) -> None:
        """Wait for the snapshot (the S3 leg's retries included); raises _SnapshotNotStored."""
        if not self._ended:
            try:
                retrying(self._started.result)
            except DeliveryError as error:
                self._error = error
            self._ended = True
        if self._error is not None:
            raise _SnapshotNotStored(self._error)


def _deliver(unload, delivery, request, record, recorder, sftp, step) -> DeliveryError | None:
    """`unload()` gives the delivery's slice file (unloaded ahead, or now); `step(stage,
    record, detail)` tells the progress display. Returns the delivery error, if any.

    The S3 and SFTP legs of the slice overlap: S3's transfer threads send the file while this
    thread uploads it to SFTP and reads it back; the SFTP file is renamed into place only
    after the S3 snapshot is stored and verified (`_SnapshotLeg`)."""
    unloaded: UnloadedSlice | None = None
    snapshot_written = False
    failure: DeliveryError | None = None
    try:
        unloaded = unload()
        record.rows, record.bytes, record.sha256 = unloaded.rows, unloaded.bytes, unloaded.sha256
        if request.dry_run:
            record.status = STATUS_DRY_RUN
            return None
        step(STAGE_S3, record)
        with recorder.s3.start_put_file(
            unloaded.path,
            record.s3_key,
            size=unloaded.bytes,
            sha256=unloaded.sha256,
            crc32=unloaded.crc32,
        ) as started:
            snapshot = _SnapshotLeg(started)
            if delivery.sftp_enabled:
                failure = _upload_to_sftp(
                    delivery, request, record, unloaded, recorder, sftp, step, snapshot
                )
            snapshot.stored()
        snapshot_written = True
        record.status = STATUS_FAILED if record.error else STATUS_OK
    except _SnapshotNotStored as not_stored:
        record.error, failure = str(not_stored.error), not_stored.error
    except DeliveryError as exc:
        record.error, failure = str(exc), exc
    except Exception as exc:  # noqa: BLE001 - one delivery's failure must not stop the others
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        prefix = "" if message.startswith(delivery.label) else f"{delivery.label}: "
        record.error = f"{prefix}{type(exc).__name__}: {message}".rstrip(": ")
    finally:
        if unloaded is not None and unloaded.path is not None:
            unloaded.path.unlink(missing_ok=True)
    if request.dry_run:
        return failure
    return recorder.record(delivery, record, with_manifest=snapshot_written) or failure


def _upload_to_sftp(delivery, request, record, unloaded, recorder, sftp, step, snapshot):
    """Upload the same bytes to SFTP unless the shrink guard refuses; sets the record's error
    and returns the delivery error, if any. Whatever ends it, the S3 leg has ended first
    (`snapshot.stored()`), so its failure is the one reported, as when S3 went first."""
    try:
        previous = last_sftp_delivery(recorder.s3, delivery, recorder.pending)
    except DeliveryError:
        snapshot.stored()
        raise
    refusal = None
    if previous is not None and not request.allow_shrink:
        refusal = shrink_refusal(previous.rows, unloaded.rows, request.max_shrink)
    if refusal:
        snapshot.stored()
        record.sftp_outcome = SFTP_REFUSED_SHRINK
        record.error = f"{delivery.label}: SFTP upload refused: {refusal}"
        return None
    step(STAGE_SFTP, record, record.sftp_file_name)
    try:
        retrying(
            lambda: sftp.put_file(
                unloaded.path,
                record.sftp_file_name,
                size=unloaded.bytes,
                sha256=unloaded.sha256,
                before_rename=snapshot.stored,
            )
        )
    except DeliveryError as exc:
        snapshot.stored()
        record.sftp_outcome = SFTP_FAILED
        record.error = str(exc)
        return exc
    record.sftp_outcome = SFTP_DELIVERED
    return None


def plan_export(warehouse, request: ExportRequest) -> ExportReport:
    """What `run_export` would deliver, with row counts and the gate's verdict; writes nothing
    and takes no lock. Unlike `export` it accepts a future date: a new year is checked before
    its first delivery."""
    with open_engine(warehouse) as engine, engine.published() as read:
        report = _new_report(read, request, run_id="plan")
        if read.publication is None:
            _judge_build(report, read, [], request, warehouse.schema)
            return report
        report.expected_years = years_needing_a_look(
            read.expected_years(), report.run_date, request.years
        )
        deliveries = select_deliveries(
            read.deliveries(),
            request.years,
            request.states,
            shown_years=tuple(y.performance_year for y in report.expected_years),
        )
        _judge_build(report, read, deliveries, request, warehouse.schema)
        for delivery in deliveries:
            # `export` would refuse each of them, as it does: the rows say so too
            status = STATUS_REFUSED if report.refused else STATUS_PLANNED
            record = _new_record(delivery, report, status)
            record.rows = read.count(delivery)
            # plan unloads nothing: there are no bytes to count or hash
            record.bytes, record.sha256 = None, None
            report.results.append(record)
    return report
