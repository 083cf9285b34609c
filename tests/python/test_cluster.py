"""The embedded cluster never outlives the command that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from loader.cluster import EmbeddedCluster, running_cluster

# A child process that starts a cluster, prints READY, then waits to be stopped.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from loader.cluster import running_cluster
    with running_cluster(Path(sys.argv[1])) as connection:
        print("READY", flush=True)
        time.sleep(120)
    """
)


def postgres_pids(data_dir: Path) -> list[int]:
    """Postmasters serving `data_dir` (their command line names it)."""
    pids = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(data_dir) in cmdline:
            pids.append(process.pid)
    return pids


def wait_until_gone(data_dir: Path, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not postgres_pids(data_dir):
            return []
        time.sleep(0.1)
    return postgres_pids(data_dir)


def start_child(data_dir: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MIPS_HOME": str(data_dir.parent)},
    )
    assert child.stdout.readline().strip() == "READY"
    assert postgres_pids(data_dir), "the child's cluster should be running"
    return child


def test_cluster_serves_and_stops(tmp_path):
    data_dir = tmp_path / "pgdata"
    with running_cluster(data_dir) as connection:
        with psycopg.connect(connection.conninfo()) as conn:
            assert conn.execute("select current_database()").fetchone()[0] == "mips"
        assert os.environ["MIPS_PG_SOCKET_DIR"] == str(connection.socket_dir)
    assert wait_until_gone(data_dir) == []
    assert "MIPS_PG_SOCKET_DIR" not in os.environ or os.environ["MIPS_PG_SOCKET_DIR"] != str(
        connection.socket_dir
    )


def test_cluster_is_reused_when_nested(tmp_path):
    data_dir = tmp_path / "pgdata"
    with running_cluster(data_dir) as outer:
        pids = postgres_pids(data_dir)
        with running_cluster(data_dir) as inner:
            assert inner == outer
        assert postgres_pids(data_dir) == pids, "the inner block must not stop the server"
    assert wait_until_gone(data_dir) == []


def test_data_persists_and_throwaway_deletes(tmp_path):
    data_dir = tmp_path / "pgdata"
    with running_cluster(data_dir) as connection, psycopg.connect(connection.conninfo()) as conn:
        conn.execute("create table kept (id int)")
        conn.commit()
    with running_cluster(data_dir) as connection, psycopg.connect(connection.conninfo()) as conn:
        assert conn.execute("select count(*) from kept").fetchone()[0] == 0
    throwaway = tmp_path / "scratch"
    with EmbeddedCluster(throwaway, throwaway=True):
        assert throwaway.exists()
    assert not throwaway.exists()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_no_postgres_outlives_a_stopped_command(tmp_path, how):
    data_dir = tmp_path / "pgdata"
    child = start_child(data_dir)
    child.send_signal(getattr(signal, how))
    child.wait(timeout=30)
    assert wait_until_gone(data_dir) == [], f"postgres survived the parent's {how}"


def test_restart_after_a_crash_reuses_the_data_dir(tmp_path):
    data_dir = tmp_path / "pgdata"
    child = start_child(data_dir)
    child.kill()
    child.wait(timeout=30)
    wait_until_gone(data_dir)
    with running_cluster(data_dir) as connection, psycopg.connect(connection.conninfo()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert wait_until_gone(data_dir) == []
