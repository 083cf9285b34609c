"""The publish gate: deliver only what the latest build of the marts tested and published.

dbt records the start and the end of every invocation in `{target schema}.mips_build_log`
(its on-run-start and on-run-end hooks, so this holds wherever dbt runs), and a `dbt build`
whose every node passed publishes the marts in the same step as its end (write-audit-publish,
macros/publish_marts.sql). The loader reads only the published marts, so what it delivers was
tested; the gate adds what the marts cannot say themselves. Only invocations that touched the
marts count (a `dbt build -s staging` changes no mart; a `dbt test` of the marts that passes
changes nothing either). The newest of them must:

- have finished (one that started and never finished was killed, or is still running),
- have succeeded (no error, failure or skipped node),
- have published the marts (a `dbt build` of at least what the daily build runs; `dbt run`,
  a build of some marts or one that left a daily test out publishes nothing),
- be the build the published deliveries rows carry (`mips_deliveries.dbt_invocation_id`), and
- have finished no longer ago than `max_age`, measured against the clock (`--date` only names
  a backfill's snapshot; it never makes an old build fresh).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from loader.errors import ConfigurationError
from loader.marts.build_log import BUILD_LOG_MODEL, BuildRecord
from loader.marts.deliveries import Delivery

DEFAULT_MAX_BUILD_AGE = dt.timedelta(hours=24)
_DURATION = re.compile(r"(\d+)\s*([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, option: str = "--max-build-age") -> dt.timedelta:
    """`24h`, `90m`, `2d`, or combinations like `1d12h`; never zero (nothing is that young)."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigurationError(f"{option} {text!r} is not a duration like 24h, 90m or 2d")
    duration = sum((dt.timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), dt.timedelta())
    if duration <= dt.timedelta(0):
        raise ConfigurationError(
            f"{option} {text!r} is zero: no build could ever be young enough; give a duration "
            "like 24h"
        )
    return duration


def gate_refusal(
    latest: BuildRecord | None,
    publication: BuildRecord | None,
    deliveries: Sequence[Delivery],
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
    schema: str,
) -> str | None:
    """Why nothing may be delivered now, or None when the gate is open. `latest` is the newest
    invocation that touched the marts, `publication` the build whose marts are published."""
    if latest is None:
        return (
            f"no dbt build of the marts is recorded in {schema}.{BUILD_LOG_MODEL}: "
            "run `dbt build` for this target first"
        )
    what = latest.describe()
    if not latest.finished:
        return (
            f"the latest build of the marts ({what}): it was killed, or is still running; "
            "the published marts are as they were, run the build again (or wait for it)"
        )
    if not latest.success:
        return f"the latest build of the marts failed: {latest.what_failed()} ({what})"
    if not latest.published:
        built = ", ".join(latest.marts_built) or "none"
        return (
            f"the latest build of the marts ({what}) published nothing: only a `dbt build` "
            "that runs at least what the daily build runs (every mart, model and seed, every "
            f"data test not tagged weekly) and whose every node passes publishes them "
            f"(it built: {built})"
        )
    if publication is None or publication.invocation_id != latest.invocation_id:
        return (
            f"the published marts are not those of the latest build of the marts ({what}): "
            "run `dbt build` again"
        )
    stale = sorted({d.label for d in deliveries if d.dbt_invocation_id != latest.invocation_id})
    if stale:
        return (
            f"published mips_deliveries rows for {', '.join(stale)} come from another dbt "
            f"invocation than the latest build of the marts ({what})"
        )
    assert latest.completed_at is not None
    age = now - latest.completed_at
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
