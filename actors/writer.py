"""The batched writer actor: Batch messages in, one durable part per dataset flush out.

Data path (``input`` in, ``accepted`` and ``events`` observable)::

    producers ──on_next──► input (Rx Subject) ─filter(non-empty)─► accepted ──► PressureQueue(high, low)
        ▲                                                                │ consumer loop
        └──────────── await writer.wait_writable() ◄── gate ─────────────┤ rows per dataset
                                                                         ▼ >= max_rows or age >= max_age_s
                                                  trio.to_thread.run_sync(write, dataset, records)
                                                                         ▼
                                  PartWritten, DataValidated ──► events (Rx Subject) ──► service events

The size-and-age flush rule lives in the consumer loop rather than in an Rx
``buffer_with_time_or_count``: the count there is per item, but items are
batches of varying size, and rows are what make a good Parquet part. Age
comes from Trio's clock (``trio.move_on_at``), so it is exact under
``autojump_clock``. Buffered rows and the pending part live on the
:class:`Writer` object, so a restart after a transient write error loses
nothing; on shutdown the writer drains (every accepted batch is written)
in a shielded scope bounded by ``drain_s``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

import msgspec
import reactivex.operators as ops
import structlog
import trio
from reactivex import Observable, Observer, abc
from reactivex.subject import Subject

from dccd.domain.batching import RowBuffer
from dccd.domain.dataset import DatasetId
from dccd.domain.records import Record

from .messages import Batch, DataValidated, Flush, Message, PartWritten, Stop
from .sink import PressureQueue
from .stats import ActorMetrics

log = structlog.get_logger()

WriteFn = Callable[[DatasetId, list[Record]], Any]
"""Stores records (a list of Structs, or a ``pyarrow.Table`` from a table :class:`Batch`) durably; returns the lake's :class:`dccd.storage.WriteResult` (or any result with ``.parts``
whose items have ``path, rows, bytes, first_ts, last_ts``)."""
Offload = Callable[..., Awaitable[Any]]


class WriterStats(msgspec.Struct, frozen=True):
    """A snapshot of one :class:`Writer`."""

    name: str
    accepted_batches: int
    accepted_rows: int
    buffered_rows: int
    written_rows: int
    parts: int
    lost_rows: int
    queue_depth: int
    queue_max_depth: int
    write_seconds: float


def _has_records(batch: Batch) -> bool:
    return bool(batch.records) or (batch.table is not None and batch.table.num_rows > 0)


def _part_events(result: Any, dataset: DatasetId, elapsed: float, writer: str) -> list[PartWritten]:
    """PartWritten events for one write: one per ``result.parts`` entry (the lake splits by partition)."""
    return [
        PartWritten(dataset, p.rows, p.path, p.bytes, p.first_ts, p.last_ts, duration_s=elapsed, writer=writer)
        for p in result.parts
    ]


def _validated(result: Any, dataset: DatasetId) -> DataValidated | None:
    """The batch data contracts' outcome of one write (None when the write function reports none)."""
    checked = getattr(result, "rows_checked", 0)
    if not checked:
        return None
    return DataValidated(str(dataset), "batch", checked, dict(getattr(result, "contract_failures", {})))


