"""The Athena engine: every model read is one query whose CSV result is read inside
`AthenaClient.fetch` (a result download that breaks off runs the query again, as one unit);
slices are re-encoded to the bytes the PostgreSQL engine writes; the run lock is an S3 object.
What is read is the published build (see `AthenaEngine.published`, docs/athena.md).
"""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import Iterator
from pathlib import Path

from loader.engines.athena_client import AthenaClient, AthenaQueryError, quote_identifier
from loader.engines.athena_csv import iter_csv_records
from loader.engines.athena_slices import (
    athena_file_columns,
    count_athena_slice,
    unload_athena_slice,
)
from loader.engines.base import Engine, NothingPublished, PublishedBuild, UnloadSession
from loader.engines.locks import s3_run_lock
from loader.engines.slice_files import UnloadedSlice
from loader.marts.build_log import BUILD_LOG_MODEL, BuildRecord, build_history, history_queries
from loader.marts.deliveries import DELIVERIES_COLUMNS, DELIVERIES_MODEL, Delivery
from loader.marts.expected_years import (
    EXPECTED_YEARS_COLUMNS,
    EXPECTED_YEARS_MODEL,
    ExpectedYear,
    expected_year_from_text,
)

ATHENA_LOCK_NAME = "mips-loader/export.lock"
# What Athena says when the build log is missing, or older than its `event` column.
_NO_LOG = ("TABLE_NOT_FOUND", "does not exist", "COLUMN_NOT_FOUND")


def query_rows(client: AthenaClient, sql: str) -> list[list[str | None]]:
    """The records of `sql`'s result without its header, every value as text (NULL as None)."""

    def records(result) -> list[list[str | None]]:
        rows = iter_csv_records(client.stream_result_csv(result.output_location))
        next(rows, None)  # the header
        return list(rows)

    return client.fetch(sql, records)


class AthenaEngine(Engine):
    def __init__(self, settings: dict, client: AthenaClient | None = None):
        self.client = client or AthenaClient(settings)
        self.settings = settings

    def run_lock(self):
        owner = f"{getpass.getuser()}@{socket.gethostname()}"
        return s3_run_lock(
            self.client.s3,
            *self.client.staging_object(ATHENA_LOCK_NAME),
            owner=owner,
            retry_policy=self.client.retry_policy,
        )

    @contextlib.contextmanager
    def published(self) -> Iterator[PublishedBuild]:
        """Athena has no snapshot across queries, and needs none: every publication is a set
        of tables of its own (`mips_export_v1__p<build>`), never changed after the log row
        that names them was written. The newest published row is read once; every read of
        the run goes to the tables it names."""
        latest, publication = self._build_history()
        if publication is None:
            yield NothingPublished(latest)
        else:
            yield AthenaPublished(self.client, latest, publication)

    def _build_history(self) -> tuple[BuildRecord | None, BuildRecord | None]:
        log = f"{quote_identifier(self.client.schema)}.{quote_identifier(BUILD_LOG_MODEL)}"
        try:
            return build_history(*(query_rows(self.client, q) for q in history_queries(log)))
        except AthenaQueryError as exc:
            # no log yet, or one from before publication (the next dbt build replaces it)
            if any(s in str(exc) for s in _NO_LOG):
                return None, None
            raise


class AthenaPublished(PublishedBuild):
    def __init__(self, client: AthenaClient, latest, publication: BuildRecord):
        self.client = client
        self.latest = latest
        self.publication = publication
        self._columns: dict[str, list[str]] = {}

    def _relation(self, mart: str) -> str:
        assert self.publication is not None
        return (
            f"{quote_identifier(str(self.publication.published_schema))}."
            f"{quote_identifier(mart + self.publication.publication_suffix)}"
        )

    def deliveries(self) -> list[Delivery]:
        selected = ", ".join(DELIVERIES_COLUMNS)
        rows = query_rows(
            self.client,
            f"select {selected} from {self._relation(DELIVERIES_MODEL)} order by 1, 2",
        )
        return [_delivery_from_text(record) for record in rows]

    def expected_years(self) -> list[ExpectedYear]:
        selected = ", ".join(EXPECTED_YEARS_COLUMNS)
        rows = query_rows(
            self.client,
            f"select {selected} from {self._relation(EXPECTED_YEARS_MODEL)} order by 1",
        )
        return [expected_year_from_text(record) for record in rows]

    def _zones(self) -> list[str | None]:
        zones: list[str | None] = []
        for model in (DELIVERIES_MODEL, EXPECTED_YEARS_MODEL):
            query = f"select distinct run_time_zone from {self._relation(model)}"
            zones = [record[0] for record in query_rows(self.client, query)]
            if zones:
                break
        return zones

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        relation = self.published_relation(delivery.export_relation)
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
    def unload_sessions(self, count: int) -> Iterator[list[UnloadSession]]:
        # boto3 clients are thread-safe: every session shares the client and the column
        # cache. An interrupted run stops its queries through INTERRUPTED (AthenaClient.wait).
        yield [self] * count

    def cancel_unload(self) -> None:
        """Nothing to do: the query's wait loop sees INTERRUPTED and stops the query."""

    def count(self, delivery: Delivery) -> int:
        return count_athena_slice(
            self.client,
            self.published_relation(delivery.export_relation),
            delivery.performance_year,
            delivery.state_code,
        )


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
