"""Bridges between Trio channels and Rx observables.

- :func:`from_channel`: a Trio receive channel becomes an Observable. A pump
  task in the given nursery does ``async for item in channel: on_next(item)``;
  the channel keeps its own backpressure (senders block when it is full).
- :class:`LossyChannelObserver`: an Observable feeds a Trio send channel with
  ``send_nowait``; a full channel drops the item and counts it. For UI and
  metrics taps only, never for the data plane (use
  :class:`~dccd.actors.sink.PressureQueue` there, and ``Hub.observer`` for
  fan-out to many subscribers).

Everything runs on the Trio thread: ``on_next`` is called from the pump task.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import reactivex
import trio
from reactivex import abc
from reactivex.disposable import Disposable

T = TypeVar("T")


def from_channel(receive: trio.abc.ReceiveChannel[T], nursery: trio.Nursery) -> reactivex.Observable[T]:
    """An Observable of the items received from ``receive``.

    Each subscription starts one pump task in ``nursery`` (so subscribe once,
    or ``share()`` it: subscribers compete for items). The observable
    completes when the channel ends; disposing the subscription cancels the
    pump. An exception raised by a subscriber's ``on_next`` propagates into
    the pump, i.e. into ``nursery`` (let it crash; the supervisor decides).
    """

    def subscribe(observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        scope = trio.CancelScope()

        async def pump() -> None:
            with scope:
                async for item in receive:
                    observer.on_next(item)
                observer.on_completed()

        nursery.start_soon(pump, name="rx-from-channel")
        return Disposable(scope.cancel)

    return reactivex.create(subscribe)


class LossyChannelObserver(abc.ObserverBase[T], Generic[T]):
    """Forward items into a Trio send channel without ever blocking; count what does not fit.

    Completion (and errors, after counting them) close the channel, so the
    receiving side's ``async for`` ends.
    """

    def __init__(self, send: trio.MemorySendChannel[T]) -> None:
        self._send = send
        self.sent = 0
        self.drops = 0
        self.error: Exception | None = None

    def on_next(self, value: T) -> None:
        try:
            self._send.send_nowait(value)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.drops += 1
        else:
            self.sent += 1

    def on_error(self, error: Exception) -> None:
        self.error = error
        self._send.close()

    def on_completed(self) -> None:
        self._send.close()
