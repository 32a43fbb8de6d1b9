"""The backfill paginator actor: history of one dataset over REST into the lake.

Completeness first. OHLC is planned from what the lake already holds: only
missing bars are requested, in span-aligned windows of one page, a bounded
number in flight; a window the exchange answers with fewer bars than it spans
records those bars as a known hole (never silently skipped); a start before the
exchange's first bar costs one empty window and one ``limit=1`` probe, not a
walk through empty windows. Trades walk the exchange's id cursor: the head
before the stored range, interior id holes when ids are sequential, and the
tail up to ``end`` (the plan is ``domain.plan.trades_plan``). Every page goes
through the one paging loop (``pager.run_walk`` driving a
``dccd.sources.walker`` walk), which first waits for writer capacity
(``await writer.wait_writable()``), so a slow disk means fewer HTTP requests,
not more memory. A cursor that stops advancing fails the run naming the page.

A 200 answer that does not parse (truncated, malformed: ``ProtocolDrift``) is
asked again under the client's retry policy (backoff, ``dccd_exchange_retries``
with reason ``ProtocolDrift``, ``page_retries`` on the run) before it fails the
run naming the page.

A range the exchange no longer serves (Kraken's last 720 bars, OKX's 3 months
of trades, Bybit's last 60 spot trades) is a :class:`Shortfall`: its part is
recorded on the run as ``unavailable`` events and the run ends ``partial``.
Where the served history begins is read from the exchange's answers (the oldest
row it returns), the local clock only decides whether to ask.

Over 500 lines for one reason: one actor's plan-and-walk for each data type (OHLC windows, the trades
head/holes/tail, series, book) with the shortfall check each needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import structlog
import trio

from dccd.domain.capability import Capabilities, History, Transport
from dccd.domain.dataset import DatasetId
from dccd.domain.gaps import missing_bars
from dccd.domain.plan import (
    Shortfall,
    Window,
    at_horizon,
    closed_end,
    duration,
    ohlc_windows,
    subtract_holes,
    trades_plan,
    unserved,
)
from dccd.domain.records import Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import DccdError, ProtocolDrift, leaves
from dccd.sources.base import Adapter, Request, sequential_ids
from dccd.sources.walker import HoleReason, Probe, SeriesWalk, TradesWalk, Walk, ohlc_walk, series_calls
from dccd.storage.lake import Lake
from dccd.storage.runs import RunStore
from dccd.transport.http import ExchangeClient

from .clients import ClientPool
from .messages import Batch, GapDetected, Message, RunLogged
from .pager import PageFailed, run_walk
from .progress import Progress

log = structlog.get_logger()
T = TypeVar("T")
P = TypeVar("P")

HOLE_DETAIL = "exchange returned no bars"  # run-event detail of exchange-confirmed holes, skipped by later runs
_TRADE_HOLES = {
    HoleReason.SKIPPED: "exchange skipped these trade ids",
    HoleReason.UNSERVED: "the exchange does not serve these trade ids (yet)",
    HoleReason.STUCK: "the exchange's trade cursor did not advance",
    HoleReason.NO_BARS: HOLE_DETAIL,
}
# An oldest served trade this much younger than the declared horizon is where the data starts (a listing).
HORIZON_SLACK_S = 7 * 86_400


class BackfillJob(msgspec.Struct, frozen=True):
    """One dataset to backfill in one run. ``start`` is an int (ns) or ``last``/``origin``."""

    run_id: str
    dataset: DatasetId
    start: int | str
    end_ns: int
    now_ns: int
    concurrency: int = 4
    book_depth: int = 100
    derive_from: str | None = None  # "trades": bars built from the stored trades (actors.derive)


class Backfiller:
    """Runs one :class:`BackfillJob`; the actor body is :meth:`run`.

    Args:
        job: what to fetch.
        pool: shared exchange clients.
        lake: the lake (for what is stored).
        runs: run history (progress, holes).
        send: writer entry (``Batch`` in, never blocks).
        wait_writable: the writer's backpressure gate.
        emit: control events.
    """

    def __init__(
        self,
        job: BackfillJob,
        pool: ClientPool,
        lake: Lake,
        runs: RunStore,
        send: Callable[[Batch], None],
        wait_writable: Callable[[], Any],
        emit: Callable[[Message], None],
    ) -> None:
        self.job = job
        self.ds = job.dataset
        self.pool = pool
        self.lake = lake
        self.runs = runs
        self._send = send
        self._wait_writable = wait_writable
        self._emit = emit
        self.progress = Progress(job.run_id, "rows", None, emit, runs)
        self.holes: list[tuple[int, int]] = []
        self.first_trade_ts: int | None = None  # the earliest trade any page returned (recent-only clamp)
        self.oldest_page_rows = 0  # rows of the page that returned ``first_trade_ts``
        self.beyond_horizon: tuple[int, int] | None = None  # (start, stop) of a walk whose start is not served
        self.shortfalls: list[Shortfall] = []
        self.page_retries = 0
        self.search_horizon = False
        self.first_stored_ts: int | None = None  # the oldest stored trade in the requested range
        self.hint: str | None = None  # what the user can do about a shortfall (one clause)

    # -- shared --------------------------------------------------------------------------------

    def _log(self, level: str, message: str, **fields: Any) -> None:
        getattr(log, level)(message, run_id=self.job.run_id, dataset=str(self.ds), **fields)
        self._emit(RunLogged(self.job.run_id, level, message + "".join(f" {k}={v}" for k, v in fields.items())))

    def _retried(self, request: Request, attempt: int, exc: ProtocolDrift) -> None:
        self.page_retries += 1
        self._log("warning", "backfill.page_retried", endpoint=request.endpoint, attempt=attempt, error=str(exc))

    async def _drive(
        self, walk: Walk[T], client: ExchangeClient, deliver: Callable[[Sequence[T]], Awaitable[None]] | None = None
    ) -> None:
        """Page through ``walk`` under writer backpressure; malformed pages retried (``page_retries``).

        Raises:
            PageFailed: a page failed, or the exchange's cursor stopped advancing (a backfill
                cannot leave the rest of its range silently unfetched).
        """
        await run_walk(walk, client, deliver, gate=self._wait_writable, on_retry=self._retried)
        if walk.stuck is not None:
            raise PageFailed(walk.stuck.request, DccdError(walk.stuck.detail))

    async def _probe(self, client: ExchangeClient, request: Request, parse: Callable[[Request, bytes], P]) -> P:
        """One page, fetched and parsed like any other."""
        probe = Probe(request, parse)
        await self._drive(probe, client)
        assert probe.page is not None
        return probe.page

    @property
    def partial(self) -> str | None:
        """Why the run is partial (one line per shortfall, joined), or None when everything was served."""
        text = "; ".join(s.summary() for s in self.shortfalls)
        return (f"{text}; {self.hint}" if self.hint else text) or None

    async def save(self) -> None:
        """Persist progress, page retries and what was unavailable in the run record."""
        await self.progress.save()
        extra: dict[str, Any] = {"page_retries": self.page_retries}
        if self.shortfalls:
            extra["unavailable"] = self.partial
        await self.runs.aprogress(self.job.run_id, **extra)

    async def _shortfall(self, short: Shortfall, ranges: Sequence[tuple[int, int]] | None = None) -> None:
        """Record a part of the request the exchange does not serve: run events, a warning, the partial state."""
        self.shortfalls.append(short)
        detail = short.summary()
        for lo, hi in ranges if ranges is not None else [(short.lo_ns, short.hi_ns)]:
            await self.runs.aevent(self.job.run_id, "unavailable", lo, hi, detail)
        earliest = ns_to_iso(short.served_from_ns) if short.served_from_ns is not None else "none"
        self._log(
            "warning",
            "backfill.clamped",
            requested=ns_to_iso(short.start_ns),
            earliest=earliest,
            reason=short.reason,
            unavailable=detail,
        )

    def _emit_batch(self, records: Sequence[Any]) -> None:
        if records:
            self._send(Batch(self.ds, list(records), self.ds.exchange, Transport.REST.value))

    async def _hole(self, lo: int, hi: int, detail: str) -> None:
        self.holes.append((lo, hi))
        await self.runs.aevent(self.job.run_id, "gap", lo, hi, detail)
        self._emit(GapDetected(self.ds, lo, hi, reason=detail))

    async def run(self) -> None:
        """Fetch everything the job asks for (raises on the first failed page)."""
        adapter = self.pool.adapter(self.ds.exchange)
        caps: Capabilities = adapter.capabilities
        cap = caps.require_symbol(self.ds.data_type, Transport.REST, self.ds.span, self.ds.symbol)
        listing = await self.pool.listing(self.ds.exchange, perp=self.ds.symbol.is_perp)
        listing.require(self.ds.symbol)
        client = await self.pool.get(self.ds.exchange)
        if self.ds.data_type is DataType.OHLC:
            await self._ohlc(adapter, client, cap.page_limit or 500, cap.history, cap.recent_rows)
        elif self.ds.data_type is DataType.TRADES:
            await self._trades(adapter, client, cap.history is History.RECENT)
            if cap.history is History.RECENT:
                await self._recent_trades_shortfall(cap.recent_rows, cap.recent_s)
        elif self.ds.data_type is DataType.BOOK:
            await self._book(adapter, client)
        else:
            await self._series(adapter, client, cap.page_limit or 500, snapshot=cap.history is History.SNAPSHOT)
        self.progress.report()
        await self.save()

    # -- OHLC ----------------------------------------------------------------------------------

    async def _first_bar(
        self, adapter: Adapter, client: ExchangeClient, span: Span, from_ns: int, end_ns: int
    ) -> int | None:
        """Open time of the exchange's first bar in ``[from_ns, end_ns)``, by one probe (``limit=1``)."""
        request = adapter.build_ohlc(
            self.ds.symbol, span, from_ns, span.add(end_ns, -1), limit=1, now_ns=self.job.now_ns
        )
        page = await self._probe(client, request, adapter.parse_ohlc)
        first = page.candles[0].ts if page.candles else None
        return first if first is not None and first < end_ns else None

    async def _head(
        self, adapter: Adapter, client: ExchangeClient, span: Span, windows: list[Window], end: int, limit: int
    ) -> list[Window]:
        """Fetch the first window alone; if the exchange has nothing there, find its first bar by one probe.

        A start before the listing would otherwise page through empty windows (years of them);
        the bars before the first one are recorded as one exchange-side hole, so later runs skip them.
        """
        first_window, rest = windows[0], windows[1:]
        if await self._ohlc_window(adapter, client, span, first_window, limit, empty_is_hole=False):
            return rest
        run_end = first_window.end_ns  # the missing run the first window opens (stored bars end it)
        for w in rest:
            if w.start_ns != run_end:
                break
            run_end = w.end_ns
        first = await self._first_bar(adapter, client, span, first_window.end_ns, run_end) if rest else None
        lo, head_end = first_window.start_ns, run_end if first is None else first
        await self._hole(lo, head_end, f"{HOLE_DETAIL} for [{ns_to_iso(lo)}, {ns_to_iso(head_end)})")
        left = subtract_holes(rest, [(lo, head_end)], span)
        self.progress.add(done=first_window.bars + sum(w.bars for w in rest) - sum(w.bars for w in left))
        return left

    async def _ohlc(
        self, adapter: Adapter, client: ExchangeClient, limit: int, history: History, recent_rows: int | None
    ) -> None:
        span = self.ds.span
        assert span is not None
        end = closed_end(span, self.job.end_ns, self.job.now_ns)
        start: int | None
        if self.job.start == "last":
            last = await self.lake.alast_ts(self.ds)
            start = span.next(span.align(last)) if last is not None else None
            if start is None:
                start = await self._first_bar(adapter, client, span, 0, end)
        elif self.job.start == "origin":
            start = await self._first_bar(adapter, client, span, 0, end)
        else:
            assert isinstance(self.job.start, int)
            start = span.align_up(self.job.start)
        if start is None:
            self._log("warning", "backfill.no_data", detail="the exchange has no bars before end")
            return
        if history is History.RECENT and recent_rows:
            # The last ``recent_rows`` bars include the one still open (Kraken's 720 end at the current bar).
            earliest = span.add(span.align(self.job.now_ns), -(recent_rows - 1))
            if start < earliest:  # by our clock the start is no longer served: ask where the exchange's bars begin
                start = await self._recent_bars_start(adapter, client, span, start, end, recent_rows, limit)
        if start >= end:
            return
        stored = await self.lake.astored_ts(self.ds, start, end)
        known = await self._known_holes(start, end)
        windows = subtract_holes(ohlc_windows(span, start, end, stored, limit), known, span)
        self.progress = Progress(self.job.run_id, "bars", sum(w.bars for w in windows), self._emit, self.runs)
        self._log("info", "backfill.planned", windows=len(windows), bars=self.progress.total, stored=len(stored))
        if isinstance(self.job.start, int) and windows and windows[0].start_ns == start:
            windows = await self._head(adapter, client, span, windows, end, limit)  # the start may predate the data
        limiter = trio.CapacityLimiter(max(1, self.job.concurrency))

        async def one(window: Window) -> None:
            async with limiter:
                await self._ohlc_window(adapter, client, span, window, limit)

        failed: DccdError | None = None
        try:
            async with trio.open_nursery() as nursery:
                for window in windows:
                    await limiter.acquire()  # bounded in flight: do not even create more tasks than slots
                    limiter.release()
                    nursery.start_soon(one, window)
        except BaseExceptionGroup as group:
            # A failed page ends the run with that page's error, not with a nursery group: the
            # operation records DccdErrors as a failed run, and a group would read as a bug.
            found = leaves(group, skip=(trio.Cancelled,))
            errors = [e for e in found if isinstance(e, DccdError)]
            failed = errors[0] if errors and len(errors) == len(found) else None  # any other leaf is a bug
            if failed is None:
                raise
        if failed is not None:
            raise failed  # outside the handler, so the error does not chain to its own group

    async def _ohlc_window(
        self, adapter: Adapter, client: ExchangeClient, span: Span, w: Window, limit: int, *, empty_is_hole: bool = True
    ) -> int:
        """Page through one window; record the bars it lacks as holes; return the number of bars received.

        With ``empty_is_hole=False`` a window without any bar records nothing (the caller probes further).
        """
        walk = ohlc_walk(adapter, self.ds.symbol, span, w.start_ns, w.end_ns, limit=limit, now_ns=self.job.now_ns)

        async def deliver(candles: Sequence[Candle]) -> None:
            self._emit_batch(candles)
            self.progress.add(done=len(candles), rows=len(candles), pages=1)

        await self._drive(walk, client, deliver)
        if not walk.got and not empty_is_hole:
            return 0
        for hole in walk.holes():
            lo, hi = hole.lo, hole.hi
            await self._hole(lo, hi, f"{HOLE_DETAIL} for [{ns_to_iso(lo)}, {ns_to_iso(hi)})")
            self.progress.add(done=span.count(lo, hi))
        return len(walk.got)

    async def _recent_bars_start(
        self, adapter: Adapter, client: ExchangeClient, span: Span, start: int, end: int, recent_rows: int, limit: int
    ) -> int:
        """Where a recent-only exchange's bars begin, from one request up to now; records what it no longer serves.

        The oldest bar of the answer is the start of what the exchange serves. If the answer holds
        fewer closed bars than the exchange keeps, nothing older exists (a listing): the head is
        left to the planner (an exchange-side hole). Bars already stored are not unavailable.

        Returns:
            The first bar to plan from.
        """
        now_end = span.align(self.job.now_ns)
        request = adapter.build_ohlc(
            self.ds.symbol, span, start, span.add(now_end, -1), limit=limit, now_ns=self.job.now_ns
        )
        page = await self._probe(client, request, adapter.parse_ohlc)
        served = [c.ts for c in page.candles if c.ts >= start]
        if served and len(served) < min(recent_rows - 1, limit):
            return start  # the exchange sent all it has: the bars before its first do not exist
        served_from = served[0] if served else None
        head = unserved(start, end, served_from)
        if head is None:
            return start
        lo, hi = head
        missing = missing_bars(await self.lake.astored_ts(self.ds, lo, hi), span, lo, hi)
        if missing:
            short = Shortfall(
                lo,
                hi,
                start,
                end,
                f"{self.ds.exchange} serves only the last {recent_rows} bars",
                served_from,
                sum(span.count(a, b) for a, b in missing),
                span.count(start, end),
            )
            trades = adapter.capabilities.find(DataType.TRADES, Transport.REST)
            if trades is not None and trades.history is History.FULL:
                self.hint = "older bars: backfill --type trades, then --type ohlc --derive-from trades"
            await self._shortfall(short, missing)
        return hi

    async def _known_holes(self, start: int, end: int) -> list[tuple[int, int]]:
        return await trio.to_thread.run_sync(self.runs.known_gaps, self.ds, start, end, HOLE_DETAIL)

    # -- trades --------------------------------------------------------------------------------

    async def _trades(self, adapter: Adapter, client: ExchangeClient, recent: bool = False) -> None:
        end = min(self.job.end_ns, self.job.now_ns)
        sequential = sequential_ids(adapter)
        self.search_horizon = recent and sequential  # a start before a recent-only horizon: find its oldest trade
        if self.job.start == "last":
            last = await self.lake.alast_trade(self.ds)
            if last is None:
                raise DccdError(
                    f"{self.ds}: nothing stored yet, so 'last' has nothing to resume; give --start ISO or origin"
                )
            self.progress = Progress(self.job.run_id, "ns", max(end - last.ts, 1), self._emit, self.runs)
            await self._tail(adapter, client, last, end, t0=last.ts)
            return
        start = None if self.job.start == "origin" else int(self.job.start)
        stored = await self.lake.astored_trades(self.ds, start, end)
        self.progress = Progress(self.job.run_id, "ns", max(end - (start or 0), 1), self._emit, self.runs)
        if stored is not None:
            self.first_stored_ts = stored.first_ts
        plan = trades_plan(start, end, stored, sequential)
        t0 = start or 0
        for leg in plan.legs:
            cursor = None if leg.from_id is None else str(leg.from_id)
            after = None if leg.from_id is None else leg.from_id - 1
            await self._walk(
                adapter,
                client,
                cursor=cursor,
                start_ns=leg.start_ns,
                stop_ts=leg.stop_ts,
                stop_id=leg.stop_id,
                t0=t0,
                after_id=after,
            )
        if plan.tail:
            last = (
                Trade(plan.last[0], str(plan.last[1]), 0.0, 0.0) if plan.last else await self.lake.alast_trade(self.ds)
            )
            assert last is not None
            await self._tail(adapter, client, last, end, t0=t0)

    async def _tail(self, adapter: Adapter, client: ExchangeClient, last: Trade, end: int, *, t0: int) -> None:
        """Walk from right after the stored trade ``last`` up to ``end`` (the instant it is at is re-read)."""
        seen = (last.ts, await self.lake.atrade_ids_at(self.ds, last.ts))
        cursor = adapter.trades_cursor_after(last)
        await self._walk(adapter, client, cursor=cursor, start_ns=None, stop_ts=end, stop_id=None, t0=t0, seen=seen)

    async def _walk(
        self,
        adapter: Adapter,
        client: ExchangeClient,
        *,
        cursor: str | None,
        start_ns: int | None,
        stop_ts: int,
        stop_id: int | None,
        t0: int,
        after_id: int | None = None,
        seen: tuple[int, frozenset[str]] | None = None,
    ) -> None:
        """Page trades until ``stop_ts``/``stop_id``; ``seen`` = (last stored ts, its ids): drop what is not after it."""
        walk = TradesWalk(
            adapter,
            self.ds.symbol,
            cursor=cursor,
            start_ns=start_ns,
            stop_ts=stop_ts,
            stop_id=stop_id,
            after_id=after_id,
            resume=seen,
            search_horizon=self.search_horizon,
        )
        holes_seen = 0

        async def deliver(trades: Sequence[Trade]) -> None:
            nonlocal holes_seen
            if walk.searching:
                return
            self._emit_batch(trades)
            for hole in walk.holes[holes_seen:]:
                await self.runs.aevent(self.job.run_id, "gap", hole.lo, hole.hi, _TRADE_HOLES[hole.reason])
            holes_seen = len(walk.holes)
            if walk.reached_ns is not None:
                self.progress.done = max(self.progress.done, walk.reached_ns - t0)
            self.progress.add(rows=len(trades), pages=1)

        await self._drive(walk, client, deliver)
        if walk.beyond_horizon is not None:
            self.beyond_horizon = (walk.beyond_horizon[0], stop_ts)
        if walk.first_ts is not None and (self.first_trade_ts is None or walk.first_ts < self.first_trade_ts):
            self.first_trade_ts, self.oldest_page_rows = walk.first_ts, walk.first_page_rows

    async def _recent_trades_shortfall(self, recent_rows: int | None, recent_s: int | None) -> None:
        """Record the head of the requested range a recent-only exchange did not serve, if any.

        A time-bounded history (``recent_s``) is short when the walk from the start found no trade
        before it and the oldest one served sits at the horizon; a count-bounded one
        (``recent_rows``) when even its oldest trade is after the start and its page was full
        (a page with fewer trades than it keeps is all there is).
        """
        start = self.job.start
        if not isinstance(start, int):
            return
        end = min(self.job.end_ns, self.job.now_ns)
        served_from = self.first_trade_ts
        name = self.ds.exchange
        if recent_s:
            if self.beyond_horizon is None:
                return  # the exchange had trades before the start
            lo, stop = self.beyond_horizon
            if self.first_stored_ts is not None:
                stop = min(stop, self.first_stored_ts)
            if served_from is not None and not at_horizon(served_from, self.job.now_ns, recent_s, HORIZON_SLACK_S):
                return  # its trades begin well inside its horizon: there are no older ones
            reason = f"{name} serves only the last {duration(recent_s * 1_000_000_000)} of trades"
            head = unserved(lo, stop, served_from)
        else:
            if served_from is None or (recent_rows and self.oldest_page_rows < recent_rows):
                return  # it sent all it has
            reason = (
                f"{name} serves only its last {recent_rows} trades"
                if recent_rows
                else f"{name} serves recent trades only"
            )
            stop = end if self.first_stored_ts is None else min(end, self.first_stored_ts)
            head = unserved(start, stop, served_from)
        if head is not None:
            await self._shortfall(Shortfall(head[0], head[1], start, end, reason, served_from, unit="trades"))

    # -- book, funding, open interest ----------------------------------------------------------

    async def _book(self, adapter: Adapter, client: ExchangeClient) -> None:
        request = adapter.build_book(self.ds.symbol, self.job.book_depth)
        await self._wait_writable()
        try:
            body, recv_ns = await client.fetch_with_time(request)
            snapshot = adapter.parse_book(request, body, recv_ns)
        except DccdError as exc:
            raise PageFailed(request, exc) from exc
        levels = snapshot.levels()
        self._emit_batch(levels)
        self.progress = Progress(self.job.run_id, "snapshots", 1, self._emit, self.runs)
        self.progress.add(done=1, rows=len(levels), pages=1)

    async def _series(self, adapter: Adapter, client: ExchangeClient, limit: int, *, snapshot: bool = False) -> None:
        build, parse = series_calls(adapter, self.ds.data_type, self.ds.symbol, limit)
        end = min(self.job.end_ns, self.job.now_ns)
        if self.job.start == "last":
            last = await self.lake.alast_ts(self.ds)
            cur = (last + 1) if last is not None else 0
        elif self.job.start == "origin":
            cur = 0
        else:
            cur = int(self.job.start)
        t0 = cur
        self.progress = Progress(self.job.run_id, "ns", max(end - t0, 1), self._emit, self.runs)
        walk: SeriesWalk[Any] = SeriesWalk(build, parse, cur, end, snapshot=snapshot)

        async def deliver(records: Sequence[Any]) -> None:
            self._emit_batch(records)
            if walk.reached_ns is not None:
                self.progress.done = max(self.progress.done, walk.reached_ns - t0)
            self.progress.add(rows=len(records), pages=1)

        await self._drive(walk, client, deliver)
