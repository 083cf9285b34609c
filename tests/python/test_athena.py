"""The Athena path against moto: polling, errors, streaming, re-encoding, and the S3 run lock.

moto does not run SQL. Its Athena answers SUCCEEDED and writes, at the query's output
location, whatever result was queued through `/moto-api/static/athena/query-results`; the
state machine (QUEUED, RUNNING, FAILED, CANCELLED, timeouts) is driven by moto's state manager
or by `ScriptedAthena`, a stand-in for the Athena client only (S3 stays moto).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import stat
from dataclasses import dataclass

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from psycopg import sql

from loader.engines.athena_client import (
    AthenaClient,
    AthenaConfigurationError,
    AthenaQueryError,
    AthenaResultError,
    AthenaTerminalError,
    AthenaTransientError,
)
from loader.engines.athena_csv import AthenaCsvReencoder, iter_csv_records
from loader.engines.athena_slices import athena_slice_query, count_athena_slice, unload_athena_slice
from loader.engines.csv_layout import encode_record
from loader.engines.locks import (
    ExportLocked,
    S3LockError,
    S3LockUnavailable,
    S3LockUnreachable,
    s3_run_lock,
)
from loader.engines.postgres import unload_postgres_slice
from loader.errors import (
    ConfigurationError,
    MipsError,
    TerminalError,
    TransientError,
    UnreachableError,
)
from loader.retry import RetryPolicy
from loopback.s3 import moto_api
from tests.support.athena_moto import CREDENTIALS, RESULTS_BUCKET, SETTINGS
from tests.support.transport_servers import RecordingAthena, queue_athena_results, s3_fault_proxy

ONE_TRY = RetryPolicy(attempts=1)
FILE_COLUMNS = ["Patient ID", "Treatment", "Instrument", "Score"]
EXPORT_COLUMNS = ["performance_year", "state_code", "file_row_number", *FILE_COLUMNS]
HOSTILE = [
    "plain",
    "comma, inside",
    'a "quoted" word',
    '"',
    "two\nlines",
    "crlf\r\nline",
    "carriage\rreturn",
    "ñandú – 東京 – emoji 🙂",
    '=HYPERLINK("http://x")',
    " leading and trailing spaces ",
    "\\.",
    "",
    None,
]


# --- moto ----------------------------------------------------------------------------------


@dataclass
class Aws:
    endpoint: str
    s3: object
    athena: object

    def client(self, **options) -> AthenaClient:
        options.setdefault("sleep", lambda seconds: None)
        return AthenaClient(SETTINGS, client=self.athena, s3=self.s3, **options)

    def queue_result(self, header: list[str], rows: list[list[str | None]]) -> None:
        """What the next started query "returns"."""
        queue_athena_results(self.endpoint, (header, rows))


@pytest.fixture
def aws(moto_endpoint):
    moto_api(moto_endpoint, "/moto-api/reset")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, **CREDENTIALS)
    athena = boto3.client("athena", endpoint_url=moto_endpoint, **CREDENTIALS)
    s3.create_bucket(Bucket=RESULTS_BUCKET)
    athena.create_work_group(Name="mips", Configuration={})
    return Aws(moto_endpoint, s3, athena)


class ScriptedAthena:
    """Stands in for the Athena client only: each poll answers the next scripted state."""

    def __init__(self, states, *, reason=None, retryable=None, output_location=None):
        self.states = list(states)
        self.reason = reason
        self.retryable = retryable
        self.output_location = output_location or f"s3://{RESULTS_BUCKET}/staging/q-1.csv"
        self.requests: list[dict] = []
        self.polls = 0
        self.stopped: list[str] = []

    def start_query_execution(self, **request):
        self.requests.append(request)
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, QueryExecutionId):
        self.polls += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        status = {"State": state}
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.retryable is not None:
            status["AthenaError"] = {"ErrorCategory": 2, "Retryable": self.retryable}
        return {
            "QueryExecution": {
                "QueryExecutionId": QueryExecutionId,
                "Status": status,
                "ResultConfiguration": {"OutputLocation": self.output_location},
            }
        }

    def stop_query_execution(self, QueryExecutionId):
        self.stopped.append(QueryExecutionId)
        return {}


def athena_csv(header: list[str], rows: list[list[str | None]]) -> bytes:
    """A result file as Athena writes it: every value quoted, NULL an empty unquoted field."""

    def field(value):
        return "" if value is None else '"' + value.replace('"', '""') + '"'

    return "".join(",".join(field(v) for v in row) + "\n" for row in [header, *rows]).encode()


def chunked(data: bytes, size: int):
    return (data[i : i + size] for i in range(0, len(data), size))


# --- running queries -------------------------------------------------------------------------


def test_run_query_uses_the_targets_work_group_catalog_schema_and_staging_dir(aws):
    result = aws.client().run_query("select 1")
    execution = aws.athena.get_query_execution(QueryExecutionId=result.query_execution_id)
    execution = execution["QueryExecution"]
    assert execution["WorkGroup"] == "mips"
    assert execution["QueryExecutionContext"] == {"Catalog": "awsdatacatalog", "Database": "mips"}
    assert result.output_location == (
        f"s3://{RESULTS_BUCKET}/staging/{result.query_execution_id}.csv"
    )


def test_polls_queued_running_succeeded_with_capped_backoff(aws):
    # moto's state manager: each state holds for two polls, then moves on.
    moto_api(
        aws.endpoint,
        "/moto-api/state-manager/set-transition",
        {"model_name": "athena::execution", "transition": {"progression": "manual", "times": 2}},
    )
    try:
        sleeps: list[float] = []
        client = aws.client(sleep=sleeps.append, poll_initial=0.2, poll_max=0.5)
        client.run_query("select 1")
    finally:
        moto_api(
            aws.endpoint,
            "/moto-api/state-manager/unset-transition",
            {"model_name": "athena::execution"},
        )
    # Polls see QUEUED, RUNNING, RUNNING, SUCCEEDED: three waits, doubling up to the cap.
    assert sleeps == [0.2, 0.4, 0.5]


def test_failed_query_names_its_id_and_reason(aws):
    scripted = ScriptedAthena(
        ["QUEUED", "RUNNING", "FAILED"],
        reason="COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved",
        retryable=False,
    )
    with pytest.raises(AthenaQueryError) as caught:
        AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=lambda s: None).run_query("x")
    assert str(caught.value) == (
        "Athena query q-1 failed: COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved"
    )
    assert caught.value.query_execution_id == "q-1"
    assert isinstance(caught.value, AthenaTerminalError)
    assert not isinstance(caught.value, TransientError)
    assert scripted.polls == 3
    assert scripted.stopped == []


def test_failed_query_passes_on_athenas_retryable_verdict_as_its_class(aws):
    scripted = ScriptedAthena(["FAILED"], reason="Query exhausted resources", retryable=True)
    client = AthenaClient(
        SETTINGS, client=scripted, s3=aws.s3, sleep=lambda s: None, retry_policy=ONE_TRY
    )
    with pytest.raises(AthenaTransientError) as caught:
        client.run_query("x")
    assert isinstance(caught.value, TransientError)
    assert not hasattr(caught.value, "retryable"), "the class is the classification"


def test_cancelled_query(aws):
    scripted = ScriptedAthena(["RUNNING", "CANCELLED"])
    with pytest.raises(AthenaQueryError, match=r"^Athena query q-1 was cancelled$"):
        AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=lambda s: None).run_query("x")


def test_timeout_stops_the_query(aws):
    scripted = ScriptedAthena(["RUNNING"])
    sleeps: list[float] = []
    client = AthenaClient(
        SETTINGS,
        client=scripted,
        s3=aws.s3,
        poll_initial=0.2,
        poll_max=0.4,
        timeout_s=1,
        sleep=sleeps.append,
    )
    with pytest.raises(AthenaQueryError) as caught:
        client.run_query("select slowly")
    assert str(caught.value) == (
        "Athena query q-1 did not finish within 1 s (last state RUNNING); it was stopped"
    )
    assert scripted.stopped == ["q-1"]
    assert sleeps == pytest.approx([0.2, 0.4, 0.4])
    assert sum(sleeps) == pytest.approx(1.0)


def test_interrupt_while_waiting_stops_the_query(aws):
    scripted = ScriptedAthena(["RUNNING"])

    def interrupted(seconds):
        raise KeyboardInterrupt

    client = AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=interrupted)
    with pytest.raises(KeyboardInterrupt):
        client.run_query("select 1")
    assert scripted.stopped == ["q-1"]


def test_a_query_that_cannot_start_says_why(aws):
    class Refusing(ScriptedAthena):
        def start_query_execution(self, **request):
            raise ClientError(
                {"Error": {"Code": "InvalidRequestException", "Message": "bad work group"}},
                "StartQueryExecution",
            )

    client = AthenaClient(SETTINGS, client=Refusing(["RUNNING"]), s3=aws.s3)
    with pytest.raises(AthenaQueryError, match="could not start: InvalidRequestException"):
        client.run_query("select 1")


def test_default_clients_come_from_the_profile_settings(aws, monkeypatch, tmp_path):
    # boto3 honours AWS_ENDPOINT_URL; the profile's explicit keys take part in the session.
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    settings = {**SETTINGS, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    client = AthenaClient(settings, sleep=lambda s: None)
    aws.queue_result(["answer"], [["42"]])
    result = client.run_query("select 42 as answer")
    assert b"".join(client.stream_result_csv(result.output_location)) == b'"answer"\n"42"\n'
    assert "testing" not in repr(client)


# --- streaming the result --------------------------------------------------------------------


def test_result_streams_in_chunks(aws):
    body = bytes(range(256)) * (3 * 4096)  # 3 MiB
    aws.s3.put_object(Bucket=RESULTS_BUCKET, Key="staging/big.csv", Body=body)
    chunks = list(
        aws.client().stream_result_csv(
            f"s3://{RESULTS_BUCKET}/staging/big.csv", chunk_size=256 * 1024
        )
    )
    assert len(chunks) >= 12
    assert max(len(c) for c in chunks) <= 256 * 1024
    assert b"".join(chunks) == body


def test_missing_result_is_a_result_error(aws):
    stream = aws.client().stream_result_csv(f"s3://{RESULTS_BUCKET}/staging/none.csv")
    with pytest.raises(AthenaResultError, match="none.csv could not be read: NoSuchKey"):
        next(stream)


def test_a_result_cut_short_is_a_result_error(aws):
    class Truncating:
        def get_object(self, **request):
            response = aws.s3.get_object(**request)
            data = response["Body"].read()
            response["Body"] = StreamingBody(io.BytesIO(data[: len(data) // 2]), len(data))
            return response

    aws.s3.put_object(Bucket=RESULTS_BUCKET, Key="staging/cut.csv", Body=b"x" * 1000)
    client = AthenaClient(SETTINGS, client=aws.athena, s3=Truncating())
    with pytest.raises(AthenaTransientError, match="broke off: IncompleteReadError"):
        b"".join(client.stream_result_csv(f"s3://{RESULTS_BUCKET}/staging/cut.csv"))


# --- the tokenizer ---------------------------------------------------------------------------

TRICKY_RECORDS = [
    ["id", "text", "more"],
    ["1", "", None],
    ["2", None, ""],
    ["3", "two\nlines", 'a "quoted"\r\nword'],
    ["4", '"', '""'],
    ["5", "ñandú 東京 🙂", "comma, here"],
    [None, None, None],
    ["7", "\n\n", "end"],
]


def test_tokenizer_keeps_null_apart_from_empty_wherever_the_chunks_split():
    data = athena_csv(TRICKY_RECORDS[0], TRICKY_RECORDS[1:])
    for size in (1, 2, 3, 5, 7, 11, 64, len(data)):
        assert list(iter_csv_records(chunked(data, size))) == TRICKY_RECORDS, size


def test_tokenizer_reads_a_last_record_without_newline_and_crlf_records():
    assert list(iter_csv_records([b'"a",,"b"\r\n"c","",'])) == [["a", None, "b"], ["c", "", None]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'"a","b\n', "ends inside a quoted value"),
        (b'"a"x,"b"\n', r"unexpected byte b'x' at byte 3"),
        (b'"a",b"c"\n', "unexpected byte"),
        (b'"\xff"\n', "not valid UTF-8 near byte 1"),
    ],
)
def test_tokenizer_rejects_what_athena_does_not_write(data, message):
    with pytest.raises(AthenaResultError, match=message):
        list(iter_csv_records(chunked(data, 2)))


def test_reencoder_checks_the_header_and_the_width():
    data = athena_csv(["patient id", "treatment"], [["1", "LOS"]])
    # Glue lower-cases column names: the header written is the one asked for.
    out = b"".join(AthenaCsvReencoder(["Patient ID", "Treatment"]).reencode(chunked(data, 5)))
    assert out == b"Patient ID,Treatment\n1,LOS\n"
    with pytest.raises(AthenaResultError, match="not the ones selected"):
        b"".join(AthenaCsvReencoder(["Patient ID", "Score"]).reencode([data]))
    with pytest.raises(AthenaResultError, match="has 3 fields, the header 2"):
        b"".join(AthenaCsvReencoder().reencode([data + b'"1","2","3"\n']))


def test_reencoder_of_an_empty_result_writes_the_header():
    header = ["Patient ID", "Score"]
    assert b"".join(AthenaCsvReencoder(header).reencode([athena_csv(header, [])])) == (
        b"Patient ID,Score\n"
    )
    assert b"".join(AthenaCsvReencoder(header).reencode([b""])) == b"Patient ID,Score\n"
    with pytest.raises(AthenaResultError, match="not even a header"):
        b"".join(AthenaCsvReencoder().reencode([b""]))


# --- the slice: Athena's bytes become PostgreSQL's -------------------------------------------


@pytest.fixture
def export_table(db):
    """An export-shaped table in the embedded PostgreSQL; returns (relation, loader)."""
    db.execute("drop schema if exists athena_t cascade")
    db.execute("create schema athena_t")
    db.execute(
        sql.SQL(
            "create table athena_t.export (performance_year int, state_code text,"
            " file_row_number bigint, {})"
        ).format(
            sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in FILE_COLUMNS)
        )
    )

    def load(rows: list[list[str | None]], year: int = 2025, state: str = "CA") -> None:
        with db.cursor() as cursor:
            cursor.executemany(
                "insert into athena_t.export values (%s, %s, %s, %s, %s, %s, %s)",
                [(year, state, n, *row) for n, row in enumerate(rows, start=1)],
            )

    yield '"athena_t"."export"', load
    db.execute("drop schema athena_t cascade")


def hostile_rows() -> list[list[str | None]]:
    rows = []
    for n, text in enumerate(HOSTILE, start=1):
        rows.append([str(1000 + n), text, "LEFS" if n % 3 else None, "42.5" if n % 2 else ""])
        rows.append([str(2000 + n), "MSK05", text, None])
    return rows


def test_unloaded_athena_slice_is_byte_identical_to_postgres(db, export_table, aws, tmp_path):
    relation, load = export_table
    rows = hostile_rows()
    load(rows)
    load([["9", "other state", None, None]], state="TX")
    postgres = unload_postgres_slice(
        db, relation, 2025, "CA", header=FILE_COLUMNS, work_dir=tmp_path
    )

    aws.queue_result(EXPORT_COLUMNS, [])  # `select * ... limit 0`: the column discovery
    aws.queue_result(FILE_COLUMNS, rows)  # the slice, as Athena would answer it
    recording = RecordingAthena(aws.athena)
    client = AthenaClient(SETTINGS, client=recording, s3=aws.s3, sleep=lambda s: None)
    athena = unload_athena_slice(client, relation, 2025, "CA", work_dir=tmp_path)

    assert athena.path.read_bytes() == postgres.path.read_bytes()
    assert (athena.rows, athena.bytes, athena.sha256) == (
        postgres.rows,
        postgres.bytes,
        postgres.sha256,
    )
    assert athena.rows == len(rows)
    assert stat.S_IMODE(athena.path.stat().st_mode) == 0o600
    assert recording.queries == [
        f"select * from {relation} limit 0",
        'select "Patient ID", "Treatment", "Instrument", "Score" from "athena_t"."export"'
        " where performance_year = 2025 and state_code = 'CA' order by file_row_number",
    ]


def test_hash_only_unload_keeps_nothing(db, export_table, aws, tmp_path):
    relation, load = export_table
    rows = hostile_rows()
    load(rows)
    postgres = unload_postgres_slice(db, relation, 2025, "CA", header=FILE_COLUMNS, work_dir=None)
    aws.queue_result(FILE_COLUMNS, rows)
    athena = unload_athena_slice(
        aws.client(), relation, 2025, "CA", work_dir=None, columns=FILE_COLUMNS
    )
    assert athena == postgres  # path None, same rows, bytes and hash


def test_empty_slice_is_the_header_alone(db, export_table, aws, tmp_path):
    relation, _ = export_table
    postgres = unload_postgres_slice(
        db, relation, 2024, "NY", header=FILE_COLUMNS, work_dir=tmp_path
    )
    aws.queue_result(FILE_COLUMNS, [])
    athena = unload_athena_slice(
        aws.client(), relation, 2024, "NY", work_dir=tmp_path, columns=FILE_COLUMNS
    )
    assert (
        athena.path.read_bytes()
        == postgres.path.read_bytes()
        == (b"Patient ID,Treatment,Instrument,Score\n")
    )
    assert athena.rows == postgres.rows == 0


def test_random_rows_reencode_to_postgres_bytes_in_any_chunking(db, export_table):
    relation, load = export_table
    generator = random.Random(7)
    alphabet = [",", '"', "\n", "\r", " ", "a", "é", "\\", ".", "=", "🙂", "\x01"]

    def value():
        if generator.random() < 0.15:
            return None
        if generator.random() < 0.5:
            return str(generator.randint(0, 10**6))
        return "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 6)))

    rows = [[value() for _ in FILE_COLUMNS] for _ in range(3000)]
    load(rows)
    postgres = unload_postgres_slice(db, relation, 2025, "CA", header=FILE_COLUMNS, work_dir=None)
    with (
        db.cursor() as cursor,
        cursor.copy(
            sql.SQL(
                "copy (select {} from {} where performance_year = 2025 and state_code = 'CA'"
                " order by file_row_number) to stdout (format csv, header)"
            ).format(sql.SQL(", ").join(sql.Identifier(c) for c in FILE_COLUMNS), sql.SQL(relation))
        ) as copy,
    ):
        expected = b"".join(bytes(block) for block in copy)
    assert hashlib.sha256(expected).hexdigest() == postgres.sha256

    data = athena_csv(FILE_COLUMNS, rows)
    for size in (1, 13, 4096, 1 << 20):
        reencoder = AthenaCsvReencoder(FILE_COLUMNS)
        assert b"".join(reencoder.reencode(chunked(data, size))) == expected, size
        assert reencoder.rows == len(rows)


def test_bulk_path_output_equals_the_field_by_field_encoding():
    rows = [
        ["1", "", None, "x y"],
        [None, None, None, None],
        ["", "", "", ""],
        ["a", "b", "c", "d"],
    ]
    expected = encode_record(FILE_COLUMNS) + b"".join(encode_record(r) for r in rows)
    assert b"".join(
        AthenaCsvReencoder(FILE_COLUMNS).reencode([athena_csv(FILE_COLUMNS, rows)])
    ) == (expected)


def test_failed_slice_query_names_the_slice_and_the_query(aws, tmp_path):
    scripted = ScriptedAthena(["FAILED"], reason="HIVE_METASTORE_ERROR: table not found")
    client = AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=lambda s: None)
    with pytest.raises(AthenaQueryError) as caught:
        unload_athena_slice(client, '"x"', 2025, "CA", work_dir=tmp_path, columns=FILE_COLUMNS)
    assert str(caught.value) == (
        "2025/CA: Athena query q-1 failed: HIVE_METASTORE_ERROR: table not found"
    )
    assert list(tmp_path.iterdir()) == []


def test_unreadable_slice_result_names_the_slice_and_the_query(aws, tmp_path):
    aws.s3.put_object(
        Bucket=RESULTS_BUCKET,
        Key="staging/q-1.csv",
        Body=athena_csv(FILE_COLUMNS, [["1", "x", None, None]]) + b'"2","unterminated',
    )
    client = AthenaClient(SETTINGS, client=ScriptedAthena(["SUCCEEDED"]), s3=aws.s3)
    with pytest.raises(AthenaResultError) as caught:
        unload_athena_slice(client, '"x"', 2025, "CA", work_dir=tmp_path, columns=FILE_COLUMNS)
    assert str(caught.value).startswith("2025/CA: Athena query q-1: result is not valid CSV")
    assert list(tmp_path.iterdir()) == [], "no partial file is left behind"


def test_count_athena_slice(aws):
    aws.queue_result(["rows"], [["3"]])
    recording = RecordingAthena(aws.athena)
    client = AthenaClient(SETTINGS, client=recording, s3=aws.s3, sleep=lambda s: None)
    assert count_athena_slice(client, '"mips"."export"', 2025, "CA") == 3
    assert recording.queries == [
        'select count(*) as "rows" from "mips"."export"'
        " where performance_year = 2025 and state_code = 'CA'"
    ]


def test_slice_query_quotes_identifiers_and_literals():
    assert athena_slice_query("r", 2025, "C'A", ['a "b"']) == (
        'select "a ""b""" from r where performance_year = 2025 and state_code = \'C\'\'A\''
        " order by file_row_number"
    )


