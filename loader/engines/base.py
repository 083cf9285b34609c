"""The interface every warehouse's engine offers: what the loader needs of PostgreSQL or Athena.

`loader.engines.open_engine(warehouse)` gives the `Engine` of the target's warehouse:
- PostgreSQL (loader.engines.postgres): models read with SQL, slices with `COPY … TO STDOUT`;
  one REPEATABLE READ snapshot and ACCESS SHARE locks hold the published build still; the
  run lock is an advisory lock.
- Athena (loader.engines.athena): a query per read whose result CSV is re-encoded to the
  same bytes; each publication is its own set of tables, never changed once published; the
  run lock is an object next to the query results, written with a conditional put.

Everything a command reads of the marts comes through `Engine.published()`: one consistent
read of the build whose marts are published (write-audit-publish, macros/publish_marts.sql),
whatever dbt does beside it. The build log is read in the same read, so the build it names is
the build whose rows are read.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from loader.clock import time_zone
from loader.engines.slice_files import UnloadedSlice
from loader.errors import ConfigurationError
from loader.marts.build_log import BuildRecord
from loader.marts.deliveries import DeliveriesError, Delivery
from loader.marts.expected_years import ExpectedYear
from loader.names import relation_parts


class EngineConfigError(ConfigurationError):
    """The target's warehouse is not one the loader reads."""


class UnloadSession:
    """Unloads on a thread of its own; `cancel_unload` (from another thread) stops the one
    in progress, which then raises."""

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        raise NotImplementedError

    def cancel_unload(self) -> None:
        raise NotImplementedError


class PublishedBuild(UnloadSession):
    """One consistent read of the published marts and of the build log beside them.

    `latest` is the newest invocation that touched the marts (it may have failed or never
    finished), `publication` the build whose marts are published, read here (None: nothing
    was ever published, and there is nothing to read)."""

    latest: BuildRecord | None = None
    publication: BuildRecord | None = None
    _zone: str | None = None

    def deliveries(self) -> list[Delivery]:
        """Every published delivery, in (year, state) order (select with `select_deliveries`)."""
        raise NotImplementedError

    def expected_years(self) -> list[ExpectedYear]:
        """Every performance year the published expected-years model states, in year order."""
        raise NotImplementedError

    def run_time_zone(self) -> str:
        """The zone of the run date, as the published marts state it (read once)."""
        if self._zone is None:
            self._zone = one_zone(self._zones())
        return self._zone

    def _zones(self) -> list[str | None]:
        raise NotImplementedError

    def count(self, delivery: Delivery) -> int:
        raise NotImplementedError

    def unload_sessions(self, count: int) -> contextlib.AbstractContextManager[list]:
        """Up to `count` sessions of their own that read this same build, for unloading in
        other threads (loader.run.unloads_ahead); fewer when the warehouse cannot give them
        without waiting."""
        raise NotImplementedError

    def published_relation(self, relation: str) -> str:
        """Where the published copy of a mart the deliveries name (`export_relation`) is:
        the same table name in the published schema, with the publication's suffix."""
        assert self.publication is not None and self.publication.published_schema
        table = relation_parts(relation)[-1]
        if table not in self.publication.marts_built:
            raise DeliveriesError(
                f"the deliveries name {relation}, which the published build "
                f"{self.publication.invocation_id} did not publish "
                f"(it published {', '.join(self.publication.marts_built)})"
            )
        return (
            f'"{self.publication.published_schema}"."{table}{self.publication.publication_suffix}"'
        )


class Engine:
    """A warehouse: its published marts, read consistently, and the lock that keeps runs
    apart."""

    def published(self) -> contextlib.AbstractContextManager[PublishedBuild]:
        raise NotImplementedError

    def run_lock(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError


class NothingPublished(PublishedBuild):
    """The warehouse has no published build (a new target, or dbt never built the marts
    successfully): there is nothing to read, only the build log to report."""

    def __init__(self, latest: BuildRecord | None):
        self.latest = latest
        self.publication = None

    def deliveries(self) -> list[Delivery]:
        return []

    def expected_years(self) -> list[ExpectedYear]:
        return []

    def _zones(self) -> list[str | None]:
        return []


def one_zone(zones: list[str | None]) -> str:
    """The models must state one valid zone: the run date is today there."""
    stated = sorted({zone for zone in zones if zone})
    if len(stated) != 1:
        raise DeliveriesError(
            f"the models state {len(stated)} run time zones ({', '.join(stated) or 'none'}): "
            "rebuild them with one var mips_time_zone"
        )
    time_zone(stated[0], "run_time_zone")
    return stated[0]
