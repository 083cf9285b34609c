"""The interface every warehouse's engine offers: what the loader needs of PostgreSQL or Athena.

`loader.engines.open_engine(warehouse)` gives the `Engine` of the target's warehouse:
- PostgreSQL (loader.engines.postgres): models read with SQL, slices with `COPY … TO STDOUT`;
  the run lock is an advisory lock.
- Athena (loader.engines.athena): a query per read whose result CSV is re-encoded to the
  same bytes; the run lock is an object next to the query results, written with a
  conditional put.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from loader.clock import time_zone
from loader.engines.slice_files import UnloadedSlice
from loader.errors import ConfigurationError
from loader.marts.build_log import BuildRecord
from loader.marts.deliveries import DELIVERIES_MODEL, DeliveriesError, Delivery
from loader.marts.expected_years import EXPECTED_YEARS_MODEL, ExpectedYear


class UnloadSession:
    """Unloads on a thread of its own; `cancel_unload` (from another thread) stops the one
    in progress, which then raises."""

    def unload(self, delivery: Delivery, work_dir: Path | None) -> UnloadedSlice:
        raise NotImplementedError

    def cancel_unload(self) -> None:
        raise NotImplementedError


class Engine(UnloadSession):
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


class EngineConfigError(ConfigurationError):
    """The target's warehouse is not one the loader reads."""


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