# --- the S3 run lock -------------------------------------------------------------------------

LOCK_BUCKET = "mips-exports"
LOCK_KEY = "business-operations/healthmonix/_run.lock"


@pytest.fixture
def lock_s3(aws):
    aws.s3.create_bucket(Bucket=LOCK_BUCKET)
    return aws.s3


def lock_body(s3) -> dict:
    return json.loads(s3.get_object(Bucket=LOCK_BUCKET, Key=LOCK_KEY)["Body"].read())


def lock_exists(s3) -> bool:
    return "Contents" in s3.list_objects_v2(Bucket=LOCK_BUCKET, Prefix=LOCK_KEY)


def test_second_run_is_refused_with_who_holds_the_lock(lock_s3):
    with s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="export 2025-01-15") as lock:
        body = lock_body(lock_s3)
        assert body["owner"] == "export 2025-01-15"
        assert {"host", "pid", "acquired_at", "expires_at", "token"} <= set(body)
        assert dt.datetime.fromisoformat(body["expires_at"]) == lock.expires_at
        with (
            pytest.raises(ExportLocked) as caught,
            s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="another run"),
        ):
            pass
        message = str(caught.value)
        assert f"s3://{LOCK_BUCKET}/{LOCK_KEY}" in message
        assert "held by export 2025-01-15 on " in message
        assert f"until {lock.expires_at.isoformat()}" in message
        assert lock_exists(lock_s3), "the refused run left the lock alone"
    assert not lock_exists(lock_s3), "released at exit"
    with s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="next day"):
        assert lock_body(lock_s3)["owner"] == "next day"


