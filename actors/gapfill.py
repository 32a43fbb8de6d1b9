"""REST repairs for live streams: missing trade ids, missing bars, book snapshots (:class:`Repairer`).

A live stream cannot be slowed or replayed, so whatever it missed (a
reconnect, a skipped window, an ingress overflow) is fetched over REST
through the service's shared client of the exchange (one rate limiter for
backfills and refills alike) and written through the stream's writer. Every
hole ends recorded on the run: ``filled`` with the ids/bars refilled, or
``gap`` with the bounds that could not be refilled and why.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog
import trio

from dccd.domain.book import BookSync
from dccd.domain.dataset import DatasetId
from dccd.domain.records import BookSnapshot, Candle, Record, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import DccdError
from dccd.sources.walker import OPEN_ID, HoleReason, TradesWalk, ohlc_walk

from .clients import ClientPool
from .messages import Batch
from .pager import run_walk
from .recording import Hole, Recording, SymbolState

log = structlog.get_logger()

Put = Callable[[Batch], Awaitable[None]]


class FillResult(msgspec.Struct, frozen=True):
    """What one refill achieved: ``filled`` ranges and ``gaps`` left, each ``(lo, hi, detail)`` inclusive."""

    rows: int
    filled: tuple[tuple[int, int, str], ...] = ()
    gaps: tuple[tuple[int, int, str], ...] = ()


_ID_HOLES = {
    HoleReason.SKIPPED: "the exchange has no such trade ids",
    HoleReason.UNSERVED: "the exchange does not serve these ids (yet)",
}


def _tid(trade: Trade) -> int | None:
    rid = trade.id
    return int(rid) if rid is not None and rid.isdigit() else None


async def fill_ids(
    pool: ClientPool, ds: DatasetId, lo: int, hi: int | None, put: Put, source: str, floor_ns: int | None = None
) -> FillResult:
    """Fetch trades ``lo..hi`` and ``put`` them; whatever the exchange does not serve comes back as gaps.

    The first page starts right after trade ``lo - 1`` through the adapter's
    ``trades_cursor_after`` (``floor_ns``, a time at or before trade ``lo``,
    positions exchanges whose cursor is a time, e.g. Kraken's ``since``); the
    next pages follow the exchange's own ``next_cursor`` (a :class:`TradesWalk`
    from id floor ``lo - 1``). Trades outside ``lo..hi`` are trimmed. Ids the
    exchange skips inside a page, and ids past its current head, come back as
    gaps; so do the rest of the range when a request fails (the client already
    retried what is transient) or when the exchange's cursor stops advancing
    (never a request loop). ``hi=None`` is the tail: every trade from ``lo`` up
    to the exchange's head now.
    """
    adapter = pool.adapter(ds.exchange)
    rows = 0
    first_kept = last_kept = None
    before = Trade(floor_ns if floor_ns is not None else 0, str(lo - 1), 0.0, 0.0)
    cursor = adapter.trades_cursor_after(before)
    walk = TradesWalk(adapter, ds.symbol, cursor=str(lo) if cursor is None else cursor, stop_id=hi, after_id=lo - 1)

    async def deliver(trades: Sequence[Trade]) -> None:
        nonlocal rows, first_kept, last_kept
        if trades:
            await put(Batch(ds, list[Record](trades), source, "rest"))
            rows += len(trades)
            first_kept = _tid(trades[0]) if first_kept is None else first_kept
            last_kept = _tid(trades[-1])

    gaps: list[tuple[int, int, str]] = []
    failed: DccdError | None = None
    try:
        client = await pool.get(ds.exchange)
        await run_walk(walk, client, deliver)
    except DccdError as exc:
        failed = exc
    end = OPEN_ID if hi is None else hi
    for hole in walk.holes:
        if hole.reason is HoleReason.STUCK:
            assert walk.stuck is not None
            gaps.append((hole.lo, hole.hi, f"the exchange's cursor did not advance past {walk.stuck.cursor}"))
        else:
            gaps.append((hole.lo, hole.hi, _ID_HOLES[hole.reason]))
    seen = walk.after_id if walk.after_id is not None else lo - 1
    if failed is not None and seen < end:
        gaps.append((seen + 1, end, f"refill failed: {failed}"))
    if hi is None:  # the end of an open range is unknown: name its first id
        gaps = [(a, a, f"{d} (from this id on)") if b == OPEN_ID else (a, b, d) for a, b, d in gaps]
    filled: tuple[tuple[int, int, str], ...] = ()
    if first_kept is not None and last_kept is not None:
        filled = ((first_kept, last_kept, f"{rows} trades refilled over rest"),)
    return FillResult(rows, filled, tuple(gaps))


async def fill_bars(
    pool: ClientPool, ds: DatasetId, span: Span, lo_ns: int, hi_ns: int, put: Put, source: str
) -> FillResult:
    """Fetch the bars opening in ``[lo_ns, hi_ns)`` and ``put`` them; bars the exchange lacks are a gap.

    A cursor that stops advancing ends the walk: the bars it did not reach are a gap saying so.
    """
    adapter = pool.adapter(ds.exchange)
    walk = ohlc_walk(adapter, ds.symbol, span, lo_ns, hi_ns, now_ns=time.time_ns())
    got = 0

    async def deliver(bars: Sequence[Candle]) -> None:
        nonlocal got
        if bars:
            await put(Batch(ds, list[Record](bars), source, "rest"))
            got += len(bars)

    try:
        client = await pool.get(ds.exchange)
        await run_walk(walk, client, deliver)
    except DccdError as exc:
        first = span.next(walk.got[-1]) if walk.got else lo_ns
        return FillResult(got, _bar_ranges(walk.got), ((first, hi_ns - 1, f"refill failed: {exc}"),))
    why = f" ({walk.stuck.detail})" if walk.stuck is not None else ""
    gaps = tuple(
        (h.lo, h.hi - 1, f"the exchange has no bars from {ns_to_iso(h.lo)} to {ns_to_iso(h.hi)}{why}")
        for h in walk.holes()
    )
    return FillResult(got, _bar_ranges(walk.got), gaps)


def _bar_ranges(got: list[int]) -> tuple[tuple[int, int, str], ...]:
    if not got:
        return ()
    return ((min(got), max(got), f"{len(got)} bars refilled over rest"),)


async def fetch_book(pool: ClientPool, ds: DatasetId, depth: int) -> BookSnapshot:
    """A REST book snapshot (``seq`` = the exchange's update id) to sync a local book from.

    Raises:
        DccdError: the request failed or the payload did not parse.
    """
    adapter: Any = pool.adapter(ds.exchange)
    client = await pool.get(ds.exchange)
    request = adapter.build_book(ds.symbol, depth)
    body, recv_ns = await client.fetch_with_time(request)
    snapshot: BookSnapshot = adapter.parse_book(request, body, recv_ns)
    return snapshot


class Repairer:
    """The REST side of one stream: refills its recording's holes and syncs its books.

    Args:
        recording: the stream's :class:`Recording` (holes to claim, books to sync).
        pool: the service's shared exchange clients.
        put: the writer's gated ``put`` (refilled rows wait for writer capacity).
        source: the stream actor's name (on every batch).
        record: ``record(kind, lo, hi, detail)`` appends a run event (``filled``).
        on_gap: records a range that stays missing.
        snapshot_depth / book_depth / book_interval_s: see ``StreamOptions``.
    """

    def __init__(
        self,
        recording: Recording,
        pool: ClientPool,
        put: Put,
        source: str,
        *,
        record: Callable[[str, int, int, str], None],
        on_gap: Callable[[SymbolState, int, int, str], None],
        snapshot_depth: int = 1000,
        book_depth: int = 100,
        book_interval_s: float = 1.0,
    ) -> None:
        self.recording = recording
        self.pool = pool
        self.put = put
        self.source = source
        self._record = record
        self._on_gap = on_gap
        self.snapshot_depth = snapshot_depth
        self.book_depth = book_depth
        self.book_interval_s = book_interval_s
        self.filling: list[Hole] = []  # claimed and being fetched (recorded as gaps if the stream stops)
        self.fetched: dict[int, int] = {}  # id(hole) of the one being fetched -> highest id written so far
        self.filled = 0  # ranges refilled
        self.failed = 0  # ranges (or parts of ranges) that could not be refilled
        self.rows = 0  # rows refilled

    async def run_fills(self) -> None:
        """Claim holes once they settled and refill them, one at a time (the rate limiter is shared anyway)."""
        rec = self.recording
        while True:
            work = rec.claim(trio.current_time())
            if not work:
                with trio.move_on_at(rec.next_claim()):
                    await rec.fill_wake.wait()
                rec.fill_wake = trio.Event()
                continue
            for item in work:
                self.filling.append(item)
                await self._fill(*item)
                self.filling.remove(item)

    async def _fill(self, st: SymbolState, lo: int, hi: int) -> None:
        ds = st.dataset
        if st.tracker is not None:
            log.info("stream.refilling", symbol=str(ds.symbol), first_id=lo, last_id=hi)
            key = id(st) ^ lo

            async def put(batch: Batch) -> None:
                await self.put(batch)
                ids = (_tid(r) for r in batch.records if isinstance(r, Trade))
                top = max((i for i in ids if i is not None), default=lo - 1)
                self.fetched[key] = max(self.fetched.get(key, lo - 1), top)

            try:
                res = await fill_ids(self.pool, ds, lo, hi, put, self.source, st.floor_ns(lo))
            finally:
                self.fetched.pop(key, None)
        else:
            assert ds.span is not None
            log.info("stream.refilling", symbol=str(ds.symbol), first_ts=lo, end_ts=hi)
            res = await fill_bars(self.pool, ds, ds.span, lo, hi, self.put, self.source)
        self._account(st, res)

    def _account(self, st: SymbolState, res: FillResult, note: str = "") -> None:
        """Count a refill and record its run events: ``filled`` ranges and the gaps left."""
        self.rows += res.rows
        for a, b, detail in res.filled:
            self.filled += 1
            self._record("filled", a, b, f"{st.dataset.symbol}: {detail}{note}")
        for a, b, detail in res.gaps:
            self.failed += 1
            self._on_gap(st, a, b, detail)

    async def drain(self, pending: list[Hole], tail: list[SymbolState], deadline_s: float) -> None:
        """On a graceful stop: refill ``pending`` holes and the ``tail`` of each listed symbol, within ``deadline_s``.

        ``pending`` are holes claimed but not (fully) fetched when the stream
        stopped; a hole interrupted half way resumes after the highest id it
        already wrote, so nothing is written twice. The tail of a symbol is
        every trade after the last id it kept, up to the exchange's head: what
        a stream that stopped while disconnected did not see. Whatever is left
        when the deadline passes, or cannot be fetched, is recorded as a gap.
        """
        left: list[Hole] = []
        for st, lo, hi in pending:
            if st.tracker is not None:
                lo = self.fetched.pop(id(st) ^ lo, lo - 1) + 1
            if lo <= hi:
                left.append((st, lo, hi))
        tails = [st for st in tail if st.tracker is not None and st.tracker.next >= 0]
        with trio.move_on_after(deadline_s):
            while left:
                await self._fill(*left[0])
                left.pop(0)
            while tails:
                st = tails[0]
                await self._fill_tail(st)
                tails.pop(0)
        for st, lo, hi in left:
            self._on_gap(st, lo, hi, f"the stream stopped before the refill could finish (within {deadline_s:g}s)")
        for st in tails:
            assert st.tracker is not None
            nxt = st.tracker.next
            self._on_gap(
                st,
                nxt,
                nxt,
                f"trades from id {nxt} to the stop were not received or refilled (stopped while disconnected)",
            )

    async def _fill_tail(self, st: SymbolState) -> None:
        assert st.tracker is not None
        ds, lo = st.dataset, st.tracker.next
        log.info("stream.refilling_tail", symbol=str(ds.symbol), first_id=lo)
        res = await fill_ids(self.pool, ds, lo, None, self.put, self.source, st.seq_ts)
        if res.filled:
            st.tracker.next = max(st.tracker.next, res.filled[-1][1] + 1)
        self._account(st, res, " (after the stream stopped while disconnected)")

    async def run_books(self) -> None:
        """Sync books that need a snapshot; every ``book_interval_s`` emit their top ``book_depth`` levels."""
        rec, interval = self.recording, self.book_interval_s
        tick = trio.current_time() + interval
        retry_at: dict[Symbol, float] = {}
        while True:
            with trio.move_on_at(min([tick, *retry_at.values()])):
                await rec.book_wake.wait()
            rec.book_wake = trio.Event()
            now = trio.current_time()
            for sym, st in rec.symbols.items():
                sync = st.book
                # Fetch only once a delta is buffered, so the snapshot cannot predate the stream.
                if sync is not None and sync.needs_snapshot and sync.buffer and retry_at.get(sym, 0.0) <= now:
                    retry_at.pop(sym, None)
                    if not await self._sync_book(st, sync):
                        retry_at[sym] = trio.current_time() + interval / 4
            if trio.current_time() >= tick:
                rec.write_books(self.book_depth)
                tick = max(tick + interval, trio.current_time())

    async def _sync_book(self, st: SymbolState, sync: BookSync) -> bool:
        try:
            snapshot = await fetch_book(self.pool, st.dataset, self.snapshot_depth)
        except DccdError as exc:
            log.warning("book.snapshot_failed", symbol=str(st.dataset.symbol), error=str(exc))
            return False
        if not sync.on_snapshot(snapshot):
            log.info("book.snapshot_too_old", symbol=str(st.dataset.symbol), seq=snapshot.seq)
            return False
        log.info("book.synced", symbol=str(st.dataset.symbol), seq=sync.book.seq)
        return True
