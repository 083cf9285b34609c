"""Helpers for tests that run the dbt project on a scenario of their own.

A scenario is a pair of schemas in the session's cluster: the source schema dbt reads
(`--vars app_schema/forms_schema`) and the schema dbt builds into (`MIPS_DEV_SCHEMA`, which the
example profile's `dev` target reads), so scenarios never see each other's tables.
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
from loader.environment.warehouse import ProjectOptions


@dataclass(frozen=True)
class Scenario:
    app_schema: str
    forms_schema: str
    models_schema: str

    def dbt_vars(self) -> str:
        return json.dumps({"app_schema": self.app_schema, "forms_schema": self.forms_schema})

    def target_path(self) -> Path:
        """The scenario's own dbt target/ (under the test's): dbt keeps its partial parse only
        for the same vars and profile, and each scenario has its vars and schema, so scenarios
        that take turns would each parse the whole project again in a shared one."""
        return Path(os.environ["DBT_TARGET_PATH"]) / f"scenario-{self.models_schema}"

    def run(self, options: ProjectOptions, *args: str) -> DbtOutcome:
        """`dbt <args> --vars ...` building into this scenario's schema."""
        with _environment(MIPS_DEV_SCHEMA=self.models_schema):
            return run_dbt(
                options,
                [*args, "--vars", self.dbt_vars(), "--target-path", str(self.target_path())],
                quiet=True,
            )


PROJECT_DIR = Path(__file__).resolve().parents[2]

# The suite's production-like build (conftest's `production_build`): generated data with the
# production settings, anchored to one day in the 2025 submission season so a failure
# reproduces whatever the calendar says.
PRODUCTION = Scenario(app_schema="build_app", forms_schema="build_forms", models_schema="build")
PRODUCTION_AS_OF = dt.date(2026, 1, 15)
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
