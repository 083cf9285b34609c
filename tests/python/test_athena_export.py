"""The export run on an Athena target, against moto: deliveries read through Athena, slices
re-encoded to the file layout, the S3 run lock taken and released.

moto runs no SQL: each query's result is queued in advance, in the order the loader asks.
What this proves is the loader's side of the Athena path (queries in order, parsing of the
deliveries, header from the deliveries model, same bytes as PostgreSQL would write, lock),
not Athena's own behaviour (see docs/athena.md).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from loader.engines.locks import ExportLocked
from loader.environment.warehouse import Warehouse
from loader.marts.build_log import BUILD_LOG_COLUMNS
from loader.marts.deliveries import DELIVERIES_COLUMNS
from loader.marts.expected_years import EXPECTED_YEARS_COLUMNS
from loader.run.export import ExportRequest, plan_export, run_export
from loopback.s3 import moto_api
from tests.support.athena_moto import CREDENTIALS, RESULTS_BUCKET, SETTINGS
from tests.support.transport_servers import queue_athena_results

DELIVERY_COLUMNS = list(DELIVERIES_COLUMNS)
RELATION = '"awsdatacatalog"."mips"."mips_export_v1"'


def delivery_row(year: int, state: str, snapshot: str, sftp_name: str | None) -> list:
    """A deliveries row as Athena returns it (all text), named as mips_deliveries names it."""
    values = {
        "performance_year": str(year),
        "state_code": state,
        "export_relation": RELATION,
        "s3_key_template": f"{year}/{state}/{snapshot}/data.csv",
        "manifest_key_template": f"{year}/{state}/{snapshot}/manifest.json",
        "snapshot_prefix": f"{year}/{state}/",
        "run_log_key_template": f"run-log/{year}/{state}/{{run_date}}T{{run_time}}-{{run_id}}.json",
        "run_log_prefix": f"run-log/{year}/{state}/",
        "sftp_enabled": "true" if sftp_name else "false",
        "sftp_file_name_template": sftp_name,
        "file_header": "Patient ID,Date Of Service,Score",
        "s3_default_prefix": "business-operations/healthmonix",
        "dbt_invocation_id": "inv-1",
    }
    return [values[column] for column in DELIVERY_COLUMNS]


DELIVERY_ROWS = [
    delivery_row(2022, "CA", "2022-12-31", None),
    delivery_row(2025, "TX", "{run_date}", "Quality_21742_MlUGF8grFd.csv"),
]
# The zone of the run date, which every command asks the models for first.
ZONE = (["run_time_zone"], [["America/Los_Angeles"]])
BUILD_LOG = list(BUILD_LOG_COLUMNS)


PUBLISHED_SCHEMA = "mips_published"
SUFFIX = "__p20260115093000_inv1"
MARTS = "[mips_deliveries, mips_expected_years, mips_export_v1]"


def build_rows(invocation_id: str = "inv-1", success: bool = True, minutes: int = 5):
    """An invocation's `finished` and `started` rows as Athena returns them: text, arrays as
    `[a, b]`, timestamps in UTC without zone; it published when it succeeded."""
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes + 1)
    finished = started + dt.timedelta(minutes=1)

    def stamp(moment):
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    published = "true" if success else "false"
    return [
        [
            invocation_id, "finished", "build", "", stamp(started), stamp(finished),
            str(success).lower(), "true", published, PUBLISHED_SCHEMA if success else None,
            SUFFIX if success else None, MARTS if success else "[mips_deliveries]",
            "[]" if success else "[test.healthmonix_mips.unique_x.0123456789]",
            "0" if success else "1", "0", "0", "0",
        ],
        [
            invocation_id, "started", "build", "", stamp(started), None, None, "true", None,
            None, None, "[]", "[]", "0", "0", "0", "0",
        ],
    ]  # fmt: skip


def history(*invocations) -> list[tuple]:
    """The two build-log queries' results: every row of the invocations (newest first), then
    the newest that published."""
    rows = [row for invocation in invocations for row in invocation]
    published = [row for row in rows if row[1] == "finished" and row[8] == "true"][:1]
    return [(BUILD_LOG, rows), (BUILD_LOG, published)]


def queries(moto_endpoint) -> list[str]:
    """Every query moto's Athena was asked, oldest first."""
    import boto3

    athena = boto3.client("athena", endpoint_url=moto_endpoint, **CREDENTIALS)
    ids = athena.list_query_executions(WorkGroup="mips")["QueryExecutionIds"]
    texts = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    return [e["Query"] for e in sorted(texts, key=lambda e: e["Status"]["SubmissionDateTime"])]


# Glue keeps lower-case names; the header comes from the deliveries model instead.
EXPECTED_YEARS = list(EXPECTED_YEARS_COLUMNS)
EXPECTED_2025 = ["2025", "2025-01-01", "2026-03-31", "configured", "", ""]
EXPECTED_2026 = [
    "2026",
    "2026-01-01",
    "2027-03-31",
    "not configured",
    "setting healthmonix_2026_states",
    "",
]
ATHENA_COLUMNS = ["patient_id", "date_of_service", "score"]


