"""The bus publisher against a real nats-server: exactly once by id, through a bus outage, bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import trio
from dccd.actors.bus import BusPublisher
from dccd.actors.messages import Batch, RunLogged

from dccd.bus.consumer import tap
from dccd.bus.link import NatsLink
from dccd.domain.dataset import DatasetId
from dccd.domain.records import DataType, Trade
from dccd.domain.symbols import Symbol

from .natsserver import NatsServer

DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)


def trades(lo: int, hi: int) -> Batch:
    return Batch(DS, [Trade(10**18 + i, str(i), 100.0 + i, 1.0, "buy") for i in range(lo, hi)], "test", "ws")


def stored(url: str, subject: str) -> list[dict[str, object]]:
    """Every message the stream keeps on ``subject`` (read with the consumer API users get)."""

    async def read() -> list[dict[str, object]]:
        return [m.data async for m in tap(url, subject, deliver="all", idle_timeout_s=1.0)]

    return asyncio.run(read())


async def wait_until(cond: object, timeout_s: float = 20.0) -> None:
    with trio.fail_after(timeout_s):
        while not cond():  # type: ignore[operator]
            await trio.sleep(0.05)


async def test_overlapping_batches_are_stored_once_by_trade_id(nats_server: NatsServer) -> None:
    async with NatsLink.open(nats_server.url) as link, trio.open_nursery() as nursery:
        await link.ensure_streams(max_age_s=3600, duplicate_window_s=600)
        pub = BusPublisher(link)
        nursery.start_soon(pub.run)
        pub.input.on_next(trades(0, 600))
        pub.input.on_next(trades(400, 1000))  # a refill overlapping the live feed
        pub.input.on_next(RunLogged("r1", "warning", "hole refilled"))
        await wait_until(lambda: pub.published + pub.duplicates == 1201)
        assert (pub.published, pub.duplicates, pub.dropped) == (1001, 200, 0)
        nursery.cancel_scope.cancel()
    ids = [m["id"] for m in await trio.to_thread.run_sync(stored, nats_server.url, "dccd.trades.>")]
    assert ids == [str(i) for i in range(1000)]
    events = await trio.to_thread.run_sync(stored, nats_server.url, "dccd.events.run_logged")
    assert [e["message"] for e in events] == ["hole refilled"]


async def test_a_bus_outage_delays_messages_but_loses_none(nats_server: NatsServer) -> None:
    async with NatsLink.open(nats_server.url, timeout_s=2.0) as link, trio.open_nursery() as nursery:
        await link.ensure_streams(max_age_s=3600, duplicate_window_s=600)
        pub = BusPublisher(link, chunk=100)
        nursery.start_soon(pub.run)
        pub.input.on_next(trades(0, 300))
        await wait_until(lambda: pub.published == 300)
        await trio.to_thread.run_sync(nats_server.kill)
        pub.input.on_next(trades(300, 800))  # never blocks, whatever the bus does
        await wait_until(lambda: not pub.connected)
        assert pub.statistics().depth > 0
        await trio.to_thread.run_sync(nats_server.start)  # same port, same store: nats-py reconnects
        await wait_until(lambda: pub.published + pub.duplicates >= 800 and not pub.statistics().depth, 40.0)
        assert pub.dropped == 0 and pub.connected
        nursery.cancel_scope.cancel()
    ids = [m["id"] for m in await trio.to_thread.run_sync(stored, nats_server.url, "dccd.trades.>")]
    assert ids == [str(i) for i in range(800)]


async def test_the_outbox_is_bounded_and_counts_what_it_drops() -> None:
    pub = BusPublisher(None, max_queue=250)  # not connected yet: everything waits in the outbox
    pub.input.on_next(trades(0, 200))
    pub.input.on_next(trades(200, 400))
    s = pub.statistics()
    assert (s.depth, s.dropped, s.queued, s.connected) == (250, 150, 400, False)


async def test_a_dead_server_fails_the_connect_within_its_deadline(tmp_path: Path) -> None:
    from .natsserver import free_port

    t0 = trio.current_time()
    try:
        async with NatsLink.open(f"nats://127.0.0.1:{free_port()}", timeout_s=2.0):
            raise AssertionError("connected to nothing")
    except Exception as exc:
        assert "NATS at nats://127.0.0.1" in str(exc)
    assert trio.current_time() - t0 < 8