class _Input(abc.ObserverBase[Batch]):
    """Producers' view of the writer: completion or errors of one producer do not close it."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    def on_next(self, value: Batch) -> None:
        self._writer.send(value)

    def on_error(self, error: Exception) -> None:
        pass  # the failing producer's own actor reports it

    def on_completed(self) -> None:
        pass


class WriterOptions(TypedDict, total=False):
    """Keyword options of :class:`Writer` (operations' ``writer_options``, ``StreamOptions.writer``)."""

    max_rows: int
    max_age_s: float
    high: int
    low: int | None
    drain_s: float
    offload: Offload


class Writer:
    """Generic batched writer; run it as an actor with ``await supervisor.start(name, writer.run, role=WRITER)``.

    Args:
        write: stores one flush of one dataset, called in a worker thread (see :data:`WriteFn`).
        name: for logs, events and statistics.
        max_rows: flush a dataset once this many rows are buffered for it.
        max_age_s: flush a dataset once its oldest buffered row is this old.
        high, low: the input queue's water marks, in batches.
        drain_s: bound on the final flush at shutdown.
        emit: subscribed to :attr:`events` (e.g. ``Service.emit``).
        offload: runs ``write`` off the Trio thread (default ``trio.to_thread.run_sync``).
    """

    def __init__(
        self,
        write: WriteFn,
        *,
        name: str = "writer",
        max_rows: int = 50_000,
        max_age_s: float = 5.0,
        high: int = 8,
        low: int | None = None,
        drain_s: float = 10.0,
        emit: Callable[[Message], None] | None = None,
        offload: Offload = trio.to_thread.run_sync,
    ) -> None:
        try:
            self._buffer: RowBuffer[DatasetId, Record] = RowBuffer(max_rows, max_age_s)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        self.name = name
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.drain_s = drain_s
        self._write = write
        self._offload = offload
        self._queue: PressureQueue[Batch] = PressureQueue(high, low, name=f"{name}.input")
        self._subject: Subject[Batch] = Subject()
        self.accepted: Observable[Batch] = self._subject.pipe(ops.filter(_has_records))
        """Every batch the writer took into its queue, in order (tap it to see what the writer receives)."""
        self.accepted.subscribe(self._queue)
        self.input: abc.ObserverBase[Batch] = _Input(self)
        """Where producers push batches (after ``await writer.wait_writable()``): one producer's completion
        or error does not close the writer."""
        self.commands: abc.ObserverBase[Flush | Stop] = Observer(on_next=self.command)
        """Rx command input (:meth:`command`)."""
        self.events: Subject[PartWritten | DataValidated] = Subject()
        """Output: one :class:`PartWritten` per durable part, then one :class:`DataValidated` per write
        (the batch data contracts' outcome) when the write function reports one."""
        if emit is not None:
            self.events.subscribe(on_next=emit)
        self._parked: list[tuple[DatasetId, list[Record]]] = []
        self._settled = trio.Event()  # set (and replaced) after each write and whenever the consumer goes idle
        self._flush_all = False
        self.accepted_batches = 0
        self.accepted_rows = 0
        self.written_rows = 0
        self.parts = 0
        self.lost_rows = 0
        self.write_seconds = 0.0

    # -- producer side --------------------------------------------------------------------------

    async def wait_writable(self) -> None:
        """Wait until the writer wants more (the backpressure point for producers)."""
        await self._queue.wait_writable()

    def send(self, batch: Batch) -> None:
        """Accept ``batch`` now (never blocks; producers call :meth:`wait_writable` first).

        Raises:
            trio.ClosedResourceError: the writer is draining or stopped.
        """
        if self._queue.closed:
            raise trio.ClosedResourceError(f"{self.name}: batch sent after the writer closed")
        self._subject.on_next(batch)

    async def put(self, batch: Batch) -> None:
        """:meth:`wait_writable`, then :meth:`send`."""
        await self._queue.wait_writable()
        self.send(batch)

    async def wait_idle(self) -> None:
        """Flush, then wait until everything accepted so far is durable (queue, buffer and parked parts empty)."""
        self.command(Flush())
        while len(self._queue) or self._buffer.rows() or self._parked:
            await self._settled.wait()

    def _notify(self) -> None:
        self._settled.set()
        self._settled = trio.Event()

    def command(self, cmd: Flush | Stop) -> None:
        """``Flush``: write everything buffered now. ``Stop``: close the input, drain, and end."""
        if isinstance(cmd, Flush):
            self._flush_all = True
        else:
            self._queue.on_completed()
        self._queue.kick()

    # -- the actor ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Writer] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume, batch and write until stopped; on cancellation drain within ``drain_s``."""
        task_status.started(self)
        try:
            await self._consume()
        except trio.Cancelled:
            self._queue.on_completed()
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.drain_s) as scope:
                await self._consume()
            if scope.cancelled_caught:
                self._give_up()
            raise

    async def _consume(self) -> None:
        await self._write_parked()
        queue = self._queue
        while True:
            if self._flush_all:
                self._flush_all = False
                await self._flush(float("inf"))
            try:
                batch = queue.receive_nowait()
            except trio.WouldBlock:
                self._notify()
                with trio.move_on_at(self._buffer.next_due()):
                    await queue.wait_readable()
                await self._flush(trio.current_time())
                continue
            except trio.EndOfChannel:
                await self._flush(float("inf"))
                return
            self.accepted_batches += 1
            self.accepted_rows += batch.rows
            now = trio.current_time()
            if batch.table is not None:  # columns already: one part as it is, after what is buffered before it
                if self._buffer.rows(batch.dataset):
                    await self._write_buffered(batch.dataset)
                self._parked.append((batch.dataset, batch.table))
                await self._write_parked()
                continue
            if self._buffer.add(batch.dataset, batch.records, now):
                await self._write_buffered(batch.dataset)
            if self._buffer.next_due() <= now:
                await self._flush(now)

    async def _flush(self, now: float) -> None:
        """Write every dataset whose oldest row is due at ``now`` (``inf``: all of them)."""
        for dataset in self._buffer.due(now):
            await self._write_buffered(dataset)

    async def _write_buffered(self, dataset: DatasetId) -> None:
        # Parked parts stay on the Writer until durable: a transient failure or a cancel keeps them for the next run.
        self._parked.append((dataset, self._buffer.take(dataset)))
        await self._write_parked()

    async def _write_parked(self) -> None:
        while self._parked:
            dataset, records = self._parked[0]
            await self._write_part(dataset, records)
            self._parked.pop(0)

    async def _write_part(self, dataset: DatasetId, records: list[Record]) -> None:
        t0 = trio.current_time()
        result = await self._offload(self._write, dataset, records)
        elapsed = trio.current_time() - t0
        self._notify()
        self.written_rows += len(records)
        self.write_seconds += elapsed
        for event in _part_events(result, dataset, elapsed, self.name):
            self.parts += 1
            log.info("part.written", dataset=str(dataset), rows=event.rows, path=event.path, duration_s=elapsed)
            self.events.on_next(event)
        validated = _validated(result, dataset)
        if validated is not None:
            if validated.failed:
                log.warning("batch.contracts_failed", dataset=validated.dataset, failed=validated.failed)
            self.events.on_next(validated)

    def _give_up(self) -> None:
        parked = sum(len(r) for _, r in self._parked)
        queued = sum(b.rows for b in self._drain_queue())
        self.lost_rows += self._buffer.rows() + parked + queued
        self._buffer.clear()
        self._parked.clear()
        log.error(
            "writer.drain_timed_out", writer=self.name, drain_s=self.drain_s, lost_rows=self.lost_rows, parts=self.parts
        )

    def _drain_queue(self) -> list[Batch]:
        out: list[Batch] = []
        while True:
            try:
                out.append(self._queue.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return out

    # -- introspection --------------------------------------------------------------------------

    @property
    def queue(self) -> PressureQueue[Batch]:
        """The gated input queue."""
        return self._queue

    def statistics(self) -> WriterStats:
        """Counters, buffered rows and queue depth."""
        q = self._queue
        return WriterStats(
            name=self.name,
            accepted_batches=self.accepted_batches,
            accepted_rows=self.accepted_rows,
            buffered_rows=self._buffer.rows() + sum(len(r) for _, r in self._parked),
            written_rows=self.written_rows,
            parts=self.parts,
            lost_rows=self.lost_rows,
            queue_depth=len(q),
            queue_max_depth=q.max_depth,
            write_seconds=self.write_seconds,
        )

    def actor_metrics(self) -> ActorMetrics:
        """Queue depth and flow counters for the supervisor's statistics."""
        q = self._queue
        return ActorMetrics(
            queue_depth=len(q),
            queue_high=q.high,
            items_in=q.items_in,
            items_out=q.items_out,
            drops=self.lost_rows,
            credits=max(0, q.high - len(q)) if q.writable else 0,
        )
