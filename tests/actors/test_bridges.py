"""Bridges: Trio channel -> Observable (pump task) and Observable -> lossy Trio channel."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import reactivex.operators as ops
import trio
import trio.testing
from dccd.actors import LossyChannelObserver, PressureQueue, from_channel
from reactivex.subject import Subject


def _times_ten(x: int) -> int:
    return x * 10


async def test_channel_items_flow_through_rx_in_order_then_complete(autojump_clock: Any) -> None:
    """Items sent on a channel reach the Rx chain in order on the Trio thread; closing the channel completes it."""
    send, receive = trio.open_memory_channel[int](0)
    sink: PressureQueue[int] = PressureQueue(high=100)
    threads: set[int] = set()

    def tap(x: int) -> None:
        threads.add(threading.get_ident())

    async with trio.open_nursery() as nursery:
        from_channel(receive, nursery).pipe(ops.do_action(tap), ops.map(_times_ten)).subscribe(sink)
        async with send:
            for i in range(5):
                await send.send(i)
    assert [x async for x in sink] == [0, 10, 20, 30, 40]
    assert threads == {threading.get_ident()}


async def test_channel_keeps_its_backpressure(autojump_clock: Any) -> None:
    """A sender to a zero-buffer channel blocks until the pump took the previous item."""
    send, receive = trio.open_memory_channel[int](0)
    seen: list[tuple[float, int]] = []

    async with trio.open_nursery() as nursery:
        obs = from_channel(receive, nursery)
        with trio.move_on_after(2) as scope:  # nobody subscribed, nobody pumps: the send blocks
            await send.send(0)
        assert scope.cancelled_caught
        obs.subscribe(lambda x: seen.append((trio.current_time(), x)))
        await send.send(1)
        await send.aclose()
    assert seen == [(2.0, 1)]


async def test_disposing_stops_the_pump() -> None:
    """Disposing the subscription cancels the pump task; later items stay in the channel."""
    send, receive = trio.open_memory_channel[int](10)
    got: list[int] = []
    async with trio.open_nursery() as nursery:
        sub = from_channel(receive, nursery).subscribe(got.append)
        send.send_nowait(1)
        await trio.testing.wait_all_tasks_blocked()
        sub.dispose()
        await trio.testing.wait_all_tasks_blocked()
        send.send_nowait(2)
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 0
    assert got == [1]
    assert receive.receive_nowait() == 2


async def test_subscriber_error_crashes_the_pump_nursery() -> None:
    """An exception in a subscriber's on_next propagates into the nursery owning the pump."""
    send, receive = trio.open_memory_channel[int](10)

    def bad(x: int) -> None:
        raise ZeroDivisionError("subscriber bug")

    with pytest.RaisesGroup(ZeroDivisionError):
        async with trio.open_nursery() as nursery:
            from_channel(receive, nursery).subscribe(bad)
            send.send_nowait(1)


async def test_lossy_observer_counts_drops_and_closes_on_completion() -> None:
    """A full channel drops and counts instead of blocking Rx; completion closes it so readers end."""
    send, receive = trio.open_memory_channel[int](2)
    observer = LossyChannelObserver(send)
    subject: Subject[int] = Subject()
    subject.subscribe(observer)
    for i in range(5):
        subject.on_next(i)
    subject.on_completed()
    assert (observer.sent, observer.drops) == (2, 3)
    assert [x async for x in receive] == [0, 1]


async def test_lossy_observer_survives_a_gone_reader() -> None:
    """If the receiving side was closed, items are counted as drops rather than raising into Rx."""
    send, receive = trio.open_memory_channel[int](2)
    await receive.aclose()
    observer = LossyChannelObserver(send)
    observer.on_next(1)
    assert observer.drops == 1
