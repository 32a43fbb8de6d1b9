"""Hub: lossy fan-out that never slows the producer, with in-band SubscriberLagged notices and clean closing."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from dccd.actors import Hub, SubscriberLagged
from reactivex.subject import Subject

KEY = ("trades", "binance", "BTC/USDT")


async def publish_every(hub: Hub[int], n: int, period_s: float) -> float:
    """Publish 0..n-1 every period_s; return when the producer finished."""
    for i in range(n):
        await trio.sleep(period_s)
        hub.publish(KEY, i)
    return trio.current_time()


async def test_stuck_subscriber_never_slows_the_producer(autojump_clock: Any) -> None:
    """With one reader and one subscriber that never reads, the producer keeps its rate, the reader gets
    everything, and the stuck one is told SubscriberLagged(n) for exactly what it lost."""
    hub: Hub[int] = Hub()
    got: list[Any] = []
    async with hub.subscribe(KEY, maxlen=8) as stuck, hub.subscribe(KEY, maxlen=4) as reader:

        async def read() -> None:
            async for item in reader:
                got.append(item)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            finished = await publish_every(hub, 100, 0.25)
            assert finished == 25.0  # 100 * 0.25 s: same as with nobody listening
            assert hub.subscriber_count == 2
            hub.close()
        assert got == list(range(100))
        late = [item async for item in stuck]
    assert late == [SubscriberLagged(92), *range(92, 100)]
    assert stuck.drops == 92 and reader.drops == 0
    assert hub.statistics().drops == 92
    assert hub.subscriber_count == 0


async def test_lagged_comes_before_the_next_delivered_item() -> None:
    """Eviction keeps the newest items; the next read reports the loss, then resumes with the oldest kept."""
    hub: Hub[int] = Hub()
    async with hub.subscribe(KEY, maxlen=2) as sub:
        for i in (1, 2, 3):
            hub.publish(KEY, i)
        assert [await sub.receive() for _ in range(3)] == [SubscriberLagged(1), 2, 3]
        hub.publish(KEY, 4)
        assert await sub.receive() == 4
        for i in (5, 6, 7, 8):
            hub.publish(KEY, i)
        assert sub.receive_nowait() == SubscriberLagged(2)
        assert sub.receive_nowait() == 7


async def test_topic_filtering_with_wildcards() -> None:
    """A subscriber gets only its key; None matches any value in that position."""
    hub: Hub[str] = Hub()
    async with (
        hub.subscribe(("trades", "binance", "BTC/USDT")) as btc,
        hub.subscribe(("trades", "binance", None)) as all_binance,
        hub.subscribe(("ohlc", None, None)) as ohlc,
    ):
        assert hub.publish(("trades", "binance", "BTC/USDT"), "b1") == 2
        assert hub.publish(("trades", "binance", "ETH/USDT"), "e1") == 1
        assert hub.publish(("trades", "kraken", "BTC/USDT"), "k1") == 0
        assert hub.publish(("ohlc", "kraken", "BTC/USD"), "o1") == 1
        hub.close()
        assert [x async for x in btc] == ["b1"]
        assert [x async for x in all_binance] == ["b1", "e1"]
        assert [x async for x in ohlc] == ["o1"]


async def test_close_ends_blocked_iterations_cleanly() -> None:
    """hub.close() ends every subscriber's async for (no exception), even while it is waiting."""
    hub: Hub[int] = Hub()
    ended: list[str] = []

    async def sse_handler(name: str) -> None:
        async with hub.subscribe(KEY) as sub:
            async for _ in sub:
                pass
        ended.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sse_handler, "a")
        nursery.start_soon(sse_handler, "b")
        await trio.testing.wait_all_tasks_blocked()
        assert hub.subscriber_count == 2
        hub.close()
    assert sorted(ended) == ["a", "b"]
    assert hub.subscriber_count == 0


async def test_exit_always_unsubscribes() -> None:
    """Leaving the async with (normally, by error, by cancel) releases the subscription."""
    hub: Hub[int] = Hub()
    with pytest.raises(RuntimeError):
        async with hub.subscribe(KEY):
            assert hub.subscriber_count == 1
            raise RuntimeError("handler bug")
    assert hub.subscriber_count == 0
    with trio.move_on_after(0.01):
        async with hub.subscribe(KEY) as sub:
            await sub.receive()
    assert hub.subscriber_count == 0
    assert hub.publish(KEY, 1) == 0


async def test_subscribe_after_close_ends_at_once() -> None:
    """A late subscriber on a closed hub gets an already-ended subscription instead of hanging."""
    hub: Hub[int] = Hub()
    hub.close()
    async with hub.subscribe(KEY) as sub:
        assert [x async for x in sub] == []
    assert hub.publish(KEY, 1) == 0


async def test_drop_counts_survive_unsubscribing() -> None:
    """Hub drop totals include subscribers that already left (counters never go down)."""
    hub: Hub[int] = Hub()
    async with hub.subscribe(KEY, maxlen=1):
        hub.publish(KEY, 1)
        hub.publish(KEY, 2)
    assert hub.statistics().drops == 1 and hub.statistics().subscribers == 0


async def test_rx_observer_publishes_by_key_function() -> None:
    """hub.observer(key_fn) turns an Rx stream into hub publications; completion does not close the hub."""
    hub: Hub[tuple[str, int]] = Hub()
    subject: Subject[tuple[str, int]] = Subject()
    subject.subscribe(hub.observer(lambda item: ("trades", item[0])))
    async with hub.subscribe(("trades", "x")) as sub:
        subject.on_next(("x", 1))
        subject.on_next(("y", 2))
        subject.on_completed()
        assert not hub.closed
        assert sub.receive_nowait() == ("x", 1)
        with pytest.raises(trio.WouldBlock):
            sub.receive_nowait()


def test_statistics_per_subscriber() -> None:
    """statistics() shows count, published total and each subscriber's depth, deliveries and drops."""
    hub: Hub[int] = Hub(name="live")
    sub = hub.subscribe(("trades", None), maxlen=2)
    for i in range(3):
        hub.publish(("trades", "x"), i)
    sub.receive_nowait()
    stats = hub.statistics()
    assert (stats.name, stats.subscribers, stats.published, stats.drops) == ("live", 1, 3, 1)
    [s] = stats.per_subscriber
    assert (s.key, s.maxlen, s.depth, s.delivered, s.drops) == (("trades", "*"), 2, 2, 0, 1)
