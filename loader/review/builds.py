"""The two builds of a diff: base and head, each into its own schema over the same sources.

Each side is a `dbt build` of what the comparison reads (`mips_export` and `mips_deliveries`
with everything upstream, seeds included), so the configuration check
(`int_configuration_errors`, which stops a real delivery) and the marts' contracts and
primary keys still run; data tests and unit tests do not (they test the data and the models,
which `dbt build` and `make test` do; here they would triple the time). Each side has its
own dbt target and log directories, so neither touches the working tree's `target/`.

Once both are built, each side runs the data tests of what the change touches (`dbt test
--select state:modified+`, the other side's manifest as the state; `data_tests.py`): after
the build, not inside it, because a failing test inside `dbt build` skips every model after
it, and the report still shows what the change does to the files.
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
from loader.review.data_tests import SideTests, read_test_run

# What the comparison reads: these marts and everything upstream of them. Not
# mips_expected_years: the build then never publishes (it does not build every mart), and
# the comparison reads the tables it built.
BUILT_MARTS = ("mips_export", "mips_deliveries")
BUILD_SELECTION = (
    "--select", *(f"+{mart}" for mart in BUILT_MARTS),
    "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test",
)  # fmt: skip
# The data tests of what changed (against the manifest of `--state`) whose every parent was
# built: `state:modified+` intersected with each built mart's ancestors, and a test whose
# parents are all built or upstream of what is (`buildable`), such as a relationships test from
# a modified seed to an unmodified one.
TEST_SELECTION = (
    "--select", *(f"state:modified+,+{mart}" for mart in BUILT_MARTS),
    "--indirect-selection", "buildable",
    "--exclude-resource-type", "unit_test",
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


def _side_args(side: Side, dbt_vars: dict) -> list[str]:
    return [
        "--vars", json.dumps(dbt_vars),
        "--target-path", str(side.work_dir / "target"),
        "--log-path", str(side.work_dir / "logs"),
        # dbt's own lines would mix with the report on stdout; the log file keeps them
        "--log-level", "none", "--log-level-file", "debug",
        # the sides' manifest.json (state:modified) and run_results.json are read here,
        # whatever DBT_WRITE_JSON says
        "--write-json",
    ]  # fmt: skip


def side_log(side: Side) -> Path:
    """The side's dbt log file."""
    return side.work_dir / "logs" / "dbt.log"


def build_side(side: Side, schema_variable: str, dbt_vars: dict) -> str | None:
    """Build the side into its schema (the profile reads it from `schema_variable`) and return
    the build's dbt invocation id; a failed build is one line naming the side and the first
    failing node's message."""
    args = ["build", *BUILD_SELECTION, *_side_args(side, dbt_vars)]
    with _environment(schema_variable, side.schema):
        outcome = run_dbt(side.options, args, quiet=True)
    if not outcome.success:
        reason = (outcome.failures or (outcome.error or "see the dbt log",))[0]
        raise DiffError(
            f"{side.label} build failed: {' '.join(reason.split())} (log: {side_log(side)})"
        )
    return outcome.invocation_id


def run_data_tests(side: Side, state: Path, schema_variable: str, dbt_vars: dict) -> SideTests:
    """Run, on the built side (the head), the data tests of what differs from the manifest in
    `state` (the base's target directory). A failing test is an outcome, not an error; so is
    dbt refusing to run the selection (the side's `error`: a breaking change to an enforced
    contract)."""
    return _run_tests(side, [*TEST_SELECTION, "--state", str(state)], schema_variable, dbt_vars)


def rerun_data_tests(
    side: Side, names: list[str], schema_variable: str, dbt_vars: dict
) -> SideTests:
    """Run, on the built side (the base), the tests the other side ran, by name (those the
    side has), to tell a failure the change brings from one that was there."""
    if not names:
        return SideTests(outcomes={}, subjects={}, log=side_log(side))
    selection = ["--select", *names, "--exclude-resource-type", "unit_test"]
    return _run_tests(side, selection, schema_variable, dbt_vars)


def _run_tests(side: Side, selection: list[str], schema_variable: str, dbt_vars) -> SideTests:
    args = ["test", *selection, *_side_args(side, dbt_vars)]
    with _environment(schema_variable, side.schema):
        outcome = run_dbt(side.options, args, quiet=True)
    run = read_test_run(side.work_dir / "target", outcome.invocation_id, side_log(side))
    if run is None or (outcome.error and not run.outcomes):
        reason = " ".join((outcome.error or "dbt ran no test and said nothing").split())
        return SideTests(outcomes={}, subjects={}, log=side_log(side), error=reason)
    return run
