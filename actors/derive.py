"""The derive actor: OHLC bars of one dataset built from its stored trades (``--derive-from trades``).

It plays the backfill actor's part in a run (same :class:`~actors.backfill.BackfillJob`,
same writer, same run record), with the lake's trades as its source instead of
an exchange::

    Deriver ─ per chunk (a UTC day, or one bar for spans over 1d):
        await writer.wait_writable()
        trio.to_thread: DuckDB over the chunk's trade parts -> Arrow bars minus the bars stored
        writer.input.on_next(Batch(ohlc, [bars table], exchange, "derived"))

Bars are written through the run's writer actor and the quality gates like any
page; their parts' provenance says ``transport: derived``. Only final bars are
derived (see :func:`dccd.storage.derive.final_end`); bars already stored are
skipped, so a re-run (or ``--start last``) continues where the last one ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
import trio

from dccd.domain.timeutil import ns_to_iso
from dccd.errors import DccdError
from dccd.storage import derive, reader
from dccd.storage.lake import Lake
from dccd.storage.runs import RunStore

from .backfill import BackfillJob
from .messages import Batch, Message, RunLogged
from .progress import Progress

log = structlog.get_logger()

TRANSPORT = "derived"


class Deriver:
    """Runs one derive :class:`BackfillJob`; the actor body is :meth:`run` (the Backfiller's interface).

    Args:
        job: the OHLC dataset, range and clock.
        lake: the lake (trades in, stored bars for what to skip).
        runs: run history (trade coverage, progress).
        send: writer entry (``Batch`` in, never blocks).
        wait_writable: the writer's backpressure gate.
        emit: control events.
    """

    def __init__(
        self,
        job: BackfillJob,
        lake: Lake,
        runs: RunStore,
        send: Callable[[Batch], None],
        wait_writable: Callable[[], Any],
        emit: Callable[[Message], None],
    ) -> None:
        self.job = job
        self.ds = job.dataset
        self.lake = lake
        self.runs = runs
        self._send = send
        self._wait_writable = wait_writable
        self._emit = emit
        self.progress = Progress(job.run_id, "bars", None, emit, runs)
        self.empty_periods = 0
        self.derived_until: int | None = None
        self.partial: str | None = None  # never partial: trades decide, nothing is "not served"

    def _log(self, level: str, message: str, **fields: Any) -> None:
        getattr(log, level)(message, run_id=self.job.run_id, dataset=str(self.ds), **fields)
        self._emit(RunLogged(self.job.run_id, level, message + "".join(f" {k}={v}" for k, v in fields.items())))

    async def save(self) -> None:
        """Persist progress, empty periods and where final bars end in the run record."""
        await self.progress.save()
        await self.runs.aprogress(
            self.job.run_id, derived_from="trades", empty_periods=self.empty_periods, derived_until=self.derived_until
        )

    async def _start(self, trades: Any, span: Any) -> int | None:
        """First bar open to derive: after the newest stored bar (``last``), at the first stored trade
        (``origin``, or ``last`` with no bar stored), or the requested start."""
        first_trade = await trio.to_thread.run_sync(reader.stored_range, self.lake.root, trades)
        if first_trade is None:
            return None
        if self.job.start == "last":
            last = await self.lake.alast_ts(self.ds)
            if last is not None:
                return int(span.next(span.align(last)))
            return int(span.align(first_trade[0]))
        if self.job.start == "origin":
            return int(span.align(first_trade[0]))
        assert isinstance(self.job.start, int)
        return int(span.align_up(self.job.start))

    async def run(self) -> None:
        """Derive every final bar of the job's range that is not stored yet."""
        span = self.ds.span
        assert span is not None
        trades = derive.trades_dataset(self.ds)
        root = self.lake.root
        cover = await trio.to_thread.run_sync(derive.trade_coverage_end, root, self.runs, trades)
        start = await self._start(trades, span)
        if cover is None or start is None:
            raise DccdError(
                f"{trades}: no trades stored to derive bars from; backfill them first"
                f" (dccd backfill {self.ds.exchange} {self.ds.symbol} --type trades --start ...)"
            )
        end = derive.final_end(span, self.job.end_ns, self.job.now_ns, cover)
        self.derived_until = end
        total = span.count(start, end) if end > start else 0
        self.progress = Progress(self.job.run_id, "bars", total, self._emit, self.runs)
        self._log(
            "info",
            "derive.planned",
            start=ns_to_iso(start),
            end=ns_to_iso(max(start, end)),
            bars=total,
            trades_complete_until=ns_to_iso(cover),
        )
        if end <= start:
            self.progress.report()
            return
        for lo, hi in derive.chunks(span, start, end):
            await self._wait_writable()
            bars, with_trades = await trio.to_thread.run_sync(derive.derive_missing, root, trades, self.ds, lo, hi)
            periods = span.count(lo, hi)
            self.empty_periods += periods - with_trades
            if bars.num_rows:
                self._send(Batch(self.ds, [bars], self.ds.exchange, TRANSPORT))
            self.progress.add(done=periods, rows=bars.num_rows, pages=1)
        self.progress.report()
        await self.save()
