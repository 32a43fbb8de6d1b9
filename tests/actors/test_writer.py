"""Writer actor: size/age flushes per dataset, backpressure to producers, lossless drain, restart safety."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from dccd.actors import Flush, PartWritten, RestartPolicy, Role, Stop, Writer, open_supervisor

from dccd.errors import TransientError

from .conftest import BTC, ETH, EventLog, FakeLake, make_batch


class DiskBusy(TransientError):
    """A transient storage hiccup (test-only)."""


async def test_flushes_when_rows_reach_max_rows(autojump_clock: Any) -> None:
    """Three 4-row batches reach max_rows=10 at 12 rows: one 12-row part, written immediately."""
    lake = FakeLake()
    writer = Writer(lake.write, max_rows=10, max_age_s=60, offload=lake.offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(4):
            writer.send(make_batch(4, start=4 * i))
        await trio.sleep(1)
        assert [len(r) for _, r in lake.calls] == [12]
        assert lake.times == [0.0]
        assert writer.statistics().buffered_rows == 4
        nursery.cancel_scope.cancel()
    assert lake.ts() == list(range(16))  # the drain wrote the 4-row tail


async def test_flushes_on_age_of_the_oldest_row(autojump_clock: Any) -> None:
    """Rows arriving at 1.0 and 2.5 are written together at exactly 1.0 + max_age_s."""
    lake = FakeLake()
    writer = Writer(lake.write, max_rows=1000, max_age_s=3.0, offload=lake.offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await trio.sleep(1.0)
        writer.send(make_batch(2))
        await trio.sleep(1.5)
        writer.send(make_batch(2, start=2))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert lake.times == [4.0]
    assert lake.ts() == [0, 1, 2, 3]


async def test_each_dataset_is_batched_and_aged_separately(autojump_clock: Any) -> None:
    """Datasets never share a part, and each one's age counts from its own oldest row."""
    lake = FakeLake()
    writer = Writer(lake.write, max_rows=1000, max_age_s=2.0, offload=lake.offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.send(make_batch(3, dataset=BTC))
        await trio.sleep(1)
        writer.send(make_batch(5, dataset=ETH))
        writer.send(make_batch(1, start=3, dataset=BTC))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [(d, len(r), t) for (d, r), t in zip(lake.calls, lake.times, strict=True)] == [(BTC, 4, 2.0), (ETH, 5, 3.0)]


async def test_writes_run_in_a_worker_thread_and_emit_part_written(events: EventLog) -> None:
    """By default write() runs via trio.to_thread (not on the Trio thread); each part emits PartWritten."""
    lake = FakeLake()
    writer = Writer(lake.write, name="w", max_rows=3, emit=events)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.send(make_batch(3, start=10))
        while not lake.calls:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert lake.threads and threading.get_ident() not in lake.threads
    [event] = events.of(PartWritten)
    assert (event.dataset, event.rows, event.path, event.bytes) == (BTC, 3, "part-1.parquet", 30)
    assert (event.first_ts, event.last_ts, event.writer) == (10, 12, "w")


async def test_producer_follows_a_slow_disk(autojump_clock: Any) -> None:
    """A 4 pages/s producer using put() is slowed to the disk's 1 part/s; the queue never exceeds high + 1."""
    lake = FakeLake(delay_s=1.0)
    writer = Writer(lake.write, max_rows=100, max_age_s=60, high=4, low=2, offload=lake.offload)
    emitted: list[float] = []

    async def fetcher() -> None:
        page = 0
        while True:
            await writer.wait_writable()
            await trio.sleep(0.25)
            writer.send(make_batch(100, start=100 * page))
            emitted.append(trio.current_time())
            page += 1

    with trio.move_on_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            nursery.start_soon(fetcher)
    in_window = sum(10 <= t < 30 for t in emitted)
    written = sum(10 <= t < 30 for t in lake.times)
    assert written == 20 and abs(in_window - written) <= 1
    assert writer.queue.max_depth <= 4 + 1
    assert lake.ts() == list(range(len(lake.ts())))  # in order, nothing skipped


async def test_shutdown_writes_every_accepted_batch_within_grace(autojump_clock: Any) -> None:
    """With items queued, buffered and being written at shutdown, all accepted rows are written before exit,
    and the exit comes right after the drain's three 1 s writes, inside the grace bound."""
    lake = FakeLake(delay_s=1.0)
    async with open_supervisor(grace_s=10) as sup:
        writer = Writer(lake.write, max_rows=10, max_age_s=60, high=100, drain_s=5, offload=lake.offload)
        await sup.start("writer", writer.run, role=Role.WRITER)
        for i in range(7):  # 28 rows: part 1 (12 rows) starts at 0, 16 rows wait behind it
            writer.send(make_batch(4, start=4 * i))
        await trio.sleep(0.5)  # part 1 is half-written
    # the cancel at 0.5 interrupts part 1 (12 rows), which stays parked: the drain rewrites it (1.5),
    # then the 12 queued rows (2.5), then the 4-row tail (3.5)
    assert lake.times == [1.5, 2.5, 3.5] and trio.current_time() == 3.5
    assert lake.ts() == list(range(28)) and writer.statistics().lost_rows == 0


async def test_drain_is_bounded_and_counts_what_it_could_not_write(autojump_clock: Any) -> None:
    """A disk too slow for drain_s stops the drain at exactly drain_s and counts the unwritten rows."""
    lake = FakeLake(delay_s=1.0)
    writer = Writer(lake.write, max_rows=4, max_age_s=60, high=100, drain_s=2.5, offload=lake.offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(6):
            writer.send(make_batch(4, start=4 * i))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert trio.current_time() == 2.5
    assert lake.rows == 8 and writer.statistics().lost_rows == 16


async def test_transient_write_error_retries_the_same_part(autojump_clock: Any) -> None:
    """A TransientError from write() restarts the writer, which writes the very same part again: no loss, no duplicate."""
    lake = FakeLake(fail=lambda attempt: DiskBusy("disk busy") if attempt == 1 else None)
    writer = Writer(lake.write, max_rows=4, max_age_s=60, offload=lake.offload)
    policy = RestartPolicy(initial_s=1.0, jitter=0.0)
    async with open_supervisor(policy=policy) as sup:
        await sup.start("writer", writer.run, role=Role.WRITER)
        writer.send(make_batch(4))
        writer.send(make_batch(4, start=4))
        await trio.sleep(5)
        assert sup.statistics()[0].restarts == 1
    assert lake.times == [1.0, 1.0]
    assert lake.ts() == list(range(8))


async def test_flush_command_writes_now(autojump_clock: Any) -> None:
    """Flush() writes whatever is buffered without waiting for size or age."""
    lake = FakeLake()
    writer = Writer(lake.write, max_rows=1000, max_age_s=60, offload=lake.offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.send(make_batch(3))
        await trio.sleep(2)
        writer.commands.on_next(Flush())
        await trio.sleep(1)
        assert lake.times == [2.0]
        nursery.cancel_scope.cancel()


async def test_stop_command_drains_and_ends_the_actor(autojump_clock: Any) -> None:
    """Stop() closes the input, writes what was accepted, and the actor returns; later sends are refused."""
    lake = FakeLake()
    writer = Writer(lake.write, max_rows=1000, max_age_s=60, offload=lake.offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.send(make_batch(3))
        writer.command(Stop())
    assert lake.rows == 3 and trio.current_time() == 0.0
    with pytest.raises(trio.ClosedResourceError):
        writer.send(make_batch(1))
    with pytest.raises(trio.ClosedResourceError):
        await writer.wait_writable()


async def test_rx_input_ignores_producer_completion(autojump_clock: Any) -> None:
    """writer.input can be subscribed by many producers; one completing does not close the writer."""
    from reactivex.subject import Subject

    lake = FakeLake()
    writer = Writer(lake.write, max_rows=2, max_age_s=60, offload=lake.offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        first: Subject[Any] = Subject()
        first.subscribe(writer.input)
        first.on_next(make_batch(2))
        first.on_completed()
        writer.send(make_batch(2, start=2))
        writer.send(make_batch(0))  # empty batches are filtered out
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert lake.ts() == [0, 1, 2, 3]
    assert writer.statistics().accepted_batches == 2


def test_bad_settings_are_rejected() -> None:
    """max_rows < 1 or a non-positive age fails at construction, naming the writer."""
    with pytest.raises(ValueError, match="w: max_rows must be >= 1"):
        Writer(FakeLake().write, name="w", max_rows=0)


async def test_a_write_split_into_parts_emits_one_event_per_part(autojump_clock: Any, events: EventLog) -> None:
    """A write result with .parts (the lake splits by date) yields one PartWritten per part, with its own range."""
    from types import SimpleNamespace

    def lake_write(dataset: Any, records: list[Any]) -> Any:
        part = partial(SimpleNamespace, bytes=100)
        return SimpleNamespace(
            parts=(
                part(path="date=1/p.parquet", rows=2, first_ts=0, last_ts=1),
                part(path="date=2/p.parquet", rows=1, first_ts=2, last_ts=2),
            )
        )

    writer = Writer(lake_write, max_rows=3, emit=events, offload=FakeLake().offload)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.send(make_batch(3))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert [(e.path, e.rows, e.first_ts, e.last_ts) for e in events.of(PartWritten)] == [
        ("date=1/p.parquet", 2, 0, 1),
        ("date=2/p.parquet", 1, 2, 2),
    ]
    assert writer.statistics().parts == 2 and writer.statistics().written_rows == 3
