"""Hard-bounded ingress for sources that cannot be slowed down (WebSockets).

A REST paginator simply waits for the gate; a WebSocket reader cannot, since
the exchange keeps pushing and eventually disconnects a reader that stops
reading. So a WebSocket reader :meth:`BoundedIngress.offer`s each batch into
a buffer bounded in rows, and a pump task forwards the buffer into the gated
data plane. When the buffer is full the declared :class:`OverflowPolicy`
applies, and every overflow is recorded as an :class:`OverflowRecorded`
event with the exact count and the ts/id range lost, so it can be refilled
over REST.

As a node of the actor graph it has an Rx ``input`` (an observer: push
batches with ``on_next``) and a ``rejected`` observable (the batches that
did not fit, so the producer can remember the hole)::

    recording.batches ──► ingress.input ──(pump: await gate.wait_writable())──► writer.input
                              └──► ingress.rejected ──► recording.on_rejected

The pump is a task, not an operator, because it awaits the gate: an Rx
``on_next`` cannot await, so backpressure is the writer's gate the pump waits
on, and the bound in rows is what keeps the un-gatable side finite.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgspec
import structlog
import trio
from reactivex import abc
from reactivex.subject import Subject

from dccd.domain.dataset import DatasetId
from dccd.errors import Disconnected

from .messages import Batch, Message, OverflowRecorded
from .sink import Gate
from .stats import ActorMetrics

log = structlog.get_logger()


class OverflowPolicy(StrEnum):
    """What a full :class:`BoundedIngress` does with a new batch."""

    DROP_NEWEST = "drop_newest"
    """Reject the new batch, keep what is buffered; the episode is recorded when intake resumes."""
    DISCONNECT = "disconnect"
    """Reject the new batch, record it, and raise :class:`~dccd.errors.Disconnected` (reconnect)."""


class IngressStats(msgspec.Struct, frozen=True):
    """A snapshot of one :class:`BoundedIngress`."""

    name: str
    rows: int
    max_rows: int
    batches: int
    accepted_rows: int
    forwarded_rows: int
    dropped_rows: int
    dropped_batches: int
    overflows: int


class _Episode:
    """Drops of one dataset since its last accepted batch."""

    __slots__ = ("batches", "first_id", "last_id", "max_ts", "min_ts", "rows")

    def __init__(self) -> None:
        self.rows = 0
        self.batches = 0
        self.min_ts: int | None = None
        self.max_ts: int | None = None
        self.first_id: str | None = None
        self.last_id: str | None = None

    def add(self, batch: Batch) -> None:
        self.batches += 1
        for record in batch.records:
            ts: int = record.ts
            self.min_ts = ts if self.min_ts is None or ts < self.min_ts else self.min_ts
            self.max_ts = ts if self.max_ts is None or ts > self.max_ts else self.max_ts
            rid: Any = getattr(record, "id", None)
            if rid is not None:
                if self.first_id is None:
                    self.first_id = rid
                self.last_id = rid
            self.rows += 1


class BoundedIngress:
    """A buffer of at most ``max_rows`` rows (or one batch) in front of a gated target.

    Args:
        max_rows: the hard bound. A batch is accepted while the buffer is empty
            even if larger, so an oversized batch cannot wedge the stream.
        policy: what happens to a batch that does not fit.
        name: for logs, statistics and the events it records.
        emit: subscribed to :attr:`overflow_events` when given (e.g. ``Service.emit``).

    Outputs (observables): :attr:`rejected` (batches that did not fit) and :attr:`overflow_events`
    (one :class:`OverflowRecorded` per overflow episode).
    """

    def __init__(
        self,
        max_rows: int,
        *,
        policy: OverflowPolicy = OverflowPolicy.DROP_NEWEST,
        name: str = "ingress",
        emit: Callable[[Message], None] | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"{name}: max_rows must be >= 1, got {max_rows}")
        self.name = name
        self.max_rows = max_rows
        self.policy = OverflowPolicy(policy)
        self.overflow_events: Subject[OverflowRecorded] = Subject()
        if emit is not None:
            self.overflow_events.subscribe(on_next=emit)
        self._buf: deque[Batch] = deque()
        self._rows = 0
        self._episodes: dict[DatasetId, _Episode] = {}
        self._ready = trio.lowlevel.ParkingLot()
        self.accepted_rows = 0
        self.forwarded_rows = 0
        self.dropped_rows = 0
        self.dropped_batches = 0
        self.overflows = 0
        self.input: abc.ObserverBase[Batch] = _Input(self)
        """Rx input: ``on_next(batch)`` offers the batch (see :meth:`offer`); completion is ignored."""
        self.rejected: Subject[Batch] = Subject()
        """Output: every batch :meth:`offer` refused under ``DROP_NEWEST``, right after it was refused."""

    def offer(self, batch: Batch) -> bool:
        """Buffer ``batch`` if it fits; never blocks.

        Returns:
            True if accepted, False if dropped (and recorded).

        Raises:
            Disconnected: under :attr:`OverflowPolicy.DISCONNECT`, after recording the drop.
        """
        if not batch.records:
            return True
        if self._buf and self._rows + batch.rows > self.max_rows:
            self._drop(batch)
            if self.policy is OverflowPolicy.DISCONNECT:
                self._close_episode(batch.dataset)
                raise Disconnected(f"{self.name}: ingress full ({self._rows} rows buffered), dropping the connection")
            self.rejected.on_next(batch)
            return False
        self._close_episode(batch.dataset)
        self._buf.append(batch)
        self._rows += batch.rows
        self.accepted_rows += batch.rows
        self._ready.unpark_all()
        return True

    def _drop(self, batch: Batch) -> None:
        episode = self._episodes.get(batch.dataset)
        if episode is None:
            episode = self._episodes[batch.dataset] = _Episode()
        episode.add(batch)
        self.dropped_rows += batch.rows
        self.dropped_batches += 1

    def _close_episode(self, dataset: DatasetId) -> None:
        episode = self._episodes.pop(dataset, None)
        if episode is None or episode.min_ts is None or episode.max_ts is None:
            return
        self.overflows += 1
        event = OverflowRecorded(
            dataset=dataset,
            rows=episode.rows,
            batches=episode.batches,
            first_ts=episode.min_ts,
            last_ts=episode.max_ts,
            first_id=episode.first_id,
            last_id=episode.last_id,
            policy=self.policy.value,
            ingress=self.name,
        )
        log.warning(
            "ingress.overflowed",
            ingress=self.name,
            dataset=str(dataset),
            rows=episode.rows,
            first_ts=episode.min_ts,
            last_ts=episode.max_ts,
            first_id=episode.first_id,
            last_id=episode.last_id,
        )
        self.overflow_events.on_next(event)

    def record_overflows(self) -> None:
        """Record every open overflow episode now (called on shutdown; also usable periodically)."""
        for dataset in list(self._episodes):
            self._close_episode(dataset)

    async def run(
        self, target: abc.ObserverBase[Batch], gate: Gate, *, task_status: trio.TaskStatus[BoundedIngress]
    ) -> None:
        """Pump buffered batches into ``target``, waiting on ``gate`` before each one.

        On exit (cancelled or failed) the remaining buffer is pushed into ``target``
        without waiting (``on_next`` never blocks; the bound keeps the overshoot at
        ``max_rows``) and open overflow episodes are recorded.
        """
        task_status.started(self)
        try:
            while True:
                while not self._buf:
                    await self._ready.park()
                await gate.wait_writable()
                if not self._forward(target):
                    raise trio.ClosedResourceError(f"{self.name}: the target closed while the source still runs")
        finally:
            # on_next never blocks and the bound caps the overshoot at max_rows, so flush without the gate.
            while self._buf and self._forward(target):
                pass
            self.record_overflows()

    def _forward(self, target: abc.ObserverBase[Batch]) -> bool:
        """Push the oldest batch; if the target is closed, record it and the rest as dropped."""
        batch = self._buf.popleft()
        self._rows -= batch.rows
        try:
            target.on_next(batch)
        except trio.ClosedResourceError:
            # The consumer is gone (stopped before this source): what is left is a gap, never a silent loss.
            self._drop(batch)
            while self._buf:
                rest = self._buf.popleft()
                self._rows -= rest.rows
                self._drop(rest)
            return False
        self.forwarded_rows += batch.rows
        return True

    def actor_metrics(self) -> ActorMetrics:
        """Buffer depth and flow counters, in rows, for the supervisor's statistics."""
        return ActorMetrics(
            queue_depth=self._rows,
            queue_high=self.max_rows,
            items_in=self.accepted_rows,
            items_out=self.forwarded_rows,
            drops=self.dropped_rows,
            credits=max(0, self.max_rows - self._rows),
        )

    def statistics(self) -> IngressStats:
        """A snapshot of the buffer and its counters."""
        return IngressStats(
            name=self.name,
            rows=self._rows,
            max_rows=self.max_rows,
            batches=len(self._buf),
            accepted_rows=self.accepted_rows,
            forwarded_rows=self.forwarded_rows,
            dropped_rows=self.dropped_rows,
            dropped_batches=self.dropped_batches,
            overflows=self.overflows,
        )


class _Input(abc.ObserverBase[Batch]):
    """The ingress as an Rx observer: ``on_next`` offers; a producer's completion or error does not close it."""

    __slots__ = ("_offer",)

    def __init__(self, ingress: BoundedIngress) -> None:
        self._offer = ingress.offer

    def on_next(self, value: Batch) -> None:
        self._offer(value)

    def on_error(self, error: Exception) -> None:
        pass  # the failing producer's own actor reports it

    def on_completed(self) -> None:
        pass
