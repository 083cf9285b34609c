"""`mips-loader dev`: this clone's dev database, for analytics engineers who work in plain dbt.

`dev start` (`make dev`) starts the dev server (loader/environment/dev_server.py) unless it
runs, fills the source schema with the demo's synthetic data when it has none, runs the daily
build and says how to connect. From then on plain `dbt`, in any shell in the project, finds
the server with nothing exported: the `dev` target's socket dir is named after the data dir
beside profiles.yml, as the cluster names it (profiles.example.yml). `dev stop`
(`make dev-stop`) stops it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from loader.environment import dev_server
from loader.environment.cluster import (
    ClusterConnection,
    binary_dir,
    default_data_dir,
    socket_dir_for,
)
from loader.environment.dbt_invocation import DAILY_BUILD, dbt_log_file, run_dbt
from loader.environment.synthetic import generate, has_source_data
from loader.environment.warehouse import (
    EMBEDDED_TARGET,
    ProjectOptions,
    WarehouseConfigError,
    open_warehouse,
    render_target,
    target_name,
)

# The source schema dbt reads by default (var `app_schema`), as in the demo.
APP_SCHEMA = "app"


def data_dir_of(options: ProjectOptions) -> Path:
    return default_data_dir(options.project_dir).resolve()


def start(options: ProjectOptions, *, scale: float, seed: int, echo: Callable[[str], None]) -> bool:
    """`make dev`. True when the daily build succeeded; the server runs on either way, so a
    rule can be fixed and built again."""
    _check_default_target(options)
    data_dir = data_dir_of(options)
    running = dev_server.find(data_dir)
    if running is not None:
        echo(f"The dev database runs already (pid {running.pid}).")
    else:
        echo(f"Starting the dev database: PostgreSQL 18 on {_shown(data_dir, options)}")
        dev_server.start_in_background(options.project_dir, data_dir)
    # before open_warehouse, which exports MIPS_PG_SOCKET_DIR: what plain dbt will render
    mismatch = _profile_mismatch(options, data_dir)
    with open_warehouse(options) as warehouse:  # a guest of the dev server, like any command
        with warehouse.session(autocommit=True) as conn:
            if has_source_data(conn, APP_SCHEMA):
                echo(f"Source schema {APP_SCHEMA} has data: kept.")
            else:
                echo(
                    f"Filling source schema {APP_SCHEMA} with the demo's synthetic data "
                    f"(scale {scale:g}, seed {seed})"
                )
                counts = generate(
                    conn, seed=seed, scale=scale, app_schema=APP_SCHEMA, forms_schema=APP_SCHEMA
                )
                echo("    " + ", ".join(f"{table} {rows:,}" for table, rows in counts.items()))
        echo(f"dbt {' '.join(DAILY_BUILD)}")
        # dbt's node lines go to its log only; errors still reach the terminal
        outcome = run_dbt(options, list(DAILY_BUILD), quiet=True)
        echo(f"    {outcome.summary()}  (every node: {dbt_log_file(options.project_dir)})")
        for line in outcome.warning_lines():
            echo(f"    {line}")
        if not outcome.success:
            echo(f"    the build failed: {outcome.error or 'see the output above'}")
        schema = warehouse.schema
    if dev_server.find(data_dir) is None:
        raise dev_server.DevServerError(
            f"the dev server stopped meanwhile; see {dev_server.log_path(data_dir)}"
        )
    echo("")
    echo(connection_help(options, schema, mismatch))
    return outcome.success


def stop(options: ProjectOptions, echo: Callable[[str], None]) -> None:
    data_dir = data_dir_of(options)
    pid = dev_server.stop(data_dir, echo)
    if pid is None:
        echo(f"No dev database runs for {_shown(data_dir, options)}.")
    else:
        echo(
            f"Stopped the dev database (pid {pid}); its data stays in {_shown(data_dir, options)}."
        )


def status(options: ProjectOptions, echo: Callable[[str], None]) -> bool:
    """True when the dev server runs (and how to connect is printed)."""
    data_dir = data_dir_of(options)
    running = dev_server.find(data_dir)
    if running is None:
        echo(f"No dev database runs for {_shown(data_dir, options)}; start it with `make dev`.")
        return False
    state = "runs" if running.serving else "is starting"
    echo(f"The dev database {state} (pid {running.pid}).")
    echo(connection_help(options, render_target(_dev(options)).schema, None))
    return True


def serve(options: ProjectOptions, echo: Callable[[str], None]) -> None:
    dev_server.serve(data_dir_of(options), echo)


def connection_help(options: ProjectOptions, schema: str, mismatch: str | None) -> str:
    connection = ClusterConnection(socket_dir=socket_dir_for(data_dir_of(options)))
    where = connection.socket_dir
    psql = "psql" if shutil.which("psql") else _shown(binary_dir() / "psql", options)
    lines = [
        "The dev database runs until `make dev-stop` (its data stays in .mips/ between runs).",
        f"  psql:    {psql} -h {where} -p {connection.port} -U {connection.user} "
        f"{connection.dbname}",
        f"  an IDE:  host {where} (a unix-socket directory),",
        f"           port {connection.port}, user {connection.user}, no password, database "
        f"{connection.dbname};",
        f"           the models are in schema {schema}, the sources in schema {APP_SCHEMA}",
        "Plain dbt uses it on the default target, in any shell in the project (with .venv/bin",
        "on the PATH: `. .venv/bin/activate`):",
        "  dbt build -s int_visits_dated+               a model and everything after it",
        "  dbt show --select mips_export_v1 --limit 3   rows of the export",
        "  mips-loader diff                             what your change does to the files",
        "docs/README.md says where to read on.",
    ]
    if mismatch:
        lines += ["", f"Warning: {mismatch}"]
    return "\n".join(lines)


def _dev(options: ProjectOptions) -> ProjectOptions:
    return ProjectOptions(options.project_dir, options.profiles_dir, EMBEDDED_TARGET)


def _check_default_target(options: ProjectOptions) -> None:
    """Plain dbt uses the profile's default target: the dev database serves `dev` only."""
    name = target_name(options)
    if name != EMBEDDED_TARGET:
        raise WarehouseConfigError(
            f"the default target of profile healthmonix_mips is '{name}', so plain dbt would "
            f"not use the dev database: set `target: {EMBEDDED_TARGET}` in "
            f"{options.resolved_profiles_dir() / 'profiles.yml'}"
        )


