"""The hand-made model tables of conftest's `models` fixture: their schema, and build-log rows."""

from __future__ import annotations

HANDMADE_SCHEMA = "export_t"


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
