"""`sync-forms`: copy `patient_forms_mips` from Athena into the PostgreSQL forms schema.

Incremental by `completed_at`: the watermark is the newest `completed_at` already in
PostgreSQL; Athena is asked for every form completed since the watermark minus an overlap
window (late-arriving or corrected forms inside the window are picked up again), or for all
forms when the table is empty or missing. The result streams from S3 through the CSV
tokenizer (NULLs kept apart from empty strings) into a temporary staging table with
`COPY ... FROM STDIN`, then one upsert writes only rows that are new or differ. Everything
in PostgreSQL happens in one transaction: any failure leaves the forms as they were.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from psycopg import sql

from loader.engines.athena_client import (
    AthenaClient,
    AthenaQueryError,
    QueryResult,
    quote_identifier,
)
from loader.engines.athena_csv import AthenaCsvReencoder
from loader.environment.source_schema import FORMS_TABLE, read_sql, split_marked, split_statements
from loader.environment.warehouse import warehouse_error
from loader.errors import TerminalError

FORMS_COLUMNS = (
    "id",
    "appointment_id",
    "care_plan_id",
    "patient_id",
    "instrument",
    "functional_score",
    "nprs_score",
    "completed_at",
)
DEFAULT_OVERLAP = dt.timedelta(days=3)
# Two syncs into one database take turns; any constant works if every loader uses it.
SYNC_LOCK_KEY = 7_342_610_222
_STAGING = "patient_forms_mips_sync"


class FormsSyncError(TerminalError):
    """The sync failed (transient Athena failures were already retried); PostgreSQL's forms
    table is as it was before. One line, safe to log; of the kind of what failed (an Athena
    configuration error stays one: exit 2)."""


@dataclass(frozen=True)
class SyncReport:
    rows_read: int  # records in Athena's answer (the overlap window included)
    rows_written: int  # rows inserted or changed in PostgreSQL
    watermark_before: dt.datetime | None
    watermark_after: dt.datetime | None


def trino_timestamp(moment: dt.datetime) -> str:
    """A Trino timestamp literal in UTC, floored to the millisecond Athena stores."""
    utc = moment.astimezone(dt.timezone.utc)
    return f"timestamp '{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond // 1000:03d}'"


def forms_query(source_relation: str, since: dt.datetime | None) -> str:
    """The Athena query for forms completed at or after `since` (None: all of them).

    Athena's `completed_at` is a `timestamp` in UTC (Athena sessions run in UTC).
    """
    columns = ", ".join(quote_identifier(c) for c in FORMS_COLUMNS)
    query = f"select {columns} from {source_relation}"
    if since is not None:
        query += f' where "completed_at" >= {trino_timestamp(since)}'
    return query


def _target(forms_schema: str) -> sql.Identifier:
    return sql.Identifier(forms_schema, FORMS_TABLE)


def _table_exists(cursor, forms_schema: str) -> bool:
    cursor.execute(
        "select to_regclass(format('%%I.%%I', %s::text, %s::text))", (forms_schema, FORMS_TABLE)
    )
    return cursor.fetchone()[0] is not None


def _watermark(cursor, forms_schema: str) -> dt.datetime | None:
    cursor.execute(sql.SQL("select max(completed_at) from {}").format(_target(forms_schema)))
    return cursor.fetchone()[0]


def create_forms_table(cursor, forms_schema: str) -> None:
    """The forms table with its key and indexes, as `loader/sql/source_schema.sql` defines it."""
    marker = "{forms_schema}." + FORMS_TABLE
    cursor.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(forms_schema)))
    # Sections in file order: tables, keys, indexes.
    for _section, body in split_marked(read_sql("source_schema.sql"), "section"):
        for statement in split_statements(body):
            if marker in statement:
                cursor.execute(sql.SQL(statement).format(forms_schema=sql.Identifier(forms_schema)))


def _upsert(cursor, forms_schema: str) -> int:
    """Insert new forms, update changed ones; returns how many rows were written."""
    columns = [sql.Identifier(c) for c in FORMS_COLUMNS]
    compared = [sql.Identifier(c) for c in FORMS_COLUMNS if c != "id"]
    statement = sql.SQL(
        "insert into {target} as existing ({columns})"
        " select distinct on (id) {columns} from {staging}"
        " order by id, completed_at desc"
        " on conflict (id) do update set {assignments}"
        " where ({existing}) is distinct from ({excluded})"
    ).format(
        target=_target(forms_schema),
        columns=sql.SQL(", ").join(columns),
        staging=sql.Identifier(_STAGING),
        assignments=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=c) for c in compared),
        existing=sql.SQL(", ").join(sql.SQL("existing.{}").format(c) for c in compared),
        excluded=sql.SQL(", ").join(sql.SQL("excluded.{}").format(c) for c in compared),
    )
    cursor.execute(statement)
    return cursor.rowcount


def sync_forms(
    athena: AthenaClient,
    pg_conn,
    *,
    forms_schema: str,
    source_relation: str,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
) -> SyncReport:
    """Bring `{forms_schema}.patient_forms_mips` up to date with Athena's `source_relation`.

    `pg_conn` must not be inside a transaction: the sync commits its own, once.
    """
    from psycopg import Error as PostgresError
    from psycopg.pq import TransactionStatus

    table = f"{forms_schema}.{FORMS_TABLE}"
    if pg_conn.info.transaction_status != TransactionStatus.IDLE:
        raise FormsSyncError("sync-forms needs a connection that is not inside a transaction")
    try:
        with pg_conn.transaction(), pg_conn.cursor() as cursor:
            exists = _table_exists(cursor, forms_schema)
            watermark_before = _watermark(cursor, forms_schema) if exists else None
    except PostgresError as exc:
        error = FormsSyncError(f"sync-forms: cannot read {table}: {_pg_reason(exc)}")
        raise error.keeping_kind_of(warehouse_error(exc)) from exc

    since = watermark_before - overlap if watermark_before is not None else None
    reencoder = AthenaCsvReencoder(FORMS_COLUMNS)
    loaded: list[QueryResult] = []  # the query whose result is being loaded

    def load(result: QueryResult) -> tuple[int, dt.datetime | None]:
        """One transaction; a failure rolls it back, so a retry starts from the same table."""
        nonlocal reencoder
        loaded[:] = [result]
        reencoder = AthenaCsvReencoder(FORMS_COLUMNS)
        with pg_conn.transaction(), pg_conn.cursor() as cursor:
            cursor.execute("select pg_advisory_xact_lock(%s)", (SYNC_LOCK_KEY,))
            # Athena writes timestamps without a zone, in UTC.
            cursor.execute("set local timezone to 'UTC'")
            if not _table_exists(cursor, forms_schema):
                create_forms_table(cursor, forms_schema)
            cursor.execute(
                sql.SQL(
                    "create temporary table {staging} (like {target} including defaults)"
                    " on commit drop"
                ).format(staging=sql.Identifier(_STAGING), target=_target(forms_schema))
            )
            copy_statement = sql.SQL(
                "copy {staging} ({columns}) from stdin (format csv, header true)"
            ).format(
                staging=sql.Identifier(_STAGING),
                columns=sql.SQL(", ").join(sql.Identifier(c) for c in FORMS_COLUMNS),
            )
            with cursor.copy(copy_statement) as copy:
                for block in reencoder.reencode(athena.stream_result_csv(result.output_location)):
                    copy.write(block)
            return _upsert(cursor, forms_schema), _watermark(cursor, forms_schema)

    # The Athena query runs outside any PostgreSQL transaction (it can take minutes); query
    # and load are one retried unit: a transient Athena failure, also while the result
    # streams into COPY, rolls the transaction back and runs the query again.
    try:
        rows_written, watermark_after = athena.fetch(forms_query(source_relation, since), load)
    except AthenaQueryError as exc:
        query = (
            ""
            if not loaded or exc.query_execution_id
            else f"Athena query {loaded[0].query_execution_id}: "
        )
        error = FormsSyncError(f"sync-forms: {query}{exc}; {table} unchanged")
        raise error.keeping_kind_of(exc) from exc
    except PostgresError as exc:
        query_id = loaded[0].query_execution_id if loaded else "?"
        error = FormsSyncError(
            f"sync-forms: loading the result of Athena query {query_id} "
            f"failed: {_pg_reason(exc)}; {table} unchanged"
        )
        raise error.keeping_kind_of(warehouse_error(exc)) from exc
    return SyncReport(
        rows_read=reencoder.rows,
        rows_written=rows_written,
        watermark_before=watermark_before,
        watermark_after=watermark_after,
    )


def _pg_reason(exc: Exception) -> str:
    """PostgreSQL's message and where it happened (e.g. `COPY ..., line 3, column x`)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).strip()
    context = getattr(diag, "context", None)
    return f"{primary} ({context.strip()})" if context else primary
