"""The hand-made model tables of conftest's `models` fixture: their schema, their deliveries
(built by the real `mips_deliveries` model), and build-log rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from loader.environment.source_schema import create_source_schema
from loader.environment.warehouse import ProjectOptions
from loader.review.compare import column_types
from tests.support.model_scenarios import Scenario, copy_project, edit_seed

HANDMADE_SCHEMA = "export_t"

# The settings and registrations the hand-made deliveries come from. 2022/CA: a closed year
# with a fixed snapshot date, S3 only; 2023/CA: SFTP, a file name with the run date; 2025/TX:
# SFTP, a file name without it (mips_program_years as shipped says which year does what).
DELIVERY_SETTINGS = [
    ("healthmonix_2022_states", "CA", "list"),
    ("healthmonix_2022_integration_enabled", "false", "boolean"),
    ("healthmonix_2022_strictly_contained", "true", "boolean"),
    ("healthmonix_2023_states", "CA", "list"),
    ("healthmonix_2023_integration_enabled", "true", "boolean"),
    ("healthmonix_2023_strictly_contained", "false", "boolean"),
    ("healthmonix_2025_states", "TX", "list"),
    ("healthmonix_2025_integration_enabled", "true", "boolean"),
    ("healthmonix_2025_strictly_contained", "false", "boolean"),
]
DELIVERY_STATES = [(1, "California", "CA"), (2, "Texas", "TX")]
REGISTRATIONS = [
    {"performance_year": "2023", "state_code": "CA", "registration_id": "17625",
     "integration_key": "egAuLG7aVx"},
    {"performance_year": "2025", "state_code": "TX", "registration_id": "21742",
     "integration_key": "MlUGF8grFd"},
]  # fmt: skip
# The schemas the real model is built from and into, once per test session.
DELIVERIES_SOURCE_SCHEMA = "handmade_app"
DELIVERIES_MODEL_SCHEMA = "handmade_deliveries"


def build_model_deliveries(db, profiles_dir: Path, work_dir: Path) -> str:
    """`dbt build -s +mips_deliveries` of a copy of the project (its registrations seed the
    two above) over DELIVERY_SETTINGS; returns the schema holding the model's rows. Every name
    a hand-made delivery carries is then the model's: a change to the model reaches the
    loader's tests."""
    create_source_schema(db, DELIVERIES_SOURCE_SCHEMA, DELIVERIES_SOURCE_SCHEMA, drop_existing=True)
    with db.cursor() as cursor:
        cursor.executemany(
            sql.SQL("insert into {}.states values (%s, %s, %s)").format(
                sql.Identifier(DELIVERIES_SOURCE_SCHEMA)
            ),
            DELIVERY_STATES,
        )
        cursor.executemany(
            sql.SQL("insert into {}.settings values (%s, %s, %s, %s)").format(
                sql.Identifier(DELIVERIES_SOURCE_SCHEMA)
            ),
            [(n, *setting) for n, setting in enumerate(DELIVERY_SETTINGS, start=1)],
        )
    project = ProjectOptions(copy_project(work_dir / "project"), profiles_dir, "dev")

    def registrations(rows: list[dict]) -> list[dict]:
        blank = dict.fromkeys(rows[0], "")
        return [
            {**blank, **row, "is_sample": "false", "provenance": "tests"} for row in REGISTRATIONS
        ]

    edit_seed(project, "mips_registrations", registrations)
    scenario = Scenario(
        app_schema=DELIVERIES_SOURCE_SCHEMA,
        forms_schema=DELIVERIES_SOURCE_SCHEMA,
        models_schema=DELIVERIES_MODEL_SCHEMA,
    )
    outcome = scenario.run(
        project,
        "build",
        "--select", "+mips_deliveries",
        "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test",
        "--target-path", str(work_dir / "target"),
    )  # fmt: skip
    assert outcome.success, (outcome.error, outcome.failures)
    return DELIVERIES_MODEL_SCHEMA


