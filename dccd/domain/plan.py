"""Backfill planning: which windows (OHLC) and walks (trades) to request, and which bars a page must hold.

Pure functions of the requested range, what the lake already holds and `now`.
The paginator executes the plan; decisions stay here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from dccd.domain.gaps import missing_bars, missing_ids
from dccd.domain.spans import Span
from dccd.domain.timeutil import NS_PER_DAY, NS_PER_HOUR, NS_PER_MIN, NS_PER_S, ns_to_iso


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


class StoredTrades(msgspec.Struct, frozen=True):
    """What the lake holds of a trades range: first and last ts, sorted integer ids (None: not all integers)."""

    first_ts: int
    last_ts: int
    ids: tuple[int, ...] | None


class TradeLeg(msgspec.Struct, frozen=True):
    """One forward trades walk: from ``start_ns`` (or trade id ``from_id``) up to ``stop_ts`` / ``stop_id``.

    ``start_ns`` None with no ``from_id`` is the exchange's first trade; ``stop_ts`` is exclusive,
    ``stop_id`` inclusive.
    """

    start_ns: int | None
    stop_ts: int
    from_id: int | None = None
    stop_id: int | None = None


class TradesPlan(msgspec.Struct, frozen=True):
    """The walks of a trades backfill: ``legs`` in order, then (``tail``) a resume after the last stored trade.

    ``last`` is ``(ts, id)`` of that trade when the ids are sequential (None: read it from the lake).
    """

    legs: tuple[TradeLeg, ...]
    tail: bool = False
    last: tuple[int, int] | None = None


def trades_plan(start_ns: int | None, end_ns: int, stored: StoredTrades | None, sequential: bool) -> TradesPlan:
    """Which trades to walk for ``[start_ns, end_ns)`` given what is stored there.

    Nothing stored: one walk. Otherwise the head before the stored range, then, when ids are
    sequential, every missing id range inside it (exact, by id), then the tail after the last
    stored trade (the resume cursor).
    """
    if stored is None:
        return TradesPlan((TradeLeg(start_ns, end_ns),))
    ids = stored.ids
    if sequential and ids:
        legs = [TradeLeg(start_ns, stored.first_ts + 1, stop_id=ids[0] - 1)]
        legs += [TradeLeg(None, end_ns, from_id=lo, stop_id=hi) for lo, hi in missing_ids(ids)]
        return TradesPlan(tuple(legs), True, (stored.last_ts, ids[-1]))
    return TradesPlan((TradeLeg(start_ns, stored.first_ts),), True)


class Shortfall(msgspec.Struct, frozen=True):
    """Part ``[lo_ns, hi_ns)`` of a requested range ``[start_ns, end_ns)`` that the exchange does not serve.

    ``reason`` says why (``kraken serves only the last 720 bars``); ``served_from_ns`` is the oldest
    row the exchange returned (None: it returned none in or after the range). ``missing``/``total``
    count bars when they are countable (OHLC); trades are measured in time.
    """

    lo_ns: int
    hi_ns: int
    start_ns: int
    end_ns: int
    reason: str
    served_from_ns: int | None
    missing: int | None = None
    total: int | None = None
    unit: str = "bars"

    def summary(self) -> str:
        """One line: ``kraken serves only the last 720 bars (from …); 1,820 of 2,540 bars unavailable``."""
        served = f"from {ns_to_iso(self.served_from_ns)}" if self.served_from_ns is not None else "none in range"
        if self.missing is not None and self.total is not None:
            amount = f"{self.missing:,} of {self.total:,} {self.unit} unavailable"
        else:
            amount = (
                f"{ns_to_iso(self.lo_ns)} to {ns_to_iso(self.hi_ns)} unavailable"
                f" ({duration(self.hi_ns - self.lo_ns)} of {duration(self.end_ns - self.start_ns)})"
            )
        return f"{self.reason} ({served}); {amount}"


def unserved(start_ns: int, end_ns: int, served_from_ns: int | None) -> tuple[int, int] | None:
    """The head ``[start_ns, min(served_from, end))`` of a range an exchange serves only from ``served_from_ns``.

    None when nothing is missing (the exchange serves from the start or earlier);
    the whole range when it served nothing (``served_from_ns`` None).
    """
    if end_ns <= start_ns:
        return None
    hi = end_ns if served_from_ns is None else min(served_from_ns, end_ns)
    return (start_ns, hi) if hi > start_ns else None


def at_horizon(served_from_ns: int, now_ns: int, horizon_s: int, slack_s: int) -> bool:
    """Whether the oldest row an exchange serves sits at its declared horizon (``now - horizon_s``).

    An exchange keeping ``horizon_s`` of history that serves nothing older than a row well inside
    that horizon (more than ``slack_s`` younger) has nothing older: the data starts there
    (a listing), so the rows before it are proven not to exist. Near or beyond the horizon they
    may exist but are not served.
    """
    return served_from_ns <= now_ns - (horizon_s - slack_s) * NS_PER_S


def duration(ns: int) -> str:
    """A short human duration: ``110d``, ``4h 30m``, ``4m 54s``, ``0.3s``."""
    if ns >= NS_PER_DAY:
        days, rest = divmod(ns, NS_PER_DAY)
        hours = rest // NS_PER_HOUR
        return f"{days}d {hours}h" if hours else f"{days}d"
    if ns >= NS_PER_HOUR:
        hours, rest = divmod(ns, NS_PER_HOUR)
        mins = rest // NS_PER_MIN
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    if ns >= NS_PER_MIN:
        mins, rest = divmod(ns, NS_PER_MIN)
        secs = rest // NS_PER_S
        return f"{mins}m {secs}s" if secs else f"{mins}m"
    return f"{ns / NS_PER_S:.3g}s"
