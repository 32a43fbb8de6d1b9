"""Backfill planning: page windows over what the lake lacks, known holes subtracted, holes a page reveals."""

from __future__ import annotations

from dccd.domain import Span
from dccd.domain.plan import (
    Shortfall,
    StoredTrades,
    TradeLeg,
    TradesPlan,
    Window,
    at_horizon,
    closed_end,
    duration,
    ohlc_windows,
    page_holes,
    subtract_holes,
    trades_plan,
    unserved,
)

M = 60 * 10**9  # one minute in ns
MIN = Span("1m")


def test_windows_cover_only_missing_bars_in_page_sized_aligned_steps() -> None:
    """Stored bars split the range; each missing run is cut into windows of at most page_limit bars."""
    stored = [3 * M, 4 * M, 5 * M]
    assert ohlc_windows(MIN, 0, 12 * M, stored, 4) == [
        Window(0, 3 * M, 3),
        Window(6 * M, 10 * M, 4),
        Window(10 * M, 12 * M, 2),
    ]
    assert ohlc_windows(MIN, 0, 12 * M, [i * M for i in range(12)], 4) == []  # nothing missing: no request


def test_known_holes_are_cut_out_of_windows() -> None:
    """A hole inside a window splits it; one covering a window removes it; no holes leaves windows as they are."""
    windows = [Window(0, 10 * M, 10), Window(10 * M, 20 * M, 10)]
    assert subtract_holes(windows, [(3 * M, 5 * M), (10 * M, 20 * M)], MIN) == [
        Window(0, 3 * M, 3),
        Window(5 * M, 10 * M, 5),
    ]
    assert subtract_holes(windows, [], MIN) is windows


def test_page_holes_and_closed_end() -> None:
    """Bars a full page lacks are its holes; the bar still open at now is never planned."""
    w = Window(0, 6 * M, 6)
    assert page_holes(MIN, w, [0, M, 2 * M, 3 * M, 4 * M, 5 * M]) == []
    assert page_holes(MIN, w, [0, M, 4 * M]) == [(2 * M, 4 * M), (5 * M, 6 * M)]
    assert closed_end(MIN, 10 * M, 7 * M + 5) == 7 * M


def test_unserved_is_the_head_before_what_the_exchange_serves() -> None:
    """The head before the oldest served row is unserved; nothing when served from the start; all when none served."""
    assert unserved(0, 10 * M, 4 * M) == (0, 4 * M)
    assert unserved(0, 10 * M, 12 * M) == (0, 10 * M)  # everything served is newer than the range
    assert unserved(0, 10 * M, None) == (0, 10 * M)
    assert unserved(5 * M, 10 * M, 4 * M) is None
    assert unserved(5 * M, 5 * M, None) is None


def test_at_horizon_tells_a_retention_limit_from_a_listing() -> None:
    """An oldest row near now - horizon is the retention limit; one well inside the horizon is where data starts."""
    day = 86_400
    now = 100 * day * 10**9
    assert at_horizon((10 * day) * 10**9, now, 90 * day, 7 * day)  # exactly 90 days old
    assert at_horizon((15 * day) * 10**9, now, 90 * day, 7 * day)  # 85 days: within the slack
    assert not at_horizon((70 * day) * 10**9, now, 90 * day, 7 * day)  # 30 days old: a listing


def test_shortfall_summary_counts_bars_or_measures_time() -> None:
    """Bars are counted ('1,820 of 2,540 bars'); trades are measured as a time range with durations."""
    bars = Shortfall(0, 1820 * M, 0, 2540 * M, "kraken serves only the last 720 bars", 1820 * M, 1820, 2540)
    assert bars.summary() == (
        "kraken serves only the last 720 bars (from 1970-01-02T06:20:00Z); 1,820 of 2,540 bars unavailable"
    )
    trades = Shortfall(0, 294 * 10**9, 0, 5 * M, "bybit serves only its last 60 trades", 294 * 10**9, unit="trades")
    assert trades.summary() == (
        "bybit serves only its last 60 trades (from 1970-01-01T00:04:54Z);"
        " 1970-01-01T00:00:00Z to 1970-01-01T00:04:54Z unavailable (4m 54s of 5m)"
    )
    none = Shortfall(0, 5 * M, 0, 5 * M, "x serves recent trades only", None, unit="trades")
    assert none.summary().startswith("x serves recent trades only (none in range); ")
    assert [duration(n) for n in (3 * 10**8, 90 * M, 60 * M, 110 * 1440 * M, 1441 * 60 * M)] == [
        "0.3s",
        "1h 30m",
        "1h",
        "110d",
        "60d 1h",
    ]


def test_trades_with_nothing_stored_are_one_walk() -> None:
    """No stored trade in range: one walk from the start to the end, no resume."""
    assert trades_plan(5, 100, None, sequential=True) == TradesPlan((TradeLeg(5, 100),))


def test_sequential_trades_walk_the_head_each_missing_id_range_then_resume_after_the_last() -> None:
    """Stored ids 10..20 without 13..14 and 17: head up to id 9, the two id holes by id, then the tail."""
    stored = StoredTrades(50, 80, (10, 11, 12, 15, 16, 18, 19, 20))
    assert trades_plan(0, 100, stored, sequential=True) == TradesPlan(
        (TradeLeg(0, 51, stop_id=9), TradeLeg(None, 100, 13, 14), TradeLeg(None, 100, 17, 17)), True, (80, 20)
    )


def test_trades_without_sequential_ids_walk_the_head_by_time_then_resume() -> None:
    """Ids that are not sequential (or not integers): the head stops before the first stored time; then the tail."""
    stored = StoredTrades(50, 80, None)
    assert trades_plan(None, 100, stored, sequential=True) == TradesPlan((TradeLeg(None, 50),), True)
    assert trades_plan(None, 100, StoredTrades(50, 80, (1, 3)), sequential=False) == TradesPlan(
        (TradeLeg(None, 50),), True
    )
