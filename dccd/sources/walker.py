"""The one REST page walker (sans-IO): every paging loop of backfills, refills and tests.

A walk is a state machine. The driver asks :meth:`Walk.next_request` for the
next :class:`Request` (None: the walk is over), fetches it, and hands the
answer's bytes to :meth:`Walk.feed`, which returns the page's records to
keep. ``feed`` parses before it changes any state, so a page that fails to
parse (``ProtocolDrift``) may be fetched again and fed again. What the walk
found besides records stays on it: ``holes`` (trade ids the exchange skipped
or does not serve, bars missing from an OHLC window) and ``stuck`` (the
exchange's cursor stopped advancing: the walk ends, the rest of its range is a
hole, never a request loop).

Kinds:

- :class:`OhlcWalk`: bars of one window ``[start_ns, end_ns)`` by ``next_start_ns``.
- :class:`TradesWalk`: trades forward by the exchange's cursor, trimmed at an
  end time and/or an end id, optionally from an id floor (refills), skipping
  what a resume re-reads, and finding an exchange's oldest served trade when
  the start is before its horizon (:class:`OldestServed`).
- :class:`SeriesWalk`: funding / open interest windows by ``next_start_ns``.
- :class:`Probe`: one page (the first-bar probe, a recent-only head check).

The actor side (fetching under the rate limiter, writer backpressure,
malformed-page retries) is ``actors/pager.py``: one loop drives them all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Generic, Protocol, TypeVar

import msgspec

from dccd.domain.plan import Window, page_holes
from dccd.domain.records import Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability
from dccd.sources.base import Adapter, DerivativesAdapter, FundingPage, OhlcPage, OiPage, Request, TradesPage

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
P = TypeVar("P")

OPEN_ID = 2**63 - 1  # the end of an open-ended (tail) id range
_TS = attrgetter("ts")


class HoleReason(enum.Enum):
    """Why a range is a hole."""

    SKIPPED = "skipped"  # the exchange's page skipped these trade ids
    UNSERVED = "unserved"  # the exchange's head was reached before the end id
    STUCK = "stuck"  # the cursor stopped advancing: the rest of the range was not walked
    NO_BARS = "no_bars"  # bars of an OHLC window the exchange did not return


class Hole(msgspec.Struct, frozen=True):
    """A range the walk could not fill: trade ids ``lo..hi`` inclusive, or bars ``[lo, hi)`` (OHLC)."""

    lo: int
    hi: int
    reason: HoleReason


class CursorStuck(msgspec.Struct, frozen=True):
    """The exchange's cursor stopped advancing at the answer to ``request``: the walk ended there."""

    request: Request
    detail: str
    cursor: str | None = None  # the trade cursor that did not advance


class Walk(Protocol[R_co]):
    """What the driver needs of a walk."""

    stuck: CursorStuck | None

    def next_request(self) -> Request | None:
        """The next page to fetch, or None when the walk is over."""
        ...

    def feed(self, request: Request, body: bytes) -> Sequence[R_co]:
        """The records of the answer to ``request`` to keep; raises ProtocolDrift (state unchanged)."""
        ...


def _tid(trade: Trade) -> int | None:
    rid = trade.id
    return int(rid) if rid is not None and rid.isdigit() else None


class Probe(Generic[P]):
    """One page, parsed: ``page`` once fed."""

    stuck: CursorStuck | None = None

    def __init__(self, request: Request, parse: Callable[[Request, bytes], P]) -> None:
        self._request: Request | None = request
        self._parse = parse
        self.page: P | None = None

    def next_request(self) -> Request | None:
        """The probe's request until it is answered."""
        return self._request

    def feed(self, request: Request, body: bytes) -> Sequence[object]:
        """Keep the parsed page; no records to deliver."""
        self.page = self._parse(request, body)
        self._request = None
        return ()


