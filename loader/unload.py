"""Unloads one (year, state) slice of the export model to CSV, streaming.

The header line is the deliveries model's `file_header` (encoded by `csv_layout`, the same
rules COPY applies); PostgreSQL writes the records itself (`COPY ... TO STDOUT (FORMAT csv)`):
comma, `\\n` line ends, quoting only where needed, NULL as an empty field. The model has
already formatted every value as text, so nothing is formatted here. The bytes stream to a
private temporary file while rows are counted and the SHA-256 computed; memory stays flat.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from loader.csv_layout import encode_record
from loader.deliveries import STATE_CODE, relation_parts
from loader.destinations.base import process_alive

WORK_DIR_PREFIX = "mips-export-"

BLOCK_SIZE = 1 << 20
# Columns of the export model that select and order a slice; every other column is the file.
SLICE_COLUMNS = ("performance_year", "state_code", "file_row_number")


@dataclass(frozen=True)
class UnloadedSlice:
    path: Path | None  # None for a dry run, which keeps no bytes
    rows: int
    bytes: int
    sha256: str


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


def _drain(header: bytes, chunks: Iterable[bytes], sink: BinaryIO | None) -> tuple[int, int, str]:
    digest = hashlib.sha256()
    counter = CsvRowCounter()
    size = 0
    for block in _blocks(itertools.chain((header,), chunks)):
        digest.update(block)
        counter.feed(block)
        size += len(block)
        if sink is not None:
            sink.write(block)
    # The header is one record; every record ends with a newline.
    return max(counter.newlines - 1, 0), size, digest.hexdigest()


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
    header_line = encode_record(header)
    with conn.cursor() as cursor, cursor.copy(query) as copy:
        if work_dir is None:
            rows, size, sha = _drain(header_line, copy, None)
            return UnloadedSlice(path=None, rows=rows, bytes=size, sha256=sha)
        if not STATE_CODE.fullmatch(state):
            raise ValueError(f"refusing to name a file after state code {state!r}")
        fd, name = tempfile.mkstemp(prefix=f"{int(year)}-{state}-", suffix=".csv", dir=work_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as sink:
                rows, size, sha = _drain(header_line, copy, sink)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return UnloadedSlice(path=path, rows=rows, bytes=size, sha256=sha)


def private_work_dir() -> tempfile.TemporaryDirectory:
    """A 0700 directory for slice files, removed with everything in it when closed.

    Its name carries our pid (`mips-export-{pid}-XXXX`), so a later run can tell the directory
    of a killed run (SIGKILL leaves it behind) from one in use: see `remove_stale_work_dirs`.
    """
    remove_stale_work_dirs()
    return tempfile.TemporaryDirectory(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}-")


def remove_stale_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove the work directories of dead runs: ours by name and owner, whose pid is gone."""
    import shutil

    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for candidate in parent.glob(f"{WORK_DIR_PREFIX}*-*"):
        pid_text = candidate.name[len(WORK_DIR_PREFIX) :].split("-", 1)[0]
        try:
            info = candidate.lstat()
        except OSError:
            continue
        if (
            not pid_text.isdigit()
            or not candidate.is_dir()
            or candidate.is_symlink()
            or info.st_uid != os.getuid()
            or process_alive(int(pid_text))
        ):
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed


def count_postgres_slice(conn, relation: str, year: int, state: str) -> int:
    from psycopg import sql

    query = sql.SQL(
        "select count(*) from {relation} where performance_year = {year} and state_code = {state}"
    ).format(relation=_relation(relation), year=sql.Literal(year), state=sql.Literal(state))
    return int(conn.execute(query).fetchone()[0])
