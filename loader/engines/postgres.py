"""Unloads one (year, state) slice of the export model to CSV, streaming.

The header line is the deliveries model's `file_header` (encoded by `csv_layout`, the same
rules COPY applies); PostgreSQL writes the records itself (`COPY ... TO STDOUT (FORMAT csv)`):
comma, `\\n` line ends, quoting only where needed, NULL as an empty field. The model has
already formatted every value as text, so nothing is formatted here. The bytes stream to a
private temporary file while rows are counted and the SHA-256 computed; memory stays flat.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from loader.engines.csv_layout import encode_record
from loader.engines.slice_files import SLICE_COLUMNS, UnloadedSlice, spool
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
