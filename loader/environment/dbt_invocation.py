"""Runs dbt in-process through its programmatic runner."""

from __future__ import annotations

from dataclasses import dataclass

from loader.environment.warehouse import ProjectOptions

# The production build (selectors.yml): every model, seed and guarding data test; the unit
# tests and the `weekly` data-quality tests are left to CI and the weekly run.
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


def run_dbt(options: ProjectOptions, args: list[str], *, quiet: bool = False) -> DbtOutcome:
    """`args` is a dbt command line without the project/profiles/target options (we add them)."""
    from dbt.cli.main import dbtRunner

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
    return DbtOutcome(
        success=bool(result.success),
        invocation_id=invocation_id,
        error=error,
        failures=_failure_messages(result.result),
    )


def _failure_messages(execution_result: object) -> tuple[str, ...]:
    """The messages of failed nodes in a run/build/test result; nothing for other commands."""
    messages = []
    for node_result in getattr(execution_result, "results", None) or ():
        status = str(getattr(node_result, "status", "")).lower()
        if status in _FAILED_STATUSES and getattr(node_result, "message", None):
            messages.append(str(node_result.message))
    return tuple(messages)
