"""Exact time conversions: int64 nanoseconds UTC, never through float.

Every exchange speaks a different unit (s, ms, µs, ns, decimal-second strings,
ISO-8601). These helpers convert all of them to int64 ns with integer
arithmetic only, so a Kraken ``"1688671955.123456789"`` stays exact.
"""

from __future__ import annotations

import calendar
import re

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
NS_PER_HOUR = 60 * NS_PER_MIN
NS_PER_DAY = 24 * NS_PER_HOUR

INT64_MIN_NS = -(1 << 63)
INT64_MAX_NS = (1 << 63) - 1
"""The range every stored timestamp must fit (Arrow/Parquet/SQLite int64): 1677-09-21 to 2262-04-11."""

_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?)?$",
    re.ASCII,  # \d would also match non-ASCII digits, which int() accepts
)
_DECIMAL = re.compile(r"^(?P<sign>-?)(?P<int>\d+)(?:\.(?P<frac>\d*))?$", re.ASCII)


def s_to_ns(seconds: int) -> int:
    """Whole seconds to ns."""
    return int(seconds) * NS_PER_S


def ms_to_ns(ms: int) -> int:
    """Milliseconds to ns."""
    return int(ms) * NS_PER_MS


def us_to_ns(us: int) -> int:
    """Microseconds to ns."""
    return int(us) * NS_PER_US


def ns_to_ms(ns: int) -> int:
    """ns to whole milliseconds (floor)."""
    return ns // NS_PER_MS


def ns_to_s(ns: int) -> int:
    """ns to whole seconds (floor)."""
    return ns // NS_PER_S


def decimal_seconds_to_ns(text: str) -> int:
    """Parse a decimal-seconds string (``"1688671955.1234"``) exactly to ns.

    Digits beyond the ninth decimal are truncated (they are below 1 ns).

    Raises:
        ValueError: ``text`` is not a plain decimal number.
    """
    m = _DECIMAL.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a decimal number of seconds")
    frac = (m.group("frac") or "")[:9].ljust(9, "0")
    ns = int(m.group("int")) * NS_PER_S + int(frac)
    return -ns if m.group("sign") else ns


def parse_iso_ns(text: str) -> int:
    """Parse an ISO-8601 date or datetime to ns UTC, exactly.

    Accepts ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM[:SS[.fffffffff]]`` with an
    optional ``Z`` or ``±HH:MM`` offset (no offset means UTC).

    Raises:
        ValueError: not ISO-8601, or an impossible date/time.
    """
    m = _ISO.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an ISO-8601 date or datetime")
    y, mo, d = int(m.group("y")), int(m.group("mo")), int(m.group("d"))
    h = int(m.group("h") or 0)
    mi = int(m.group("mi") or 0)
    s = int(m.group("s") or 0)
    if not (1 <= mo <= 12) or not (1 <= d <= calendar.monthrange(y, mo)[1]):
        raise ValueError(f"{text!r} is not a valid date")
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"{text!r} is not a valid time of day")
    frac = (m.group("frac") or "").ljust(9, "0")
    days = days_from_civil(y, mo, d)
    ns = ((days * 24 + h) * 60 + mi) * 60 * NS_PER_S + s * NS_PER_S + int(frac)
    tz = m.group("tz")
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:])
        if oh > 23 or om > 59:
            raise ValueError(f"{text!r} has an invalid UTC offset")
        ns -= sign * (oh * 60 + om) * NS_PER_MIN
    return ns


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (exact integers)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    """(year, month, day) for days since 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def ns_to_iso(ns: int) -> str:
    """Format ns UTC as ISO-8601 with a ``Z`` suffix, trimming zero fractions."""
    days, rem = divmod(ns, NS_PER_DAY)
    y, mo, d = civil_from_days(days)
    secs, frac = divmod(rem, NS_PER_S)
    h, rest = divmod(secs, 3600)
    mi, s = divmod(rest, 60)
    out = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    return out + "Z"


def ns_to_date(ns: int) -> str:
    """``YYYY-MM-DD`` (UTC) of a ns timestamp."""
    y, mo, d = civil_from_days(ns // NS_PER_DAY)
    return f"{y:04d}-{mo:02d}-{d:02d}"


def ns_to_month(ns: int) -> str:
    """``YYYY-MM`` (UTC) of a ns timestamp."""
    y, mo, _ = civil_from_days(ns // NS_PER_DAY)
    return f"{y:04d}-{mo:02d}"


def month_start_ns(year: int, month: int) -> int:
    """ns of the first instant of a calendar month (month may overflow 1..12)."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return days_from_civil(year, month, 1) * NS_PER_DAY


# --- bounds of a moment a user may ask an exchange about ------------------------------------------

GENESIS_NS = 1_230_940_800 * NS_PER_S
"""2009-01-03T00:00Z, the day Bitcoin's first block was mined: no exchange holds older data."""
FUTURE_SLACK_NS = NS_PER_DAY
"""How far past now an end may lie (clock skew, a user's local "tomorrow"); anything later is a typo."""


def int64_problem(ns: int) -> str | None:
    """Why ``ns`` cannot be stored as int64 nanoseconds, or None if it can."""
    if INT64_MIN_NS <= ns <= INT64_MAX_NS:
        return None
    return f"is outside the int64 nanosecond range ({ns_to_date(INT64_MIN_NS)} to {ns_to_date(INT64_MAX_NS)})"


def history_problem(ns: int, now_ns: int, slack_ns: int = FUTURE_SLACK_NS) -> str | None:
    """Why ``ns`` is no moment of crypto-exchange history to fetch, or None if it is one.

    A bound must lie between :data:`GENESIS_NS` and ``now_ns + slack_ns``; both
    lie well inside the int64 range, so a value this accepts is always storable.
    """
    if ns < GENESIS_NS:
        return f"is before {ns_to_date(GENESIS_NS)} (the first Bitcoin block): no exchange has data that old"
    if ns > now_ns + slack_ns:
        return f"is more than {slack_ns // NS_PER_HOUR}h in the future"
    return None
