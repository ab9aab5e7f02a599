"""Time helpers for policy data: strict ISO 8601 parsing, durations, the Japanese fiscal year.

Policy validity is a legal fact, so every instant must carry its offset: a naive
timestamp would silently shift an agreement's end by nine hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from certs.errors import SecnodeError

JST = timezone(timedelta(hours=9), "JST")
"""Japan Standard Time; dates without a time, days for quotas and fiscal years use it."""

_DURATION = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class TimeFormatError(SecnodeError, ValueError):
    """A text is not the instant or duration it should be (an operator's or a document's)."""


def require_aware(value: datetime, name: str = "time") -> datetime:
    """Return ``value`` if it carries a UTC offset; naive times are refused (never guessed)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must include a UTC offset (got naive {value.isoformat()})")
    return value


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 date-time with an offset (``Z`` accepted)."""
    if not isinstance(text, str) or _DATE_ONLY.match(text):
        raise TimeFormatError(f"expected an ISO 8601 date-time with offset, got {text!r}")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeFormatError(f"expected an ISO 8601 date-time with offset, got {text!r}") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimeFormatError(f"{text!r} must include a UTC offset (got naive {value.isoformat()})")
    return value


def parse_bound(text: str, *, end: bool) -> datetime:
    """Parse a validity bound: a date-time, or a date meaning a whole day in JST.

    A date as the *end* bound is inclusive, so ``2027-03-31`` ends at the start of
    2027-04-01 JST; stored bounds are always half-open ``[from, to)``.
    """
    if isinstance(text, str) and _DATE_ONLY.match(text):
        day = date.fromisoformat(text)
        start = datetime.combine(day, time(0), tzinfo=JST)
        return start + timedelta(days=1) if end else start
    return parse_instant(text)


def format_instant(value: datetime) -> str:
    """Canonical text for an instant, in JST, so exported files read like the law's calendar."""
    return require_aware(value).astimezone(JST).isoformat()


@dataclass(frozen=True, slots=True)
class IsoDuration:
    """An ISO 8601 duration (``P3Y``, ``P14D``, ``PT12H``); years/months stay calendar units."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> IsoDuration:
        match = _DURATION.match(text) if isinstance(text, str) else None
        if match is None or text in ("P", "PT") or text.endswith("T"):
            raise TimeFormatError(
                f"expected an ISO 8601 duration such as P14D or P3Y, got {text!r}"
            )
        parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
        return cls(**parts)

    def __str__(self) -> str:
        date_part = "".join(
            f"{v}{u}" for v, u in ((self.years, "Y"), (self.months, "M"), (self.days, "D")) if v
        )
        time_part = "".join(
            f"{v}{u}" for v, u in ((self.hours, "H"), (self.minutes, "M"), (self.seconds, "S")) if v
        )
        if not date_part and not time_part:
            return "PT0S"
        return "P" + date_part + (f"T{time_part}" if time_part else "")

    @property
    def exact(self) -> bool:
        """True if the duration has a fixed length (no calendar years or months)."""
        return self.years == 0 and self.months == 0

    def to_timedelta(self) -> timedelta:
        """Fixed-length form; refuses years/months, whose length depends on the calendar."""
        if not self.exact:
            raise ValueError(f"duration {self} has calendar years/months; use days instead")
        return timedelta(
            days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds
        )

    def approx_years(self) -> float:
        """Length in years, for comparisons against legal minimums (3-year retention)."""
        return self.years + self.months / 12 + (self.days + self.hours / 24) / 365.25


def fiscal_year_of(value: datetime) -> int:
    """Japanese fiscal year (年度) of an instant: April 1 to March 31, in JST."""
    local = require_aware(value).astimezone(JST)
    return local.year if local.month >= 4 else local.year - 1


def fiscal_year_bounds(fiscal_year: int) -> tuple[datetime, datetime]:
    """Half-open ``[start, end)`` of a fiscal year, in JST."""
    return (
        datetime(fiscal_year, 4, 1, tzinfo=JST),
        datetime(fiscal_year + 1, 4, 1, tzinfo=JST),
    )


def jst_day(value: datetime) -> date:
    """The JST calendar day of an instant (quota windows count per local day)."""
    return require_aware(value).astimezone(JST).date()
