"""PressureQueue: lossless gated sink; backpressure reaches a rate-limited producer, memory stays flat."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex.operators as ops
import trio
import trio.testing
from dccd.actors import PressureQueue
from reactivex.subject import Subject


async def test_gate_closes_at_high_and_opens_at_low() -> None:
    """wait_writable blocks once depth reaches high and is released only when depth falls to low."""
    q: PressureQueue[int] = PressureQueue(high=4, low=1)
    for i in range(4):
        await q.wait_writable()
        q.on_next(i)
    assert not q.writable
    released: list[int] = []

    async def producer() -> None:
        await q.wait_writable()
        released.append(len(q))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert q.receive_nowait() == 0 and q.receive_nowait() == 1
        await trio.testing.wait_all_tasks_blocked()
        assert released == []  # depth 2 > low
        assert q.receive_nowait() == 2
    assert released == [1]


def test_on_next_never_blocks_nor_drops() -> None:
    """Items beyond high are still accepted (the gate is advisory for the head), in order."""
    q: PressureQueue[int] = PressureQueue(high=2)
    for i in range(10):
        q.on_next(i)
    assert len(q) == 10 and q.max_depth == 10
    assert [q.receive_nowait() for _ in range(10)] == list(range(10))


async def test_completion_ends_iteration_after_the_items() -> None:
    """on_completed lets the consumer read every queued item, then ends its async for."""
    q: PressureQueue[int] = PressureQueue(high=4)
    q.on_next(1)
    q.on_next(2)
    q.on_completed()
    assert [x async for x in q] == [1, 2]


async def test_error_reaches_the_consumer_after_the_items() -> None:
    """on_error is raised to the consumer once the items before it are read."""
    q: PressureQueue[int] = PressureQueue(high=4)
    q.on_next(1)
    q.on_error(OSError("upstream broke"))
    assert await q.receive() == 1
    with pytest.raises(OSError, match="upstream broke"):
        await q.receive()


async def test_closed_queue_refuses_items_and_producers() -> None:
    """After completion on_next raises and wait_writable raises instead of waiting forever."""
    q: PressureQueue[int] = PressureQueue(high=1)
    q.on_next(1)
    q.on_completed()
    with pytest.raises(trio.ClosedResourceError):
        q.on_next(2)
    with pytest.raises(trio.ClosedResourceError):
        await q.wait_writable()


async def test_completion_wakes_a_blocked_producer() -> None:
    """A producer parked on a full gate is woken by completion (and told the queue is closed)."""
    q: PressureQueue[int] = PressureQueue(high=1)
    q.on_next(1)
    with pytest.RaisesGroup(trio.ClosedResourceError):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(q.wait_writable)
            await trio.testing.wait_all_tasks_blocked()
            q.on_completed()


def test_bad_marks_are_rejected() -> None:
    """low must be below high: a misconfiguration fails at construction, naming the queue."""
    with pytest.raises(ValueError, match="q: need 0 <= low < high"):
        PressureQueue(high=2, low=2, name="q")


def _double(page: list[int]) -> list[int]:
    return [x * 2 for x in page]


async def run_pipeline(*, gated: bool, seconds: float = 20.0) -> dict[str, Any]:
    """A fetcher at 4 pages/s -> Subject -> map -> filter -> PressureQueue(4, 2) -> consumer at 1 s per page."""
    q: PressureQueue[list[int]] = PressureQueue(high=4, low=2)
    subject: Subject[list[int]] = Subject()
    subject.pipe(ops.map(_double), ops.filter(bool)).subscribe(q)
    emitted: list[float] = []
    consumed: list[float] = []
    depths: list[int] = []

    async def fetcher() -> None:
        page = 0
        while True:
            if gated:
                await q.wait_writable()
            await trio.sleep(0.25)  # the exchange's rate limit
            subject.on_next([page] * 100)
            emitted.append(trio.current_time())
            page += 1

    async def consumer() -> None:
        async for _ in q:
            await trio.sleep(1.0)  # a slow disk
            consumed.append(trio.current_time())

    async def sampler() -> None:
        while True:
            await trio.sleep(0.5)
            depths.append(len(q))

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher)
            nursery.start_soon(consumer)
            nursery.start_soon(sampler)
    return {"emitted": emitted, "consumed": consumed, "depths": depths, "max_depth": q.max_depth}


def count_in(times: list[float], start: float, end: float) -> int:
    return sum(start <= t < end for t in times)


async def test_producer_runs_at_the_consumers_rate_and_the_sink_stays_flat(autojump_clock: Any) -> None:
    """Gated: a 4 pages/s fetcher slows to the consumer's 1 page/s and the sink never exceeds high (+1)."""
    run = await run_pipeline(gated=True)
    # steady state: as many emissions as consumptions per 10 s window, within one batch
    assert abs(count_in(run["emitted"], 10, 20) - count_in(run["consumed"], 10, 20)) <= 1
    assert count_in(run["consumed"], 10, 20) == 10
    assert run["max_depth"] <= 4 + 1
    assert max(run["depths"][4:]) <= 4  # flat after the first second
    assert len(run["emitted"]) - len(run["consumed"]) <= 4 + 1  # in the sink + in the consumer's hands


async def test_without_the_gate_the_queue_grows(autojump_clock: Any) -> None:
    """Same setup without wait_writable: the producer keeps 4 pages/s and depth grows by ~3 per second."""
    run = await run_pipeline(gated=False)
    assert count_in(run["emitted"], 10, 20) == 40
    assert run["depths"][19] < run["depths"][29] < run["depths"][-1]  # at 10 s, 15 s, 20 s
    assert run["max_depth"] >= 55  # 80 fetched - 20 consumed - 1 in hand, give or take the boundary
    gated = await run_pipeline(gated=True)
    assert gated["max_depth"] * 10 < run["max_depth"]
