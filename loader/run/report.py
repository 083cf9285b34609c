"""The one place that formats what a command prints: summary tables and their JSON form."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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


# --- the JSON envelope ----------------------------------------------------------------------
#
# Every command's --json document is one object: the envelope's four fields, then the
# command's own. ENVELOPE_FIELDS and COMMAND_FIELDS are the one definition: `envelope` writes
# documents with them, `json_schema` states them as a JSON Schema (tests validate every
# document against it) and `envelope_reference` documents them (docs/cli.md, generated).


@dataclass(frozen=True)
class JsonField:
    """One field of a --json document: its name, JSON types and meaning."""

    name: str
    types: tuple[str, ...]
    description: str
    # an object's fields, or an array's items' fields, that the schema checks too
    fields: tuple[JsonField, ...] = ()


ERROR_FIELDS = (
    JsonField(
        "kind",
        ("string",),
        "what went wrong, e.g. `usage` or `configuration` (exit 2), `transient`, "
        "`interrupted` or `error` (exit 1)",
    ),
    JsonField("message", ("string",), "one line that names what is wrong; no secret"),
)
ENVELOPE_FIELDS = (
    JsonField(
        "ok",
        ("boolean",),
        "true exactly when `exit_code` is 0: the command did its work and nothing needs attention",
    ),
    JsonField(
        "exit_code",
        ("integer",),
        "the process's exit status: 0 done; 1 something needs attention (a delivery failed, "
        "the gate refused, a verdict is not ok, the diff found differences) or the command "
        "failed (a lost connection, a signal); 2 usage or configuration error, nothing written",
    ),
    JsonField("command", ("string",), "the command that printed it: `export`, `plan`, ..."),
    JsonField(
        "error",
        ("object", "null"),
        "why the command could not do its work, `{kind, message}`; the command's own fields "
        "are then absent. null when it did its work, even when something needs attention: "
        "its own fields say what",
        ERROR_FIELDS,
    ),
)

_LIST = ("array",)
BUILD_FIELD = JsonField(
    "build",
    ("object", "null"),
    "the newest dbt invocation that touched the marts (the build log), null when none is "
    "recorded: `invocation_id`, `command`, `selection`, `started_at`, `finished`, "
    "`completed_at`, `success`, `published`, `published_schema`, `marts_built` and "
    "`failed_nodes` (arrays), `errors`, `failures`, `warnings`, `skipped`",
    (
        JsonField("marts_built", _LIST, "the marts the invocation built"),
        JsonField("failed_nodes", _LIST, "erroring, then failing nodes (dbt unique ids)"),
    ),
)
EXPECTED_YEARS_FIELD = JsonField(
    "expected_years",
    _LIST,
    "performance years the registry expects on the date that are not configured or are "
    "declared not reported: `performance_year`, `expected_from`, `expected_until`, "
    "`readiness`, `missing` (what the year lacks, an array; null when nothing), "
    "`needs_attention`",
    (JsonField("missing", ("array", "null"), "what the year lacks, in rollover order"),),
)
_RUN_FIELDS = (
    JsonField("run_id", ("string",), "the run's id (`plan` for a plan)"),
    JsonField("run_date", ("string",), "the run date, YYYY-MM-DD"),
    BUILD_FIELD,
    JsonField(
        "refused",
        ("string", "null"),
        "why the publish gate refuses the whole run (nothing uploaded), or null",
    ),
    JsonField("interrupted", ("boolean",), "a signal stopped the run"),
    JsonField("not_attempted", ("integer",), "deliveries never started (signal, stop)"),
    JsonField(
        "stopped",
        ("string", "null"),
        "why the run stopped early (a destination unreachable), or null",
    ),
    JsonField("selected", ("integer",), "how many deliveries the run set out to make"),
    JsonField(
        "journal_replayed",
        ("integer",),
        "records an earlier run kept in the local journal, written to S3 first",
    ),
    JsonField(
        "deliveries",
        _LIST,
        "one object per delivery, the fields of its run-log record: `performance_year`, "
        "`state_code`, `run_id`, `run_date`, `dbt_invocation_id`, `s3_key`, `rows`, `bytes` "
        "and `sha256` (null in a plan: nothing is unloaded), `sftp_file_name`, "
        "`sftp_outcome`, `status` (ok, failed, refused, planned, dry run, interrupted, not "
        "attempted), `error`, `recorded_at`",
    ),
    EXPECTED_YEARS_FIELD,
)
COMMAND_FIELDS: dict[str, tuple[JsonField, ...]] = {
    "export": _RUN_FIELDS,
    "plan": _RUN_FIELDS,
    "status": (
        JsonField("verified", ("boolean",), "`--verify`: stored files were read back"),
        BUILD_FIELD,
        JsonField(
            "journal_pending",
            ("integer",),
            "delivery records waiting in the local journal (they count as recorded)",
        ),
        JsonField(
            "sftp_unreachable",
            ("string", "null"),
            "the SFTP server could not be reached (why): whether the delivered files are on "
            "it is unknown (`on_server` null, verdict `server unreachable`); else null",
        ),
        JsonField(
            "deliveries",
            _LIST,
            "one object per year and state: `performance_year`, `state_code`, "
            "`sftp_enabled`, `last_snapshot_date` (its S3 folder's date), "
            "`last_snapshot_run_date` (the run that wrote it), `last_snapshot_key`, "
            "`last_snapshot_rows`, `last_snapshot_bytes`, `in_s3`, `last_sftp_run_date`, "
            "`last_sftp_file_name`, `on_server` (null: not checked or unknown), `verdict`, "
            "`latest_run_status`, `latest_run_error`, `detail`",
        ),
        EXPECTED_YEARS_FIELD,
    ),
    "sync-forms": (
        JsonField("rows_read", ("integer",), "forms read from Athena"),
        JsonField("rows_written", ("integer",), "forms written to the PostgreSQL target"),
        JsonField(
            "watermark_before",
            ("string", "null"),
            "the newest `completed_at` copied before the sync",
        ),
        JsonField(
            "watermark_after", ("string", "null"), "the newest `completed_at` copied after it"
        ),
    ),
    "diff": (
        JsonField("differs", ("boolean",), "the working tree changes a delivered file"),
        JsonField("summary", ("string",), "the verdict in one line"),
        JsonField("base", ("object",), "the base revision: `ref`, `commit`"),
        JsonField("head", ("string",), "the head side (the working tree)"),
        JsonField("deliveries_compared", ("integer",), "year/state deliveries compared"),
        JsonField(
            "delivery_changes",
            _LIST,
            "S3 keys, SFTP names, flags and header lines that change, per year and state",
        ),
        JsonField("slices", _LIST, "rows only in base, only in head, changed, per slice"),
        JsonField("code_transitions", _LIST, "measure-code transitions with their rows"),
    ),
}


def envelope(
    command: str,
    exit_code: int,
    fields: dict[str, Any] | None = None,
    *,
    error: tuple[str, str] | None = None,
) -> str:
    """A command's --json document: the envelope, then the command's own `fields` (none
    when `error`, `(kind, message)`, says why the command could not do its work)."""
    document: dict[str, Any] = {
        "ok": exit_code == 0,
        "exit_code": exit_code,
        "command": command,
        "error": None if error is None else {"kind": error[0], "message": error[1]},
    }
    own = fields or {}
    clash = set(own) & set(document)
    if clash:
        raise ValueError(f"{command}'s fields {sorted(clash)} would hide the envelope's")
    return json.dumps({**document, **own}, indent=2, sort_keys=True)


def error_json(message: str, exit_code: int, kind: str, command: str) -> str:
    """What `--json` prints when a command cannot do its work: still one JSON document."""
    return envelope(command, exit_code, error=(kind, message))


def _field_schema(field: JsonField) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": list(field.types), "description": field.description}
    if field.fields:
        nested = {
            "type": "object",
            "properties": {f.name: _field_schema(f) for f in field.fields},
        }
        if "array" in field.types:
            schema["items"] = nested
        else:
            schema.update({k: v for k, v in nested.items() if k != "type"})
            if field.name == "error":
                schema["required"] = [f.name for f in field.fields]
                schema["additionalProperties"] = False
    return schema


def json_schema(command: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every --json document of `command` satisfies."""
    own = COMMAND_FIELDS.get(command, ())
    envelope_names = [f.name for f in ENVELOPE_FIELDS]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"mips-loader {command} --json",
        "type": "object",
        "required": envelope_names,
        "properties": {
            **{f.name: _field_schema(f) for f in own},
            **{f.name: _field_schema(f) for f in ENVELOPE_FIELDS},
            "command": {"const": command},
            "exit_code": {"enum": [0, 1, 2]},
        },
        "allOf": [
            {  # ok is the exit code, said as a boolean
                "if": {"properties": {"exit_code": {"const": 0}}},
                "then": {"properties": {"ok": {"const": True}}},
                "else": {"properties": {"ok": {"const": False}}},
            },
            {  # the command's own fields exactly when it did its work
                "if": {"properties": {"error": {"type": "null"}}},
                "then": {"required": [f.name for f in own]},
                "else": {
                    "properties": {"ok": {"const": False}},
                    "maxProperties": len(envelope_names),
                },
            },
        ],
    }


