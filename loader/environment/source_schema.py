"""The application tables of SPEC §3 as PostgreSQL DDL (`sql/source_schema.sql`).

Used by the synthetic data generator and by tests that need an empty source schema. Schema
names are substituted as quoted identifiers, never pasted into the SQL text.
"""

from __future__ import annotations

import re
from importlib import resources

from psycopg import sql

APP_TABLES = (
    "states",
    "regions",
    "clinicians",
    "patients",
    "injuries",
    "care_plans",
    "appointments",
    "settings",
)
FORMS_TABLE = "patient_forms_mips"

_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)


def read_sql(name: str) -> str:
    """The text of a file shipped in `loader/sql/`."""
    return resources.files("loader").joinpath("sql", name).read_text(encoding="utf-8")


def split_marked(text: str, marker: str) -> list[tuple[str, str]]:
    """`-- {marker}: name` lines split a file into named parts; text before the first is dropped."""
    parts = re.compile(rf"^-- {marker}: (.+?)\s*$", re.MULTILINE).split(text)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def split_statements(text: str) -> list[str]:
    """Statements end with `;` at the end of a line (no dollar-quoted bodies in these files)."""
    statements = [chunk.strip() for chunk in _STATEMENT_END.split(text)]
    return [s for s in statements if s and not _only_comments(s)]


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("--") for line in text.splitlines())


def _schema_identifiers(app_schema: str, forms_schema: str) -> dict[str, sql.Composable]:
    return {"app_schema": sql.Identifier(app_schema), "forms_schema": sql.Identifier(forms_schema)}


def _run_section(conn, section: str, app_schema: str, forms_schema: str) -> None:
    identifiers = _schema_identifiers(app_schema, forms_schema)
    body = dict(split_marked(read_sql("source_schema.sql"), "section"))[section]
    with conn.cursor() as cur:
        for statement in split_statements(body):
            cur.execute(sql.SQL(statement).format(**identifiers))


def drop_source_tables(conn, app_schema: str, forms_schema: str) -> None:
    """Drop the nine source tables; cascade drops dbt's views on them too (`dbt build` remakes)."""
    tables = [sql.Identifier(app_schema, table) for table in APP_TABLES]
    tables.append(sql.Identifier(forms_schema, FORMS_TABLE))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop table if exists {} cascade").format(sql.SQL(", ").join(tables)))


def create_source_schema(
    conn,
    app_schema: str,
    forms_schema: str,
    *,
    drop_existing: bool = False,
    with_keys: bool = True,
) -> None:
    """Create the source schemas and tables with their keys, checks and indexes.

    `with_keys=False` stops after the bare tables, for a bulk load followed by
    `add_source_keys()`. Runs in the caller's transaction.
    """
    with conn.transaction():
        if drop_existing:
            drop_source_tables(conn, app_schema, forms_schema)
        _run_section(conn, "tables", app_schema, forms_schema)
        if with_keys:
            add_source_keys(conn, app_schema, forms_schema)


def add_source_keys(conn, app_schema: str, forms_schema: str) -> None:
    """Primary keys, unique and foreign keys, then the indexes the export reads through."""
    with conn.transaction():
        _run_section(conn, "keys", app_schema, forms_schema)
        _run_section(conn, "indexes", app_schema, forms_schema)
