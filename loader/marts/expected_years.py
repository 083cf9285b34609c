"""Which performance years the registry expects on a run date, as dbt's `mips_expected_years`
model decides it.

The model holds the rule (a year is expected from its January 1 to the end of the submission
window in the next year) and each year's readiness; the loader only keeps the years whose
window holds its run date and that are not simply configured, so `status` and `plan` can show
a year nobody set up. A configured year shows through its deliveries instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from loader.errors import ConfigurationError
from loader.marts.deliveries import DeliveriesError

EXPECTED_YEARS_MODEL = "mips_expected_years"
EXPECTED_YEARS_COLUMNS = (
    "performance_year",
    "expected_from",
    "expected_until",
    "readiness",
    "missing",
    "declared_not_reported_by",
)

CONFIGURED = "configured"
NOT_CONFIGURED = "not configured"
NOT_REPORTED = "not reported"
READINESS = (CONFIGURED, NOT_CONFIGURED, NOT_REPORTED)


@dataclass(frozen=True)
class ExpectedYear:
    performance_year: int
    expected_from: dt.date
    expected_until: dt.date
    readiness: str
    missing: str | None
    # the setting that declares the year not reported, as the model names it
    declared_not_reported_by: str | None = None

    def __post_init__(self) -> None:
        if self.readiness not in READINESS:
            raise DeliveriesError(
                f"{EXPECTED_YEARS_MODEL} row {self.performance_year}: readiness "
                f"{self.readiness!r} is not one of {', '.join(READINESS)}"
            )

    @property
    def needs_attention(self) -> bool:
        return self.readiness == NOT_CONFIGURED

    def describe(self) -> str:
        window = f"expected {self.expected_from.isoformat()} to {self.expected_until.isoformat()}"
        if self.readiness == NOT_CONFIGURED:
            return f"{self.performance_year}: not configured ({window}); missing: {self.missing}"
        if self.readiness == NOT_REPORTED:
            return (
                f"{self.performance_year}: not reported, declared with "
                f"{self.declared_not_reported_by} ({window})"
            )
        return f"{self.performance_year}: configured ({window})"

    def to_dict(self) -> dict:
        return {
            "performance_year": self.performance_year,
            "expected_from": self.expected_from.isoformat(),
            "expected_until": self.expected_until.isoformat(),
            "readiness": self.readiness,
            # the model lists what is missing as one text, '; '-separated: JSON gets a list
            "missing": self.missing.split("; ") if self.missing else None,
            "needs_attention": self.needs_attention,
        }


def expected_year_from_text(record: list[str | None]) -> ExpectedYear:
    """A row from a CSV query result (Athena), where every value arrives as text."""
    if len(record) != len(EXPECTED_YEARS_COLUMNS):
        raise DeliveriesError(
            f"{EXPECTED_YEARS_MODEL} row {record!r}: expected the columns "
            f"{', '.join(EXPECTED_YEARS_COLUMNS)}"
        )
    values = dict(zip(EXPECTED_YEARS_COLUMNS, record, strict=True))
    try:
        return ExpectedYear(
            performance_year=int(values["performance_year"] or ""),
            expected_from=dt.date.fromisoformat(values["expected_from"] or ""),
            expected_until=dt.date.fromisoformat(values["expected_until"] or ""),
            readiness=values["readiness"] or "",
            missing=values["missing"] or None,
            declared_not_reported_by=values["declared_not_reported_by"] or None,
        )
    except ValueError as exc:
        raise DeliveriesError(f"{EXPECTED_YEARS_MODEL} row {record!r}: {exc}") from None


def years_needing_a_look(
    years: list[ExpectedYear], run_date: dt.date, selected_years: tuple[int, ...] = ()
) -> list[ExpectedYear]:
    """The years expected on `run_date` that are not configured or declared not reported
    (of `selected_years`, when some are asked for).

    A run date in a year the build did not consider is an error rather than "nothing
    expected": the model lists the build date's year and the ones either side.
    """
    known = sorted(y.performance_year for y in years)
    if run_date.year not in known:
        span = f"{known[0]}-{known[-1]}" if known else "none"
        raise ConfigurationError(
            f"run date {run_date.isoformat()} is in {run_date.year}, a year "
            f"{EXPECTED_YEARS_MODEL} does not list (it lists {span}): run `dbt build` again"
        )
    return [
        year
        for year in years
        if year.readiness != CONFIGURED
        and year.expected_from <= run_date <= year.expected_until
        and (not selected_years or year.performance_year in selected_years)
    ]