def envelope_reference() -> str:
    """docs/cli.md's tables of the --json fields, from the definitions above."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    lines += [_reference_row(f) for f in ENVELOPE_FIELDS]
    lines += [_reference_row(f, f"error.{f.name}") for f in ERROR_FIELDS]
    commands: dict[tuple[JsonField, ...], list[str]] = {}
    for command, own in COMMAND_FIELDS.items():
        commands.setdefault(own, []).append(f"`{command}`")
    for own, names in commands.items():
        lines += ["", f"{', '.join(names)}: the envelope, then", ""]
        lines += ["| field | type | meaning |", "|---|---|---|"]
        lines += [_reference_row(f) for f in own]
    return "\n".join(lines)


def _reference_row(field: JsonField, name: str | None = None) -> str:
    return f"| `{name or field.name}` | {' or '.join(field.types)} | {field.description} |"


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


def export_json(report, command: str, exit_code: int) -> str:
    """`export --json` and `plan --json`."""
    return envelope(
        command,
        exit_code,
        {
            "run_id": report.run_id,
            "run_date": report.run_date.isoformat(),
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


def status_json(report: StatusReport, exit_code: int) -> str:
    return envelope(
        "status",
        exit_code,
        {
            "verified": report.verified,
            "build": report.build.to_dict() if report.build is not None else None,
            "journal_pending": report.journal_pending,
            "sftp_unreachable": report.sftp_unreachable,
            "deliveries": [asdict(s) for s in report.statuses],
            "expected_years": [y.to_dict() for y in report.years],
        },
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
    return envelope("sync-forms", 0, sync_forms_fields(report))


# --- diff ----------------------------------------------------------------------------------


def diff_json(rendered: str, exit_code: int) -> str:
    """`diff --format json`: the review's own document (loader/review/diff_report.py) in the
    envelope; its own `ok` and `exit_code` give way to the envelope's."""
    names = {f.name for f in ENVELOPE_FIELDS}
    own = {k: v for k, v in json.loads(rendered).items() if k not in names}
    return envelope("diff", exit_code, own)
