"""The writer's flush rule: rows buffered per key, flushed by size or by the age of the oldest row.

Pure and clock-free: every time is passed in as ``now`` (the writer uses
Trio's clock, tests pass numbers). A key is due when it holds ``max_rows``
rows or when ``max_age_s`` has passed since its oldest buffered row arrived.
Waiting and deciding use the same expression (``since + max_age_s``), so a
deadline that fired is always due, even with float rounding.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

NEVER = float("inf")


class RowBuffer(Generic[K, R]):
    """Rows per key with their arrival time; see the module docstring for the rule."""

    def __init__(self, max_rows: int, max_age_s: float) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._rows: dict[K, list[R]] = {}
        self._since: dict[K, float] = {}

    def add(self, key: K, rows: Iterable[R], now: float) -> bool:
        """Buffer ``rows`` under ``key`` at ``now``.

        Returns:
            True when ``key`` now holds at least ``max_rows`` rows (flush it).
        """
        buf = self._rows.get(key)
        if buf is None:
            buf = self._rows[key] = []
            self._since[key] = now
        buf.extend(rows)
        return len(buf) >= self.max_rows

    def due_at(self, key: K) -> float:
        """When ``key`` becomes due by age (``inf`` if nothing is buffered for it)."""
        since = self._since.get(key)
        return NEVER if since is None else since + self.max_age_s

    def next_due(self) -> float:
        """The earliest age deadline over all keys (``inf`` when empty)."""
        return min((since + self.max_age_s for since in self._since.values()), default=NEVER)

    def due(self, now: float) -> list[K]:
        """Keys whose oldest row is ``max_age_s`` old at ``now`` (all keys for ``now=inf``), oldest first."""
        keys = [k for k, since in self._since.items() if since + self.max_age_s <= now]
        return sorted(keys, key=self._since.__getitem__)

    def take(self, key: K) -> list[R]:
        """Remove and return the rows of ``key`` (empty if none)."""
        self._since.pop(key, None)
        return self._rows.pop(key, [])

    def rows(self, key: K | None = None) -> int:
        """Rows buffered for ``key``, or in total."""
        if key is not None:
            return len(self._rows.get(key, ()))
        return sum(len(v) for v in self._rows.values())

    def __len__(self) -> int:
        """Number of keys with buffered rows."""
        return len(self._rows)

    def clear(self) -> None:
        """Forget everything buffered."""
        self._rows.clear()
        self._since.clear()
