"""The one place that turns dbt's project/profiles/target options into a warehouse connection.

The loader reads the same `profiles.yml` as dbt, so credentials live in one place. The target
named `dev` is the embedded PostgreSQL: opening it starts the cluster for the duration of the
`with` block (and exports its socket dir so dbt's `dev` target finds it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loader.cluster import default_data_dir, running_cluster

PROFILE_NAME = "healthmonix_mips"
EMBEDDED_TARGET = "dev"


class WarehouseConfigError(Exception):
    """The project, profile or target is unusable; the message says which and why."""


@dataclass(frozen=True)
class ProjectOptions:
    """The options the loader shares with dbt's command line."""

    project_dir: Path
    profiles_dir: Path | None = None
    target: str | None = None

    def resolved_profiles_dir(self) -> Path:
        if self.profiles_dir is not None:
            return self.profiles_dir
        if os.environ.get("DBT_PROFILES_DIR"):
            return Path(os.environ["DBT_PROFILES_DIR"])
        if (self.project_dir / "profiles.yml").exists():
            return self.project_dir
        return Path.home() / ".dbt"

    def dbt_args(self) -> list[str]:
        args = ["--project-dir", str(self.project_dir)]
        args += ["--profiles-dir", str(self.resolved_profiles_dir())]
        if self.target:
            args += ["--target", self.target]
        return args


@dataclass(frozen=True)
class Warehouse:
    """A rendered dbt target: its engine type and settings (secrets included: never log it)."""

    target_name: str
    adapter_type: str
    settings: dict[str, Any] = field(repr=False)

    @property
    def schema(self) -> str:
        return str(self.settings["schema"])

    def postgres_conninfo(self) -> dict[str, Any]:
        if self.adapter_type != "postgres":
            raise WarehouseConfigError(
                f"target '{self.target_name}' is {self.adapter_type}, not postgres"
            )
        s = self.settings
        conninfo: dict[str, Any] = {
            "host": s["host"],
            "port": int(s.get("port", 5432)),
            "user": s["user"],
            "dbname": s.get("dbname") or s.get("database"),
            "application_name": "mips-loader",
        }
        if s.get("password"):
            conninfo["password"] = s["password"]
        if s.get("sslmode"):
            conninfo["sslmode"] = s["sslmode"]
        return conninfo

    def connect(self, **kwargs: Any):
        import psycopg

        return psycopg.connect(**self.postgres_conninfo(), **kwargs)


def _read_raw_profile(options: ProjectOptions) -> dict[str, Any]:
    from dbt.config.profile import read_profile

    profiles_dir = options.resolved_profiles_dir()
    if not (profiles_dir / "profiles.yml").exists():
        raise WarehouseConfigError(
            f"no profiles.yml in {profiles_dir}: copy profiles.example.yml there "
            "(`make` does it for you) or pass --profiles-dir"
        )
    raw = read_profile(str(profiles_dir))
    if PROFILE_NAME not in raw:
        raise WarehouseConfigError(
            f"profile '{PROFILE_NAME}' not found in {profiles_dir}/profiles.yml"
        )
    return raw[PROFILE_NAME]


def target_name(options: ProjectOptions) -> str:
    if options.target:
        return options.target
    raw = _read_raw_profile(options)
    return str(raw.get("target", "default"))


def render_target(options: ProjectOptions) -> Warehouse:
    from dbt.config.profile import Profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context
    from dbt_common.exceptions import DbtBaseException

    raw = _read_raw_profile(options)
    set_invocation_context(dict(os.environ))  # dbt's env_var() reads from this context
    try:
        name, data = Profile.render_profile(raw, PROFILE_NAME, options.target, ProfileRenderer({}))
    except DbtBaseException as exc:
        raise WarehouseConfigError(f"target '{options.target}': {exc}") from None
    return Warehouse(target_name=name, adapter_type=str(data.get("type")), settings=data)


def uses_embedded_cluster(options: ProjectOptions) -> bool:
    return target_name(options) == EMBEDDED_TARGET


@contextlib.contextmanager
def open_warehouse(options: ProjectOptions) -> Iterator[Warehouse]:
    """Render the target; for the embedded target, keep the cluster up while the block runs."""
    if uses_embedded_cluster(options):
        with running_cluster(default_data_dir(options.project_dir)):
            yield render_target(options)
    else:
        yield render_target(options)