def test_lock_is_released_when_the_run_fails(lock_s3):
    with pytest.raises(RuntimeError), s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="r"):
        raise RuntimeError("delivery blew up")
    assert not lock_exists(lock_s3)


def test_expired_lock_is_taken_over_and_its_old_holder_releases_only_its_own(lock_s3):
    crashed = s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="crashed run", ttl_seconds=0)
    crashed.__enter__()
    with s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="new run") as lock:
        assert lock_body(lock_s3)["owner"] == "new run"
        crashed.__exit__(None, None, None)  # the old holder wakes up and "releases"
        assert lock_body(lock_s3)["owner"] == "new run", "not its lock any more"
        head = lock_s3.head_object(Bucket=LOCK_BUCKET, Key=LOCK_KEY)
        assert head["ETag"] == lock.etag
    assert not lock_exists(lock_s3)


def test_a_lock_this_code_did_not_write_expires_a_ttl_after_it_was_written(lock_s3):
    lock_s3.put_object(Bucket=LOCK_BUCKET, Key=LOCK_KEY, Body=b"not json")
    with (
        pytest.raises(ExportLocked, match="held by an unknown owner"),
        s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="r"),
    ):
        pass
    with s3_run_lock(lock_s3, LOCK_BUCKET, LOCK_KEY, owner="r", ttl_seconds=0):
        assert lock_body(lock_s3)["owner"] == "r"


