"""`sync_forms`: incremental, idempotent, and all-or-nothing, from moto's Athena into PostgreSQL.

moto does not run the query: each test queues the rows Athena "returns" and checks the query
text separately. The PostgreSQL side is the session's embedded cluster.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import boto3
import psycopg
import pytest
from botocore.response import StreamingBody
from click.testing import CliRunner

from loader.cli import cli
from loader.engines.athena_client import AthenaClient
from loader.errors import TerminalError
from loader.retry import DEFAULT_POLICY
from loader.run.sync_forms import FORMS_COLUMNS, FormsSyncError, forms_query, sync_forms
from loopback.s3 import moto_api
from tests.support.athena_moto import CREDENTIALS, REGION, RESULTS_BUCKET
from tests.support.transport_servers import RecordingAthena, queue_athena_results

SETTINGS = {
    "s3_staging_dir": f"s3://{RESULTS_BUCKET}/staging/",
    "region_name": REGION,
    "database": "awsdatacatalog",
    "schema": "app",
    "work_group": "primary",
}
SCHEMA = "sync_forms_t"
SOURCE = '"awsdatacatalog"."app"."patient_forms_mips"'
UTC = dt.timezone.utc

# As Athena writes them: timestamps without a zone (UTC), decimals plain, NULL unquoted.
FORMS = [
    ["1", "101", "11", "21", "LEFS", "42.5", "3", "2025-03-01 10:00:00.000"],
    ["2", None, "11", "21", "NDI", None, None, "2025-03-02 11:30:00.250"],
    ["3", "103", "12", "22", "KOS", "61", "0", "2025-03-05 23:59:59.999"],
    ["4", "104", "13", "23", "QUICKDASH", "12.25", "10", "2025-03-10 08:00:00.000"],
]


class Moto:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.s3 = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
        self.athena = RecordingAthena(boto3.client("athena", endpoint_url=endpoint, **CREDENTIALS))

    def client(self, s3=None) -> AthenaClient:
        return AthenaClient(
            SETTINGS, client=self.athena, s3=s3 or self.s3, sleep=lambda seconds: None
        )

    def answer(self, rows: list[list[str | None]]) -> None:
        """The rows the next query returns."""
        queue_athena_results(self.endpoint, (list(FORMS_COLUMNS), rows))


@pytest.fixture
def moto(moto_endpoint):
    moto_api(moto_endpoint, "/moto-api/reset")
    state = Moto(moto_endpoint)
    state.s3.create_bucket(Bucket=RESULTS_BUCKET)
    return state


@pytest.fixture
def forms_db(db):
    db.execute(f"drop schema if exists {SCHEMA} cascade")
    yield db
    db.execute(f"drop schema if exists {SCHEMA} cascade")


def table_rows(db) -> list[tuple]:
    return db.execute(f"select * from {SCHEMA}.patient_forms_mips order by id").fetchall()


def sync(moto, db, **options):
    return sync_forms(
        moto.client(options.pop("s3", None)),
        db,
        forms_schema=SCHEMA,
        source_relation=SOURCE,
        **options,
    )


def test_first_sync_creates_the_table_and_copies_everything(moto, forms_db):
    moto.answer(FORMS)
    report = sync(moto, forms_db)
    assert (report.rows_read, report.rows_written) == (4, 4)
    assert report.watermark_before is None
    assert report.watermark_after == dt.datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
    assert moto.athena.queries == [
        'select "id", "appointment_id", "care_plan_id", "patient_id", "instrument",'
        ' "functional_score", "nprs_score", "completed_at"'
        ' from "awsdatacatalog"."app"."patient_forms_mips"'
    ]
    rows = table_rows(forms_db)
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows[1][1] is None and rows[1][5] is None and rows[1][6] is None, "NULLs stay NULL"
    assert str(rows[0][5]) == "42.5"
    assert rows[1][7] == dt.datetime(2025, 3, 2, 11, 30, 0, 250000, tzinfo=UTC)
    # The table is the source contract's, key and all (loader/sql/source_schema.sql).
    key = forms_db.execute(
        "select pg_get_constraintdef(oid) from pg_constraint"
        " where conrelid = %s::regclass and contype = 'p'",
        (f"{SCHEMA}.patient_forms_mips",),
    ).fetchone()
    assert key == ("PRIMARY KEY (id)",)


def test_second_sync_writes_nothing_and_asks_only_for_the_overlap_window(moto, forms_db):
    moto.answer(FORMS)
    sync(moto, forms_db)
    before = table_rows(forms_db)
    moto.answer(FORMS[2:])  # what Athena has since the watermark minus three days
    report = sync(moto, forms_db)
    assert (report.rows_read, report.rows_written) == (2, 0)
    assert report.watermark_before == report.watermark_after
    assert moto.athena.queries[-1].endswith(
        """ where "completed_at" >= timestamp '2025-03-07 08:00:00.000'"""
    )
    assert table_rows(forms_db) == before


def test_a_changed_score_and_a_new_form_are_written(moto, forms_db):
    moto.answer(FORMS)
    sync(moto, forms_db)
    changed = [list(r) for r in FORMS[2:]]
    changed[1][5] = "13"  # form 4's functional score corrected
    changed.append(["5", "105", "13", "23", "LEFS", "50", "2", "2025-03-11 09:00:00.000"])
    moto.answer(changed)
    report = sync(moto, forms_db, overlap=dt.timedelta(days=7))
    assert (report.rows_read, report.rows_written) == (3, 2)
    assert report.watermark_after == dt.datetime(2025, 3, 11, 9, tzinfo=UTC)
    assert moto.athena.queries[-1].endswith("timestamp '2025-03-03 08:00:00.000'")
    rows = {r[0]: r for r in table_rows(forms_db)}
    assert str(rows[4][5]) == "13" and 5 in rows


def test_a_form_listed_twice_keeps_its_latest_version(moto, forms_db):
    moto.answer([*FORMS, ["1", "101", "11", "21", "LEFS", "44", "3", "2025-03-01 10:05:00.000"]])
    report = sync(moto, forms_db)
    assert (report.rows_read, report.rows_written) == (5, 4)
    assert str(table_rows(forms_db)[0][5]) == "44"


def test_a_value_postgres_rejects_leaves_the_forms_as_they_were(moto, forms_db):
    moto.answer(FORMS)
    sync(moto, forms_db)
    before = table_rows(forms_db)
    bad = [list(r) for r in FORMS]
    bad[0][5] = "forty"
    bad.append(["6", "106", "14", "24", "LEFS", "1", "1", "2025-03-12 00:00:00.000"])
    moto.answer(bad)
    with pytest.raises(FormsSyncError) as caught:
        sync(moto, forms_db)
    message = str(caught.value)
    assert "invalid input syntax for type numeric" in message
    assert "functional_score" in message
    assert message.endswith(f"{SCHEMA}.patient_forms_mips unchanged")
    assert table_rows(forms_db) == before


def test_a_check_violation_in_the_upsert_leaves_the_forms_as_they_were(moto, forms_db):
    moto.answer(FORMS)
    sync(moto, forms_db)
    before = table_rows(forms_db)
    moto.answer([["7", "107", "15", "25", "LEFS", "1", "11", "2025-03-12 00:00:00.000"]])
    with pytest.raises(FormsSyncError, match="patient_forms_mips_nprs_score_check"):
        sync(moto, forms_db)
    assert table_rows(forms_db) == before


def test_a_broken_stream_leaves_the_forms_as_they_were(moto, forms_db):
    moto.answer(FORMS)
    sync(moto, forms_db)
    before = table_rows(forms_db)

    class DroppingConnection:
        """S3 whose result download stops halfway (botocore notices the short body)."""

        def get_object(self, **request):
            response = moto.s3.get_object(**request)
            data = response["Body"].read()
            response["Body"] = StreamingBody(io.BytesIO(data[: len(data) // 2]), len(data))
            return response

    changed = [list(r) for r in FORMS]
    changed[0][5] = "99"
    for _ in range(DEFAULT_POLICY.attempts):  # every try of the one retry policy breaks off
        moto.answer(changed)
    with pytest.raises(FormsSyncError, match="broke off: IncompleteReadError") as caught:
        sync(moto, forms_db, s3=DroppingConnection())
    assert "unchanged" in str(caught.value)
    assert table_rows(forms_db) == before


def test_a_stream_that_breaks_off_once_runs_the_query_again_and_syncs(moto, forms_db):
    moto.answer(FORMS)
    sync(moto, forms_db)
    moto.athena.queries.clear()

    class DropsTheFirstDownload:
        def __init__(self):
            self.downloads = 0

        def get_object(self, **request):
            self.downloads += 1
            response = moto.s3.get_object(**request)
            if self.downloads == 1:  # halfway through COPY, the connection drops
                data = response["Body"].read()
                response["Body"] = StreamingBody(io.BytesIO(data[: len(data) // 2]), len(data))
            return response

    changed = [list(r) for r in FORMS]
    changed[3][5] = "99"
    moto.answer(changed)  # the first run (broken off)
    moto.answer(changed)  # the retry
    s3 = DropsTheFirstDownload()
    report = sync(moto, forms_db, s3=s3)
    assert len(moto.athena.queries) == 2 and s3.downloads == 2
    assert (report.rows_read, report.rows_written) == (4, 1)
    assert str(table_rows(forms_db)[3][5]) == "99"


def test_sync_errors_are_terminal_mips_errors():
    assert issubclass(FormsSyncError, TerminalError)


def test_a_failed_first_sync_creates_nothing(moto, forms_db):
    moto.answer([["1", "101", "11", "21", "LEFS", "x", "3", "2025-03-01 10:00:00.000"]])
    with pytest.raises(FormsSyncError):
        sync(moto, forms_db)
    assert forms_db.execute(
        "select to_regclass(%s)", (f"{SCHEMA}.patient_forms_mips",)
    ).fetchone() == (None,)


def test_a_failed_query_is_reported_with_its_id(moto, forms_db):
    class Failing:
        def start_query_execution(self, **request):
            return {"QueryExecutionId": "q-9"}

        def get_query_execution(self, QueryExecutionId):
            return {
                "QueryExecution": {
                    "Status": {"State": "FAILED", "StateChangeReason": "TABLE_NOT_FOUND"}
                }
            }

    client = AthenaClient(SETTINGS, client=Failing(), s3=moto.s3)
    with pytest.raises(FormsSyncError, match="Athena query q-9 failed: TABLE_NOT_FOUND"):
        sync_forms(client, forms_db, forms_schema=SCHEMA, source_relation=SOURCE)


def test_an_athena_configuration_error_keeps_its_kind_and_exit_code(
    forms_db, profiles_dir, monkeypatch, tmp_path
):
    """No AWS credentials anywhere: Athena cannot be asked, which is the configuration's fault
    (exit 2, as everywhere), not a failed sync (exit 1)."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MIPS_ATHENA_S3_STAGING_DIR", f"s3://{RESULTS_BUCKET}/staging/")
    result = CliRunner().invoke(
        cli,
        ["sync-forms", "--target", "dev", "--profiles-dir", str(profiles_dir),
         "--forms-schema", SCHEMA, "--json"],
    )  # fmt: skip
    document = json.loads(result.stdout)
    assert (result.exit_code, document["error"]["kind"]) == (2, "configuration"), result.output
    message = document["error"]["message"]
    assert "NoCredentialsError" in message and f"{SCHEMA}.patient_forms_mips unchanged" in message


def test_refuses_a_connection_inside_a_transaction(moto, cluster):
    with psycopg.connect(cluster.conninfo()) as conn:
        conn.execute("select 1")
        with pytest.raises(FormsSyncError, match="not inside a transaction"):
            sync_forms(moto.client(), conn, forms_schema=SCHEMA, source_relation=SOURCE)


def test_query_literal_is_utc_and_floored_to_the_millisecond():
    since = dt.datetime(2025, 3, 7, 1, 2, 3, 456789, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert forms_query("t", since).endswith(
        """ from t where "completed_at" >= timestamp '2025-03-07 09:02:03.456'"""
    )
