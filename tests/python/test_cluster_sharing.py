"""Two commands on the `dev` target at once: the second reuses the first one's server and
never stops it; only a server whose owner is dead is treated as stale. Real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from loader.environment.cluster import running_cluster
from tests.support.processes import postgres_pids

# The first command: starts the cluster, says READY, then runs a slow query to the end.
SLOW = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import psycopg
    from loader.environment.cluster import running_cluster
    with running_cluster(Path(sys.argv[1])) as connection:
        with psycopg.connect(connection.conninfo()) as conn:
            print("READY", flush=True)
            conn.execute("select pg_sleep(4)")
            print("DONE", flush=True)
    """
)
# The second command: uses the cluster briefly and ends.
QUICK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import psycopg
    from loader.environment.cluster import running_cluster
    with running_cluster(Path(sys.argv[1])) as connection:
        with psycopg.connect(connection.conninfo()) as conn:
            print(conn.execute("select 41 + 1").fetchone()[0], flush=True)
    """
)


def python(code: str, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_command_reuses_the_live_server_and_leaves_it_running(tmp_path):
    data_dir = tmp_path / "pgdata"
    first = python(SLOW, data_dir)
    assert first.stdout.readline().strip() == "READY", first.stderr.read()
    [server] = postgres_pids(data_dir)
    second = python(QUICK, data_dir)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert out.strip() == "42"
    assert postgres_pids(data_dir) == [server], "the owner's server is still the one running"
    rest, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert rest.strip() == "DONE", "the first command's query was not cut off"
    assert postgres_pids(data_dir) == [], "the owner stopped its server when it ended"


def test_a_server_whose_owner_died_is_stale_and_replaced(tmp_path):
    data_dir = tmp_path / "pgdata"
    first = python(SLOW, data_dir)
    assert first.stdout.readline().strip() == "READY"
    first.kill()
    first.wait(30)
    with running_cluster(data_dir) as connection:
        import psycopg

        with psycopg.connect(connection.conninfo()) as conn:
            assert conn.execute("select 1").fetchone()[0] == 1
    assert postgres_pids(data_dir) == []
