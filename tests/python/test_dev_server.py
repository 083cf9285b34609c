"""`make dev`: the dev database keeps running, and plain dbt finds it with nothing exported.

Real processes on a copy of the project (its own `.mips/`, never the checkout's), run the way
an analytics engineer runs them: `mips-loader` and `dbt` of .venv/bin, in the project
directory, with none of the variables the test session or a shell might have set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from loader.environment.cluster import ClusterConnection, running_cluster, socket_dir_for
from loader.environment.warehouse import ProjectOptions, render_target
from tests.support.model_scenarios import PROJECT_DIR, copy_project
from tests.support.processes import postgres_pids

BIN = Path(sys.executable).parent
# What would tie a command to the test session's cluster rather than the clone's own.
SESSION_VARIABLES = (
    "MIPS_HOME",
    "MIPS_PG_SOCKET_DIR",
    "MIPS_DEV_SCHEMA",
    "DBT_PROFILES_DIR",
    "DBT_PROJECT_DIR",
    "DBT_TARGET_PATH",
    "DBT_LOG_PATH",
    "XDG_RUNTIME_DIR",
)


def plain_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in SESSION_VARIABLES}
    return {**environment, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **extra}


def run(project: Path, program: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / program), *args],
        cwd=project,
        env=plain_environment(**extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


def new_clone(directory: Path) -> Path:
    """The project as a fresh clone has it after `make setup`: profiles.yml in its root."""
    project = copy_project(directory.resolve())
    shutil.copy(PROJECT_DIR / "profiles.example.yml", project / "profiles.yml")
    return project


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    project = new_clone(tmp_path_factory.mktemp("clone") / "project")
    yield project
    run(project, "mips-loader", "dev", "stop")  # whatever a failed test left running


@pytest.fixture(scope="module")
def started(clone) -> str:
    """`make dev` on the clone (small data: the build is the point, not its size)."""
    done = run(clone, "mips-loader", "dev", "start", "--scale", "0.02")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def data_dir(project: Path) -> Path:
    return project / ".mips" / "pgdata"


def test_dev_start_leaves_a_server_that_plain_dbt_reaches(clone, started):
    socket_dir = socket_dir_for(data_dir(clone))
    assert f"-h {socket_dir} -p 5432 -U postgres mips" in started
    assert "dbt show --select mips_export_v1 --limit 3" in started
    assert "Warning" not in started, "the shipped profile finds the server"
    assert len(postgres_pids(data_dir(clone))) == 1, "`dev start` ended, its server runs on"
    debug = run(clone, "dbt", "debug")
    assert debug.returncode == 0, debug.stdout
    assert f"host: {socket_dir}" in debug.stdout and "All checks passed" in debug.stdout


def test_a_mips_loader_command_meanwhile_uses_the_server_and_leaves_it_running(clone, started):
    [server] = postgres_pids(data_dir(clone))
    plan = run(clone, "mips-loader", "plan")  # exit 0: `dev start`'s build passes the gate
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert postgres_pids(data_dir(clone)) == [server]
    second = run(clone, "mips-loader", "dev", "serve")
    assert second.returncode == 1 and "runs already" in second.stderr
    assert postgres_pids(data_dir(clone)) == [server]


def test_plain_dbt_and_mips_loader_dbt_keep_each_others_partial_parse(clone, started):
    """The profile renders alike under both (the loader exports nothing that changes it), so
    switching between them never reparses the whole project: plain dbt after the loader's
    (`dev start`'s build), the loader's after plain dbt."""
    plain = run(clone, "dbt", "parse", "--log-level", "debug")
    assert plain.returncode == 0, plain.stdout
    assert "Unable to do partial parsing" not in plain.stdout, "after `dev start`'s build"
    assert "Partial parsing enabled, no changes found" in plain.stdout
    loader = run(clone, "mips-loader", "dbt", "parse", "--log-level", "debug")
    assert loader.returncode == 0, loader.stdout + loader.stderr
    assert "Unable to do partial parsing" not in loader.stdout
    assert "Partial parsing enabled, no changes found" in loader.stdout


def test_two_clones_have_two_servers(clone, started, tmp_path, monkeypatch):
    """Another clone (here with MIPS_HOME set) runs its own server beside the dev server, on
    its own socket; each clone's profile leads to its own; its `dev stop` stops nothing."""
    other = new_clone(tmp_path / "other")
    home = (tmp_path / "other-home").resolve()
    [server] = postgres_pids(data_dir(clone))
    with running_cluster(home / "pgdata") as connection:
        assert connection.socket_dir == socket_dir_for(home / "pgdata")
        assert connection.socket_dir != socket_dir_for(data_dir(clone))
        os.environ.pop("MIPS_PG_SOCKET_DIR")  # the block's export (it puts back what was)
        for project, mips_home, expected in ((clone, None, data_dir(clone)), (other, home, None)):
            if mips_home is None:
                monkeypatch.delenv("MIPS_HOME", raising=False)
            else:
                monkeypatch.setenv("MIPS_HOME", str(mips_home))
            host = render_target(ProjectOptions(project, project, None)).settings["host"]
            conninfo = ClusterConnection(socket_dir=Path(host)).conninfo()
            with psycopg.connect(conninfo) as conn:
                served = conn.execute("show data_directory").fetchone()[0]
            assert Path(served) == (expected or home / "pgdata")
        for command in ("status", "stop"):
            done = run(other, "mips-loader", "dev", command, MIPS_HOME=str(home))
            assert "No dev database runs" in done.stdout, done.stdout + done.stderr
        assert postgres_pids(data_dir(clone)) == [server]
        assert len(postgres_pids(home / "pgdata")) == 1


def test_dev_stop_leaves_no_postgres_and_plain_dbt_then_names_make_dev(clone, started):
    stop = run(clone, "mips-loader", "dev", "stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "Stopped the dev database" in stop.stdout
    assert postgres_pids(data_dir(clone)) == []
    assert not socket_dir_for(data_dir(clone)).exists()
    debug = run(clone, "dbt", "debug")
    assert debug.returncode != 0
    assert "-start-with-make-dev/.s.PGSQL.5432" in debug.stdout, "dbt's own error says it"
    status = run(clone, "mips-loader", "dev", "status")
    assert status.returncode == 1 and "start it with `make dev`" in status.stdout
