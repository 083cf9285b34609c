"""Slices unloaded ahead of the upload (`export --jobs`): same files, same order, bounded.

On the hand-made models of conftest and the embedded PostgreSQL; the signal case is in
test_interruptions.py (`test_a_signal_stops_the_slices_unloaded_ahead`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import psycopg
import pytest

from loader.engines import open_engine
from loader.engines.slice_files import private_work_dir
from loader.environment.warehouse import ProjectOptions, render_target
from loader.run.unloads_ahead import UnloadsAhead
from tests.support.handmade import HANDMADE_SCHEMA as SCHEMA
from tests.support.local_runs import export, files_under
from tests.support.model_scenarios import PROJECT_DIR


def _without_run_identity(document: dict) -> list[dict]:
    volatile = {"run_id", "recorded_at"}
    return [{k: v for k, v in d.items() if k not in volatile} for d in document["deliveries"]]


def test_jobs_change_nothing_but_the_overlap(models, profiles_dir, tmp_path):
    runs = {}
    for jobs in ("1", "4"):
        s3, sftp = tmp_path / jobs / "s3", tmp_path / jobs / "sftp"
        s3.mkdir(parents=True)
        sftp.mkdir()
        result = export(profiles_dir, (s3, sftp), "--json", "--jobs", jobs)
        assert result.exit_code == 0, result.output
        delivered = {
            name: (root / name).read_bytes()
            for root in (s3, sftp)
            for name in files_under(root)
            if not name.startswith("run-log/") and not name.endswith("manifest.json")
        }
        runs[jobs] = (_without_run_identity(json.loads(result.output)), delivered)
    assert runs["1"] == runs["4"]
    assert [d["performance_year"] for d in runs["4"][0]] == [2022, 2023, 2025]


def test_a_bad_jobs_value_is_a_usage_error(models, profiles_dir, stores):
    result = export(profiles_dir, stores, "--jobs", "0")
    assert result.exit_code == 2
    assert "--jobs" in result.output


@pytest.fixture
def read(models, profiles_dir):
    """The published build of the hand-made models, read as an export reads it."""
    options = ProjectOptions(project_dir=PROJECT_DIR, profiles_dir=profiles_dir, target="dev")
    with open_engine(render_target(options)) as engine, engine.published() as published:
        yield published


class _Watched:
    """The read's own sessions, each unload noting how many slice files exist as it starts
    and which database backend serves it."""

    def __init__(self, read, work_dir: Path):
        self.read, self.work_dir = read, work_dir
        self.files_seen: list[int] = []
        self.backends: set[int] = set()
        self.lock = threading.Lock()

    def unload(self, delivery, work_dir):
        return self.read.unload(delivery, work_dir)

    @contextlib.contextmanager
    def unload_sessions(self, count):
        watcher = self

        class Session:
            def __init__(self, session):
                self.session = session

            def unload(self, delivery, work_dir):
                with watcher.lock:
                    watcher.files_seen.append(len(list(watcher.work_dir.iterdir())))
                    watcher.backends.add(self.session.conn.info.backend_pid)
                time.sleep(0.02)
                return self.session.unload(delivery, work_dir)

            def cancel_unload(self):
                self.session.cancel_unload()

        with self.read.unload_sessions(count) as sessions:
            yield [Session(session) for session in sessions]


@pytest.mark.parametrize("jobs", [2, 3])
def test_at_most_jobs_slice_files_exist_and_slices_come_in_order(read, jobs):
    deliveries = read.deliveries() * 4  # 12 slices of 3, 5 and 10 rows
    with private_work_dir() as work_dir:
        watched = _Watched(read, Path(work_dir))
        taken = []
        with UnloadsAhead(watched, deliveries, Path(work_dir), jobs) as ahead:
            for index, delivery in enumerate(deliveries):
                unloaded = ahead.take(index)
                time.sleep(0.05)  # an upload: the unloads ahead get their chance
                taken.append((delivery.performance_year, unloaded.rows))
                unloaded.path.unlink()
        assert list(Path(work_dir).iterdir()) == []
    assert taken == [(2022, 3), (2023, 5), (2025, 10)] * 4
    # a file is being uploaded and up to jobs - 2 more wait when another unload starts
    assert max(watched.files_seen) <= jobs - 1
    assert max(watched.files_seen) >= 1, "unloads did run ahead of the upload"
    main_backend = read.conn.info.backend_pid
    assert main_backend not in watched.backends and len(watched.backends) <= jobs - 1


def test_a_failed_unload_ahead_fails_that_delivery_only(read, models):
    deliveries = [
        dataclasses.replace(d, export_relation=f'"{SCHEMA}"."no_such"')
        if d.performance_year == 2023
        else d
        for d in read.deliveries()
    ]
    with private_work_dir() as work_dir, UnloadsAhead(read, deliveries, Path(work_dir), 3) as a:
        first = a.take(0)
        with pytest.raises(Exception, match="no_such"):
            a.take(1)
        last = a.take(2)
    assert (first.rows, last.rows) == (3, 10)


def test_files_unloaded_ahead_but_never_taken_are_removed(read):
    deliveries = read.deliveries()
    with private_work_dir() as work_dir:
        with UnloadsAhead(read, deliveries, Path(work_dir), 3) as ahead:
            ahead.take(0).path.unlink()
            time.sleep(0.5)  # the two ahead finish; the run stops before taking them
        assert list(Path(work_dir).iterdir()) == []


def test_a_waiting_publication_sends_the_unload_back_to_the_runs_connection(
    read, cluster, caplog, tmp_path
):
    """A psql child would queue its lock behind a publication that waits for the run's own
    locks (and the run would wait for the child): its NOWAIT lock fails, and the slice is
    unloaded on the run's connection, whose lock is held. The same bytes either way."""
    delivery = read.deliveries()[-1]
    relation = read.published_relation(delivery.export_relation)
    (tmp_path / "child").mkdir()
    by_child = read.unload(delivery, tmp_path / "child")
    with (
        psycopg.connect(cluster.conninfo(), autocommit=True) as publisher,
        psycopg.connect(cluster.conninfo(), autocommit=True) as watcher,
    ):
        waiting = threading.Thread(
            target=_lock_until_cancelled, args=(publisher, relation), daemon=True
        )
        waiting.start()
        assert _wait_for_a_lock_waiter(watcher), "the publication waits for the run's lock"
        (tmp_path / "run").mkdir()
        with caplog.at_level(logging.INFO, logger="loader.engines.postgres"):
            started = time.monotonic()
            by_run = read.unload(delivery, tmp_path / "run")
        assert time.monotonic() - started < 10, "the unload did not queue behind the publication"
        assert _wait_for_a_lock_waiter(watcher), "the publication still waits for the run"
        publisher.cancel_safe()
        waiting.join(10)
    assert "a publication is waiting: 2025/TX unloaded in this process" in caplog.text
    assert by_run.path.read_bytes() == by_child.path.read_bytes()
    assert by_run.rows == by_child.rows == 10 and by_run.sha256 == by_child.sha256


def _lock_until_cancelled(conn, relation: str) -> None:
    with contextlib.suppress(psycopg.errors.QueryCanceled), conn.transaction():
        conn.execute(f"lock table {relation} in access exclusive mode")  # a publication's lock


def _wait_for_a_lock_waiter(watcher, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if watcher.execute("select 1 from pg_locks where not granted").fetchone():
            return True
        time.sleep(0.05)
    return False


def test_a_psql_that_cannot_run_is_one_configuration_line(
    models, profiles_dir, stores, monkeypatch
):
    monkeypatch.setenv("MIPS_PSQL", "/nonexistent/psql")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.output)
    assert document["error"]["kind"] == "configuration"
    assert "MIPS_PSQL=/nonexistent/psql is not a program" in document["error"]["message"]
    assert "Traceback" not in result.output
    s3, sftp = stores
    assert files_under(s3) == files_under(sftp) == [], "nothing was attempted"