class OhlcWalk:
    """Bars opening in ``[start_ns, end_ns)`` from ``build(cursor_ns, last_ns)`` pages.

    Args:
        build: the request of the page starting at a cursor, up to ``last_ns`` (inclusive).
        parse: the adapter's ``parse_ohlc``.
        span: bar span.
        start_ns: first bar open time (the first cursor).
        end_ns: exclusive end; bars outside ``[start_ns, end_ns)`` are trimmed.
        last_ns: the inclusive end asked of the exchange (default: the last bar's open time).
    """

    def __init__(
        self,
        build: Callable[[int, int], Request],
        parse: Callable[[Request, bytes], OhlcPage],
        span: Span,
        start_ns: int,
        end_ns: int,
        last_ns: int | None = None,
    ) -> None:
        self._build, self._parse, self.span = build, parse, span
        self.start_ns, self.end_ns = start_ns, end_ns
        self.last_ns = span.add(end_ns, -1) if last_ns is None else last_ns
        self.cursor: int | None = start_ns
        self.got: list[int] = []  # open times received, in order
        self.stuck: CursorStuck | None = None

    def next_request(self) -> Request | None:
        """The page at the cursor, until the exchange says done or the cursor passes the end."""
        if self.cursor is None or self.cursor > self.last_ns or self.stuck is not None:
            return None
        return self._build(self.cursor, self.last_ns)

    def feed(self, request: Request, body: bytes) -> list[Candle]:
        """Bars of the page inside the window; a cursor that does not advance ends the walk."""
        page = self._parse(request, body)
        candles = page.candles
        # Pages are ascending (the adapter protocol), so in-window ends mean every bar is in the window.
        if candles and not (self.start_ns <= candles[0].ts and candles[-1].ts < self.end_ns):
            candles = [c for c in candles if self.start_ns <= c.ts < self.end_ns]
        self.got.extend(map(_TS, candles))
        cur, nxt = self.cursor, page.next_start_ns
        if cur is not None and nxt is not None and nxt <= cur:
            self.stuck = CursorStuck(request, f"cursor did not advance ({nxt} <= {cur})")
        self.cursor = nxt
        return candles

    def holes(self) -> list[Hole]:
        """Bars of the window the exchange did not return, ``[lo, hi)`` (domain/gaps arithmetic)."""
        window = Window(self.start_ns, self.end_ns, self.span.count(self.start_ns, self.end_ns))
        return [Hole(lo, hi, HoleReason.NO_BARS) for lo, hi in page_holes(self.span, window, self.got)]


class SeriesWalk(Generic[R]):
    """Funding/OI records of ``[start_ns, end_ns)`` by window starts (``next_start_ns``).

    ``snapshot``: the exchange answers one sample stamped with its own "now"
    (BitMEX OI), which may be at or past ours: kept untrimmed.
    """

    def __init__(
        self,
        build: Callable[[int, int], Request],
        parse: Callable[[Request, bytes], FundingPage | OiPage],
        start_ns: int,
        end_ns: int,
        *,
        snapshot: bool = False,
        inclusive: bool = False,
    ) -> None:
        self._build, self._parse = build, parse
        self.start_ns, self.end_ns, self.snapshot, self.inclusive = start_ns, end_ns, snapshot, inclusive
        self.cursor: int | None = start_ns
        self.reached_ns: int | None = None  # the last kept record's time
        self.stuck: CursorStuck | None = None

    def next_request(self) -> Request | None:
        """The window at the cursor while it is before the end."""
        cur = self.cursor
        if cur is None or self.stuck is not None or cur > self.end_ns or (cur == self.end_ns and not self.inclusive):
            return None
        return self._build(cur, self.end_ns)

    def feed(self, request: Request, body: bytes) -> list[R]:
        """Records of the window in range; a cursor that does not advance ends the walk."""
        page = self._parse(request, body)
        cur = self.cursor
        assert cur is not None
        records: list[R] = page.records  # type: ignore[assignment]
        stop = self.end_ns + 1 if self.inclusive else self.end_ns
        keep = list(records) if self.snapshot else [r for r in records if cur <= r.ts < stop]  # type: ignore[attr-defined]
        if keep:
            self.reached_ns = keep[-1].ts  # type: ignore[attr-defined]
        nxt = page.next_start_ns
        if nxt is not None and nxt <= cur:
            self.stuck = CursorStuck(request, f"cursor did not advance ({nxt} <= {cur})")
        self.cursor = nxt
        return keep


def series_calls(
    adapter: Adapter, data_type: DataType, symbol: Symbol, limit: int | None = None, span: Span | None = None
) -> tuple[Callable[[int, int], Request], Callable[[Request, bytes], FundingPage | OiPage]]:
    """``(build, parse)`` of a derivatives series (funding, open interest): the typed dispatch table.

    Raises:
        NoCapability: the adapter has no such series.
    """
    if isinstance(adapter, DerivativesAdapter):
        deriv = adapter
        if data_type is DataType.FUNDING:
            return (lambda a, b: deriv.build_funding(symbol, a, b, limit=limit)), deriv.parse_funding
        if data_type is DataType.OI:
            kw = {} if span is None else {"span": span}
            return (lambda a, b: deriv.build_oi(symbol, a, b, limit=limit, **kw)), deriv.parse_oi
    raise NoCapability(adapter.name, f"{data_type.value} over rest")


