"""Actor runtime throughput: Rx chain into the gated sink, a Trio channel hop, the supervised writer pipeline.

Run: ``python tests/bench/actors.py [--quick]``. Real clock, one process, one core for Trio.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import reactivex.operators as ops
import trio
from dccd.actors import Batch, PressureQueue, Role, open_service
from reactivex.subject import Subject

from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.domain.records import Record
from dccd.storage.writer import PartInfo, WriteResult

QUICK = "--quick" in sys.argv
N_MSG = 200_000 if QUICK else 1_000_000
N_HOP = 50_000 if QUICK else 200_000
N_BATCH = 5_000 if QUICK else 20_000
DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)


def _inc(x: int) -> int:
    return x + 1


def _not_seventh(x: int) -> bool:
    return x % 7 != 0


async def rx_to_gated_sink(per_item_gate: bool, bulk_consumer: bool = True) -> float:
    """Messages/s through Subject -> map -> filter -> PressureQueue, drained by a consumer task.

    The bulk consumer takes everything queued with receive_nowait after each wakeup (as the writer
    does); the other one uses ``async for`` (two Trio checkpoints per item).
    """
    q: PressureQueue[int] = PressureQueue(high=1024, low=512)
    subject: Subject[int] = Subject()
    subject.pipe(ops.map(_inc), ops.filter(_not_seventh)).subscribe(q)
    chunk = 1 if per_item_gate else 512
    expected = sum(1 for x in range(N_MSG) if (x + 1) % 7 != 0)

    async def consumer() -> None:
        got = 0
        if bulk_consumer:
            while True:
                await q.wait_readable()
                try:
                    while True:
                        q.receive_nowait()
                        got += 1
                except trio.WouldBlock:
                    continue
                except trio.EndOfChannel:
                    break
        else:
            async for _ in q:
                got += 1
        assert got == expected, (got, expected)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        on_next = subject.on_next
        for start in range(0, N_MSG, chunk):
            await q.wait_writable()
            for x in range(start, min(start + chunk, N_MSG)):
                on_next(x)
        q.on_completed()
    return N_MSG / (time.perf_counter() - t0)


async def channel_hop() -> float:
    """Seconds per item through one trio memory channel between two tasks."""
    send, receive = trio.open_memory_channel[int](64)

    async def consumer() -> None:
        async for _ in receive:
            pass

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        async with send:
            for i in range(N_HOP):
                await send.send(i)
    return (time.perf_counter() - t0) / N_HOP


def noop_write(dataset: DatasetId, records: list[Record]) -> WriteResult:
    n = len(records)
    return WriteResult(parts=(PartInfo("", n, records[0].ts, records[-1].ts, 0),), rows_written=n)


async def supervised_pipeline(rows_per_batch: int, max_rows: int) -> tuple[float, float, int]:
    """Batches/s from a supervised source through the gated writer (no-op write in a worker thread)."""
    records: list[Record] = [Trade(ts=i, id=str(i), price=1.0, amount=1.0) for i in range(rows_per_batch)]
    batch = Batch(DS, records, source="bench", transport="rest")
    done = trio.Event()

    async def source(writer: Any, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        for _ in range(N_BATCH):
            await writer.wait_writable()
            writer.send(batch)
        done.set()
        await trio.sleep_forever()

    t0 = time.perf_counter()
    async with open_service() as svc:
        writer = await svc.start_writer("writer", noop_write, max_rows=max_rows, max_age_s=1.0, high=16, low=8)
        await svc.start_actor("source", source, writer, role=Role.SOURCE)
        await done.wait()
    elapsed = time.perf_counter() - t0  # includes the drain: every batch written
    assert writer.written_rows == N_BATCH * rows_per_batch
    return N_BATCH / elapsed, N_BATCH * rows_per_batch / elapsed, writer.parts


async def main() -> None:
    import logging

    import structlog

    # The library never configures logging; this script may (silence per-part info lines).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"actor runtime bench ({'quick' if QUICK else 'full'}; trio {trio.__version__})")
    for per_item, bulk, label in (
        (False, True, "gate per 512 msgs, bulk consumer"),
        (True, True, "gate per msg,      bulk consumer"),
        (False, False, "gate per 512 msgs, async-for   "),
    ):
        rate = await rx_to_gated_sink(per_item_gate=per_item, bulk_consumer=bulk)
        print(f"Subject->map->filter->PressureQueue, {label}: {rate / 1e6:6.3f} M msgs/s")
    hop = await channel_hop()
    print(
        f"one trio memory-channel hop (send/async-for, buffer 64)                : {hop * 1e6:6.2f} us ({1 / hop / 1e6:.3f} M/s)"
    )
    for rows, max_rows in ((100, 1_000), (1_000, 50_000), (100, 100)):
        bps, rps, parts = await supervised_pipeline(rows, max_rows)
        print(
            f"supervised source->writer, {rows:>5} rows/batch, max_rows {max_rows:>6}: "
            f"{bps:9,.0f} batches/s {rps:11,.0f} rows/s ({parts} parts, no-op write in thread)"
        )


if __name__ == "__main__":
    trio.run(main)
