"""Unloads one (year, state) slice of the export model to CSV, streaming.

The header line is the deliveries model's `file_header` (encoded by `csv_layout`, the same
rules COPY applies); PostgreSQL writes the records itself (`COPY ... TO STDOUT (FORMAT csv)`):
comma, `\\n` line ends, quoting only where needed, NULL as an empty field. The model has
already formatted every value as text, so nothing is formatted here. The bytes stream to a
private temporary file while rows are counted and the SHA-256 computed; memory stays flat.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from loader.engines.base import Engine
from loader.engines.csv_layout import encode_record
from loader.engines.locks import export_lock
from loader.engines.slice_files import SLICE_COLUMNS, UnloadedSlice, spool
from loader.marts.build_log import BUILD_LOG_COLUMNS, BUILD_LOG_MODEL, BuildRecord, build_record
from loader.marts.deliveries import DELIVERIES_COLUMNS, DELIVERIES_MODEL, DeliveriesError, Delivery
from loader.marts.expected_years import EXPECTED_YEARS_COLUMNS, EXPECTED_YEARS_MODEL, ExpectedYear
from loader.names import relation_parts

BLOCK_SIZE = 1 << 20


class CsvRowCounter:
    """Counts CSV records in a byte stream: newlines outside double quotes (RFC 4180)."""

    def __init__(self) -> None:
        self.newlines = 0
        self._in_quotes = False

    def feed(self, chunk: bytes) -> None:
        # Splitting on quotes alternates outside/inside segments; "" inside a field toggles twice.
        segments = chunk.split(b'"')
        for index, segment in enumerate(segments):
            if index:
                self._in_quotes = not self._in_quotes
            if not self._in_quotes:
                self.newlines += segment.count(b"\n")


def _relation(relation: str):
    """`"schema"."table"` as an identifier psycopg quotes itself: never pasted as SQL text."""
    from psycopg import sql

    return sql.Identifier(*relation_parts(relation))


def file_columns(conn, relation: str) -> list[str]:
    """The export model's file columns, in table order."""
    from psycopg import sql

    cursor = conn.execute(sql.SQL("select * from {} where false").format(_relation(relation)))
    return [c.name for c in cursor.description if c.name not in SLICE_COLUMNS]


def slice_query(conn, relation: str, year: int, state: str):
    from psycopg import sql

    columns = file_columns(conn, relation)
    return sql.SQL(
        "copy (select {columns} from {relation}"
        " where performance_year = {year} and state_code = {state}"
        " order by file_row_number) to stdout with (format csv, encoding 'UTF8')"
    ).format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        relation=_relation(relation),
        year=sql.Literal(year),
        state=sql.Literal(state),
    )


def _blocks(chunks: Iterable[bytes], size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """COPY yields one row per chunk: hashing and writing ~1 MiB at a time costs far less."""
    pending: list[bytes] = []
    pending_size = 0
    for chunk in chunks:
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= size:
            yield b"".join(pending)
            pending, pending_size = [], 0
    if pending:
        yield b"".join(pending)


def unload_postgres_slice(
    conn,
    relation: str,
    year: int,
    state: str,
    *,
    header: Sequence[str],
    work_dir: Path | None,
) -> UnloadedSlice:
    """The header, then the slice's COPY, into a 0600 file in `work_dir` (None: count and
    hash only, keep nothing)."""
    query = slice_query(conn, relation, year, state)
    counter = CsvRowCounter()

    def counted(blocks: Iterable[bytes]) -> Iterator[bytes]:
        for block in blocks:
            counter.feed(block)
            yield block

    with conn.cursor() as cursor, cursor.copy(query) as copy:
        blocks = counted(_blocks(itertools.chain((encode_record(header),), copy)))
        spooled = spool(blocks, work_dir, year, state)
    # The header is one record; every record ends with a newline.
    return UnloadedSlice.of(spooled, rows=max(counter.newlines - 1, 0))


def count_postgres_slice(conn, relation: str, year: int, state: str) -> int:
    from psycopg import sql

    query = sql.SQL(
        "select count(*) from {relation} where performance_year = {year} and state_code = {state}"
    ).format(relation=_relation(relation), year=sql.Literal(year), state=sql.Literal(state))
    return int(conn.execute(query).fetchone()[0])


def read_model_rows(conn, schema: str, model: str, columns, order_by: str) -> list[tuple]:
    """The given columns of a model the loader reads, ordered by `order_by` (column positions
    such as "1, 2"); a model not built yet is one clear error."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("select {columns} from {relation} order by {order}").format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        relation=sql.Identifier(schema, model),
        order=sql.SQL(order_by),
    )
    try:
        return conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        raise DeliveriesError(
            f"{schema}.{model} does not exist: run `dbt build` for this target first"
        ) from None


def read_deliveries(conn, schema: str) -> list[Delivery]:
    """Every delivery `schema`'s deliveries model states, in (year, state) order."""
    rows = read_model_rows(conn, schema, DELIVERIES_MODEL, DELIVERIES_COLUMNS, "1, 2")
    return [Delivery(*row) for row in rows]


class PostgresEngine(Engine):
    def __init__(self, conn, schema: str, connect=None):
        self.conn = conn
        self.schema = schema
        self._connect = connect  # a new autocommit connection to the same database

    def deliveries(self) -> list[Delivery]:
        return read_deliveries(self.conn, self.schema)

    def expected_years(self) -> list[ExpectedYear]:
        rows = read_model_rows(
            self.conn, self.schema, EXPECTED_YEARS_MODEL, EXPECTED_YEARS_COLUMNS, "1"
        )
        return [ExpectedYear(*row) for row in rows]

    def _zones_in(self, model: str) -> list[str]:
        from psycopg import sql

        query = sql.SQL("select distinct run_time_zone from {}").format(
            sql.Identifier(self.schema, model)
        )
        return [row[0] for row in self.conn.execute(query).fetchall()]

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        return unload_postgres_slice(
            self.conn,
            delivery.export_relation,
            delivery.performance_year,
            delivery.state_code,
            header=delivery.file_header_fields(),
            work_dir=work_dir,
        )

    @contextlib.contextmanager
    def unload_session(self) -> Iterator[PostgresEngine]:
        conn = self._connect()
        try:
            yield PostgresEngine(conn, self.schema)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def cancel_unload(self) -> None:
        self.conn.cancel_safe(timeout=5)

    def count(self, delivery: Delivery) -> int:
        return count_postgres_slice(
            self.conn, delivery.export_relation, delivery.performance_year, delivery.state_code
        )

    def latest_build(self) -> BuildRecord | None:
        import psycopg
        from psycopg import sql

        query = sql.SQL(
            "select {columns} from {relation} where touched_marts "
            "order by completed_at desc limit 1"
        ).format(
            columns=sql.SQL(", ").join(sql.Identifier(c) for c in BUILD_LOG_COLUMNS),
            relation=sql.Identifier(self.schema, BUILD_LOG_MODEL),
        )
        try:
            row = self.conn.execute(query).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return build_record(row) if row else None

    def run_lock(self):
        return export_lock(self.conn)


@contextlib.contextmanager
def open_postgres_engine(warehouse) -> Iterator[PostgresEngine]:
    conn = warehouse.connect(autocommit=True)
    try:
        yield PostgresEngine(
            conn, warehouse.schema, connect=lambda: warehouse.connect(autocommit=True)
        )
    finally:
        # After an interrupted COPY or a lost server the connection cannot even commit;
        # closing it must not hide what the run has to report.
        with contextlib.suppress(Exception):
            conn.close()