def _profile_mismatch(options: ProjectOptions, data_dir: Path) -> str | None:
    """Why plain dbt would not reach this server (a profiles.yml copied before the dev target
    named its socket dir, MIPS_PG_SOCKET_DIR left exported, a relative MIPS_HOME), or None."""
    host = str(render_target(_dev(options)).settings.get("host"))
    wanted = str(socket_dir_for(data_dir))
    if host == wanted:
        return None
    profile = options.resolved_profiles_dir() / "profiles.yml"
    if os.environ.get("MIPS_PG_SOCKET_DIR"):
        because = "MIPS_PG_SOCKET_DIR is set in this shell: unset it"
    elif _dev_host(profile) != _dev_host(options.project_dir / "profiles.example.yml"):
        because = f"the dev target of {profile} is not profiles.example.yml's: copy that over it"
    else:
        because = (
            "the profile finds the server when profiles.yml sits in the project root and "
            "MIPS_HOME, if set, is an absolute path"
        )
    return f"plain dbt will look for the server in {host}, not {wanted}; {because}."


def _dev_host(profile: Path) -> object:
    import yaml

    try:
        raw = yaml.safe_load(profile.read_text()) or {}
        return raw["healthmonix_mips"]["outputs"][EMBEDDED_TARGET]["host"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def _shown(path: Path, options: ProjectOptions) -> str:
    """A path inside the project as a relative one (shorter to read and to paste)."""
    try:
        return str(path.relative_to(options.project_dir))
    except ValueError:
        return str(path)