def test_release_falls_back_when_the_store_ignores_conditional_deletes(lock_s3):
    class NoConditionalDelete:
        def __init__(self, s3):
            self._s3 = s3

        def delete_object(self, **request):
            if "IfMatch" in request:
                raise ClientError(
                    {"Error": {"Code": "NotImplemented", "Message": "no"}}, "DeleteObject"
                )
            return self._s3.delete_object(**request)

        def __getattr__(self, name):
            return getattr(self._s3, name)

    s3 = NoConditionalDelete(lock_s3)
    crashed = s3_run_lock(s3, LOCK_BUCKET, LOCK_KEY, owner="crashed", ttl_seconds=0)
    crashed.__enter__()
    with s3_run_lock(s3, LOCK_BUCKET, LOCK_KEY, owner="new"):
        crashed.__exit__(None, None, None)
        assert lock_body(lock_s3)["owner"] == "new"
    assert not lock_exists(lock_s3)


def test_missing_bucket_is_a_lock_error_not_a_held_lock(aws):
    with (
        pytest.raises(S3LockError, match="cannot take the run lock s3://nope/k: NoSuchBucket"),
        s3_run_lock(aws.s3, "nope", "k", owner="r"),
    ):
        pass


def single_attempt_s3(endpoint: str):
    """An S3 client as the loader's own: one attempt per request, loader.retry decides."""
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2)
    return boto3.client("s3", endpoint_url=endpoint, config=config, **CREDENTIALS)


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (429, "TooManyRequests")])
def test_a_throttled_lock_put_is_retried_and_the_lock_taken(lock_s3, moto_endpoint, status, code):
    with s3_fault_proxy(moto_endpoint) as proxy:
        proxy.fail("PUT", status=status, code=code, query_contains=LOCK_KEY)
        waits: list[float] = []
        s3 = single_attempt_s3(proxy.url)
        with s3_run_lock(s3, LOCK_BUCKET, LOCK_KEY, owner="r", sleep=waits.append) as lock:
            assert lock_body(lock_s3)["owner"] == "r"
            assert lock_s3.head_object(Bucket=LOCK_BUCKET, Key=LOCK_KEY)["ETag"] == lock.etag
        assert proxy.count("PUT", LOCK_KEY) == 2, "the throttled put, then the one that took it"
        assert len(waits) == 1, "one wait of the retry policy between them"
    assert not lock_exists(lock_s3), "released at exit"


