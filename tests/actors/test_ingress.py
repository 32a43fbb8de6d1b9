"""BoundedIngress: a hard row bound for WebSocket sources, every overflow recorded with its exact range."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from dccd.actors import Batch, BoundedIngress, OverflowPolicy, OverflowRecorded, PressureQueue

from dccd.errors import Disconnected

from .conftest import BTC, ETH, EventLog, make_batch


class ManualGate:
    """A gate the test opens and closes."""

    def __init__(self) -> None:
        self.open = trio.Event()

    async def wait_writable(self) -> None:
        await self.open.wait()


async def test_overflow_records_count_and_exact_ranges(events: EventLog) -> None:
    """Dropping two 4-row batches records rows=8, ts 8..15 and ids '8'..'15' once intake resumes."""
    ingress = BoundedIngress(10, name="ws", emit=events)
    target: PressureQueue[Batch] = PressureQueue(high=100)
    gate = ManualGate()
    async with trio.open_nursery() as nursery:
        await nursery.start(ingress.run, target, gate)
        assert ingress.offer(make_batch(4, start=0))
        assert ingress.offer(make_batch(4, start=4))
        assert not ingress.offer(make_batch(4, start=8))  # 8 + 4 > 10
        assert not ingress.offer(make_batch(4, start=12))
        assert events.of(OverflowRecorded) == []  # the episode is still open
        gate.open.set()
        await trio.testing.wait_all_tasks_blocked()
        assert ingress.offer(make_batch(4, start=16))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert events.of(OverflowRecorded) == [
        OverflowRecorded(
            dataset=BTC,
            rows=8,
            batches=2,
            first_ts=8,
            last_ts=15,
            first_id="8",
            last_id="15",
            policy="drop_newest",
            ingress="ws",
        )
    ]
    forwarded = [r.ts for b in [target.receive_nowait() for _ in range(3)] for r in b.records]
    assert forwarded == [*range(8), *range(16, 20)]
    stats = ingress.statistics()
    assert (stats.accepted_rows, stats.forwarded_rows, stats.dropped_rows, stats.overflows) == (12, 12, 8, 1)


async def test_pump_waits_for_the_gate() -> None:
    """Nothing leaves the ingress while the gate is closed; everything leaves, in order, once it opens."""
    ingress = BoundedIngress(100)
    target: PressureQueue[Batch] = PressureQueue(high=100)
    gate = ManualGate()
    async with trio.open_nursery() as nursery:
        await nursery.start(ingress.run, target, gate)
        for i in range(3):
            ingress.offer(make_batch(2, start=2 * i))
        await trio.testing.wait_all_tasks_blocked()
        assert len(target) == 0 and ingress.statistics().rows == 6
        gate.open.set()
        await trio.testing.wait_all_tasks_blocked()
        assert len(target) == 3 and ingress.statistics().rows == 0
        nursery.cancel_scope.cancel()


async def test_episodes_are_per_dataset(events: EventLog) -> None:
    """A drop of one dataset is closed by that dataset's next accepted batch, not another's."""
    ingress = BoundedIngress(4, emit=events)
    gate = ManualGate()
    gate.open.set()
    async with trio.open_nursery() as nursery:
        await nursery.start(ingress.run, PressureQueue[Batch](high=100), gate)
        ingress.offer(make_batch(4, start=0))
        assert not ingress.offer(make_batch(2, start=100, dataset=ETH))
        await trio.testing.wait_all_tasks_blocked()  # the pump forwards the BTC batch
        assert ingress.offer(make_batch(1, start=10, dataset=BTC))
        assert events.of(OverflowRecorded) == []
        assert ingress.offer(make_batch(1, start=200, dataset=ETH))
        nursery.cancel_scope.cancel()
    [event] = events.of(OverflowRecorded)
    assert (event.dataset, event.rows, event.first_ts, event.last_ts) == (ETH, 2, 100, 101)


def test_oversized_batch_is_accepted_into_an_empty_buffer() -> None:
    """A batch larger than the bound still passes when the buffer is empty, so it cannot wedge the stream."""
    ingress = BoundedIngress(5)
    assert ingress.offer(make_batch(50))
    assert not ingress.offer(make_batch(1, start=50))


def test_disconnect_policy_records_then_raises(events: EventLog) -> None:
    """Under DISCONNECT the dropped batch is recorded at once and Disconnected is raised (reconnect, refill)."""
    ingress = BoundedIngress(4, policy=OverflowPolicy.DISCONNECT, emit=events)
    ingress.offer(make_batch(4, start=0))
    with pytest.raises(Disconnected, match="ingress full"):
        ingress.offer(make_batch(3, start=4))
    [event] = events.of(OverflowRecorded)
    assert (event.rows, event.first_ts, event.last_ts, event.first_id, event.last_id) == (3, 4, 6, "4", "6")
    assert event.policy == "disconnect"


async def test_shutdown_flushes_the_buffer_past_a_closed_gate(autojump_clock: Any) -> None:
    """When the pump is cancelled, buffered batches still go to the target (on_next never blocks)."""
    ingress = BoundedIngress(100)
    target: PressureQueue[Batch] = PressureQueue(high=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(ingress.run, target, ManualGate())
        ingress.offer(make_batch(3))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert len(target) == 1 and ingress.statistics().forwarded_rows == 3


async def test_shutdown_into_a_closed_target_records_the_rest(events: EventLog) -> None:
    """If the consumer already closed, what the ingress still holds is recorded as an overflow, not lost silently."""
    ingress = BoundedIngress(100, emit=events)
    target: PressureQueue[Batch] = PressureQueue(high=100)
    target.on_completed()
    async with trio.open_nursery() as nursery:
        await nursery.start(ingress.run, target, ManualGate())
        ingress.offer(make_batch(3, start=0))
        ingress.offer(make_batch(2, start=3))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    [event] = events.of(OverflowRecorded)
    assert (event.rows, event.batches, event.first_ts, event.last_ts) == (5, 2, 0, 4)
