"""Helpers for tests that run the dbt project on a scenario of their own.

A scenario is a pair of schemas in the session's cluster: the source schema dbt reads
(`--vars app_schema/forms_schema`) and the schema dbt builds into (`MIPS_DEV_SCHEMA`, which the
example profile's `dev` target reads), so scenarios never see each other's tables.

dbt keeps its partial parse only while the vars and the profile (the schema) stay the same,
so each scenario is one whole parse of the project (≈ 3-5 s) in each target/ it is built
from. The modules whose data is their own therefore share one scenario, `SCRATCH`, in turns:
each module starts it afresh (`SCRATCH.fresh`), and its target/ is the worker's, so the
project is parsed whole once per worker for all of them.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.environment.dbt_invocation import DbtOutcome, run_dbt
from loader.environment.synthetic import generate
from loader.environment.warehouse import ProjectOptions


@dataclass(frozen=True)
class Scenario:
    app_schema: str
    forms_schema: str
    models_schema: str
    # one scenario that the modules of a worker take in turns (SCRATCH): its target/ is the
    # worker's, not the module's
    per_worker: bool = False

    def dbt_vars(self) -> str:
        return json.dumps({"app_schema": self.app_schema, "forms_schema": self.forms_schema})

    def target_path(self) -> Path:
        """The scenario's own dbt target/ (under the module's, or the worker's for SCRATCH):
        dbt keeps its partial parse only for the same vars and profile, and each scenario has
        its vars and schema, so scenarios that take turns would each parse the whole project
        again in a shared one."""
        if self.per_worker:
            return Path(os.environ["MIPS_HOME"]) / "dbt-target" / f"scenario-{self.models_schema}"
        return Path(os.environ["DBT_TARGET_PATH"]) / f"scenario-{self.models_schema}"

    def dbt_args(self) -> list[str]:
        """The vars and target/ of the scenario, for a dbt command of one's own (with
        MIPS_DEV_SCHEMA set to its schema, `models_environment`)."""
        return ["--vars", self.dbt_vars(), "--target-path", str(self.target_path())]

    def models_environment(self) -> contextlib.AbstractContextManager[None]:
        """MIPS_DEV_SCHEMA set to the scenario's schema while the block runs."""
        return _environment(MIPS_DEV_SCHEMA=self.models_schema)

    def run(self, options: ProjectOptions, *args: str) -> DbtOutcome:
        """`dbt <args> --vars ...` building into this scenario's schema."""
        with self.models_environment():
            return run_dbt(options, [*args, *self.dbt_args()], quiet=True)

    def fresh(self, conn, **generate_options) -> None:
        """The scenario as no one used it: what dbt built (its schema and the published one)
        dropped, its sources generated again (`synthetic.generate`'s options)."""
        for schema in (self.models_schema, f"{self.models_schema}_published"):
            conn.execute(f"drop schema if exists {schema} cascade")
        generate(
            conn, app_schema=self.app_schema, forms_schema=self.forms_schema, **generate_options
        )


PROJECT_DIR = Path(__file__).resolve().parents[2]

# The suite's production-like build (conftest's `production_build`): generated data with the
# production settings, anchored to one day in the 2025 submission season so a failure
# reproduces whatever the calendar says.
PRODUCTION = Scenario(app_schema="build_app", forms_schema="build_forms", models_schema="build")
PRODUCTION_AS_OF = dt.date(2026, 1, 15)
# The scenario of the modules whose data is their own, in turns (above): every worker has a
# cluster of its own, and runs one module at a time.
SCRATCH = Scenario(
    app_schema="scratch_app", forms_schema="scratch_app", models_schema="scratch", per_worker=True
)
# `dbt build` of a scenario without the unit tests: they read none of its tables (their inputs
# are rows the test gives), so they run once per session, in conftest's production build, and
# on the Athena SQL in test_athena_duckdb. Every model, seed and data test still runs, and the
# build log records (and publishes) it as the `dbt build` it is.
BUILD_WITHOUT_UNIT_TESTS = ("build", "--exclude-resource-type", "unit_test")
# The production settings' deliveries (SPEC §4), by (year, state).
PRODUCTION_SLICES = (
    [(2022, "CA")]
    + [(2023, s) for s in ("AZ", "CA", "FL", "IL", "TX", "WA")]
    + [(y, s) for y in (2024, 2025) for s in ("AZ", "CA", "CO", "FL", "GA", "IL", "NY", "TX", "WA")]
)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def listed_nodes(options: ProjectOptions, *selection: str) -> list[str]:
    """`dbt ls` of what `dbt build <selection>` would run: its nodes' unique ids."""
    from dbt.cli.main import dbtRunner

    command = ["ls", *selection, "--output", "json", "--output-keys", "unique_id resource_type"]
    result = dbtRunner().invoke(["--quiet", *command, *options.dbt_args()])
    assert result.success, result.exception
    built = {"model", "seed", "snapshot", "test", "unit_test"}
    return [
        node["unique_id"]
        for node in map(json.loads, result.result)
        if node["resource_type"] in built
    ]


def fetch_all(db, query: str, params: object = None) -> list[tuple]:
    return db.execute(query, params).fetchall()


def edit_seed(project: ProjectOptions, seed: str, edit: Callable[[list[dict]], list[dict]]) -> None:
    """Rewrites `seeds/{seed}.csv` of a project copy with `edit(rows)`, keeping its columns."""
    path = project.project_dir / "seeds" / f"{seed}.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    fieldnames = list(rows[0])
    rows = edit(rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def seed_partial_parse(parsed_target: Path, target: Path) -> None:
    """Starts `target` (a project copy's dbt target/) from the partial parse dbt saved in
    `parsed_target` for the project itself: dbt reads only the copy's files whose checksums
    differ, where a first parse would read them all (≈ 3 s). dbt checks the vars and the
    profile itself: under others it parses everything, as without the seed."""
    saved = parsed_target / "partial_parse.msgpack"
    if saved.exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(saved, target / "partial_parse.msgpack")


def copy_project(destination: Path) -> Path:
    """The dbt project's own files (not the Python tests) under `destination`, to edit there."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("dbt_project.yml", "selectors.yml", "models", "macros", "seeds", "tests"):
        source = PROJECT_DIR / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("python"))
        else:
            shutil.copy(source, destination / name)
    return destination