def test_a_lock_put_throttled_past_the_policy_is_transient_and_takes_nothing(
    lock_s3, moto_endpoint
):
    with s3_fault_proxy(moto_endpoint) as proxy:
        proxy.fail("PUT", status=503, code="SlowDown", times=10, query_contains=LOCK_KEY)
        s3 = single_attempt_s3(proxy.url)
        with (
            pytest.raises(S3LockUnavailable) as caught,
            s3_run_lock(s3, LOCK_BUCKET, LOCK_KEY, owner="r", retry_policy=RetryPolicy(3),
                        sleep=lambda s: None),
        ):  # fmt: skip
            pass
        assert proxy.count("PUT", LOCK_KEY) == 3, "exactly the policy's attempts"
    assert str(caught.value) == f"cannot take the run lock s3://{LOCK_BUCKET}/{LOCK_KEY}: SlowDown"
    assert isinstance(caught.value, TransientError) and caught.value.kind == "transient"
    assert not lock_exists(lock_s3)


def test_a_lock_whose_s3_cannot_be_reached_is_unreachable_not_a_traceback(lock_s3, moto_endpoint):
    with s3_fault_proxy(moto_endpoint) as proxy:
        s3 = single_attempt_s3(proxy.url)
        proxy.go_away()  # the port refuses connections
        waits: list[float] = []
        with (
            pytest.raises(S3LockUnreachable) as caught,
            s3_run_lock(s3, LOCK_BUCKET, LOCK_KEY, owner="r", retry_policy=RetryPolicy(2),
                        sleep=waits.append),
        ):  # fmt: skip
            pass
    message = str(caught.value)
    assert message.startswith(
        f"cannot take the run lock s3://{LOCK_BUCKET}/{LOCK_KEY}: EndpointConnectionError: "
    )
    assert "\n" not in message
    assert isinstance(caught.value, UnreachableError) and caught.value.kind == "unreachable"
    assert caught.value.exit_code == 1
    assert len(waits) == 1, "retried under the policy first"


