"""Backfill planning: which windows to request, and which bars a page must hold.

Pure functions of the requested range, what the lake already holds and `now`.
The paginator executes the plan; decisions stay here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from dccd.domain.gaps import missing_bars
from dccd.domain.spans import Span


class Window(msgspec.Struct, frozen=True, order=True):
    """Bars opening in ``[start_ns, end_ns)``; ``bars`` of them are expected."""

    start_ns: int
    end_ns: int
    bars: int


def closed_end(span: Span, end_ns: int, now_ns: int) -> int:
    """Exclusive end of the bars that are final at ``now`` (the open bar is excluded)."""
    return min(end_ns, span.align(now_ns))


def ohlc_windows(
    span: Span,
    start_ns: int,
    end_ns: int,
    stored: Iterable[int],
    page_limit: int,
) -> list[Window]:
    """Windows of at most ``page_limit`` bars covering every bar missing from ``stored``.

    Args:
        span: bar span.
        start_ns: first wanted bar (aligned up).
        end_ns: exclusive end (already clamped to closed bars).
        stored: sorted open times already in the lake within the range.
        page_limit: bars one request returns at most.

    Returns:
        Ascending windows; aligned to the span, never crossing a present bar run.
    """
    if end_ns <= start_ns:
        return []
    out: list[Window] = []
    for lo, hi in missing_bars(stored, span, start_ns, end_ns):
        hi = min(hi, span.align_up(end_ns))
        cur = lo
        while cur < hi:
            nxt = span.add(cur, page_limit)
            stop = min(nxt, hi)
            out.append(Window(cur, stop, span.count(cur, stop)))
            cur = stop
    return out


def page_holes(span: Span, window: Window, got: Sequence[int]) -> list[tuple[int, int]]:
    """Bars of ``window`` that a page did not contain (exchange-side holes)."""
    if len(got) == window.bars and len(set(got)) == window.bars:
        return []  # every bar present: the common case, no per-bar alignment needed
    inside = sorted(t for t in got if window.start_ns <= t < window.end_ns)
    return missing_bars(inside, span, window.start_ns, window.end_ns)


def subtract_holes(windows: list[Window], holes: list[tuple[int, int]], span: Span) -> list[Window]:
    """``windows`` without the ``[lo, hi)`` ranges known to hold no bars (exchange-side holes)."""
    if not holes:
        return windows
    out: list[Window] = []
    for w in windows:
        pieces = [(w.start_ns, w.end_ns)]
        for lo, hi in holes:
            nxt = []
            for a, b in pieces:
                if hi <= a or lo >= b:
                    nxt.append((a, b))
                    continue
                if a < lo:
                    nxt.append((a, lo))
                if hi < b:
                    nxt.append((hi, b))
            pieces = nxt
        out.extend(Window(a, b, span.count(a, b)) for a, b in pieces if span.count(a, b))
    return out
