"""Lossy fan-out of live items to many subscribers (SSE streams, UI, taps).

The control/UI plane must never slow ingestion, so :meth:`Hub.publish` never
blocks: each subscriber has a bounded buffer, and when it is full the oldest
item is evicted and counted. The subscriber is told in-band: its next read
returns :class:`~dccd.actors.messages.SubscriberLagged` ``(n)`` before the oldest item
it still has (all evicted items precede all retained ones, so one counter
is exact). This is tokio's ``broadcast`` semantics.

Topics are tuples such as ``(data_type, exchange, symbol)``; a subscription
key may hold ``None`` as a wildcard in any position.

::

    async with hub.subscribe(("trades", "binance", None), maxlen=64) as sub:
        async for item in sub:          # ends cleanly on hub.close()
            if isinstance(item, SubscriberLagged): ...
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Generic, TypeVar

import msgspec
import trio
from reactivex import abc

from .messages import SubscriberLagged

T = TypeVar("T")
Key = tuple[Hashable, ...]

_ids = itertools.count(1)


class SubscriberStats(msgspec.Struct, frozen=True):
    """One subscriber's buffer and counters."""

    id: int
    key: tuple[str, ...]
    maxlen: int
    depth: int
    delivered: int
    drops: int


class HubStats(msgspec.Struct, frozen=True):
    """A snapshot of a :class:`Hub`."""

    name: str
    subscribers: int
    published: int
    drops: int
    closed: bool
    per_subscriber: tuple[SubscriberStats, ...]


def _matches(pattern: Key, key: Key) -> bool:
    return len(pattern) == len(key) and all(p is None or p == k for p, k in zip(pattern, key, strict=True))


class Subscription(Generic[T]):
    """One subscriber's bounded buffer; async-iterate it for ``T | SubscriberLagged``.

    Use it as ``async with hub.subscribe(...) as sub`` so it is always
    released; iteration ends after :meth:`Hub.close` once the buffer is read.
    """

    def __init__(self, hub: Hub[T], key: Key, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"subscriber buffer must hold >= 1 item, got {maxlen}")
        self.id = next(_ids)
        self.key = key
        self.maxlen = maxlen
        self._hub = hub
        self._buf: deque[T] = deque()
        self._lost = 0
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()
        self.delivered = 0
        self.drops = 0

    def _push(self, item: T) -> None:
        buf = self._buf
        if len(buf) >= self.maxlen:
            buf.popleft()
            self._lost += 1
            self.drops += 1
        buf.append(item)
        if self._lot:
            self._lot.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def receive_nowait(self) -> T | SubscriberLagged:
        """Next item, or a :class:`SubscriberLagged` notice if items were lost before it.

        Raises:
            trio.WouldBlock: nothing buffered yet.
            trio.EndOfChannel: unsubscribed or hub closed, and the buffer is read.
        """
        if self._lost:
            lagged = SubscriberLagged(self._lost)
            self._lost = 0
            return lagged
        if self._buf:
            self.delivered += 1
            return self._buf.popleft()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> T | SubscriberLagged:
        """Wait for the next item (see :meth:`receive_nowait`)."""
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                item = self.receive_nowait()
            except trio.WouldBlock:
                await self._lot.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T | SubscriberLagged:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def unsubscribe(self) -> None:
        """Stop receiving; idempotent. Buffered items can still be read."""
        self._hub._remove(self)
        self._close()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unsubscribe()

    def statistics(self) -> SubscriberStats:
        """This subscriber's depth and counters."""
        return SubscriberStats(
            id=self.id,
            key=tuple("*" if k is None else str(k) for k in self.key),
            maxlen=self.maxlen,
            depth=len(self._buf),
            delivered=self.delivered,
            drops=self.drops,
        )


class Hub(Generic[T]):
    """Topic-keyed lossy broadcast; use on the Trio thread.

    Args:
        maxlen: default per-subscriber buffer size.
        name: for statistics and metrics.
    """

    def __init__(self, *, maxlen: int = 256, name: str = "hub") -> None:
        self.name = name
        self.maxlen = maxlen
        self._exact: dict[Key, set[Subscription[T]]] = {}
        self._wild: set[Subscription[T]] = set()
        self._closed = False
        self.published = 0
        self._drops_gone = 0  # drops of subscribers that already left, so totals never go down

    def subscribe(self, key: Key, maxlen: int | None = None) -> Subscription[T]:
        """Subscribe to ``key`` (``None`` entries are wildcards).

        On a closed hub the subscription is already ended, so a late SSE
        handler finishes at once instead of hanging.
        """
        sub = Subscription(self, tuple(key), self.maxlen if maxlen is None else maxlen)
        if self._closed:
            sub._close()
        elif any(k is None for k in sub.key):
            self._wild.add(sub)
        else:
            self._exact.setdefault(sub.key, set()).add(sub)
        return sub

    def publish(self, key: Key, item: T) -> int:
        """Offer ``item`` to every subscriber of ``key``; never blocks.

        Returns:
            How many subscribers received it (0 after :meth:`close`).
        """
        if self._closed:
            return 0
        self.published += 1
        n = 0
        subs = self._exact.get(key)
        if subs:
            for sub in subs:
                sub._push(item)
            n = len(subs)
        for sub in self._wild:
            if _matches(sub.key, key):
                sub._push(item)
                n += 1
        return n

    def observer(self, key: Key | Callable[[T], Key]) -> abc.ObserverBase[T]:
        """An Rx observer publishing each item under ``key`` (or ``key(item)``).

        Completion and errors of the observed stream do not close the hub:
        other streams publish into it too.
        """
        return _HubObserver(self, key)

    def close(self) -> None:
        """End every subscription (iteration ends after the buffered items); idempotent."""
        self._closed = True
        for sub in self._subscribers():
            self._remove(sub)
            sub._close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def subscriber_count(self) -> int:
        """Current number of subscribers."""
        return len(self._wild) + sum(len(s) for s in self._exact.values())

    def _subscribers(self) -> list[Subscription[T]]:
        return [*self._wild, *(sub for subs in self._exact.values() for sub in subs)]

    def _remove(self, sub: Subscription[T]) -> None:
        subs = self._exact.get(sub.key)
        if subs is not None and sub in subs:
            subs.discard(sub)
            if not subs:
                del self._exact[sub.key]
            self._drops_gone += sub.drops
        elif sub in self._wild:
            self._wild.discard(sub)
            self._drops_gone += sub.drops

    def statistics(self) -> HubStats:
        """Subscriber count, totals and per-subscriber counters."""
        subs = self._subscribers()
        return HubStats(
            name=self.name,
            subscribers=len(subs),
            published=self.published,
            drops=self._drops_gone + sum(s.drops for s in subs),
            closed=self._closed,
            per_subscriber=tuple(s.statistics() for s in subs),
        )


class _HubObserver(abc.ObserverBase[T], Generic[T]):
    def __init__(self, hub: Hub[T], key: Key | Callable[[T], Key]) -> None:
        self._hub = hub
        self._key = key

    def on_next(self, value: T) -> None:
        key = self._key(value) if callable(self._key) else self._key
        self._hub.publish(key, value)

    def on_error(self, error: Exception) -> None:
        pass  # the observed stream's owner handles its own error; live viewers just stop getting items

    def on_completed(self) -> None:
        pass