def test_a_lock_lost_with_s3_at_release_is_logged_not_raised(lock_s3, moto_endpoint, caplog):
    with s3_fault_proxy(moto_endpoint) as proxy:
        s3 = single_attempt_s3(proxy.url)
        with s3_run_lock(
            s3, LOCK_BUCKET, LOCK_KEY, owner="r", retry_policy=RetryPolicy(2), sleep=lambda s: 0
        ):
            proxy.go_away()
    assert "could not release the run lock" in caplog.text
    assert lock_exists(lock_s3), "left for its expiry: S3 was gone"


def test_http_429_is_transient_for_athena_as_for_s3(aws):
    athena = single_attempt_athena(aws.endpoint)
    answered = answer_with_error(athena, "StartQueryExecution", 429, "TooManyRequests")
    recording = RecordingAthena(athena)
    client = AthenaClient(SETTINGS, client=recording, s3=aws.s3, sleep=lambda s: None)
    client.run_query("select 1")
    assert answered == ["StartQueryExecution"]
    assert len(recording.queries) == 2, "the 429 was retried"


def test_a_retryable_failure_runs_the_query_again(aws):
    scripted = ScriptedAthena(["FAILED", "SUCCEEDED"], retryable=True)
    waits = []
    result = AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=waits.append).run_query("x")
    assert len(scripted.requests) == 2, "started twice: the failed query, then its retry"
    assert result.query_execution_id == "q-1"
    assert waits, "with a pause between the tries"


