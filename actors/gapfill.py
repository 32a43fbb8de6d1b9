"""REST refills for live streams: missing trade ids, missing bars, book snapshots.

A live stream cannot be slowed or replayed, so whatever it missed (a
reconnect, a skipped window, an ingress overflow) is fetched over REST
through the service's shared client of the exchange (one rate limiter for
backfills and refills alike) and written through the stream's writer. Every
hole ends recorded on the run: ``filled`` with the ids/bars refilled, or
``gap`` with the bounds that could not be refilled and why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog

from dccd.domain.dataset import DatasetId
from dccd.domain.records import BookSnapshot, Candle, Record, Trade
from dccd.domain.spans import Span
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import DccdError

from .clients import ClientPool
from .messages import Batch

log = structlog.get_logger()

Put = Callable[[Batch], Awaitable[None]]


class FillResult(msgspec.Struct, frozen=True):
    """What one refill achieved: ``filled`` ranges and ``gaps`` left, each ``(lo, hi, detail)`` inclusive."""

    rows: int
    filled: tuple[tuple[int, int, str], ...] = ()
    gaps: tuple[tuple[int, int, str], ...] = ()


def _tid(trade: Trade) -> int | None:
    rid = trade.id
    return int(rid) if rid is not None and rid.isdigit() else None


async def fill_ids(pool: ClientPool, ds: DatasetId, lo: int, hi: int, put: Put, source: str) -> FillResult:
    """Fetch trades ``lo..hi`` by id cursor (``build_trades(cursor=str(lo))``), trimmed at ``hi``, and ``put`` them.

    Ids the exchange skips inside a page, and ids past its current head,
    come back as gaps; a failed request leaves the rest of the range a gap
    naming the error (the client already retried what is transient).
    """
    adapter = pool.adapter(ds.exchange)
    rows, cursor = 0, lo
    first_kept = last_kept = None
    gaps: list[tuple[int, int, str]] = []
    try:
        client = await pool.get(ds.exchange)
        while cursor <= hi:
            request = adapter.build_trades(ds.symbol, cursor=str(cursor))
            page = adapter.parse_trades(request, await client.fetch(request))
            keep = [t for t in page.records if (i := _tid(t)) is not None and cursor <= i <= hi]
            gaps.extend((a, min(b, hi), "the exchange has no such trade ids") for a, b in page.id_gaps if a <= hi)
            if keep:
                await put(Batch(ds, list[Record](keep), source, "rest"))
                rows += len(keep)
                first_kept = _tid(keep[0]) if first_kept is None else first_kept
                last_kept = _tid(keep[-1])
            last = _tid(page.records[-1]) if page.records else None
            if last is None:
                break  # nothing at or after the cursor yet
            cursor = last + 1
            if page.next_cursor is None:
                break  # the head of the tape
    except DccdError as exc:
        gaps.append((cursor, hi, f"refill failed: {exc}"))
        cursor = hi + 1
    if cursor <= hi:
        gaps.append((cursor, hi, "the exchange does not serve these ids (yet)"))
    filled: tuple[tuple[int, int, str], ...] = ()
    if first_kept is not None and last_kept is not None:
        filled = ((first_kept, last_kept, f"{rows} trades refilled over rest"),)
    return FillResult(rows, filled, tuple(gaps))


async def fill_bars(
    pool: ClientPool, ds: DatasetId, span: Span, lo_ns: int, hi_ns: int, put: Put, source: str
) -> FillResult:
    """Fetch the bars opening in ``[lo_ns, hi_ns)`` and ``put`` them; bars the exchange lacks are a gap."""
    adapter = pool.adapter(ds.exchange)
    got: list[Candle] = []
    cur: int | None = lo_ns
    last_open = span.add(hi_ns, -1)
    try:
        client = await pool.get(ds.exchange)
        while cur is not None and cur <= last_open:
            request = adapter.build_ohlc(ds.symbol, span, cur, last_open)
            page = adapter.parse_ohlc(request, await client.fetch(request))
            bars = [c for c in page.candles if lo_ns <= c.ts < hi_ns]
            if bars:
                await put(Batch(ds, list[Record](bars), source, "rest"))
                got.extend(bars)
            if page.next_start_ns is not None and page.next_start_ns <= cur:
                break  # a cursor that does not advance: stop, the rest becomes a gap
            cur = page.next_start_ns
    except DccdError as exc:
        first = span.next(got[-1].ts) if got else lo_ns
        return FillResult(len(got), _bar_ranges(got, lo_ns), ((first, hi_ns - 1, f"refill failed: {exc}"),))
    have = {c.ts for c in got}
    gaps: list[tuple[int, int, str]] = []
    t = lo_ns
    while t < hi_ns:
        if t not in have:
            start = t
            while t < hi_ns and t not in have:
                t = span.next(t)
            gaps.append((start, t - 1, f"the exchange has no bars from {ns_to_iso(start)} to {ns_to_iso(t)}"))
        else:
            t = span.next(t)
    return FillResult(len(got), _bar_ranges(got, lo_ns), tuple(gaps))


def _bar_ranges(got: list[Candle], lo_ns: int) -> tuple[tuple[int, int, str], ...]:
    if not got:
        return ()
    return ((min(c.ts for c in got), max(c.ts for c in got), f"{len(got)} bars refilled over rest"),)


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
