"""IdTracker: duplicates, holes, late arrivals and claiming holes after a settle time."""

from __future__ import annotations

from dccd.domain.sequence import DUPLICATE, NEW, NEW_AFTER_HOLE, IdTracker


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_duplicates_and_holes() -> None:
    """In-order ids are new, repeats are duplicates, a jump opens a hole stamped with the clock's time."""
    clock = Clock()
    tr = IdTracker(clock)
    assert tr.last is None
    assert [tr.accept(i) for i in (5, 6, 6, 4)] == [NEW, NEW, DUPLICATE, DUPLICATE]
    clock.now = 1.5
    assert tr.accept(10) == NEW_AFTER_HOLE
    assert tr.missing == [(7, 9, 1.5)] and (tr.last, tr.next) == (10, 11) and tr.duplicates == 2


def test_late_arrivals_split_the_hole() -> None:
    """An id inside a hole is new once (the hole shrinks around it), then a duplicate."""
    tr = IdTracker(Clock())
    tr.accept(1)
    tr.accept(10)
    assert tr.accept(5) == NEW
    assert tr.accept(5) == DUPLICATE
    assert tr.accept(2) == NEW and tr.accept(9) == NEW
    assert tr.missing == [(3, 4, 0.0), (6, 8, 0.0)] and tr.late == 3
    assert tr.missing_count() == 5


def test_claim_after_settle_and_claimed_ids_become_duplicates() -> None:
    """Holes are claimable settle_s after they opened; a claimed range is the refiller's (stream copies are dups)."""
    clock = Clock()
    tr = IdTracker(clock)
    tr.accept(1)
    clock.now = 1.0
    tr.accept(5)
    clock.now = 2.0
    tr.accept(9)
    assert tr.next_due(0.5) == 1.5
    assert tr.claim(1.4, 0.5) == []
    assert tr.claim(1.5, 0.5) == [(2, 4)]
    assert tr.accept(3) == DUPLICATE
    assert tr.next_due(0.5) == 2.5
    tr.add_missing(20, 21, 0.0)
    assert tr.claim_all() == [(6, 8), (20, 21)] and tr.next_due(0.5) is None