def test_a_terminal_failure_is_not_retried(aws):
    scripted = ScriptedAthena(["FAILED"], reason="SYNTAX_ERROR: line 1", retryable=False)
    with pytest.raises(AthenaQueryError, match="SYNTAX_ERROR"):
        AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=lambda s: None).run_query("x")
    assert len(scripted.requests) == 1


def test_a_retryable_failure_that_persists_gives_up_after_the_policy(aws):
    scripted = ScriptedAthena(["FAILED"], reason="Query exhausted resources", retryable=True)
    with pytest.raises(AthenaQueryError, match="exhausted") as caught:
        AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=lambda s: None).run_query("x")
    assert len(scripted.requests) == 4
    assert isinstance(caught.value, MipsError), "one line at the command line, no traceback"


# --- retries against moto's Athena: the class decides, the one policy counts ------------------


class _Body:
    def __init__(self, payload: bytes):
        self._payload = payload

    def stream(self, **kwargs):
        yield self._payload


def single_attempt_athena(endpoint: str):
    """moto's Athena as the loader's own clients talk to it: one attempt per request."""
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("athena", endpoint_url=endpoint, config=config, **CREDENTIALS)


def answer_with_error(client, operation: str, status: int, code: str, *, times: int = 1):
    """The next `times` `operation` requests get Athena's JSON error instead of moto's answer
    (botocore parses it as it would AWS's); returns the list of answered requests."""
    from botocore.awsrequest import AWSResponse

    answered: list[str] = []

    def handler(request, **kwargs):
        if len(answered) >= times:
            return None
        answered.append(operation)
        body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "r-1"}
        return AWSResponse(request.url, status, headers, _Body(body))

    client.meta.events.register_first(f"before-send.athena.{operation}", handler)
    return answered


def test_a_throttled_query_is_retried_and_succeeds_against_moto(aws):
    athena = single_attempt_athena(aws.endpoint)
    answered = answer_with_error(athena, "StartQueryExecution", 400, "ThrottlingException")
    recording = RecordingAthena(athena)
    waits: list[float] = []
    client = AthenaClient(SETTINGS, client=recording, s3=aws.s3, sleep=waits.append)
    aws.queue_result(["answer"], [["42"]])
    result = client.run_query("select 42 as answer")
    assert answered == ["StartQueryExecution"], "the first start was throttled"
    assert recording.queries == ["select 42 as answer"] * 2, "and the query was started again"
    assert len([w for w in waits if w >= 0.25]) >= 1, "after the policy's backoff"
    assert b"".join(client.stream_result_csv(result.output_location)) == b'"answer"\n"42"\n'