def shared_model_deliveries(db, shared_dir: Path, build: Callable[[], str]) -> str:
    """The model's deliveries built once for all the run's workers (pytest-xdist): the first
    worker to come builds them (`build`) and leaves their columns and rows in `shared_dir`;
    every other loads those into its own cluster, under the same schema. Settings and names
    only: the table holds no patient data."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): each worker builds its own
        return build()
    shared_dir.mkdir(parents=True, exist_ok=True)
    columns_file, rows_file = shared_dir / "columns.json", shared_dir / "rows.copy"
    table = sql.Identifier(DELIVERIES_MODEL_SCHEMA, "mips_deliveries")
    with (shared_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if columns_file.exists():
            columns = json.loads(columns_file.read_text())
            schema = sql.Identifier(DELIVERIES_MODEL_SCHEMA)
            db.execute(sql.SQL("drop schema if exists {} cascade").format(schema))
            db.execute(sql.SQL("create schema {}").format(schema))
            db.execute(
                sql.SQL("create table {} ({})").format(
                    table,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                        for name, kind in columns
                    ),
                )
            )
            with (
                db.cursor() as cursor,
                cursor.copy(sql.SQL("copy {} from stdin").format(table)) as copy,
            ):
                copy.write(rows_file.read_bytes())
            return DELIVERIES_MODEL_SCHEMA
        schema_name = build()
        columns = list(column_types(db, f"{DELIVERIES_MODEL_SCHEMA}.mips_deliveries").items())
        with db.cursor() as cursor, cursor.copy(sql.SQL("copy {} to stdout").format(table)) as copy:
            rows_file.write_bytes(b"".join(bytes(chunk) for chunk in copy))
        columns_file.write_text(json.dumps(columns))  # last: the rows are complete
        return schema_name


def copy_model_deliveries(
    db,
    model_schema: str,
    schema: str,
    *,
    slices: list[tuple[int, str]] | None = None,
    export_relation: str,
    file_header: str,
    invocation_id: str = "handmade-invocation",
) -> None:
    """`{schema}.mips_deliveries`: the model's rows (of `slices`, default all) with every name
    as the model gives it; only what points at the hand-made export table is set here (its
    relation and header) and the build that made it."""
    target = sql.Identifier(schema, "mips_deliveries")
    source = sql.Identifier(model_schema, "mips_deliveries")
    where = sql.SQL("")
    if slices is not None:
        where = sql.SQL(" where (performance_year, state_code) in ({})").format(
            sql.SQL(", ").join(sql.SQL("({}, {})").format(*map(sql.Literal, s)) for s in slices)
        )
    db.execute(sql.SQL("create table {} as select * from {}{}").format(target, source, where))
    db.execute(
        sql.SQL(
            "update {} set export_relation = %s, file_header = %s, dbt_invocation_id = %s"
        ).format(target),
        (export_relation, file_header, invocation_id),
    )


# Every mart the hand-made schema holds (conftest's `models`).
HANDMADE_MARTS = "mips_deliveries,mips_expected_years,mips_export_v1"


def record_build(
    db,
    schema: str,
    *,
    invocation_id: str = "handmade-invocation",
    command: str = "build",
    success: bool | None = True,
    touched_marts: bool = True,
    marts_built: str = HANDMADE_MARTS,
    published: bool | None = None,
    age: str = "5 minutes",
    failed_nodes: str = "",
    skipped: int = 0,
) -> None:
    """An invocation in the build log as dbt's hooks write it: its `started` row and, unless
    `success` is None (a build that never finished), its `finished` row. `published` (default:
    a successful `build` of `mips_deliveries` and the export) names `schema` itself as the
    published schema: the hand-made tables stand for the published marts."""
    db.execute(
        f"""
        create table if not exists {schema}.mips_build_log (
            invocation_id text, event text, command text, selection text,
            started_at timestamptz, completed_at timestamptz, success boolean,
            touched_marts boolean, published boolean, published_schema text,
            publication_suffix text, marts_built text[], failed_nodes text[], errors int,
            failures int, warnings int, skipped int, dbt_version text, target_name text)
        """
    )
    built = [name for name in marts_built.split(",") if name]
    failed = [name for name in failed_nodes.split(",") if name]
    if published is None:
        published = (
            bool(success)
            and command == "build"
            and {
                "mips_deliveries",
                "mips_export_v1",
            }
            <= set(built)
        )
    events = ["started"] if success is None else ["started", "finished"]
    for event in events:
        finished = event == "finished"
        db.execute(
            f"insert into {schema}.mips_build_log values (%s, %s, %s, '', "
            "now() - %s::interval - interval '1 minute', "
            "case when %s then now() - %s::interval end, %s, %s, %s, %s, '', %s, %s, "
            "%s, 0, 0, %s, '1.11', 'dev')",
            (
                invocation_id,
                event,
                command,
                age,
                finished,
                age,
                success if finished else None,
                touched_marts,
                published if finished else None,
                schema if finished and published else None,
                built if finished else [],
                failed if finished else [],
                len(failed) if finished and not success else 0,
                skipped if finished else 0,
            ),
        )
