"""The gated end of the data plane: a lossless queue with high/low water marks.

Rx ``on_next`` cannot await, so a pipeline cannot block when its consumer is
slow: it could only drop (lossy) or grow memory (unbounded). The fix is to
gate the *head* instead: :class:`PressureQueue` is the terminal observer,
whose ``on_next`` never blocks and never drops, and producers at the head of
the pipeline ``await queue.wait_writable()`` before each emission. Depth
reaching ``high`` closes the gate; the consumer draining it to ``low`` opens
it again (hysteresis, so producers resume in bursts rather than per item).
The depth can exceed ``high`` only by what one emission fans out to, plus
whatever un-gated sources (timers, WebSockets) push meanwhile.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

import msgspec
import trio
from reactivex import abc

T = TypeVar("T")


class Gate(Protocol):
    """Something a producer waits on before emitting (a queue, a writer)."""

    async def wait_writable(self) -> None:
        """Return when one more emission is welcome."""
        ...


class QueueStats(msgspec.Struct, frozen=True):
    """A snapshot of one :class:`PressureQueue`."""

    name: str
    depth: int
    max_depth: int
    high: int
    low: int
    writable: bool
    items_in: int
    items_out: int
    waiting_producers: int
    closed: bool


class PressureQueue(abc.ObserverBase[T], Generic[T]):
    """Terminal Rx observer and async-iterable queue with high/low water marks.

    Args:
        high: depth at which :meth:`wait_writable` starts blocking.
        low: depth at or below which it unblocks again (default ``high // 2``).
        name: for statistics and errors.

    Use on the Trio thread only (it is fed by Rx on the Trio thread).
    """

    def __init__(self, high: int = 4, low: int | None = None, *, name: str = "queue") -> None:
        low = high // 2 if low is None else low
        if high < 1 or not 0 <= low < high:
            raise ValueError(f"{name}: need 0 <= low < high and high >= 1, got high={high} low={low}")
        self.name = name
        self.high = high
        self.low = low
        self._items: deque[T] = deque()
        self._open = True
        self._closed = False
        self._error: Exception | None = None
        self._producers = trio.lowlevel.ParkingLot()
        self._readers = trio.lowlevel.ParkingLot()
        self.max_depth = 0
        self.items_in = 0
        self.items_out = 0

    # -- producer side (Rx observer) ------------------------------------------------------------

    def on_next(self, value: T) -> None:
        """Enqueue ``value``; never blocks, never drops.

        Raises:
            trio.ClosedResourceError: the queue was completed or errored.
        """
        if self._closed:
            raise trio.ClosedResourceError(f"{self.name}: item after the queue was closed")
        items = self._items
        items.append(value)
        self.items_in += 1
        depth = len(items)
        if depth > self.max_depth:
            self.max_depth = depth
        if depth >= self.high:
            self._open = False
        if self._readers:
            self._readers.unpark()

    def on_error(self, error: Exception) -> None:
        """Close the queue; the consumer gets ``error`` after the queued items."""
        self._error = error
        self.on_completed()

    def on_completed(self) -> None:
        """Close the queue; the consumer's iteration ends after the queued items."""
        self._closed = True
        self._readers.unpark_all()
        self._producers.unpark_all()

    async def wait_writable(self) -> None:
        """Wait until the gate is open (depth has fallen to ``low`` after reaching ``high``).

        Raises:
            trio.ClosedResourceError: the queue is closed, so nothing more will be accepted.
        """
        while not self._open and not self._closed:
            await self._producers.park()
        if self._closed:
            raise trio.ClosedResourceError(f"{self.name}: the queue is closed")
        await trio.lowlevel.checkpoint()

    @property
    def writable(self) -> bool:
        """Whether a producer may emit now."""
        return self._open and not self._closed

    # -- consumer side --------------------------------------------------------------------------

    def receive_nowait(self) -> T:
        """Take the oldest item.

        Raises:
            trio.WouldBlock: empty but still open.
            trio.EndOfChannel: closed and drained.
            Exception: the error passed to :meth:`on_error`, once drained.
        """
        if self._items:
            item = self._items.popleft()
            self.items_out += 1
            if not self._open and len(self._items) <= self.low:
                self._open = True
                self._producers.unpark_all()
            return item
        if self._closed:
            if self._error is not None:
                raise self._error
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def wait_readable(self) -> None:
        """Wait until an item is queued, the queue is closed, or :meth:`kick` is called."""
        if self._items or self._closed:
            await trio.lowlevel.checkpoint()
            return
        await self._readers.park()

    def kick(self) -> None:
        """Wake a consumer blocked in :meth:`wait_readable` without giving it an item."""
        self._readers.unpark_all()

    async def receive(self) -> T:
        """Wait for and take the oldest item (see :meth:`receive_nowait` for the errors)."""
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                item = self.receive_nowait()
            except trio.WouldBlock:
                await self._readers.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item

    def __aiter__(self) -> PressureQueue[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    # -- introspection --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether the producer side has completed (items may remain)."""
        return self._closed

    def statistics(self) -> QueueStats:
        """A snapshot of depth, marks and counters."""
        return QueueStats(
            name=self.name,
            depth=len(self._items),
            max_depth=self.max_depth,
            high=self.high,
            low=self.low,
            writable=self.writable,
            items_in=self.items_in,
            items_out=self.items_out,
            waiting_producers=self._producers.statistics().tasks_waiting,
            closed=self._closed,
        )
