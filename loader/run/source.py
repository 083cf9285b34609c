"""Where slices come from: the warehouse engine behind a dbt target, behind one small interface.

`open_slice_source(warehouse)` gives a `SliceSource` for the target's engine:
- PostgreSQL: `COPY … TO STDOUT` on one connection; the run lock is an advisory lock.
- Athena: a query per slice whose result CSV is re-encoded to the same bytes; the run lock is
  an object next to the query results, written with a conditional put.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import Iterator
from pathlib import Path

from loader.clock import time_zone
from loader.engines.athena_client import (
    AthenaClient,
    AthenaQueryError,
    quote_identifier,
    split_s3_url,
)
from loader.engines.athena_csv import iter_csv_records
from loader.engines.athena_slices import (
    athena_file_columns,
    count_athena_slice,
    unload_athena_slice,
)
from loader.engines.postgres import count_postgres_slice, unload_postgres_slice
from loader.engines.slice_files import UnloadedSlice
from loader.environment.warehouse import WarehouseConfigError
from loader.run.build_gate import BUILD_LOG_COLUMNS, BUILD_LOG_MODEL, BuildRecord, build_record
from loader.run.deliveries import (
    DELIVERIES_COLUMNS,
    DELIVERIES_MODEL,
    DeliveriesError,
    Delivery,
    read_deliveries,
)
from loader.run.expected_years import (
    EXPECTED_YEARS_COLUMNS,
    EXPECTED_YEARS_MODEL,
    ExpectedYear,
    expected_year_from_text,
    read_expected_years,
)
from loader.run.locks import export_lock, s3_run_lock

ATHENA_LOCK_NAME = "mips-loader/export.lock"


class SliceSource:
    """The deliveries, one slice at a time, and the lock that keeps runs apart."""

    def deliveries(self) -> list[Delivery]:
        """Every delivery the deliveries model states (select with `select_deliveries`)."""
        raise NotImplementedError

    def expected_years(self) -> list[ExpectedYear]:
        """Every performance year the expected-years model states, in year order."""
        raise NotImplementedError

    def run_time_zone(self) -> str:
        """The zone of the run date, as the deliveries model states it (the expected-years
        model when there are no deliveries, as in an environment without settings)."""
        return _one_zone(self._zones_in(DELIVERIES_MODEL) or self._zones_in(EXPECTED_YEARS_MODEL))

    def _zones_in(self, model: str) -> list[str]:
        raise NotImplementedError

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        raise NotImplementedError

    def unload_session(self) -> contextlib.AbstractContextManager[UnloadSession]:
        """A session of its own for unloading in another thread (loader.run.unloads_ahead)."""
        raise NotImplementedError

    def count(self, delivery: Delivery) -> int:
        raise NotImplementedError

    def latest_build(self) -> BuildRecord | None:
        """The newest build-log row of an invocation that touched the marts, or None."""
        raise NotImplementedError

    def run_lock(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError


class UnloadSession:
    """Unloads on a thread of its own; `cancel_unload` (from another thread) stops the one
    in progress, which then raises."""

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        raise NotImplementedError

    def cancel_unload(self) -> None:
        raise NotImplementedError


class PostgresSliceSource(SliceSource, UnloadSession):
    def __init__(self, conn, schema: str, connect=None):
        self.conn = conn
        self.schema = schema
        self._connect = connect  # a new autocommit connection to the same database

    def deliveries(self) -> list[Delivery]:
        return read_deliveries(self.conn, self.schema)

    def expected_years(self) -> list[ExpectedYear]:
        return read_expected_years(self.conn, self.schema)

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
    def unload_session(self) -> Iterator[PostgresSliceSource]:
        conn = self._connect()
        try:
            yield PostgresSliceSource(conn, self.schema)
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


class AthenaSliceSource(SliceSource, UnloadSession):
    def __init__(self, client, settings: dict):
        self.client = client
        self.settings = settings
        self._columns: dict[str, list[str]] = {}

    def deliveries(self) -> list[Delivery]:
        relation = f"{quote_identifier(self.client.schema)}.{quote_identifier(DELIVERIES_MODEL)}"
        selected = ", ".join(DELIVERIES_COLUMNS)
        result = self.client.run_query(f"select {selected} from {relation} order by 1, 2")
        records = iter_csv_records(self.client.stream_result_csv(result.output_location))
        next(records, None)  # the header
        return [_delivery_from_text(record) for record in records]

    def expected_years(self) -> list[ExpectedYear]:
        relation = (
            f"{quote_identifier(self.client.schema)}.{quote_identifier(EXPECTED_YEARS_MODEL)}"
        )
        selected = ", ".join(EXPECTED_YEARS_COLUMNS)
        result = self.client.run_query(f"select {selected} from {relation} order by 1")
        records = iter_csv_records(self.client.stream_result_csv(result.output_location))
        next(records, None)  # the header
        return [expected_year_from_text(record) for record in records]

    def _zones_in(self, model: str) -> list[str]:
        relation = f"{quote_identifier(self.client.schema)}.{quote_identifier(model)}"
        result = self.client.run_query(f"select distinct run_time_zone from {relation}")
        records = iter_csv_records(self.client.stream_result_csv(result.output_location))
        next(records, None)  # the header
        return [record[0] for record in records]

    def latest_build(self) -> BuildRecord | None:
        relation = f"{quote_identifier(self.client.schema)}.{quote_identifier(BUILD_LOG_MODEL)}"
        try:
            result = self.client.run_query(
                f"select {', '.join(BUILD_LOG_COLUMNS)} from {relation} "
                "where touched_marts order by completed_at desc limit 1"
            )
        except AthenaQueryError as exc:
            if "TABLE_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
                return None
            raise
        records = iter_csv_records(self.client.stream_result_csv(result.output_location))
        next(records, None)  # the header
        row = next(records, None)
        return build_record(row) if row else None

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        relation = delivery.export_relation
        if relation not in self._columns:
            self._columns[relation] = athena_file_columns(self.client, relation)
        return unload_athena_slice(
            self.client,
            relation,
            delivery.performance_year,
            delivery.state_code,
            work_dir=work_dir,
            columns=self._columns[relation],
            header=delivery.file_header_fields(),
        )

    @contextlib.contextmanager
    def unload_session(self) -> Iterator[AthenaSliceSource]:
        # boto3 clients are thread-safe: the session shares the client and the column cache.
        # An interrupted run stops its queries through INTERRUPTED (AthenaClient.wait).
        yield self

    def cancel_unload(self) -> None:
        """Nothing to do: the query's wait loop sees INTERRUPTED and stops the query."""

    def count(self, delivery: Delivery) -> int:
        return count_athena_slice(
            self.client, delivery.export_relation, delivery.performance_year, delivery.state_code
        )

    def run_lock(self):

        staging = str(self.settings["s3_staging_dir"]).rstrip("/")
        bucket, prefix = split_s3_url(staging + "/")
        owner = f"{getpass.getuser()}@{socket.gethostname()}"
        return s3_run_lock(self.client._s3, bucket, f"{prefix}{ATHENA_LOCK_NAME}", owner=owner)