def test_a_5xx_without_an_error_code_is_transient(aws):
    athena = single_attempt_athena(aws.endpoint)
    answer_with_error(athena, "GetQueryExecution", 503, "")
    recording = RecordingAthena(athena)
    client = AthenaClient(SETTINGS, client=recording, s3=aws.s3, sleep=lambda s: None)
    client.run_query("select 1")
    assert len(recording.queries) == 2, "the poll's 503 stopped the query and ran it again"


def test_a_refused_query_is_terminal_and_not_retried_against_moto(aws):
    athena = single_attempt_athena(aws.endpoint)
    answer_with_error(athena, "StartQueryExecution", 400, "AccessDeniedException", times=10)
    recording = RecordingAthena(athena)
    client = AthenaClient(SETTINGS, client=recording, s3=aws.s3, sleep=lambda s: None)
    with pytest.raises(AthenaTerminalError) as caught:
        client.run_query("select 1")
    assert str(caught.value) == (
        "Athena query could not start: AccessDeniedException: injected AccessDeniedException"
    )
    assert not isinstance(caught.value, TransientError)
    assert len(recording.queries) == 1


def test_persistent_throttling_gives_up_after_the_policy_as_a_transient_error(aws):
    athena = single_attempt_athena(aws.endpoint)
    answered = answer_with_error(athena, "StartQueryExecution", 400, "ThrottlingException", times=9)
    client = AthenaClient(
        SETTINGS, client=athena, s3=aws.s3, sleep=lambda s: None, retry_policy=RetryPolicy(3)
    )
    with pytest.raises(AthenaTransientError, match="could not start: ThrottlingException"):
        client.run_query("select 1")
    assert len(answered) == 3, "exactly the policy's attempts"


def test_default_clients_make_one_attempt_per_request(aws, monkeypatch, tmp_path):
    # The retry budget is loader.retry's alone: botocore must not multiply it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    settings = {**SETTINGS, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    client = AthenaClient(settings, sleep=lambda s: None, retry_policy=RetryPolicy(2))
    answered = answer_with_error(
        client._client, "StartQueryExecution", 400, "ThrottlingException", times=20
    )
    with pytest.raises(AthenaTransientError):
        client.run_query("select 1")
    assert len(answered) == 2


def test_a_result_that_breaks_off_runs_the_whole_query_again(db, export_table, aws, tmp_path):
    relation, load = export_table
    rows = hostile_rows()
    load(rows)
    postgres = unload_postgres_slice(db, relation, 2025, "CA", header=FILE_COLUMNS, work_dir=None)

    class DropsTheFirstDownload:
        def __init__(self):
            self.downloads = 0

        def get_object(self, **request):
            self.downloads += 1
            response = aws.s3.get_object(**request)
            if self.downloads == 1:
                data = response["Body"].read()
                response["Body"] = StreamingBody(io.BytesIO(data[: len(data) // 2]), len(data))
            return response

    aws.queue_result(FILE_COLUMNS, rows)  # the first run, whose download breaks off
    aws.queue_result(FILE_COLUMNS, rows)  # the second run
    recording = RecordingAthena(aws.athena)
    s3 = DropsTheFirstDownload()
    client = AthenaClient(SETTINGS, client=recording, s3=s3, sleep=lambda s: None)
    work_dir = tmp_path / "athena"
    work_dir.mkdir()
    athena = unload_athena_slice(
        client, relation, 2025, "CA", work_dir=work_dir, columns=FILE_COLUMNS
    )
    assert len(recording.queries) == 2 and s3.downloads == 2
    assert (athena.rows, athena.bytes, athena.sha256) == (
        postgres.rows,
        postgres.bytes,
        postgres.sha256,
    )
    assert list(work_dir.iterdir()) == [athena.path], "the broken first file is gone"


def test_a_result_that_is_not_csv_is_not_retried(aws, tmp_path):
    aws.s3.put_object(Bucket=RESULTS_BUCKET, Key="staging/q-1.csv", Body=b'"a","unterminated')
    scripted = ScriptedAthena(["SUCCEEDED"])
    client = AthenaClient(SETTINGS, client=scripted, s3=aws.s3, sleep=lambda s: None)
    with pytest.raises(AthenaResultError):
        unload_athena_slice(client, '"x"', 2025, "CA", work_dir=tmp_path, columns=["a", "b"])
    assert len(scripted.requests) == 1
    assert isinstance(AthenaResultError("x"), TerminalError)


def test_bad_settings_are_configuration_errors(monkeypatch, tmp_path):
    with pytest.raises(AthenaConfigurationError, match="s3_staging_dir 'results/staging'"):
        AthenaClient({**SETTINGS, "s3_staging_dir": "results/staging"}, client=1, s3=1)
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with pytest.raises(AthenaConfigurationError) as caught:
        AthenaClient({**SETTINGS, "region_name": None})
    assert isinstance(caught.value, ConfigurationError)
    assert "\n" not in str(caught.value)
