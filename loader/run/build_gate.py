"""The publish gate: deliver only what the latest successful `dbt build` of the marts produced.

dbt records every invocation in `{target schema}.mips_build_log` (an on-run-end hook, so it holds
wherever dbt runs: cron, Airflow, dbt Cloud). Only invocations that touched the marts (built one,
or tested one) count; a `dbt build -s staging` changes no mart and neither opens nor closes the
gate. The latest invocation that touched the marts must:

- have succeeded (no error, failure or skipped node),
- have built `mips_deliveries` and every export model the deliveries point at,
- be the invocation the deliveries rows carry (`mips_deliveries.dbt_invocation_id`), and
- have finished no longer ago than `max_age`, measured against the clock (`--date` only names
  a backfill's snapshot; it never makes an old build fresh).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from loader.errors import ConfigurationError, MipsError
from loader.marts.build_log import BUILD_LOG_MODEL, BuildRecord
from loader.marts.deliveries import Delivery
from loader.names import relation_parts

DELIVERIES_MART = "mips_deliveries"
DEFAULT_MAX_BUILD_AGE = dt.timedelta(hours=24)
_DURATION = re.compile(r"(\d+)\s*([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class BuildRefused(MipsError):
    """The gate is closed: nothing may be delivered from what the warehouse holds now."""


def parse_duration(text: str) -> dt.timedelta:
    """`24h`, `90m`, `2d`, or combinations like `1d12h`."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigurationError(f"--max-build-age {text!r} is not a duration like 24h, 90m or 2d")
    return sum((dt.timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), dt.timedelta())


def _mart_names(relation: str) -> set[str]:
    """The names a mart may be recorded under: its table, and without a version suffix."""
    table = relation_parts(relation)[-1]
    return {table, re.sub(r"_v\d+$", "", table)}


def gate_refusal(
    build: BuildRecord | None,
    deliveries: Sequence[Delivery],
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
    schema: str,
) -> str | None:
    """Why nothing may be delivered now, or None when the gate is open."""
    if build is None:
        return (
            f"no dbt build of the marts is recorded in {schema}.{BUILD_LOG_MODEL}: "
            "run `dbt build` for this target first"
        )
    what = build.describe()
    if not build.success:
        counts = f"{build.errors} error(s), {build.failures} failure(s), {build.skipped} skipped"
        nodes = f": {build.failed_nodes}" if build.failed_nodes else ""
        return f"the latest build of the marts failed ({what}; {counts}{nodes})"
    built = build.built()
    needed = {DELIVERIES_MART: {DELIVERIES_MART}}
    for delivery in deliveries:
        names = _mart_names(delivery.export_relation)
        needed[relation_parts(delivery.export_relation)[-1]] = names
    missing = sorted(table for table, names in needed.items() if not names & built)
    if missing:
        return (
            f"the latest build of the marts ({what}) did not build {', '.join(missing)}: "
            "deliveries and export rows must come from one build"
        )
    stale = sorted({d.label for d in deliveries if d.dbt_invocation_id != build.invocation_id})
    if stale:
        return (
            f"{DELIVERIES_MART} rows for {', '.join(stale)} come from another dbt invocation "
            f"than the latest build of the marts ({what})"
        )
    age = now - build.completed_at
    if age > max_age:
        hours = age.total_seconds() / 3600
        return (
            f"the latest build of the marts ({what}) is {hours:.1f} h old, "
            f"older than --max-build-age {_format(max_age)}"
        )
    return None


def _format(duration: dt.timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"
