"""The data side of a live stream: generic events in, deduplicated rows out, holes remembered.

Per symbol, :class:`Recording` keeps

- trades: an :class:`~dccd.domain.sequence.IdTracker` when the exchange's
  ids are consecutive (duplicates of a rotation overlap are dropped, holes
  are remembered for a REST refill);
- bars: the newest closed bar, so a duplicate is dropped and a jump of more
  than one span becomes a hole;
- books: a :class:`~dccd.domain.book.BookSync` (snapshot + sequenced
  deltas), written as top-N levels by :meth:`Recording.write_books`;

and the rows received but not yet handed on. :meth:`Recording.flush` emits
them on :attr:`Recording.batches`, the stream's output observable (the
stream wires it to the bounded ingress and the hub); what the ingress
refuses because the writer fell behind comes back through
:meth:`Recording.on_rejected` and becomes a hole too. All of it is
synchronous: it runs inside the WebSocket reader's callback, once per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog
import trio
from reactivex.subject import Subject

from dccd.domain.book import BookSync
from dccd.domain.capability import Transport
from dccd.domain.dataset import DatasetId
from dccd.domain.records import DataType, Record, Trade
from dccd.domain.sequence import NEW_AFTER_HOLE, IdTracker
from dccd.domain.symbols import Symbol
from dccd.sources.stream import BookReceived, CandlesClosed, TradesReceived

from .hub import Key
from .messages import Batch

log = structlog.get_logger()


class SymbolState:
    """One symbol of a stream: its dataset, hub key, pending rows and dedupe/hole/book state."""

    __slots__ = (
        "book",
        "dataset",
        "floors",
        "holes",
        "key",
        "last_trade",
        "last_ts",
        "pending",
        "resumed",
        "seq_ts",
        "tracker",
        "written_ts",
    )

    def __init__(self, dataset: DatasetId, sequential: bool) -> None:
        self.dataset = dataset
        span = (dataset.span.label,) if dataset.span else ()
        self.key: Key = (dataset.data_type.value, dataset.exchange, str(dataset.symbol), *span)
        self.pending: list[Record] = []
        self.tracker = IdTracker(trio.current_time) if sequential and dataset.data_type is DataType.TRADES else None
        self.last_ts: int | None = None  # newest bar accepted (ohlc)
        self.holes: list[tuple[int, int, float]] = []  # bars missing in [lo_ns, hi_ns), seen at trio time
        self.book = BookSync() if dataset.data_type is DataType.BOOK else None
        self.written_ts: int | None = None  # book time of the last top-N snapshot written
        self.last_trade: Trade | None = None  # newest trade kept (non-consecutive ids: bounds a reconnect hole)
        self.resumed = False  # the connection dropped since last_trade: the next trades may leave a hole
        self.seq_ts: int | None = None  # time of the newest trade kept by id (sequential ids)
        self.floors: dict[int, int] = {}  # id hole lo -> a time at or before trade lo (where a refill starts)

    def floor_ns(self, lo: int) -> int | None:
        """A time at or before trade ``lo`` of a hole (where a REST refill by time must start), if known."""
        keys = [k for k in self.floors if k <= lo]
        return self.floors[max(keys)] if keys else None


Hole = tuple[SymbolState, int, int]
"""A range to refill: trade ids ``lo..hi`` (inclusive) or bars opening in ``[lo, hi)`` ns."""


class Recording:
    """Per-symbol dedupe, holes and books of one stream, and its way out (:attr:`batches`).

    Args:
        datasets: one per symbol.
        source: the stream actor's name (on every :class:`Batch`).
        sequential: the exchange's trade ids are consecutive integers.
        on_gap: records an unfillable range ``(state, lo, hi, detail)``.
        batch_rows: hand a symbol's rows on as soon as this many are pending.
        settle_s: how long a hole waits for a late copy before it is claimed.
    """

    def __init__(
        self,
        datasets: list[DatasetId],
        *,
        source: str,
        sequential: bool,
        on_gap: Callable[[SymbolState, int, int, str], None],
        batch_rows: int = 10_000,
        settle_s: float = 1.0,
    ) -> None:
        self.symbols: dict[Symbol, SymbolState] = {ds.symbol: SymbolState(ds, sequential) for ds in datasets}
        self.source = source
        self.batches: Subject[Batch] = Subject()
        """Output: every batch of rows handed on (flushes and book snapshots), in order."""
        self.keys: dict[DatasetId, Key] = {st.dataset: st.key for st in self.symbols.values()}
        """Hub topic of each dataset."""
        self._on_gap = on_gap
        self.batch_rows = batch_rows
        self.settle_s = settle_s
        self.fill_wake = trio.Event()  # set when a hole opens
        self.book_wake = trio.Event()  # set when a book needs a snapshot
        self.rows_received = 0
        self.dropped_rows = 0
        self.book_resyncs = 0
        self.unrecognised: dict[str, int] = {}
        first = next(iter(self.symbols.values()))
        self._last_symbol: Symbol | None = None
        self._last_state: SymbolState = first

    # -- events (the per-message path: keep it to dict lookups and appends) ------------------------

    def on_trades(self, ev: TradesReceived, _conn: object = None) -> None:
        """Keep new trades, drop duplicates, open holes on id jumps."""
        if ev.symbol is self._last_symbol:  # sessions reuse their Symbol objects: skip hashing it per frame
            st = self._last_state
        else:
            found = self.symbols.get(ev.symbol)
            if found is None or found.dataset.data_type is not DataType.TRADES:
                self.on_unrecognised(f"trades {ev.symbol}")
                return
            st, self._last_symbol, self._last_state = found, ev.symbol, found
        pending, tracker = st.pending, st.tracker
        if tracker is None:
            if st.resumed and ev.trades:
                self._after_reconnect(st, ev.trades)
            pending.extend(ev.trades)  # ids not consecutive: duplicates of an overlap are removed on read
            if ev.trades and (st.last_trade is None or ev.trades[-1].ts >= st.last_trade.ts):
                st.last_trade = ev.trades[-1]
        else:
            for t in ev.trades:
                rid = t.id
                if rid is None:
                    pending.append(t)
                    continue
                i = int(rid)
                if i == tracker.next:  # the common case, inline: the id right after the last one
                    tracker.next = i + 1
                    pending.append(t)
                    continue
                verdict = tracker.accept(i)
                if verdict:
                    pending.append(t)
                    if verdict == NEW_AFTER_HOLE:
                        # the trade kept before this one bounds the hole's time from below
                        floor = pending[-2].ts if len(pending) >= 2 else st.seq_ts
                        if floor is not None:
                            st.floors[tracker.missing[-1][0]] = floor
                        self.fill_wake.set()
            if pending:
                st.seq_ts = pending[-1].ts
        if len(pending) >= self.batch_rows:
            self.flush(st)

    def on_disconnect(self, symbols: Iterable[Symbol]) -> None:
        """A connection carrying ``symbols`` dropped: trades without consecutive ids cannot prove a hole later."""
        for sym in symbols:
            st = self.symbols.get(sym)
            if st is not None and st.tracker is None and st.last_trade is not None:
                st.resumed = True

    def _after_reconnect(self, st: SymbolState, trades: list[Trade]) -> None:
        """First trades after a drop: unless they overlap the last one kept, record the time range as a gap."""
        st.resumed = False
        last = st.last_trade
        assert last is not None
        if last.id is not None and any(t.id == last.id for t in trades):
            return  # a snapshot reaching back to the last trade kept: nothing can be missing
        detail = f"trades between these times may be missing: reconnected, trade ids not consecutive (last {last.id})"
        self._on_gap(st, last.ts, max(last.ts, trades[0].ts), detail)

    def on_candles(self, ev: CandlesClosed, _conn: object = None) -> None:
        """Keep closed bars newer than the last one; a jump of more than one span opens a hole."""
        st = self.symbols.get(ev.symbol)
        if st is None or st.dataset.span != ev.span:
            self.on_unrecognised(f"ohlc {ev.symbol} {ev.span.label}")
            return
        for c in ev.candles:
            last = st.last_ts
            if last is not None:
                if c.ts <= last:
                    continue  # the other connection of a rotation already delivered it
                expected = ev.span.next(last)
                if c.ts > expected:
                    st.holes.append((expected, c.ts, trio.current_time()))
                    self.fill_wake.set()
            st.last_ts = c.ts
            st.pending.append(c)

    def on_book(self, ev: BookReceived, _conn: object = None) -> None:
        """Apply a snapshot or delta to the symbol's local book (a gap asks for a new snapshot)."""
        st = self.symbols.get(ev.symbol)
        if st is None or st.book is None:
            self.on_unrecognised(f"book {ev.symbol}")
            return
        sync = st.book
        if ev.snapshot:
            sync.on_snapshot(ev.book)
        else:
            before = sync.resyncs
            sync.on_delta(ev.book, ev.first_seq, ev.last_seq)
            if sync.resyncs != before:
                self.book_resyncs += 1
                log.warning("book.out_of_sync", symbol=str(ev.symbol), first_seq=ev.first_seq, book_seq=sync.book.seq)
        if sync.needs_snapshot:
            self.book_wake.set()

    def on_unrecognised(self, key: str) -> None:
        """Count a frame (or an event for a symbol this stream does not record) by key; log the first."""
        n = self.unrecognised.get(key, 0)
        self.unrecognised[key] = n + 1
        if not n:
            log.info("stream.unrecognised_frame", key=key)

    # -- rows out ------------------------------------------------------------------------------------

    def emit(self, st: SymbolState, records: list[Record]) -> None:
        """Emit rows on :attr:`batches` (refused ones come back through :meth:`on_rejected`)."""
        self.rows_received += len(records)
        self.batches.on_next(Batch(st.dataset, records, self.source, Transport.WS.value))

    def on_rejected(self, batch: Batch) -> None:
        """The ingress refused ``batch`` (the writer fell behind): its rows become holes (books: a gap)."""
        self._dropped(self.symbols[batch.dataset.symbol], batch.records)

    def key_of(self, batch: Batch) -> Key:
        """The hub topic of a batch of this stream."""
        return self.keys[batch.dataset]

    def flush(self, st: SymbolState) -> None:
        """Hand a symbol's pending rows on."""
        records, st.pending = st.pending, []
        self.emit(st, records)

    def flush_all(self) -> None:
        """Hand every symbol's pending rows on."""
        for st in self.symbols.values():
            if st.pending:
                self.flush(st)

    def take_pending(self) -> list[Batch]:
        """Remove and return the pending rows as batches (for the final hand-over at shutdown)."""
        out = []
        for st in self.symbols.values():
            if st.pending:
                records, st.pending = st.pending, []
                out.append(Batch(st.dataset, records, self.source, Transport.WS.value))
        return out

    def _dropped(self, st: SymbolState, records: list[Record]) -> None:
        self.dropped_rows += len(records)
        due_now = trio.current_time() - self.settle_s
        ds = st.dataset
        if st.tracker is not None:
            ids = sorted(int(rid) for r in records if isinstance(rid := getattr(r, "id", None), str))
            floor = min(r.ts for r in records) if records else None
            for lo, hi in id_runs(ids):
                st.tracker.add_missing(lo, hi, due_now)
                if floor is not None:
                    st.floors[lo] = min(floor, st.floors.get(lo, floor))
        elif ds.data_type is DataType.OHLC and ds.span is not None:
            for r in records:
                st.holes.append((r.ts, ds.span.next(r.ts), due_now))
        else:
            lo, hi = min(r.ts for r in records), max(r.ts for r in records)
            self._on_gap(st, lo, hi, f"{len(records)} rows dropped: ingress full (the writer fell behind)")
        self.fill_wake.set()

    # -- holes -----------------------------------------------------------------------------------------

    def claim(self, now: float) -> list[Hole]:
        """Remove and return the holes that waited ``settle_s``."""
        settle = self.settle_s
        work: list[Hole] = []
        for st in self.symbols.values():
            if st.tracker is not None and st.tracker.missing:
                work.extend((st, lo, hi) for lo, hi in st.tracker.claim(now, settle))
            if st.holes:
                work.extend((st, lo, hi) for lo, hi, seen in st.holes if seen + settle <= now)
                st.holes = [h for h in st.holes if h[2] + settle > now]
        return work

    def next_claim(self) -> float:
        """Trio time at which the next hole becomes claimable (inf: none)."""
        due = float("inf")
        for st in self.symbols.values():
            if st.tracker is not None and st.tracker.missing:
                due = min(due, st.tracker.next_due(self.settle_s) or due)
            due = min([due, *(seen + self.settle_s for _, _, seen in st.holes)])
        return due

    def claim_all(self) -> list[Hole]:
        """Remove and return every hole, inclusive bounds (bars: ``hi`` = last ns of the hole)."""
        out: list[Hole] = []
        for st in self.symbols.values():
            if st.tracker is not None:
                out.extend((st, lo, hi) for lo, hi in st.tracker.claim_all())
            out.extend((st, lo, hi - 1) for lo, hi, _ in st.holes)
            st.holes = []
        return out

    # -- books -----------------------------------------------------------------------------------------

    def write_books(self, depth: int) -> None:
        """Emit the top ``depth`` levels of every synced book that changed since its last snapshot."""
        for st in self.symbols.values():
            sync = st.book
            if sync is None or not sync.synced or sync.book.ts == st.written_ts:
                continue
            top = sync.book.top(depth)
            st.written_ts = top.ts
            levels: list[Record] = list(top.levels())
            if levels:
                self.emit(st, levels)


def id_runs(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted ids as maximal consecutive ranges ``(lo, hi)``."""
    out: list[tuple[int, int]] = []
    for i in ids:
        if out and i <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], i))
        else:
            out.append((i, i))
    return out
