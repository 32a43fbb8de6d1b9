"""The local order book: Binance's snapshot + sequenced-delta sync rule, top-N output."""

from __future__ import annotations

from dccd.domain.book import Applied, BookSync, OrderBook
from dccd.domain.records import BookSnapshot


def snap(
    seq: int | None, bids: list[tuple[float, float]], asks: list[tuple[float, float]] | None = None, ts: int = 1
) -> BookSnapshot:
    return BookSnapshot(ts, bids, asks or [], seq)


def test_delta_rules_stale_continue_gap() -> None:
    """Against a book at seq 10: last<=10 is stale, first<=11<=last applies, first>11 is a gap."""
    book = OrderBook()
    assert book.apply(snap(None, [(1.0, 1.0)]), 5, 6) is Applied.UNSYNCED
    book.reset(snap(10, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 3.0)]))
    assert book.apply(snap(None, [(100.0, 9.0)]), 8, 10) is Applied.STALE
    assert book.bids[100.0] == 1.0
    assert book.apply(snap(None, [(100.0, 0.0), (98.0, 4.0)], [(102.0, 1.0)], ts=7), 9, 12) is Applied.APPLIED
    assert (book.seq, book.ts, book.bids, book.asks) == (12, 7, {99.0: 2.0, 98.0: 4.0}, {101.0: 3.0, 102.0: 1.0})
    assert book.apply(snap(None, [(97.0, 1.0)]), 14, 15) is Applied.GAP
    assert 97.0 not in book.bids


def test_top_orders_sides_and_cuts_depth() -> None:
    """top(n) gives the n best bids (descending) and asks (ascending) at the book's ts and seq."""
    book = OrderBook()
    book.reset(snap(3, [(1.0, 1.0), (3.0, 1.0), (2.0, 1.0)], [(6.0, 1.0), (4.0, 1.0), (5.0, 1.0)], ts=9))
    assert book.top(2) == BookSnapshot(9, [(3.0, 1.0), (2.0, 1.0)], [(4.0, 1.0), (5.0, 1.0)], 3)


def test_sync_replays_buffered_deltas_onto_the_snapshot() -> None:
    """Deltas before the snapshot are buffered; stale ones dropped, the straddling one and its successors applied."""
    sync = BookSync()
    for first, last, price in ((1, 3, 1.0), (4, 6, 2.0), (7, 9, 3.0)):
        assert sync.on_delta(snap(None, [(price, 1.0)]), first, last) is Applied.UNSYNCED
    assert sync.needs_snapshot
    assert sync.on_snapshot(snap(5, [(0.5, 1.0)]))
    assert not sync.needs_snapshot and sync.book.seq == 9
    assert sync.book.bids == {0.5: 1.0, 2.0: 1.0, 3.0: 1.0}  # (1..3) was already in the snapshot


def test_sync_asks_again_when_the_snapshot_is_too_old() -> None:
    """A snapshot older than every buffered delta is refused and the deltas are kept for the next one."""
    sync = BookSync()
    sync.on_delta(snap(None, [(2.0, 1.0)]), 10, 12)
    assert not sync.on_snapshot(snap(5, []))
    assert sync.needs_snapshot and not sync.synced and len(sync.buffer) == 1
    assert sync.on_snapshot(snap(11, []))
    assert sync.book.bids == {2.0: 1.0} and sync.book.seq == 12


def test_gap_drops_the_book_and_buffers_for_a_resync() -> None:
    """A sequence gap clears the book, counts a resync and asks for a snapshot; the new one continues it."""
    sync = BookSync()
    sync.on_delta(snap(None, []), 1, 1)
    sync.on_snapshot(snap(1, [(1.0, 1.0)]))
    assert sync.on_delta(snap(None, [(2.0, 1.0)]), 2, 2) is Applied.APPLIED
    assert sync.on_delta(snap(None, [(3.0, 1.0)]), 5, 6) is Applied.GAP
    assert (sync.synced, sync.needs_snapshot, sync.resyncs) == (False, True, 1)
    assert sync.on_snapshot(snap(4, [(9.0, 1.0)]))
    assert sync.book.bids == {9.0: 1.0, 3.0: 1.0} and sync.book.seq == 6


def test_unnumbered_deltas_apply_in_order() -> None:
    """Exchanges without update ids: deltas apply as they come once a snapshot is in."""
    sync = BookSync()
    sync.on_snapshot(snap(None, [(1.0, 1.0)]))
    assert sync.on_delta(snap(None, [(1.0, 0.0)], [(2.0, 5.0)]), None, None) is Applied.APPLIED
    assert (sync.book.bids, sync.book.asks) == ({}, {2.0: 5.0})


def test_buffer_is_bounded() -> None:
    """Waiting for a snapshot keeps at most max_buffer deltas (the oldest go)."""
    sync = BookSync(max_buffer=3)
    for i in range(10):
        sync.on_delta(snap(None, []), i, i)
    assert [d[1] for d in sync.buffer] == [7, 8, 9]
