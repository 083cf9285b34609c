"""The run clock: the run date is today in the business time zone, never the machine's.

The zone is dbt's var `mips_time_zone`, which the deliveries model states (`run_time_zone`).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loader.errors import ConfigurationError

# The synthetic clinic's zone (SPEC §5), for data generated before any model exists.
SYNTHETIC_TIME_ZONE = "America/Los_Angeles"


def time_zone(name: str, what: str = "time zone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"{what} {name!r} is not a time zone name (like America/Los_Angeles)"
        ) from None


def today_in(zone_name: str) -> dt.date:
    """Today in `zone_name`."""
    return dt.datetime.now(time_zone(zone_name)).date()
