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


def record_build(
    db,
    schema: str,
    *,
    invocation_id: str = "handmade-invocation",
    success: bool = True,
    touched_marts: bool = True,
    marts_built: str = "mips_deliveries,mips_export_v1",
    age: str = "5 minutes",
    failed_nodes: str = "",
) -> None:
    """A row in the build log as dbt's on-run-end hook writes it (the publish gate reads it)."""
    db.execute(
        f"""
        create table if not exists {schema}.mips_build_log (
            invocation_id text, command text, selection text, started_at timestamptz,
            completed_at timestamptz, success boolean, touched_marts boolean, marts_built text,
            errors int, failures int, warnings int, skipped int, failed_nodes text,
            dbt_version text, target_name text)
        """
    )
    db.execute(
        f"insert into {schema}.mips_build_log values (%s, 'build', '', "
        "now() - %s::interval - interval '1 minute', now() - %s::interval, %s, %s, %s, "
        "%s, 0, 0, 0, %s, '1.11', 'dev')",
        (
            invocation_id,
            age,
            age,
            success,
            touched_marts,
            marts_built,
            0 if success else 1,
            failed_nodes,
        ),
    )
