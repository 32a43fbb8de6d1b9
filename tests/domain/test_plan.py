"""Backfill planning: page windows over what the lake lacks, known holes subtracted, holes a page reveals."""

from __future__ import annotations

from dccd.domain import Span
from dccd.domain.plan import Window, closed_end, ohlc_windows, page_holes, subtract_holes

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
