"""Runs dbt in-process through its programmatic runner."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from loader.environment.warehouse import ProjectOptions

# The production build (selectors.yml): every model, seed and guarding data test; the unit
# tests and the `weekly` tests (data-quality looks, repeated key tests) are left to CI and the
# weekly run.
DAILY_BUILD = ("build", "--selector", "daily")

# Node statuses that make a dbt command fail (a test with severity warn reports "warn").
_FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})


@dataclass(frozen=True)
class DbtOutcome:
    success: bool
    invocation_id: str | None
    error: str | None
    # What each failed node said (e.g. "MIPS configuration is invalid ..."), in run order.
    failures: tuple[str, ...] = ()
    # Nodes by status ("success", "pass", "warn", "error", ...), and the warned nodes' names.
    statuses: tuple[tuple[str, int], ...] = ()
    warned: tuple[str, ...] = ()
    # What each warned node means: (name, rows it found, its description in the project).
    warnings: tuple[tuple[str, int | None, str], ...] = ()

    def warning_lines(self) -> list[str]:
        """One line per warned node: its name, the rows it found and what it means (the
        description the project gives it), for a terminal."""
        lines = []
        for name, rows, description in self.warnings:
            found = "" if rows is None else f" ({rows} row{'s' * (rows != 1)})"
            meaning = " ".join(description.split())
            if meaning.lower().startswith("warning: "):  # the line says so already
                meaning = meaning[len("warning: ") :]
            lines.append(f"warning: {name}{found}" + (f": {meaning}" if meaning else ""))
        return lines

    def summary(self) -> str:
        """dbt's end-of-run counts as one line, as dbt prints them:
        `PASS=120 WARN=2 ERROR=0 SKIP=0 NO-OP=1 TOTAL=123` (an exposure is a no-op)."""
        counts = dict(self.statuses)
        passed = counts.get("success", 0) + counts.get("pass", 0)
        failed = sum(counts.get(status, 0) for status in _FAILED_STATUSES)
        return (
            f"PASS={passed} WARN={counts.get('warn', 0)} ERROR={failed} "
            f"SKIP={counts.get('skipped', 0)} NO-OP={counts.get('no-op', 0)} "
            f"TOTAL={sum(counts.values())}"
        )


def dbt_log_file(project_dir: Path) -> Path:
    """Where dbt writes every node's line (`DBT_LOG_PATH`, default `<project>/logs`)."""
    return Path(os.environ.get("DBT_LOG_PATH") or project_dir / "logs") / "dbt.log"


def run_dbt(options: ProjectOptions, args: list[str], *, quiet: bool = False) -> DbtOutcome:
    """`args` is a dbt command line without the project/profiles/target options (we add them)."""
    from dbt.cli.main import dbtRunner

    _name_behavior_flags_cheaply()
    command = list(args) + options.dbt_args()
    if quiet:
        command = ["--quiet", *command]
    result = dbtRunner().invoke(command)
    invocation_id = None
    try:
        from dbt_common.invocation import get_invocation_id

        invocation_id = get_invocation_id()
    except ImportError:  # pragma: no cover - older dbt-common
        pass
    error = None if result.exception is None else str(result.exception)
    statuses: dict[str, int] = {}
    warned = []
    warnings = []
    for node_result in getattr(result.result, "results", None) or ():
        status = str(getattr(node_result, "status", "")).lower()
        statuses[status] = statuses.get(status, 0) + 1
        if status == "warn":
            node = getattr(node_result, "node", None)
            name = getattr(node, "name", "?")
            warned.append(name)
            rows = getattr(node_result, "failures", None)
            warnings.append((name, rows, getattr(node, "description", "") or ""))
    return DbtOutcome(
        success=bool(result.success),
        invocation_id=invocation_id,
        error=error,
        failures=_failure_messages(result.result),
        statuses=tuple(sorted(statuses.items())),
        warned=tuple(warned),
        warnings=tuple(warnings),
    )


def _name_behavior_flags_cheaply() -> None:
    """dbt-common names the module that declared a behavior flag without a `source` by walking
    `inspect.stack()`: that reads the source lines of every frame and, for a frame of a
    compiled Jinja template (no file), scans every loaded module: ≈ 50 ms per flag under a
    deep stack, several flags per command (8 s of a 97 s stretch of the test suite). The same
    name, from the frames' globals. Left alone if dbt-common no longer has the method."""
    try:
        from dbt_common import behavior_flags
    except ImportError:  # pragma: no cover - dbt-common is a dependency of dbt-core
        return
    rendered = getattr(behavior_flags, "BehaviorFlagRendered", None)
    if rendered is None or not hasattr(rendered, "_default_source"):
        return
    if getattr(rendered._default_source, "_mips_cheap", False):
        return

    def _default_source() -> str:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__")
            if name and name != behavior_flags.__name__:
                return name
            frame = frame.f_back
        return "Unknown"

    _default_source._mips_cheap = True
    _default_source.replaces = rendered.__dict__["_default_source"].__func__
    rendered._default_source = staticmethod(_default_source)


def _failure_messages(execution_result: object) -> tuple[str, ...]:
    """The messages of failed nodes in a run/build/test result; nothing for other commands."""
    messages = []
    for node_result in getattr(execution_result, "results", None) or ():
        status = str(getattr(node_result, "status", "")).lower()
        if status in _FAILED_STATUSES and getattr(node_result, "message", None):
            messages.append(str(node_result.message))
    return tuple(messages)
