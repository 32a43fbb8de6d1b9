"""Bar spans: parse/label/seconds and exact alignment checked against Python's datetime."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dccd.domain.spans import SPAN_CHOICES, SPAN_LABELS, Span
from dccd.domain.timeutil import NS_PER_S, parse_iso_ns

EPOCH = dt.datetime(1970, 1, 1)
LO, HI = parse_iso_ns("1800-01-01"), parse_iso_ns("2300-01-01")
FAST = settings(max_examples=60, deadline=None)
spans = st.sampled_from(SPAN_LABELS).map(Span.parse)
instants = st.integers(min_value=LO, max_value=HI)


def to_ns(when: dt.datetime) -> int:
    """Naive-UTC datetime to ns, exactly."""
    delta = when - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def oracle_open(label: str, ts_ns: int) -> int:
    """Open time of the bar containing ts_ns, from calendar rules evaluated with datetime."""
    when = EPOCH + dt.timedelta(microseconds=ts_ns // 1000)
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    n, unit = int(label[:-1]), label[-1]
    if unit == "s":
        return to_ns(when.replace(microsecond=0))
    if unit == "m":
        minute_of_day = when.hour * 60 + when.minute
        return to_ns(midnight + dt.timedelta(minutes=minute_of_day // n * n))
    if unit == "h":
        return to_ns(midnight.replace(hour=when.hour // n * n))
    if label == "1d":
        return to_ns(midnight)
    if label == "3d":  # Binance: 3-day bars count from the epoch day
        days = (midnight - EPOCH).days
        return to_ns(EPOCH + dt.timedelta(days=days // 3 * 3))
    if label == "1w":
        return to_ns(midnight - dt.timedelta(days=midnight.weekday()))  # Monday
    assert label == "1M"
    return to_ns(midnight.replace(day=1))


@FAST
@given(spans, instants)
@example(Span.parse("1M"), -1)
@example(Span.parse("1w"), 0)
@example(Span.parse("1M"), parse_iso_ns("2024-02-29T23:59:59.999999999Z"))
def test_align_matches_calendar(span: Span, ts: int) -> None:
    """align(t) <= t < next(align(t)), align is idempotent and equals the datetime oracle for every span."""
    a = span.align(ts)
    assert a <= ts < span.next(a)
    assert span.align(a) == a
    assert span.align(span.next(a)) == span.next(a)
    assert a == oracle_open(span.label, ts)


def test_every_span_is_covered() -> None:
    """The property above runs over all sixteen spans, in their documented order."""
    assert SPAN_CHOICES == "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M"


@FAST
@given(spans, instants)
def test_align_up(span: Span, ts: int) -> None:
    """align_up(t) is the first bar open >= t: t itself when aligned, else the next open."""
    up = span.align_up(ts)
    assert up >= ts
    assert span.align(up) == up
    assert up == ts if span.align(ts) == ts else up == span.next(span.align(ts))


def test_month_bars_have_calendar_lengths() -> None:
    """1M bars run from the 1st to the 1st: 29 days in Feb 2024, 31 in Jan, across year ends."""
    m = Span.parse("1M")
    feb = parse_iso_ns("2024-02-01")
    assert m.next(feb) - feb == 29 * 86_400 * NS_PER_S
    assert m.align(parse_iso_ns("2024-01-31T23:59:59.999999999Z")) == parse_iso_ns("2024-01-01")
    assert m.add(parse_iso_ns("2023-11-01"), 3) == parse_iso_ns("2024-02-01")
    assert m.add(parse_iso_ns("2024-02-01"), -14) == parse_iso_ns("2022-12-01")
    assert m.calendar and not Span.parse("1w").calendar


def test_week_bars_open_on_monday() -> None:
    """1w bars open Monday 00:00 UTC (1970-01-01 was a Thursday)."""
    w = Span.parse("1w")
    assert w.align(0) == parse_iso_ns("1969-12-29")
    assert w.align(parse_iso_ns("2024-01-07T23:59:59Z")) == parse_iso_ns("2024-01-01")


@FAST
@given(spans, instants, st.integers(-30, 30))
def test_add_is_repeated_next(span: Span, ts: int, n: int) -> None:
    """add(a, n) steps n bars (also backwards) and add(add(a, n), -n) == a."""
    a = span.align(ts)
    b = a
    for _ in range(abs(n)):
        b = span.next(b) if n > 0 else span.add(b, -1)
    assert span.add(a, n) == b
    assert span.add(b, -n) == a


@FAST
@given(spans, instants, st.integers(-3, 60), st.integers(0, 999_999))
def test_count_matches_enumeration(span: Span, start: int, bars: int, ppm: int) -> None:
    """count(start, end) equals the number of bar opens enumerated in [start, end)."""
    end = start + bars * span.ns + span.ns * ppm // 1_000_000
    opens, t = 0, span.align_up(start)
    while t < end:
        opens += 1
        t = span.next(t)
    assert span.count(start, end) == opens


def test_parse_and_label() -> None:
    """Span.parse keeps the label; seconds/ns are the nominal lengths (30 d for 1M)."""
    assert [Span.parse(label).label for label in SPAN_LABELS] == list(SPAN_LABELS)
    assert (Span.parse("1m").seconds, Span.parse("4h").seconds, Span.parse("1w").seconds) == (60, 14_400, 604_800)
    assert Span.parse("1M").seconds == 30 * 86_400
    assert Span.parse("3m").ns == 180 * NS_PER_S
    assert str(Span.parse("15m")) == "15m"


@pytest.mark.parametrize("text", ["7m", "1H", "1mo", "", "60s", " 1m", "1d\n", "m1"])
def test_parse_rejects(text: str) -> None:
    """Anything but one of the sixteen labels raises ValueError listing the choices."""
    with pytest.raises(ValueError, match=f"is not a span \\({SPAN_CHOICES}\\)"):
        Span.parse(text)
