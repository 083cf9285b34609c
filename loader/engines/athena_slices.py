"""A year/state slice out of Athena: its file columns, its rows in the file layout, its count.

Each is one query whose result is read inside `AthenaClient.fetch`, so a transient failure
anywhere runs the whole query again (the one retry policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loader.engines.athena_client import (
    AthenaClient,
    AthenaQueryError,
    AthenaResultError,
    QueryResult,
    quote_identifier,
    quote_literal,
)
from loader.engines.athena_csv import AthenaCsvReencoder, iter_csv_records
from loader.engines.slice_files import SLICE_COLUMNS, UnloadedSlice, spool


def athena_file_columns(client: AthenaClient, relation: str) -> list[str]:
    """The export model's file columns, in table order (one `limit 0` query: pass them on)."""
    slice_columns = {c.lower() for c in SLICE_COLUMNS}
    names = client.fetch(
        f"select * from {relation} limit 0",
        lambda result: client.result_columns(result.query_execution_id),
    )
    return [c for c in names if c.lower() not in slice_columns]


def _slice_filter(year: int, state: str) -> str:
    return f"performance_year = {int(year)} and state_code = {quote_literal(state)}"


def athena_slice_query(relation: str, year: int, state: str, columns: Sequence[str]) -> str:
    selected = ", ".join(quote_identifier(c) for c in columns)
    return (
        f"select {selected} from {relation} where {_slice_filter(year, state)}"
        " order by file_row_number"
    )


def unload_athena_slice(
    client: AthenaClient,
    relation: str,
    year: int,
    state: str,
    *,
    work_dir: Path | None,
    columns: Sequence[str] | None = None,
    header: Sequence[str] | None = None,
) -> UnloadedSlice:
    """The slice in the file layout, in a 0600 file in `work_dir` (None: count and hash only).

    `columns` are the file columns to select (default: `athena_file_columns`, one extra
    query); `header` the header row to write (default: `columns`). Errors name the slice.
    """
    label = f"{year}/{state}"
    last_query: list[str] = []  # the id of the query being read, for error messages

    def read(result: QueryResult) -> UnloadedSlice:
        last_query[:] = [result.query_execution_id]
        reencoder = AthenaCsvReencoder(columns, header=header)
        blocks = reencoder.reencode(client.stream_result_csv(result.output_location))
        spooled = spool(blocks, work_dir, year, state)
        return UnloadedSlice.of(spooled, rows=reencoder.rows)

    try:
        if columns is None:
            columns = athena_file_columns(client, relation)
        # One retried unit: a result that breaks off runs the query again, into a new file.
        return client.fetch(athena_slice_query(relation, year, state, columns), read)
    except AthenaQueryError as exc:
        raise exc.in_context(_context(label, exc, last_query)) from exc


def _context(label: str, exc: AthenaQueryError, last_query: list[str]) -> str:
    """`label`, plus the query id when the error (a result problem) does not name it."""
    if exc.query_execution_id is None and last_query:
        return f"{label}: Athena query {last_query[0]}"
    return label


def count_athena_slice(client: AthenaClient, relation: str, year: int, state: str) -> int:
    label = f"{year}/{state}"
    last_query: list[str] = []

    def read(result: QueryResult) -> int:
        last_query[:] = [result.query_execution_id]
        records = list(iter_csv_records(client.stream_result_csv(result.output_location)))
        if len(records) != 2 or len(records[1]) != 1 or not (records[1][0] or "").isdigit():
            raise AthenaResultError("count result is not one number")
        return int(records[1][0])

    try:
        return client.fetch(
            f'select count(*) as "rows" from {relation} where {_slice_filter(year, state)}', read
        )
    except AthenaQueryError as exc:
        raise exc.in_context(_context(label, exc, last_query)) from exc
