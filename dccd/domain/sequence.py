"""Bookkeeping of a live feed whose records carry consecutive integer ids (pure).

:class:`IdTracker` decides, per arriving id, whether the record is new, a
duplicate (a rotation overlap delivers the same trades twice) or a late
arrival that fills a known hole, and keeps the holes ("missing ranges") with
the time they were seen. A hole is given a short settle time before it is
claimed for a REST refill, because during a connection overlap the other
connection often delivers it a moment later. A claimed range is the
refiller's alone: later stream copies of those ids are duplicates.

The hot path is ``i == tracker.next`` (the id right after the last one):
callers may test it inline and only call :meth:`IdTracker.accept` otherwise.
``clock`` (any monotonic seconds; the actor passes Trio's) is read only when
a hole opens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

DUPLICATE: Final = 0
NEW: Final = 1
NEW_AFTER_HOLE: Final = 2


class IdTracker:
    """Next expected id, unclaimed holes below it, and counters."""

    __slots__ = ("clock", "duplicates", "late", "missing", "next")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.next = -1  # the id expected next; -1 before the first one
        self.missing: list[tuple[int, int, float]] = []  # (lo, hi, since): ids lo..hi (inclusive) not seen yet
        self.duplicates = 0
        self.late = 0  # ids that arrived after their hole was opened

    @property
    def last(self) -> int | None:
        """Highest id seen, or None."""
        return self.next - 1 if self.next >= 0 else None

    def accept(self, i: int) -> int:
        """Classify id ``i``: :data:`NEW`, :data:`NEW_AFTER_HOLE` (a hole opened below it) or :data:`DUPLICATE`."""
        expect = self.next
        if expect < 0 or i == expect:
            self.next = i + 1
            return NEW
        if i > expect:
            self.missing.append((expect, i - 1, self.clock()))
            self.next = i + 1
            return NEW_AFTER_HOLE
        for k, (lo, hi, since) in enumerate(self.missing):
            if lo <= i <= hi:
                pieces = [(lo, i - 1, since)] if lo < i else []
                if i < hi:
                    pieces.append((i + 1, hi, since))
                self.missing[k : k + 1] = pieces
                self.late += 1
                return NEW
        self.duplicates += 1
        return DUPLICATE

    def add_missing(self, lo: int, hi: int, since: float) -> None:
        """Declare ids ``lo..hi`` missing (e.g. dropped downstream after they were accepted)."""
        if lo <= hi:
            self.missing.append((lo, hi, since))

    def next_due(self, settle_s: float) -> float | None:
        """When the oldest hole becomes claimable, or None without holes."""
        return min(h[2] for h in self.missing) + settle_s if self.missing else None

    def claim(self, now: float, settle_s: float) -> list[tuple[int, int]]:
        """Remove and return the holes seen at least ``settle_s`` before ``now``, ascending."""
        due = [(lo, hi) for lo, hi, since in self.missing if since + settle_s <= now]
        if due:
            self.missing = [h for h in self.missing if h[2] + settle_s > now]
        return sorted(due)

    def claim_all(self) -> list[tuple[int, int]]:
        """Remove and return every hole, ascending."""
        out = sorted((lo, hi) for lo, hi, _ in self.missing)
        self.missing = []
        return out

    def missing_count(self) -> int:
        """Ids currently known missing and not claimed."""
        return sum(hi - lo + 1 for lo, hi, _ in self.missing)
