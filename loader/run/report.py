"""The one place that formats what a command prints: summary tables and their JSON form."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from loader.run.records import DeliveryRecord

EXPORT_COLUMNS = ("year", "state", "rows", "bytes", "S3 key", "SFTP name", "status")


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
            r.bytes,
            r.s3_key,
            r.sftp_file_name or "-",
            r.status if r.status != "ok" or not r.sftp_file_name else f"ok ({r.sftp_outcome})",
        ]
        for r in records
    ]


def build_line(build) -> str:
    """Which dbt invocation the deliveries come from."""
    return f"build: {build.describe()}" if build is not None else "build: none recorded"


def export_summary(report) -> str:
    lines = [
        f"run {report.run_id} for {report.run_date.isoformat()}: {len(report.results)} deliveries",
        build_line(report.build),
        "",
        table(EXPORT_COLUMNS, delivery_rows(report.results)),
    ]
    if report.refused:
        verb = "export would refuse" if report.run_id == "plan" else "refused, nothing uploaded"
        lines += ["", f"{verb}: {report.refused}"]
    else:
        errors = [r.error for r in report.results if r.error]
        if errors:
            lines += ["", "errors:"] + [f"- {e}" for e in errors]
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
            "deliveries": [asdict(r) for r in report.results],
            "expected_years": [y.to_dict() for y in report.expected_years],
        },
        indent=2,
        sort_keys=True,
    )
