"""The PostgreSQL engine: the published marts read in one snapshot, slices unloaded with COPY.

**One published build per run.** `PostgresEngine.published()` reads the way pg_dump does:
ACCESS SHARE locks on every published mart, taken in the order a publication replaces them
(deliveries first), *before* the REPEATABLE READ snapshot is taken; the build log and every
mart are then read in that snapshot, which `unload_sessions` exports to the sessions that
unload ahead (`pg_export_snapshot`, `SET TRANSACTION SNAPSHOT`, their own locks taken with
NOWAIT: a session that would have to queue behind a waiting publication is not opened, and
the run unloads with fewer). A publication (DROP and ALTER, ACCESS EXCLUSIVE) therefore waits
for a running export to end, and an export that starts during a publication waits for it to
commit: the rows an export reads and the build its records name are always one build's.

**Unloading one (year, state) slice** of the export model to CSV, streaming.

The header line is the deliveries model's `file_header` (encoded by `csv_layout`, the same
rules COPY applies); PostgreSQL writes the records itself (`COPY ... TO STDOUT (FORMAT csv)`):
comma, `\\n` line ends, quoting only where needed, NULL as an empty field. The model has
already formatted every value as text, so nothing is formatted here. The bytes stream to a
private temporary file while rows are counted and the SHA-256 computed; memory stays flat.
By default a `psql` child runs the COPY (`loader.engines.psql_unload`: the rows are handled
in C, in a process of its own, in the run's snapshot); without one, or when a waiting
publication refuses the child its lock, the slice is unloaded on the session's own connection,
COPY's data taken from libpq directly (`_copy_blocks`), ~1 MiB at a time, not through
psycopg's row-by-row iteration, whose per-row cost made the unload twice as slow as `psql`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from loader.engines.base import (
    Engine,
    NothingPublished,
    PublishedBuild,
    UnloadSession,
    one_zone,
)
from loader.engines.locks import export_lock
from loader.engines.psql_unload import PsqlUnloader, Running, connection_environment, find_psql
from loader.engines.slice_files import BLOCK_SIZE, SLICE_COLUMNS, UnloadedSlice, spool_copy_csv
from loader.environment.warehouse import warehouse_errors
from loader.marts.build_log import (
    BUILD_LOG_MODEL,
    BuildRecord,
    build_history,
    history_queries,
    publication_order,
)
from loader.marts.deliveries import DELIVERIES_COLUMNS, DELIVERIES_MODEL, DeliveriesError, Delivery
from loader.marts.expected_years import EXPECTED_YEARS_COLUMNS, EXPECTED_YEARS_MODEL, ExpectedYear
from loader.names import relation_parts

logger = logging.getLogger(__name__)


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


def _copy_blocks(conn, size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """The data of the COPY TO STDOUT `conn` is in, ~`size` bytes at a time, read from libpq.

    libpq hands COPY data over one row per call; psycopg's `Copy` iteration costs a generator
    and a wait per row (7.6 million rows at scale 100: ~15 s of this process's time). Here the
    rows come from `PQgetCopyData` in a tight loop that waits on the socket only when libpq
    has nothing buffered (`poll` releases the GIL, and a signal interrupts it). The COPY's
    final result is read here too; an error (a cancel request among them) raises psycopg's
    exception of its kind. Whatever stops the loop otherwise (an interruption) leaves the COPY
    to psycopg's `Copy.__exit__`, which cancels it and drains the connection, as before.
    """
    import select

    from psycopg import errors, pq

    pgconn = conn.pgconn
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    pending: list = []
    pending_size = 0
    while True:
        nbytes, data = pgconn.get_copy_data(1)
        if nbytes > 0:
            pending.append(data)
            pending_size += nbytes
            if pending_size >= size:
                yield b"".join(pending)
                pending, pending_size = [], 0
        elif nbytes == 0:  # nothing buffered: wait for the socket
            poller.poll()
            pgconn.consume_input()
        else:
            break
    if pending:
        yield b"".join(pending)
    while pgconn.is_busy():
        poller.poll()
        pgconn.consume_input()
    failure = None
    while (result := pgconn.get_result()) is not None:
        if result.status != pq.ExecStatus.COMMAND_OK and failure is None:
            failure = errors.error_from_result(result, encoding=conn.info.encoding)
    if failure is not None:
        raise failure


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
    with conn.cursor() as cursor, cursor.copy(query):
        return spool_copy_csv(header, _copy_blocks(conn), work_dir, year, state)


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
        with _savepoint(conn):
            return conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        raise DeliveriesError(
            f"{schema}.{model} does not exist: run `dbt build` for this target first"
        ) from None


def read_deliveries(conn, schema: str, model: str = DELIVERIES_MODEL) -> list[Delivery]:
    """Every delivery `schema`'s deliveries model states, in (year, state) order."""
    rows = read_model_rows(conn, schema, model, DELIVERIES_COLUMNS, "1, 2")
    return [Delivery(*row) for row in rows]


def read_run_time_zone(conn, schema: str) -> str:
    """The run date's zone the models in `schema` state."""
    return one_zone(_model_zones(conn, schema))


def _model_zones(conn, schema: str, suffix: str = "") -> list[str | None]:
    """The zones the deliveries state, or the expected years' when there is no delivery (an
    environment without settings)."""
    from psycopg import sql

    zones: list[str | None] = []
    for model in (DELIVERIES_MODEL, EXPECTED_YEARS_MODEL):
        query = sql.SQL("select distinct run_time_zone from {}").format(
            sql.Identifier(schema, model + suffix)
        )
        zones = [row[0] for row in conn.execute(query).fetchall()]
        if zones:
            break
    return zones


def read_build_history(conn, schema: str) -> tuple[BuildRecord | None, BuildRecord | None]:
    """(the newest invocation that touched the marts, the newest that published them), from
    the build log in `schema`; (None, None) when there is no log of this shape yet."""
    import psycopg
    from psycopg import sql

    relation = sql.Identifier(schema, BUILD_LOG_MODEL).as_string(conn)
    try:
        with _savepoint(conn):
            return build_history(
                *(conn.execute(query).fetchall() for query in history_queries(relation))
            )
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        # no log yet, or one from before publication (the next dbt build replaces it)
        return None, None


@contextlib.contextmanager
def _savepoint(conn) -> Iterator[None]:
    """A savepoint inside a transaction (so a failed statement does not end it), nothing in
    autocommit. Undone quietly when the connection cannot take it any more (a COPY cut short
    by a signal): the run reports the interruption, not the connection's state."""
    import psycopg

    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    conn.execute("savepoint mips_read")
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("rollback to savepoint mips_read")
        raise
    conn.execute("release savepoint mips_read")


@contextlib.contextmanager
def _snapshot_transaction(conn) -> Iterator[None]:
    """A REPEATABLE READ, READ ONLY transaction on an autocommit connection; its snapshot is
    taken by its first query (a LOCK takes none). It only reads, so it ends with a rollback,
    quietly when the connection is lost or stuck in a COPY a signal cut short."""
    conn.execute("begin isolation level repeatable read read only")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.execute("rollback")


def _lock_statement(relations: list[str], *, nowait: bool = False):
    from psycopg import sql

    return sql.SQL("lock table {} in access share mode{}").format(
        sql.SQL(", ").join(_relation(r) for r in relations),
        sql.SQL(" nowait" if nowait else ""),
    )


class PostgresEngine(Engine):
    def __init__(self, conn, schema: str, connect=None, psql: PsqlUnloader | None = None):
        self.conn = conn  # autocommit
        self.schema = schema
        self.connect = connect  # a new autocommit connection to the same database
        self.psql = psql  # unloads slices in a child process; None: on the connections

    def run_lock(self):
        return export_lock(self.conn)

    @contextlib.contextmanager
    def published(self) -> Iterator[PublishedBuild]:
        for _attempt in range(2):
            latest, publication = read_build_history(self.conn, self.schema)
            if publication is None:
                yield NothingPublished(latest)
                return
            relations = [
                f'"{publication.published_schema}"."{mart}{publication.publication_suffix}"'
                for mart in publication_order(publication.marts_built)
            ]
            with _snapshot_transaction(self.conn):
                self._lock(relations)
                latest, current = read_build_history(self.conn, self.schema)
                if current is not None and _same_marts(current, publication):
                    yield PostgresPublished(self, latest, current, relations)
                    return
            # the publication moved elsewhere while the locks were awaited: lock it there
        raise DeliveriesError("the published marts moved twice while being locked: run again")

    def _lock(self, relations: list[str]) -> None:
        import psycopg

        try:
            with _savepoint(self.conn):
                self.conn.execute(_lock_statement(relations))
        except psycopg.errors.UndefinedTable as exc:
            raise DeliveriesError(
                f"a published mart named in {self.schema}.{BUILD_LOG_MODEL} is missing "
                f"({' '.join(str(exc).split())}): run `dbt build` to publish again"
            ) from None


def _same_marts(current: BuildRecord, expected: BuildRecord) -> bool:
    return (
        current.published_schema == expected.published_schema
        and current.publication_suffix == expected.publication_suffix
        and set(current.marts_built) == set(expected.marts_built)
    )


class _Unloads(UnloadSession):
    """Slices of the published build unloaded by a psql child in the build's snapshot, or on
    one connection, each in a savepoint of its transaction."""

    def __init__(self, conn, published: PostgresPublished):
        self.conn = conn
        self._published = published
        self._child = Running()

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        import psycopg

        relation = self._published.published_relation(delivery.export_relation)
        year, state = delivery.performance_year, delivery.state_code
        psql, snapshot = self._published.psql_and_snapshot()
        if psql is not None and snapshot is not None:
            with _savepoint(self.conn):
                copy_statement = slice_query(self.conn, relation, year, state)
            try:
                return psql.unload(
                    snapshot=snapshot,
                    lock_statement=_lock_statement([relation], nowait=True).as_string(self.conn),
                    copy_statement=copy_statement.as_string(self.conn),
                    header=delivery.file_header_fields(),
                    work_dir=work_dir,
                    year=year,
                    state=state,
                    running=self._child,
                )
            except psycopg.errors.LockNotAvailable:
                # a publication waits for the marts: this connection's lock is already held
                logger.info("a publication is waiting: %s/%s unloaded in this process", year, state)
        with _savepoint(self.conn):
            return unload_postgres_slice(
                self.conn,
                relation,
                year,
                state,
                header=delivery.file_header_fields(),
                work_dir=work_dir,
            )

    def cancel_unload(self) -> None:
        self._child.cancel()
        self.conn.cancel_safe(timeout=5)


class PostgresPublished(PublishedBuild, _Unloads):
    def __init__(self, engine: PostgresEngine, latest, publication, relations: list[str]):
        _Unloads.__init__(self, engine.conn, self)
        self._engine = engine
        self.latest = latest
        self.publication = publication
        self._relations = relations  # locked, in publication order
        # The snapshot a psql child or a session ahead reads in: exported now, at the top of
        # the transaction (never inside a savepoint), before any thread is started.
        self._snapshot = (
            self.conn.execute("select pg_export_snapshot()").fetchone()[0]
            if engine.psql is not None
            else None
        )

    def psql_and_snapshot(self) -> tuple[PsqlUnloader | None, str | None]:
        return self._engine.psql, self._snapshot

    def _model(self, name: str) -> tuple[str, str]:
        assert self.publication is not None and self.publication.published_schema
        return self.publication.published_schema, name + self.publication.publication_suffix

    def deliveries(self) -> list[Delivery]:
        schema, model = self._model(DELIVERIES_MODEL)
        return read_deliveries(self.conn, schema, model)

    def expected_years(self) -> list[ExpectedYear]:
        schema, model = self._model(EXPECTED_YEARS_MODEL)
        rows = read_model_rows(self.conn, schema, model, EXPECTED_YEARS_COLUMNS, "1")
        return [ExpectedYear(*row) for row in rows]

    def _zones(self) -> list[str | None]:
        assert self.publication is not None and self.publication.published_schema
        return _model_zones(
            self.conn, self.publication.published_schema, self.publication.publication_suffix
        )

    def count(self, delivery: Delivery) -> int:
        with _savepoint(self.conn):
            return count_postgres_slice(
                self.conn,
                self.published_relation(delivery.export_relation),
                delivery.performance_year,
                delivery.state_code,
            )

    @contextlib.contextmanager
    def unload_sessions(self, count: int) -> Iterator[list[UnloadSession]]:
        import psycopg
        from psycopg import sql

        sessions: list[UnloadSession] = []
        with contextlib.ExitStack() as opened:
            if count > 0 and self._engine.connect is not None:
                snapshot = (
                    self._snapshot or self.conn.execute("select pg_export_snapshot()").fetchone()[0]
                )
            for _ in range(count if self._engine.connect is not None else 0):
                conn = self._engine.connect()
                opened.callback(_close_quietly, conn)
                session = contextlib.ExitStack()
                session.enter_context(_snapshot_transaction(conn))
                try:
                    with session:
                        conn.execute(
                            sql.SQL("set transaction snapshot {}").format(sql.Literal(snapshot))
                        )
                        conn.execute(_lock_statement(self._relations, nowait=True))
                        opened.push(session.pop_all())
                except psycopg.errors.LockNotAvailable:
                    # a publication waits for our locks: a new session would queue behind it
                    logger.info(
                        "a publication is waiting: unloading with %d session(s) ahead",
                        len(sessions),
                    )
                    break
                sessions.append(_Unloads(conn, self))
            yield sessions


def _close_quietly(conn) -> None:
    with contextlib.suppress(Exception):
        conn.close()


@contextlib.contextmanager
def open_postgres_engine(warehouse) -> Iterator[PostgresEngine]:
    """The engine on its own connection. A psycopg error that leaves the `with` block is the
    MipsError of its kind (a lost connection transient, a refusal configuration, any other
    terminal); a run that reports a failure itself (a delivery's) catches it first."""
    conn = warehouse.connect(autocommit=True)
    try:
        with warehouse_errors():
            psql = find_psql()
            yield PostgresEngine(
                conn,
                warehouse.schema,
                connect=lambda: warehouse.connect(autocommit=True),
                psql=PsqlUnloader(psql, connection_environment(conn.pgconn)) if psql else None,
            )
    finally:
        # After an interrupted COPY or a lost server the connection cannot even commit;
        # closing it must not hide what the run has to report.
        _close_quietly(conn)
