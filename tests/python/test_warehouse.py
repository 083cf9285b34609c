"""The loader renders profiles.yml without dbt; it must agree with dbt's own rendering."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from loader.engines import open_engine
from loader.environment.cluster import socket_dir_for
from loader.environment.warehouse import (
    ProjectOptions,
    Warehouse,
    WarehouseAccessDenied,
    WarehouseConfigError,
    WarehouseConnectionLost,
    WarehouseQueryError,
    WarehouseUnavailable,
    render_target,
    warehouse_error,
)
from loader.errors import ConfigurationError, TerminalError, TransientError
from tests.support.model_scenarios import PROJECT_DIR

ENVIRONMENT = {
    "MIPS_PG_SOCKET_DIR": "/tmp/socket-dir",
    "MIPS_PG_HOST": "db.internal",
    "MIPS_PG_PORT": "6543",
    "MIPS_PG_USER": "0123",
    "MIPS_PG_PASSWORD": "s3cr3t",
    "MIPS_PG_DATABASE": "warehouse",
    "MIPS_ATHENA_S3_STAGING_DIR": "s3://results/staging/",
}


def dbt_rendering(profiles_dir, target: str) -> dict:
    from argparse import Namespace

    from dbt import flags
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    set_invocation_context(dict(os.environ))
    raw = read_profile(str(profiles_dir))["healthmonix_mips"]
    previous = flags.get_flags()
    # what dbt's command line sets: the profile reads flags.PROFILES_DIR
    flags.set_flags(Namespace(PROFILES_DIR=str(profiles_dir)))
    try:
        return Profile.render_profile(raw, "healthmonix_mips", target, ProfileRenderer({}))[1]
    finally:
        flags.set_flags(previous)


@pytest.mark.parametrize("target", ["dev", "postgres", "athena"])
def test_rendering_matches_dbt(tmp_path, monkeypatch, target):
    shutil.copy(PROJECT_DIR / "profiles.example.yml", tmp_path / "profiles.yml")
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MIPS_DEV_SCHEMA", raising=False)
    ours = render_target(ProjectOptions(PROJECT_DIR, tmp_path, target)).settings
    assert ours == dbt_rendering(tmp_path, target)
    if target == "postgres":
        assert ours["port"] == 6543 and ours["user"] == "0123"


@pytest.mark.parametrize("home", [None, "mips-home"])
def test_the_dev_target_finds_the_clusters_socket_by_itself(tmp_path, monkeypatch, home):
    """Nothing exported: the dev target's host is the socket dir of the data dir beside the
    profile (`.mips/pgdata`, or `$MIPS_HOME/pgdata`), rendered alike by dbt and the loader."""
    profiles_dir = tmp_path.resolve()
    shutil.copy(PROJECT_DIR / "profiles.example.yml", profiles_dir / "profiles.yml")
    monkeypatch.delenv("MIPS_PG_SOCKET_DIR", raising=False)
    monkeypatch.delenv("MIPS_DEV_SCHEMA", raising=False)
    if home is None:
        monkeypatch.delenv("MIPS_HOME", raising=False)
        data_dir = profiles_dir / ".mips" / "pgdata"
    else:
        monkeypatch.setenv("MIPS_HOME", str(profiles_dir / home))
        data_dir = profiles_dir / home / "pgdata"
    ours = render_target(ProjectOptions(PROJECT_DIR, profiles_dir, "dev")).settings
    assert ours == dbt_rendering(profiles_dir, "dev")
    assert ours["host"] == str(socket_dir_for(data_dir))
    assert ours["host"].endswith("-start-with-make-dev")
    assert len(ours["host"] + "/.s.PGSQL.5432") < 100, "a unix socket path must stay short"


def test_missing_variable_names_the_setting(tmp_path, monkeypatch):
    shutil.copy(PROJECT_DIR / "profiles.example.yml", tmp_path / "profiles.yml")
    monkeypatch.delenv("MIPS_PG_HOST", raising=False)
    with pytest.raises(WarehouseConfigError, match=r"outputs\.postgres\.host.*MIPS_PG_HOST"):
        render_target(ProjectOptions(PROJECT_DIR, tmp_path, "postgres"))


def test_the_export_path_does_not_import_dbt():
    code = (
        "import sys; import loader.cli, loader.run.export, loader.run.status; "
        "import loader.engines.postgres; "
        "print(any(m == 'dbt' or m.startswith('dbt.') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_target(tmp_path, monkeypatch, **environment) -> Warehouse:
    shutil.copy(PROJECT_DIR / "profiles.example.yml", tmp_path / "profiles.yml")
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return render_target(ProjectOptions(PROJECT_DIR, tmp_path, "postgres"))


def test_an_unreachable_warehouse_is_one_transient_line_without_the_password(tmp_path, monkeypatch):
    port = closed_port()
    warehouse = postgres_target(
        tmp_path,
        monkeypatch,
        MIPS_PG_HOST="127.0.0.1",
        MIPS_PG_PORT=str(port),
        MIPS_PG_USER="loader",
        MIPS_PG_PASSWORD="pw-Zq81-secret",
        MIPS_PG_DATABASE="warehouse",
    )
    with pytest.raises(WarehouseUnavailable) as caught:
        warehouse.connect()
    message = str(caught.value)
    assert isinstance(caught.value, TransientError)
    assert message == (
        f"warehouse target 'postgres' at 127.0.0.1:{port}, database warehouse is unavailable: "
        "Connection refused"
    )
    assert "\n" not in message and "pw-Zq81-secret" not in message


def test_a_missing_socket_names_the_socket_dir(tmp_path, monkeypatch):
    warehouse = postgres_target(
        tmp_path,
        monkeypatch,
        MIPS_PG_HOST=str(tmp_path / "no-server-here"),
        MIPS_PG_USER="postgres",
        MIPS_PG_DATABASE="mips",
    )
    with pytest.raises(WarehouseUnavailable, match=r"socket dir .*no-server-here \(port 5432\)"):
        warehouse.connect()


def test_a_server_that_refuses_is_terminal_not_transient(tmp_path, monkeypatch, cluster):
    warehouse = postgres_target(
        tmp_path,
        monkeypatch,
        MIPS_PG_HOST=str(cluster.socket_dir),
        MIPS_PG_USER="postgres",
        MIPS_PG_DATABASE="no_such_database",
    )
    with pytest.raises(WarehouseAccessDenied, match='database "no_such_database" does not exist'):
        warehouse.connect()
    monkeypatch.setenv("MIPS_PG_DATABASE", "mips")
    reachable = render_target(ProjectOptions(PROJECT_DIR, tmp_path, "postgres"))
    with reachable.connect() as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "mips"


def plan_json(tmp_path, monkeypatch, **environment) -> tuple[int, dict]:
    """`mips-loader plan --target postgres --json` with the MIPS_PG_* of `environment`."""
    from click.testing import CliRunner

    from loader.cli import cli

    postgres_target(tmp_path, monkeypatch, **environment)
    result = CliRunner().invoke(
        cli, ["plan", "--target", "postgres", "--profiles-dir", str(tmp_path), "--json"]
    )
    return result.exit_code, json.loads(result.stdout)


def test_the_same_warehouse_failures_are_the_same_kind_at_the_command_line(
    tmp_path, monkeypatch, cluster
):
    # nothing answers: unreachable, exit 1, as for a store that cannot be reached
    code, document = plan_json(
        tmp_path, monkeypatch, MIPS_PG_HOST="127.0.0.1", MIPS_PG_PORT=str(closed_port()),
        MIPS_PG_USER="loader", MIPS_PG_DATABASE="warehouse",
    )  # fmt: skip
    assert (code, document["error"]["kind"]) == (1, "unreachable"), document
    # the server refuses us (no such database): the profile is wrong, exit 2, as for a store
    # that refuses its credentials or names a bucket that is not there
    code, document = plan_json(
        tmp_path, monkeypatch, MIPS_PG_HOST=str(cluster.socket_dir), MIPS_PG_PORT="5432",
        MIPS_PG_USER="postgres", MIPS_PG_DATABASE="no_such_database",
    )  # fmt: skip
    assert (code, document["error"]["kind"]) == (2, "configuration"), document
    assert 'database "no_such_database" does not exist' in document["error"]["message"]


def test_psycopg_errors_are_classified_by_what_they_mean(db):
    with pytest.raises(Exception) as division:
        db.execute("select 1 / 0")
    error = warehouse_error(division.value)
    assert isinstance(error, WarehouseQueryError)
    assert (error.kind, error.exit_code) == ("terminal", 1)
    assert str(error) == "warehouse query failed: DivisionByZero: division by zero"
    db.execute("drop role if exists mips_no_rights")
    db.execute("create role mips_no_rights")
    try:
        db.execute("set role mips_no_rights")
        with pytest.raises(Exception) as denied:
            db.execute("create schema mips_not_allowed")
    finally:
        db.execute("reset role")
        db.execute("drop role mips_no_rights")
    error = warehouse_error(denied.value)
    assert isinstance(error, WarehouseAccessDenied) and error.exit_code == 2
    assert error.kind == "configuration"


def test_a_warehouse_connection_lost_under_the_engine_is_transient_not_a_traceback(
    models, db, project_options
):
    warehouse = render_target(project_options)
    with pytest.raises(WarehouseConnectionLost) as caught, open_engine(warehouse) as engine:
        db.execute("select pg_terminate_backend(%s)", (engine.conn.info.backend_pid,))
        with engine.published():
            pass
    assert str(caught.value).startswith("warehouse connection failed: ")
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, TransientError) and caught.value.kind == "transient"
    assert not isinstance(caught.value, TerminalError)


def test_profile_errors_stay_configuration_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigurationError):
        render_target(ProjectOptions(PROJECT_DIR, tmp_path, "postgres"))  # no profiles.yml
    assert issubclass(WarehouseConfigError, ConfigurationError)
