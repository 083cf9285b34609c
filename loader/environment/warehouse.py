"""The one place that turns dbt's project/profiles/target options into a warehouse connection.

The loader reads the same `profiles.yml` as dbt, so credentials live in one place. The target
named `dev` is the embedded PostgreSQL: opening it starts the cluster for the duration of the
`with` block, or joins the one running (the dev server of `make dev`, another command).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loader.environment.cluster import default_data_dir, running_cluster
from loader.errors import (
    ConfigurationError,
    MipsError,
    TerminalError,
    TransientError,
    UnreachableError,
)

PROFILE_NAME = "healthmonix_mips"
EMBEDDED_TARGET = "dev"


class WarehouseConfigError(ConfigurationError):
    """The project, profile or target is unusable; the message says which and why."""


class WarehouseUnavailable(UnreachableError):
    """The PostgreSQL server could not be reached (refused, timed out, name not resolved, a
    socket that is not there): where it was looked for and the server's one-line reason."""


class WarehouseAccessDenied(ConfigurationError):
    """The server answered but refused us: a bad password or role, a missing database, a
    privilege we lack. The profile (or the grants) must change: a configuration error, as a
    store refusing its credentials is."""


class WarehouseConnectionLost(TransientError):
    """The connection broke while in use (the server went away, restarted, or shed load), or
    the statement lost a race it may win next time (a deadlock, a serialization failure)."""


class WarehouseQueryError(TerminalError):
    """A statement the server refused for a reason retrying will not change."""