class OldestServed:
    """The cursor of the oldest trade an exchange still serves before ``before_ns`` (``cursor``; None: none).

    Found from the exchange's answers: the lookup at ``before_ns`` gives a served id, then a
    bisection over ids (cursors of sequential-id adapters are trade ids; a page at ``c`` holds the
    served ids from ``c``) finds the lowest served one, ~30 requests for ids near 10**9.
    """

    stuck: CursorStuck | None = None

    def __init__(self, adapter: Adapter, symbol: Symbol, before_ns: int) -> None:
        self._adapter, self._symbol = adapter, symbol
        self._next: Request | None = adapter.build_trades(symbol, start_ns=before_ns)
        self._stage = "lookup"
        self._lo = self._hi = self._mid = 0
        self.cursor: str | None = None

    def next_request(self) -> Request | None:
        """The lookup, then the bisection probes, then the page at the lowest served id."""
        return self._next

    def _probe(self, cursor: int) -> Request:
        return self._adapter.build_trades(self._symbol, cursor=str(cursor))

    def _bisect(self) -> None:
        if self._lo < self._hi:
            self._mid = (self._lo + self._hi) // 2
            self._next = self._probe(self._mid)
        else:
            self._stage = "first"
            self._next = self._probe(self._lo)

    def feed(self, request: Request, body: bytes) -> Sequence[Trade]:
        """Advance the search by one answer (no records to deliver)."""
        page = self._adapter.parse_trades(request, body)
        if self._stage == "lookup":
            if page.next_cursor is None or not page.next_cursor.isdigit():
                self._next = None
                return ()
            self._stage = "bisect"
            self._lo, self._hi = 0, int(page.next_cursor) - 1  # the lookup's cursor is the id after a served trade
            self._bisect()
        elif self._stage == "bisect":
            if page.records:
                self._hi = self._mid
            else:
                self._lo = self._mid + 1
            self._bisect()
        else:
            self.cursor = page.records[0].id if page.records else None
            self._next = None
        return ()


