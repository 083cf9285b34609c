"""The hand-made model tables of conftest's `models` fixture: their schema, and build-log rows."""

from __future__ import annotations

HANDMADE_SCHEMA = "export_t"


def complete_deliveries(db, schema: str, *, time_zone: str = "America/Los_Angeles") -> None:
    """Adds the naming columns the real model derives for every row, as mips_deliveries.sql
    does (manifest beside the data file, run log by year and state, the spec's prefix)."""
    db.execute(
        f"""
        alter table {schema}.mips_deliveries
            add column manifest_key_template text, add column snapshot_prefix text,
            add column run_log_key_template text, add column run_log_prefix text,
            add column s3_default_prefix text, add column run_time_zone text
        """
    )
    db.execute(
        f"""
        update {schema}.mips_deliveries set
            manifest_key_template = replace(s3_key_template, '/data.csv', '/manifest.json'),
            snapshot_prefix = performance_year || '/' || state_code || '/',
            run_log_key_template = 'run-log/' || performance_year || '/' || state_code
                || '/{{run_date}}T{{run_time}}-{{run_id}}.json',
            run_log_prefix = 'run-log/' || performance_year || '/' || state_code || '/',
            s3_default_prefix = 'business-operations/healthmonix',
            run_time_zone = %s
        """,
        (time_zone,),
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
