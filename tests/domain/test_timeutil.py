"""Exact time arithmetic: ISO-8601, decimal seconds, ms/s/µs/ns, civil dates — never via float."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dccd.domain.timeutil import (
    GENESIS_NS,
    INT64_MAX_NS,
    INT64_MIN_NS,
    NS_PER_DAY,
    NS_PER_S,
    civil_from_days,
    days_from_civil,
    decimal_seconds_to_ns,
    history_problem,
    int64_problem,
    month_start_ns,
    ms_to_ns,
    ns_to_date,
    ns_to_iso,
    ns_to_month,
    ns_to_ms,
    ns_to_s,
    parse_iso_ns,
    s_to_ns,
    us_to_ns,
)

EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
MIN_NS = (dt.date(1, 1, 1).toordinal() - EPOCH_ORDINAL) * NS_PER_DAY
MAX_NS = (dt.date(9999, 12, 31).toordinal() - EPOCH_ORDINAL + 1) * NS_PER_DAY - 1
ns_any = st.integers(min_value=MIN_NS, max_value=MAX_NS)
FAST = settings(max_examples=300, deadline=None)


def oracle(ns: int) -> tuple[dt.datetime, int]:
    """datetime (µs) and the leftover ns of ``ns``, computed by the stdlib."""
    us, rest = divmod(ns, 1000)
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us), rest


@FAST
@given(ns_any)
@example(-1)
@example(0)
@example(MIN_NS)
@example(MAX_NS)
def test_iso_round_trip(ns: int) -> None:
    """parse_iso_ns(ns_to_iso(ns)) == ns from year 1 to 9999, pre-1970 and 9-digit fractions included."""
    text = ns_to_iso(ns)
    assert parse_iso_ns(text) == ns
    when, rest = oracle(ns)
    assert text.startswith(
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    )
    frac = when.microsecond * 1000 + rest
    assert text.endswith((f".{frac:09d}".rstrip("0") if frac else "") + "Z")


@st.composite
def iso_texts(draw: st.DrawFn) -> tuple[str, int]:
    """An ISO-8601 text (any offset style, 0-9 fraction digits) and its ns, computed via date.toordinal."""
    day = draw(st.dates(min_value=dt.date(1, 1, 2), max_value=dt.date(9999, 12, 30)))
    h, mi, s = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    digits = draw(st.integers(0, 9))
    frac = draw(st.integers(0, 10**digits - 1)) if digits else 0
    sep = draw(st.sampled_from(["T", " "]))
    text = f"{day.isoformat()}{sep}{h:02d}:{mi:02d}:{s:02d}" + (f".{frac:0{digits}d}" if digits else "")
    ns = ((day.toordinal() - EPOCH_ORDINAL) * 86400 + h * 3600 + mi * 60 + s) * NS_PER_S
    ns += frac * 10 ** (9 - digits)
    tz = draw(st.sampled_from(["", "Z", "z", "+hh:mm", "-hh:mm", "+hhmm", "-hhmm"]))
    if tz.startswith(("+", "-")):
        oh, om = draw(st.integers(0, 23)), draw(st.integers(0, 59))
        text += tz[0] + f"{oh:02d}" + (":" if ":" in tz else "") + f"{om:02d}"
        ns -= (1 if tz[0] == "+" else -1) * (oh * 60 + om) * 60 * NS_PER_S
    else:
        text += tz
    return text, ns


@FAST
@given(iso_texts())
def test_parse_iso_with_offsets_matches_oracle(case: tuple[str, int]) -> None:
    """parse_iso_ns honours Z, ±HH:MM and ±HHMM offsets and every fraction length exactly."""
    text, ns = case
    assert parse_iso_ns(text) == ns


def test_parse_iso_forms() -> None:
    """Date-only and minute-precision forms mean UTC midnight / :00 seconds; a comma is a decimal mark."""
    assert parse_iso_ns("1970-01-01") == 0
    assert parse_iso_ns("1969-12-31T23:59:59.999999999Z") == -1
    assert parse_iso_ns("2024-01-01T10:30") == parse_iso_ns("2024-01-01T10:30:00Z")
    assert parse_iso_ns("2024-01-01T00:00:00,5Z") == parse_iso_ns("2024-01-01T00:00:00.5Z")
    assert parse_iso_ns("2024-02-29T00:00:00+01:00") == parse_iso_ns("2024-02-28T23:00:00Z")
    assert parse_iso_ns(" 2024-01-01 ") == 1_704_067_200 * NS_PER_S


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024",
        "2024-1-1",
        "2024-13-01",
        "2024-00-10",
        "2023-02-29",
        "2024-04-31",
        "2024-01-01T24:00",
        "2024-01-01T10:60",
        "2024-01-01T10:00:60",
        "2024-01-01T10:00:00.1234567890",
        "2024-01-01T10:00:00+24:00",
        "2024-01-01T10:00:00+05:60",
        "2024-01-01T10:00:00+05",
        "2024-01-01Z",
        "２０２４-01-01",
        "2024-01-01T10:00:00.１",
        "1704067200",
    ],
)
def test_parse_iso_rejects(text: str) -> None:
    """Non-ISO text, impossible dates/times/offsets and non-ASCII digits raise ValueError."""
    with pytest.raises(ValueError):
        parse_iso_ns(text)


@st.composite
def decimals(draw: st.DrawFn) -> str:
    """A decimal-seconds string: optional '-', integer part, optional '.' and 0-15 fraction digits."""
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.integers(0, 10**12))
    if not draw(st.booleans()):
        return f"{sign}{whole}"
    digits = draw(st.text(alphabet="0123456789", max_size=15))
    return f"{sign}{whole}.{digits}"


@FAST
@given(decimals())
@example("1688671955.123456789")
@example("-0.0000000019")
@example("1.")
def test_decimal_seconds_exact(text: str) -> None:
    """decimal_seconds_to_ns equals Decimal arithmetic truncated toward zero below 1 ns."""
    expected = int((Decimal(text) * NS_PER_S).to_integral_value(rounding=ROUND_DOWN))
    assert decimal_seconds_to_ns(text) == expected


def test_decimal_seconds_beats_float() -> None:
    """Kraken-style timestamps keep every nanosecond (float would not)."""
    text = "1688671955.123456789"
    assert decimal_seconds_to_ns(text) == 1_688_671_955_123_456_789
    assert int(float(text) * NS_PER_S) != 1_688_671_955_123_456_789


@pytest.mark.parametrize("text", ["", "abc", "1e9", "1.2.3", ".5", "+1", "1,5", "１", "0x10", "nan"])
def test_decimal_seconds_rejects(text: str) -> None:
    """Anything but a plain decimal number raises ValueError."""
    with pytest.raises(ValueError):
        decimal_seconds_to_ns(text)


@FAST
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_unit_conversions(ns: int) -> None:
    """ns_to_ms/ns_to_s floor (also before 1970) and ms_to_ns/s_to_ns/us_to_ns scale exactly."""
    ms, s = ns_to_ms(ns), ns_to_s(ns)
    assert ms_to_ns(ms) <= ns < ms_to_ns(ms + 1)
    assert s_to_ns(s) <= ns < s_to_ns(s + 1)
    assert ns_to_ms(ms_to_ns(ms)) == ms
    assert ns_to_s(s_to_ns(s)) == s
    assert us_to_ns(ms * 1000) == ms_to_ns(ms)


def test_unit_conversion_values() -> None:
    """Spot values: 1 ms, 1 s, 1 µs in ns and floor below zero."""
    assert (ms_to_ns(1), s_to_ns(1), us_to_ns(1)) == (1_000_000, 1_000_000_000, 1_000)
    assert (ns_to_ms(-1), ns_to_s(-1)) == (-1, -1)
    assert ms_to_ns(1_704_067_200_123) == 1_704_067_200_123_000_000


@FAST
@given(ns_any)
def test_date_and_month_match_stdlib(ns: int) -> None:
    """ns_to_date and ns_to_month agree with datetime for any instant of years 1-9999."""
    when, _ = oracle(ns)
    assert ns_to_date(ns) == f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    assert ns_to_month(ns) == f"{when.year:04d}-{when.month:02d}"


@FAST
@given(st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_civil_days_match_stdlib(day: dt.date) -> None:
    """days_from_civil and civil_from_days are inverse and agree with date.toordinal."""
    days = days_from_civil(day.year, day.month, day.day)
    assert days == day.toordinal() - EPOCH_ORDINAL
    assert civil_from_days(days) == (day.year, day.month, day.day)


@FAST
@given(st.integers(4, 9995), st.integers(-30, 42))
def test_month_start_overflows_months(year: int, month: int) -> None:
    """month_start_ns carries months outside 1..12 into the year."""
    y, m0 = divmod(year * 12 + month - 1, 12)
    m = m0 + 1
    assert month_start_ns(year, month) == (dt.date(y, m, 1).toordinal() - EPOCH_ORDINAL) * NS_PER_DAY


def test_int64_bounds() -> None:
    """int64_problem accepts exactly the int64 range and names it by its dates."""
    assert int64_problem(INT64_MIN_NS) is None and int64_problem(INT64_MAX_NS) is None
    assert (INT64_MIN_NS, INT64_MAX_NS) == (-(2**63), 2**63 - 1)
    expected = "is outside the int64 nanosecond range (1677-09-21 to 2262-04-11)"
    assert int64_problem(INT64_MAX_NS + 1) == int64_problem(INT64_MIN_NS - 1) == expected
    assert int64_problem(parse_iso_ns("0001-01-01")) == expected


def test_history_bounds() -> None:
    """A moment to fetch lies in [2009-01-03, now + 24h]; everything there fits int64."""
    now = parse_iso_ns("2024-03-09T16:00Z")
    assert parse_iso_ns("2009-01-03") == GENESIS_NS
    assert history_problem(GENESIS_NS, now) is None
    assert history_problem(now + NS_PER_DAY, now) is None
    assert history_problem(GENESIS_NS - 1, now) == (
        "is before 2009-01-03 (the first Bitcoin block): no exchange has data that old"
    )
    assert history_problem(now + NS_PER_DAY + 1, now) == "is more than 24h in the future"
    assert history_problem(now + 10, now, slack_ns=0) == "is more than 0h in the future"
    assert int64_problem(GENESIS_NS) is None and int64_problem(now + NS_PER_DAY) is None
