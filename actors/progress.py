"""Run progress of a backfill: pages, rows and done units, reported at most every :data:`PROGRESS_EVERY_S`.

Reports go out as :class:`~dccd.actors.messages.RunProgressed` events on the
service bus (the CLI bar, SSE ``/api/v1/events`` and metrics subscribe there);
:meth:`Progress.save` persists the same counters in the run record.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from dccd.storage.runs import RunStore

from .messages import Message, RunProgressed

PROGRESS_EVERY_S = 0.5


class Progress:
    """Counts a run's pages and rows and reports them at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, run_id: str, unit: str, total: int | None, emit: Callable[[Message], None], runs: RunStore):
        self.run_id = run_id
        self.unit = unit
        self.total = total
        self.done = 0
        self.pages = 0
        self.rows = 0
        self._emit = emit
        self._runs = runs
        self._t0 = trio.current_time()
        self._last = -1e9

    def add(self, done: int = 0, rows: int = 0, pages: int = 0) -> None:
        """Count progress; maybe report."""
        self.done += done
        self.rows += rows
        self.pages += pages
        now = trio.current_time()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self.report()

    def report(self) -> None:
        """Emit a RunProgressed event (the run record is updated by :meth:`save`)."""
        elapsed = max(trio.current_time() - self._t0, 1e-9)
        rate = self.rows / elapsed
        eta = None
        if self.total and self.done:
            eta = elapsed * (self.total - self.done) / self.done
        self._emit(RunProgressed(self.run_id, self.done, self.total, self.unit, self.pages, self.rows, rate, eta))

    async def save(self) -> None:
        """Persist progress in the run record."""
        await self._runs.aprogress(
            self.run_id, done=self.done, total=self.total, unit=self.unit, pages=self.pages, rows=self.rows
        )
