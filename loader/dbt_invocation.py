"""Runs dbt in-process through its programmatic runner."""

from __future__ import annotations

from dataclasses import dataclass

from loader.warehouse import ProjectOptions


@dataclass(frozen=True)
class DbtOutcome:
    success: bool
    invocation_id: str | None
    error: str | None


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
    return DbtOutcome(success=bool(result.success), invocation_id=invocation_id, error=error)