# libpq's words for a server that answered and said no (libpq gives no SQLSTATE for a failed
# connection): retrying will not help. Anything else (refused, timed out, starting up, too
# many clients) may pass.
_REFUSALS = re.compile(
    r"authentication failed|no pg_hba\.conf entry|role \".*\" does not exist|"
    r"database \".*\" does not exist|permission denied|no password supplied|"
    r"certificate|SSL (?:is )?(?:not )?(?:required|supported)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ProjectOptions:
    """The options the loader shares with dbt's command line."""

    project_dir: Path
    profiles_dir: Path | None = None
    target: str | None = None

    def resolved_profiles_dir(self) -> Path:
        """Where dbt finds profiles.yml, as an absolute path: the profile renders it
        (`flags.PROFILES_DIR`), so dbt run by the loader and plain dbt must see the same."""
        if self.profiles_dir is not None:
            return self.profiles_dir.resolve()
        if os.environ.get("DBT_PROFILES_DIR"):
            return Path(os.environ["DBT_PROFILES_DIR"]).resolve()
        if (self.project_dir / "profiles.yml").exists():
            return self.project_dir.resolve()
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
        missing = [key for key in ("host", "user") if not s.get(key)]
        if not (s.get("dbname") or s.get("database")):
            missing.append("dbname")
        if missing:
            raise WarehouseConfigError(f"target '{self.target_name}' has no {', '.join(missing)}")
        try:
            port = int(s.get("port", 5432))
        except (TypeError, ValueError):
            raise WarehouseConfigError(
                f"target '{self.target_name}': port {s.get('port')!r} is not a number"
            ) from None
        conninfo: dict[str, Any] = {
            "host": s["host"],
            "port": port,
            "user": s["user"],
            "dbname": s.get("dbname") or s.get("database"),
            "application_name": "mips-loader",
        }
        if s.get("password"):
            conninfo["password"] = s["password"]
        if s.get("sslmode"):
            conninfo["sslmode"] = s["sslmode"]
        return conninfo

    def describe(self) -> str:
        """Where the target's server is, without credentials: host:port or the socket dir."""
        conninfo = self.postgres_conninfo()
        host = str(conninfo["host"])
        where = (
            f"socket dir {host} (port {conninfo['port']})"
            if host.startswith("/")
            else f"{host}:{conninfo['port']}"
        )
        return f"{where}, database {conninfo['dbname']}"

    def connect(self, **kwargs: Any):
        """A psycopg connection; an unreachable server is `WarehouseUnavailable`, a refusal
        (authentication, missing database) `WarehouseAccessDenied`, each one safe line."""
        import psycopg

        conninfo = self.postgres_conninfo()
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        try:
            return psycopg.connect(**conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            reason = _connection_failure_reason(exc, conninfo.get("password"))
            where = f"warehouse target '{self.target_name}' at {self.describe()}"
            if _REFUSALS.search(reason):
                raise WarehouseAccessDenied(f"{where} refused the connection: {reason}") from exc
            raise WarehouseUnavailable(f"{where} is unavailable: {reason}") from exc

    @contextlib.contextmanager
    def session(self, **kwargs: Any) -> Iterator[Any]:
        """`connect()` for the `with` block (closed after it), in which a psycopg error is
        the MipsError of its kind (`warehouse_error`)."""
        with self.connect(**kwargs) as conn, warehouse_errors():
            yield conn


CONNECT_TIMEOUT_S = 10

# SQLSTATE classes and codes of a statement that may pass next time: connection exceptions
# (08), the server shutting down or not yet up (57P01-57P03), insufficient resources (53),
# a transaction rolled back for a race (40), a lock not available (55P03).
_LOST_STATES = ("08", "57P01", "57P02", "57P03", "53", "40", "55P03")
# The server refusing us: authorization (28), a privilege we lack (42501), no such database.
_REFUSED_STATES = ("28", "42501", "3D000")


def warehouse_error(exc: Exception) -> MipsError:
    """A psycopg error as the MipsError of its kind, one line: the connection lost (or a race
    lost) is transient, a refusal is configuration, anything else terminal."""
    import psycopg

    first_line = " ".join((str(exc).strip().splitlines() or [""])[0].split())
    detail = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    state = getattr(exc, "sqlstate", None) or ""
    # no SQLSTATE: libpq's own failure, the connection itself
    lost = not state and isinstance(exc, psycopg.OperationalError)
    if lost or state.startswith(_LOST_STATES):
        return WarehouseConnectionLost(f"warehouse connection failed: {detail}")
    if state.startswith(_REFUSED_STATES):
        return WarehouseAccessDenied(f"warehouse refused: {detail}")
    return WarehouseQueryError(f"warehouse query failed: {detail}")


@contextlib.contextmanager
def warehouse_errors() -> Iterator[None]:
    """A psycopg error raised in the `with` block leaves it as `warehouse_error`'s."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise warehouse_error(exc) from exc


def _connection_failure_reason(exc: Exception, password: str | None) -> str:
    """libpq's first line without its `connection to server at … failed:` preamble."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if " failed: " in reason:
        reason = reason.rsplit(" failed: ", 1)[1]
    reason = " ".join(reason.split())
    if password:
        reason = reason.replace(str(password), "***")
    return reason or type(exc).__name__


def _read_raw_profile(options: ProjectOptions) -> dict[str, Any]:
    import yaml

    profiles_dir = options.resolved_profiles_dir()
    path = profiles_dir / "profiles.yml"
    if not path.exists():
        raise WarehouseConfigError(
            f"no profiles.yml in {profiles_dir}: copy profiles.example.yml there "
            "(`make` does it for you) or pass --profiles-dir"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise WarehouseConfigError(f"{path} is not valid YAML: {exc}") from None
    if PROFILE_NAME not in raw:
        raise WarehouseConfigError(f"profile '{PROFILE_NAME}' not in {profiles_dir}/profiles.yml")
    return raw[PROFILE_NAME]


def target_name(options: ProjectOptions) -> str:
    if options.target:
        return options.target
    raw = _read_raw_profile(options)
    renderer = _ProfileRenderer(options.resolved_profiles_dir())
    return str(renderer.render(raw.get("target", "default"), "target"))


class _ProfileRenderer:
    """Renders profile values the way dbt does, without importing dbt (~60 MiB the loader
    does not need): `env_var(name[, default])`, `local_md5(text)`, `flags.PROFILES_DIR` (the
    dev target's socket dir is derived from it) and the filters `as_number`, `as_bool`,
    `as_native`, `as_text`. A value that is a single `{{ … }}` keeps the type its filters
    give (a port stays a number); anything else renders to text."""

    _SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)

    def __init__(self, profiles_dir: Path) -> None:
        import types

        import jinja2

        self.env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
        self.env.globals["env_var"] = self._env_var
        self.env.globals["local_md5"] = _local_md5
        self.env.globals["flags"] = types.SimpleNamespace(PROFILES_DIR=str(profiles_dir))
        self.env.filters.update(
            as_number=_as_number, as_bool=_as_bool, as_native=_as_native, as_text=str
        )
        self._key = ""

    def _env_var(self, name: str, default: str | None = None) -> str:
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise WarehouseConfigError(f"{self._key}: environment variable {name} is not set")

    def render(self, value: Any, key: str) -> Any:
        import jinja2

        if isinstance(value, dict):
            return {k: self.render(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return value
        self._key = key
        try:
            single = self._SINGLE_EXPRESSION.match(value)
            if single and "}}" not in single.group(1):
                return self.env.compile_expression(single.group(1))()
            return self.env.from_string(value).render()
        except jinja2.TemplateError as exc:
            raise WarehouseConfigError(f"{key}: cannot render {value!r}: {exc}") from None


def _local_md5(value: str) -> str:
    return hashlib.md5(str(value).encode("utf-8"), usedforsecurity=False).hexdigest()


def _as_number(value: Any) -> int | float:
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _as_bool(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _as_native(value: Any) -> Any:
    import ast

    try:
        return ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        return value


def render_target(options: ProjectOptions) -> Warehouse:
    raw = _read_raw_profile(options)
    name = options.target or target_name(options)
    outputs = raw.get("outputs") or {}
    if name not in outputs:
        raise WarehouseConfigError(
            f"target '{name}' is not in profile '{PROFILE_NAME}' "
            f"(it has: {', '.join(sorted(outputs)) or 'none'})"
        )
    renderer = _ProfileRenderer(options.resolved_profiles_dir())
    data = renderer.render(outputs[name], f"{PROFILE_NAME}.outputs.{name}")
    return Warehouse(target_name=name, adapter_type=str(data.get("type")), settings=data)


# `schema: "{{ env_var('MIPS_DEV_SCHEMA', 'analytics') }}"`: where a target's schema comes from.
_SCHEMA_VARIABLE = re.compile(r"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")


def schema_variable(options: ProjectOptions) -> str:
    """The environment variable the target's `schema` comes from (`MIPS_DEV_SCHEMA` for `dev`,
    `MIPS_PG_SCHEMA` for `postgres` in the example profile): setting it is how the project
    is built into another schema with the same profile (tests and `diff` do so)."""
    name = target_name(options)
    output = (_read_raw_profile(options).get("outputs") or {}).get(name) or {}
    match = _SCHEMA_VARIABLE.search(str(output.get("schema") or ""))
    if not match:
        raise WarehouseConfigError(
            f"target '{name}' has a fixed schema; give it one read from the environment, "
            "as profiles.example.yml does: schema: \"{{ env_var('MIPS_PG_SCHEMA', 'analytics') }}\""
        )
    return match.group(1)


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
