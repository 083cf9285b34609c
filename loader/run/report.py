"""The one place that formats what a command prints: summary tables and their JSON form."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from loader.run.records import DeliveryRecord

if TYPE_CHECKING:  # only for annotations: the status collection itself does not print
    from loader.marts.expected_years import ExpectedYear
    from loader.run.status import DeliveryStatus, StatusReport

EXPORT_COLUMNS = ("year", "state", "rows", "bytes", "S3 key", "SFTP name", "status")
STATUS_COLUMNS = (
    "year", "state", "last snapshot", "rows", "bytes", "in S3", "last SFTP delivery",
    "SFTP name", "on server", "verdict",
)  # fmt: skip


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    # A column of numbers (empty cells allowed) is right-aligned.
    numeric = [
        all(r[i] is None or _is_number(r[i]) for r in rows) and any(_is_number(r[i]) for r in rows)
        for i in range(len(headers))
    ]
    lines = []
    for index, row in enumerate(cells):
        parts = [
            value.rjust(width) if numeric[i] and index else value.ljust(width)
            for i, (value, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def error_json(message: str, exit_code: int, kind: str) -> str:
    """What `--json` prints when a command cannot do its work: still one JSON document."""
    return json.dumps(
        {"ok": False, "error": {"kind": kind, "message": message}, "exit_code": exit_code},
        indent=2,
        sort_keys=True,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def delivery_rows(records: Sequence[DeliveryRecord]) -> list[list[Any]]:
    return [
        [
            r.performance_year,
            r.state_code,
            r.rows,
            "-" if r.bytes is None else r.bytes,
            r.s3_key,
            r.sftp_file_name or "-",
            r.status if r.status != "ok" or not r.sftp_file_name else f"ok ({r.sftp_outcome})",
        ]
        for r in records
    ]


def build_line(build) -> str:
    """Which dbt invocation the deliveries come from."""
    if build is None:
        return "build: none recorded"
    if build.finished and not build.success:
        return f"build: {build.describe()}; failed: {build.what_failed()}"
    return f"build: {build.describe()}"


def export_summary(report) -> str:
    count = max(report.selected, len(report.results))
    lines = []
    if report.refused:
        # first: a log's reader (or a mail's subject) sees why nothing went out before the rows
        verb = "export would refuse" if report.run_id == "plan" else "refused, nothing uploaded"
        lines += [f"{verb}: {report.refused}", ""]
    lines += [
        f"run {report.run_id} for {report.run_date.isoformat()}: {count} deliveries",
        build_line(report.build),
        "",
        table(EXPORT_COLUMNS, delivery_rows(report.results)),
    ]
    if report.journal_replayed:
        lines += [
            "",
            f"{report.journal_replayed} record(s) an earlier run kept in the local journal "
            "were written to S3 first",
        ]
    if not report.refused:
        errors = [_labelled(r, r.error) for r in report.results if r.error]
        if errors:
            lines += ["", "errors:"] + [f"- {e}" for e in errors]
    if report.stopped:
        lines += ["", f"stopped: {report.stopped}"]
    if report.interrupted:
        lines += [
            "",
            f"interrupted by a signal: {report.not_attempted} deliveries not attempted",
        ]
    if not report.results:
        lines += ["", "nothing to deliver: no performance year is configured in settings"]
    if report.expected_years:
        lines += ["", f"performance years expected on {report.run_date.isoformat()}:"]
        lines += [f"- {year.describe()}" for year in report.expected_years]
    return "\n".join(lines)


def export_json(report) -> str:
    return json.dumps(
        {
            "run_id": report.run_id,
            "run_date": report.run_date.isoformat(),
            "succeeded": report.succeeded,
            "build": report.build.to_dict() if report.build is not None else None,
            "refused": report.refused,
            "interrupted": report.interrupted,
            "not_attempted": report.not_attempted,
            "stopped": report.stopped,
            "selected": report.selected,
            "journal_replayed": report.journal_replayed,
            "deliveries": [asdict(r) for r in report.results],
            "expected_years": [y.to_dict() for y in report.expected_years],
        },
        indent=2,
        sort_keys=True,
    )


# --- status ---------------------------------------------------------------------------------


def status_rows(statuses: list[DeliveryStatus], server_unreachable: bool = False) -> list[list]:
    def yes_no(value: bool | None) -> str:
        return "-" if value is None else ("yes" if value else "NO")

    def on_server(s: DeliveryStatus) -> str:
        # a delivered file the unreachable server could not be asked about: unknown, not "-"
        unknown = server_unreachable and s.on_server is None and s.last_sftp_file_name
        return "?" if unknown else yes_no(s.on_server)

    return [
        [
            s.performance_year,
            s.state_code,
            s.last_snapshot_date or "never",
            s.last_snapshot_rows,
            s.last_snapshot_bytes,
            yes_no(s.in_s3),
            s.last_sftp_run_date or ("-" if not s.sftp_enabled else "never"),
            s.last_sftp_file_name or "-",
            on_server(s),
            s.verdict,
        ]
        for s in statuses
    ]


def year_rows(years: list[ExpectedYear]) -> list[list]:
    """A row per expected year without deliveries: no state, no file, only the verdict."""
    return [
        [y.performance_year, "all", "-", None, None, "-", "-", "-", "-", y.readiness] for y in years
    ]


def status_text(report: StatusReport) -> str:
    unreachable = report.sftp_unreachable
    rows = status_rows(report.statuses, bool(unreachable)) + year_rows(report.years)
    lines = [build_line(report.build), "", table(STATUS_COLUMNS, rows)]
    details = [f"- {unreachable} (on server: ?)"] if unreachable else []
    details += [f"- {_labelled(s, s.detail)}" for s in report.statuses if s.detail]
    details += [f"- {y.describe()}" for y in report.years]
    if report.journal_pending:
        details.append(
            f"- {report.journal_pending} delivery record(s) wait in the local journal (S3 would "
            "not take them): they count here; the next export writes them to S3"
        )
    if details:
        lines += ["", "details:", *details]
    return "\n".join(lines)


def _labelled(delivery, text: str) -> str:
    """`2023/AZ: text`, unless the text already starts with the year and state."""
    label = f"{delivery.performance_year}/{delivery.state_code}"
    return text if text.startswith(label) else f"{label}: {text}"


def status_json(report: StatusReport) -> str:
    return json.dumps(
        {
            "ok": report.ok,
            "verified": report.verified,
            "build": report.build.to_dict() if report.build is not None else None,
            "journal_pending": report.journal_pending,
            "sftp_unreachable": report.sftp_unreachable,
            "deliveries": [asdict(s) for s in report.statuses],
            "expected_years": [y.to_dict() for y in report.years],
        },
        indent=2,
        sort_keys=True,
    )


# --- generate and sync-forms ---------------------------------------------------------------


def generate_summary(counts: dict[str, int]) -> str:
    """Rows written per source table."""
    return "\n".join(f"{table_name:<20} {rows:>12,}" for table_name, rows in counts.items())


def sync_forms_fields(report) -> dict[str, Any]:
    return {
        "rows_read": report.rows_read,
        "rows_written": report.rows_written,
        "watermark_before": str(report.watermark_before) if report.watermark_before else None,
        "watermark_after": str(report.watermark_after) if report.watermark_after else None,
    }


def sync_forms_text(report) -> str:
    return "\n".join(
        f"{name.replace('_', ' '):<17} {value}" for name, value in sync_forms_fields(report).items()
    )


def sync_forms_json(report) -> str:
    return json.dumps(sync_forms_fields(report), indent=2)
