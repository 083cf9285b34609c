"""The run clock: the run date is today in the business time zone, not the machine's."""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loader.errors import ConfigurationError

RUN_TIME_ZONE_ENV = "MIPS_TIME_ZONE"
DEFAULT_RUN_TIME_ZONE = "America/Los_Angeles"


def run_time_zone() -> ZoneInfo:
    name = os.environ.get(RUN_TIME_ZONE_ENV) or DEFAULT_RUN_TIME_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{RUN_TIME_ZONE_ENV}={name!r} is not a time zone name (like America/Los_Angeles)"
        ) from None


def today_for_run() -> dt.date:
    """The run date: today in the business time zone, never the machine's UTC date."""
    return dt.datetime.now(run_time_zone()).date()