def _delivery_from_text(record: list[str | None]) -> Delivery:
    """A deliveries row from Athena's CSV result (every value arrives as text)."""
    values = dict(zip(DELIVERIES_COLUMNS, record, strict=True))

    def boolean(name: str) -> bool:
        return (values[name] or "").lower() == "true"

    return Delivery(
        **{
            **values,
            "performance_year": int(values["performance_year"]),
            "sftp_enabled": boolean("sftp_enabled"),
        }
    )


def _one_zone(zones: list[str | None]) -> str:
    """The models must state one valid zone: the run date is today there."""
    stated = sorted({zone for zone in zones if zone})
    if len(stated) != 1:
        raise DeliveriesError(
            f"the models state {len(stated)} run time zones ({', '.join(stated) or 'none'}): "
            "rebuild them with one var mips_time_zone"
        )
    time_zone(stated[0], "run_time_zone")
    return stated[0]


@contextlib.contextmanager
def open_slice_source(warehouse) -> Iterator[SliceSource]:
    if warehouse.adapter_type == "postgres":
        conn = warehouse.connect(autocommit=True)
        try:
            yield PostgresSliceSource(
                conn, warehouse.schema, connect=lambda: warehouse.connect(autocommit=True)
            )
        finally:
            # After an interrupted COPY or a lost server the connection cannot even commit;
            # closing it must not hide what the run has to report.
            with contextlib.suppress(Exception):
                conn.close()
    elif warehouse.adapter_type == "athena":
        yield AthenaSliceSource(AthenaClient(warehouse.settings), warehouse.settings)
    else:
        raise WarehouseConfigError(
            f"target '{warehouse.target_name}' is {warehouse.adapter_type}: "
            "the loader reads PostgreSQL or Athena"
        )
