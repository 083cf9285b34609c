"""The two builds of a diff: base and head, each into its own schema over the same sources.

Each side is a `dbt build` of what the comparison reads (`mips_export` and `mips_deliveries`
with everything upstream, seeds included), so the configuration check
(`int_configuration_errors`, which stops a real delivery) and the marts' contracts and
primary keys still run; data tests and unit tests do not (they test the data and the models,
which `dbt build` and `make test` do; here they would triple the time). Each side has its
own dbt target and log directories, so neither touches the working tree's `target/`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.environment.dbt_invocation import run_dbt
from loader.environment.warehouse import ProjectOptions
from loader.errors import EXIT_USAGE, MipsError

BUILD_SELECTION = (
    "--select", "+mips_export", "+mips_deliveries",
    "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test",
)  # fmt: skip


class DiffError(MipsError):
    """Anything that stops a diff: the answer is then neither "same" nor "different"."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Side:
    """One side of the diff: which project directory is built, into which schema."""

    name: str  # "base" or "head"
    label: str  # what the report calls it: "base main (1a2b3c4)", "head (working tree)"
    options: ProjectOptions
    schema: str
    work_dir: Path  # dbt's target/ and logs/ of this side


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def build_side(side: Side, schema_variable: str, dbt_vars: dict) -> None:
    """Build the side into its schema (the profile reads it from `schema_variable`); a failed
    build is one line naming the side and the first failing node's message."""
    args = [
        "build",
        *BUILD_SELECTION,
        "--vars", json.dumps(dbt_vars),
        "--target-path", str(side.work_dir / "target"),
        "--log-path", str(side.work_dir / "logs"),
        # dbt's own lines would mix with the report on stdout; the log file keeps them
        "--log-level", "none", "--log-level-file", "debug",
    ]  # fmt: skip
    with _environment(schema_variable, side.schema):
        outcome = run_dbt(side.options, args, quiet=True)
    if not outcome.success:
        reason = (outcome.failures or (outcome.error or "see the dbt log",))[0]
        raise DiffError(
            f"{side.label} build failed: {' '.join(reason.split())} "
            f"(log: {side.work_dir / 'logs' / 'dbt.log'})"
        )
