"""A local L2 order book kept in sync from a snapshot plus sequenced deltas (pure).

Binance's documented procedure for ``<symbol>@depth`` (diff depth) is the
general rule for exchanges that number their book updates: a delta carries
the update ids ``first..last`` it covers, a snapshot the id ``seq`` it is
current at, and

- a delta with ``last <= seq`` is already in the book: drop it;
- a delta with ``first <= seq + 1 <= last`` continues the book: apply it,
  then ``seq = last``;
- a delta with ``first > seq + 1`` means updates were missed: the book is
  no longer trustworthy and must be rebuilt from a fresh snapshot.

Deltas that arrive before the snapshot are buffered (:class:`BookSync`) and
replayed onto it; if even the oldest buffered delta starts after the
snapshot, the snapshot is too old and another one is needed. Amounts are
absolute (0 removes a level), so re-applying an overlapping delta is harmless.
"""

from __future__ import annotations

import heapq
from collections import deque
from enum import StrEnum

from dccd.domain.records import BookSnapshot

Delta = tuple[BookSnapshot, int | None, int | None]
"""A delta (levels to set; amount 0 removes) with its first and last update ids (None: unnumbered)."""


class Applied(StrEnum):
    """What :meth:`OrderBook.apply` did with a delta."""

    APPLIED = "applied"
    STALE = "stale"  # already contained in the book
    GAP = "gap"  # updates were missed: resync
    UNSYNCED = "unsynced"  # no snapshot yet


class OrderBook:
    """Price -> amount per side, current at update id ``seq`` and exchange time ``ts``."""

    __slots__ = ("asks", "bids", "seq", "synced", "ts")

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.seq: int | None = None
        self.ts = 0
        self.synced = False

    def reset(self, snapshot: BookSnapshot) -> None:
        """Replace the whole book by ``snapshot`` (levels with amount 0 are left out)."""
        self.bids = {p: a for p, a in snapshot.bids if a}
        self.asks = {p: a for p, a in snapshot.asks if a}
        self.seq = snapshot.seq
        self.ts = snapshot.ts
        self.synced = True

    def clear(self) -> None:
        """Forget everything (the book needs a new snapshot)."""
        self.bids, self.asks, self.seq, self.synced = {}, {}, None, False

    def apply(self, delta: BookSnapshot, first: int | None = None, last: int | None = None) -> Applied:
        """Apply one delta under the sequence rule of the module docstring.

        Unnumbered deltas (``first``/``last`` None) are applied as they come.
        """
        if not self.synced:
            return Applied.UNSYNCED
        if first is not None and last is not None and self.seq is not None:
            if last <= self.seq:
                return Applied.STALE
            if first > self.seq + 1:
                return Applied.GAP
        for side, levels in ((self.bids, delta.bids), (self.asks, delta.asks)):
            for price, amount in levels:
                if amount:
                    side[price] = amount
                else:
                    side.pop(price, None)
        if last is not None:
            self.seq = last
        self.ts = delta.ts  # the book is as of its latest update (a REST snapshot carries local time)
        return Applied.APPLIED

    def top(self, depth: int) -> BookSnapshot:
        """The best ``depth`` levels per side (bids descending, asks ascending) at ``ts``/``seq``."""
        bids = heapq.nlargest(depth, self.bids.items())
        asks = heapq.nsmallest(depth, self.asks.items())
        return BookSnapshot(self.ts, bids, asks, self.seq)


class BookSync:
    """One market's :class:`OrderBook` plus the buffer of deltas waiting for a snapshot.

    Feed deltas with :meth:`on_delta`, snapshots with :meth:`on_snapshot`;
    whenever :attr:`needs_snapshot` is True the caller should fetch one
    (and not start a second fetch while one is in flight).

    Args:
        max_buffer: deltas kept while waiting; older ones are dropped (a
            snapshot that old could not be continued from them anyway).
    """

    def __init__(self, max_buffer: int = 10_000) -> None:
        self.book = OrderBook()
        self.buffer: deque[Delta] = deque(maxlen=max_buffer)
        self.needs_snapshot = True
        self.resyncs = 0  # times the book was lost to a gap and rebuilt
        self.version = 0  # bumps on every change of the book's content

    @property
    def synced(self) -> bool:
        """True while the book is trustworthy."""
        return self.book.synced

    def on_delta(self, delta: BookSnapshot, first: int | None, last: int | None) -> Applied:
        """Apply (or buffer) a delta; a gap drops the book and asks for a snapshot."""
        if not self.book.synced:
            self.buffer.append((delta, first, last))
            return Applied.UNSYNCED
        result = self.book.apply(delta, first, last)
        if result is Applied.APPLIED:
            self.version += 1
        elif result is Applied.GAP:
            self.resyncs += 1
            self.book.clear()
            self.buffer.clear()
            self.buffer.append((delta, first, last))
            self.needs_snapshot = True
        return result

    def on_snapshot(self, snapshot: BookSnapshot) -> bool:
        """Rebuild from ``snapshot`` and replay the buffer; False if the snapshot is too old (fetch another)."""
        pending = list(self.buffer)
        self.buffer.clear()
        seq = snapshot.seq
        if seq is not None:
            pending = [d for d in pending if d[2] is None or d[2] > seq]
            if pending and pending[0][1] is not None and pending[0][1] > seq + 1:
                self.buffer.extend(pending)  # keep them: a newer snapshot may still continue them
                self.needs_snapshot = True
                return False
        self.book.reset(snapshot)
        self.needs_snapshot = False
        self.version += 1
        return all(self.on_delta(delta, first, last) is not Applied.GAP for delta, first, last in pending)