class TradesWalk:
    """Trades forward by the exchange's cursor, trimmed at ``stop_ts`` (exclusive) and ``stop_id`` (inclusive).

    Args:
        adapter: the exchange's adapter.
        symbol: the market.
        cursor: the first cursor (None: from ``start_ns``, or the first trade).
        start_ns: where the first page starts when there is no cursor.
        stop_ts: trades at or after it are trimmed and end the walk (None: no time bound).
        stop_id: trades with a higher id are trimmed; reaching it ends the walk (None: up to the head).
        after_id: ids at or below it are trimmed, and it follows the highest id seen (refills,
            interior id holes); None: no id floor. Holes are clipped to ``(after_id, stop_id]``.
        resume: ``(ts, ids)`` of the last stored trade: a resume cursor re-reads that instant, drop those.
        search_horizon: when the first page from ``start_ns`` is empty and final, walk from the
            exchange's oldest served trade instead (:class:`OldestServed`; ``beyond_horizon`` set).
        limit: trades per page (None: the adapter's default).
    """

    def __init__(
        self,
        adapter: Adapter,
        symbol: Symbol,
        *,
        cursor: str | None = None,
        start_ns: int | None = None,
        stop_ts: int | None = None,
        stop_id: int | None = None,
        after_id: int | None = None,
        resume: tuple[int, frozenset[str]] | None = None,
        search_horizon: bool = False,
        limit: int | None = None,
    ) -> None:
        self._adapter, self._symbol = adapter, symbol
        self.cursor, self.start_ns, self.stop_ts, self.stop_id = cursor, start_ns, stop_ts, stop_id
        self.after_id, self.resume, self.search_horizon, self.limit = after_id, resume, search_horizon, limit
        self.holes: list[Hole] = []
        self.stuck: CursorStuck | None = None
        self.done = False
        self.reached_ns: int | None = None  # the last kept trade's time
        self.first_ts: int | None = None  # the earliest trade any page returned (recent-only clamp)
        self.first_page_rows = 0  # rows of the page that returned ``first_ts``
        self.beyond_horizon: tuple[int, int | None] | None = None  # (start, stop) of a walk whose start is not served
        self.ended_at_head = False  # the exchange's head was reached (next_cursor None)
        self.searching = False  # the page just fed was a step of the oldest-served search, not trades
        self._search: OldestServed | None = None

    def next_request(self) -> Request | None:
        """The next page (or search probe) until the end bound, the head or a stuck cursor."""
        if self._search is not None:
            request = self._search.next_request()
            if request is not None:
                return request
            self.cursor, self._search = self._search.cursor, None
            if self.cursor is None:
                self.done = True
        if self.done:
            return None
        start = self.start_ns if self.cursor is None else None
        return self._adapter.build_trades(self._symbol, cursor=self.cursor, start_ns=start, limit=self.limit)

    def feed(self, request: Request, body: bytes) -> Sequence[Trade]:
        """The page's trades inside the bounds and not already stored; holes and the end on the way."""
        if self._search is not None:
            self.searching = True
            return self._search.feed(request, body)
        page: TradesPage = self._adapter.parse_trades(request, body)
        records = page.records
        if self.cursor is None and self.start_ns is not None and page.done and not records and self.search_horizon:
            # No trade before the start, on an exchange that keeps only recent ones: walk from its oldest.
            self.beyond_horizon = (self.start_ns, self.stop_ts)
            self._search = OldestServed(self._adapter, self._symbol, self.stop_ts or 0)
            self.searching = True
            return ()
        self.searching = False
        if records and (self.first_ts is None or records[0].ts < self.first_ts):
            self.first_ts, self.first_page_rows = records[0].ts, len(records)
        stop_ts, stop_id, floor = self.stop_ts, self.stop_id, self.after_id
        keep: list[Trade] = []
        top: int | None = None
        ended = False
        if stop_id is None and floor is None:  # bounded by time only (backfills): ids are not read
            keep = records if stop_ts is None else [t for t in records if t.ts < stop_ts]
            ended = len(keep) < len(records)
        else:
            for t in records:
                i = _tid(t)
                if i is not None:
                    top = i if top is None or i > top else top
                if (stop_ts is not None and t.ts >= stop_ts) or (i is not None and stop_id is not None and i > stop_id):
                    ended = True
                elif i is None or floor is None or i > floor:
                    keep.append(t)
        lo = -1 if floor is None else floor
        hi = OPEN_ID if stop_id is None else stop_id
        self.holes.extend(Hole(max(a, lo + 1), min(b, hi), HoleReason.SKIPPED) for a, b in page.id_gaps if a <= hi and b > lo)  # fmt: skip
        if floor is not None and top is not None:
            self.after_id = max(floor, min(top, hi))
        if stop_id is not None and top is not None and top >= stop_id:
            ended = True
        fresh = keep
        if self.resume is not None and keep and keep[0].ts <= self.resume[0]:
            ts, ids = self.resume
            fresh = [t for t in keep if t.ts > ts or (t.ts == ts and str(t.id) not in ids)]
        if keep:
            self.reached_ns = keep[-1].ts
        if page.next_cursor is None:
            self.ended_at_head = True
            if not ended and self.after_id is not None and stop_id is not None and self.after_id < stop_id:
                self.holes.append(Hole(self.after_id + 1, stop_id, HoleReason.UNSERVED))
            ended = True
        elif not ended and self.cursor is not None and page.next_cursor == self.cursor:
            self.stuck = CursorStuck(request, f"trade cursor did not advance past {self.cursor}", self.cursor)
            if self.after_id is not None:
                self.holes.append(Hole(self.after_id + 1, hi, HoleReason.STUCK))
            ended = True
        self.done = ended
        self.cursor = page.next_cursor if not self.stuck else self.cursor
        return fresh


def ohlc_walk(
    adapter: Adapter,
    symbol: Symbol,
    span: Span,
    start_ns: int,
    end_ns: int,
    *,
    limit: int | None = None,
    last_ns: int | None = None,
    now_ns: int | None = None,
) -> OhlcWalk:
    """An :class:`OhlcWalk` over the adapter's ``build_ohlc``/``parse_ohlc`` (``now_ns``: the caller's wall clock)."""

    def build(cursor: int, last: int) -> Request:
        return adapter.build_ohlc(symbol, span, cursor, last, limit=limit, now_ns=now_ns)

    return OhlcWalk(build, adapter.parse_ohlc, span, start_ns, end_ns, last_ns)


__all__ = [
    "OPEN_ID",
    "CursorStuck",
    "Hole",
    "HoleReason",
    "OhlcWalk",
    "OldestServed",
    "Probe",
    "SeriesWalk",
    "TradesWalk",
    "Walk",
    "ohlc_walk",
    "series_calls",
]