@pytest.fixture
def athena_target(moto_endpoint, monkeypatch):  # noqa: F811
    import boto3

    moto_api(moto_endpoint, "/moto-api/reset")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    for key, value in {
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": CREDENTIALS["region_name"],
    }.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, **CREDENTIALS)
    s3.create_bucket(Bucket=RESULTS_BUCKET)
    boto3.client("athena", endpoint_url=moto_endpoint, **CREDENTIALS).create_work_group(
        Name="mips", Configuration={}
    )

    def queue(*results):
        queue_athena_results(moto_endpoint, *results)

    warehouse = Warehouse(target_name="athena", adapter_type="athena", settings=dict(SETTINGS))
    return warehouse, queue, s3, moto_endpoint


def test_export_on_athena_writes_the_postgres_layout(athena_target, tmp_path):
    warehouse, queue, s3, _ = athena_target
    queue(
        *history(build_rows()),
        ZONE,
        (DELIVERY_COLUMNS, DELIVERY_ROWS),
        (["performance_year", "state_code", "file_row_number", *ATHENA_COLUMNS], []),
        (ATHENA_COLUMNS, [["1", "2022-03-01", "42.5"], ["1", "2022-03-01", None]]),
        (ATHENA_COLUMNS, [["7", "2025-02-02", 'say "hi", ok'], ["8", "2025-02-03", ""]]),
    )
    s3_dir, sftp_dir = tmp_path / "s3", tmp_path / "sftp"
    request = ExportRequest(
        run_date=dt.date(2026, 1, 15),
        s3_url=s3_dir.as_uri(),
        sftp_url=sftp_dir.as_uri(),
    )
    report = run_export(warehouse, request)
    assert report.succeeded, [r.error for r in report.results]
    assert (s3_dir / "2022/CA/2022-12-31/data.csv").read_bytes() == (
        b"Patient ID,Date Of Service,Score\n1,2022-03-01,42.5\n1,2022-03-01,\n"
    )
    body = (sftp_dir / "Quality_21742_MlUGF8grFd.csv").read_bytes()
    assert body == (
        b'Patient ID,Date Of Service,Score\n7,2025-02-02,"say ""hi"", ok"\n8,2025-02-03,""\n'
    )
    assert body == (s3_dir / "2025/TX/2026-01-15/data.csv").read_bytes()
    manifest = json.loads((s3_dir / "2025/TX/2026-01-15/manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["dbt_invocation_id"] == "inv-1"
    lock_keys = s3.list_objects_v2(Bucket=RESULTS_BUCKET, Prefix="staging/mips-loader/")
    assert lock_keys.get("KeyCount", 0) == 0, "the run lock is released"
    # every mart is read from the tables the newest published row names
    asked = queries(athena_target[3])
    published = f'"{PUBLISHED_SCHEMA}"."mips_%{SUFFIX}"'
    reads = [q for q in asked if "mips_build_log" not in q]
    assert reads and all(f'from "{PUBLISHED_SCHEMA}".' in q for q in reads), reads
    assert any(f'"mips_deliveries{SUFFIX}"' in q for q in reads)
    assert any(f'"mips_export_v1{SUFFIX}"' in q for q in reads), published


def test_a_held_athena_lock_stops_a_second_run(athena_target, tmp_path):
    warehouse, queue, s3, _ = athena_target
    from loader.engines import open_engine

    with open_engine(warehouse) as engine, engine.run_lock():
        queue(ZONE)
        request = ExportRequest(
            run_date=dt.date(2026, 1, 15),
            s3_url=(tmp_path / "s3").as_uri(),
            sftp_url=(tmp_path / "sftp").as_uri(),
        )
        with pytest.raises(ExportLocked, match="held by|holds|locked|running"):
            run_export(warehouse, request)
    assert not (tmp_path / "s3").exists()


def test_plan_on_athena_counts_rows(athena_target):
    warehouse, queue, _, _ = athena_target
    queue(
        *history(build_rows()),
        ZONE,
        (EXPECTED_YEARS, [EXPECTED_2025, EXPECTED_2026]),
        (DELIVERY_COLUMNS, DELIVERY_ROWS[1:]),
        (["rows"], [["12"]]),
    )
    request = ExportRequest(run_date=dt.date(2026, 1, 15), s3_url=None, sftp_url=None)
    report = plan_export(warehouse, request)
    # in January, 2025 is still in its window (configured: its deliveries speak for it)
    assert [year.describe() for year in report.expected_years] == [
        "2026: not configured (expected 2026-01-01 to 2027-03-31); missing: "
        "setting healthmonix_2026_states"
    ]
    assert [(r.performance_year, r.state_code, r.rows) for r in report.results] == [
        (2025, "TX", 12)
    ]
    assert report.results[0].sftp_file_name == "Quality_21742_MlUGF8grFd.csv"
    assert report.build.invocation_id == "inv-1" and report.refused is None


def test_a_failed_build_on_athena_uploads_nothing(athena_target, tmp_path):
    warehouse, queue, _, _ = athena_target
    queue(
        *history(build_rows("inv-2", success=False, minutes=2), build_rows("inv-1")),
        ZONE,
        (DELIVERY_COLUMNS, DELIVERY_ROWS),
    )
    s3_dir = tmp_path / "s3"
    request = ExportRequest(
        run_date=dt.date(2026, 1, 15), s3_url=s3_dir.as_uri(), sftp_url=(tmp_path / "sftp").as_uri()
    )
    report = run_export(warehouse, request)
    assert not report.succeeded
    assert "inv-2" in report.refused and "test unique_x errored" in report.refused
    assert sorted(p.parts[len(s3_dir.parts)] for p in s3_dir.rglob("*.json")) == ["run-log"] * 2
    assert not (tmp_path / "sftp").exists() or not any((tmp_path / "sftp").iterdir())
