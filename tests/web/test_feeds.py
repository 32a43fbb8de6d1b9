"""Feeds without a server, on Trio's virtual clock: batching windows, id sequence, replay, linger, loss accounting."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from dccd.actors import Hub
from dccd.web.frames import HEARTBEAT, data_encoder
from dccd.web.metrics import WebMetrics
from dccd.web.sse import Feed, Feeds

from .conftest import TRADES_KEY, trades


def _feeds(hub: Hub[Any], nursery: trio.Nursery, **kw: Any) -> Feeds:
    feeds = Feeds(hub, WebMetrics(), **kw)
    feeds.nursery = nursery
    return feeds


async def _open(feeds: Feeds, window_s: float = 0.1, ring: int = 8, buffer: int = 4, ring_bytes: int = 1 << 20) -> Feed:
    return await feeds.open(
        TRADES_KEY,
        "trades",
        data_encoder("trades", 3),
        window_s=window_s,
        ring_size=ring,
        client_maxlen=buffer,
        ring_bytes=ring_bytes,
    )


def _rows(frame: Any) -> list[str]:
    data = frame.raw.split(b"data: ", 1)[1].strip()
    return [t["id"] for t in json.loads(data)]


async def test_a_window_of_batches_becomes_events_of_bounded_size(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """Batches within one window leave together at window end, split into events of at most max_records."""
    hub: Hub[Any] = Hub()
    feeds = _feeds(hub, nursery)
    feed = await _open(feeds)
    stream = feeds.stream(feed, feed.last_seq)
    hub.publish(TRADES_KEY, trades(2, 0))
    await trio.sleep(0.05)
    hub.publish(TRADES_KEY, trades(3, 2))
    first = await stream.__anext__()
    assert trio.current_time() == 0.1
    second = await stream.__anext__()
    assert [(f.seq, _rows(f)) for f in (first, second)] == [(1, ["0", "1", "2"]), (2, ["3", "4"])]
    assert first.raw.startswith(b"id: 1\r\nevent: trades\r\ndata: [")
    await stream.aclose()


async def test_windows_close_on_the_trio_clock_exactly(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """buffer_with_time on the TrioScheduler: windows close every 0.1 s after the tap opened, an empty window
    sends nothing, and the open window leaves at once when the hub closes."""
    hub: Hub[Any] = Hub()
    feeds = _feeds(hub, nursery)
    feed = await _open(feeds, buffer=16)
    stream = feeds.stream(feed, 0)

    async def publish() -> None:
        for at, start in ((0.03, 0), (0.07, 1), (0.13, 2), (0.31, 3), (0.45, 4)):
            await trio.sleep_until(at)
            hub.publish(TRADES_KEY, trades(1, start))
        await trio.sleep_until(0.47)
        hub.close()

    nursery.start_soon(publish)
    got = [(trio.current_time(), _rows(f)) async for f in stream]
    assert [rows for _, rows in got] == [["0", "1"], ["2"], ["3"], ["4"]]
    assert [t for t, _ in got] == pytest.approx([0.1, 0.2, 0.4, 0.47], abs=1e-9)
    assert [f.seq for f in feed.ring] == [1, 2, 3, 4]


async def test_heartbeats_are_sent_after_each_silent_interval(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """With no events, the stream yields a heartbeat every heartbeat_s exactly."""
    hub: Hub[Any] = Hub()
    feeds = _feeds(hub, nursery, heartbeat_s=15.0)
    feed = await _open(feeds)
    stream = feeds.stream(feed, 0)
    times = []
    for _ in range(3):
        assert await stream.__anext__() is HEARTBEAT
        times.append(trio.current_time())
    assert times == [15.0, 30.0, 45.0]
    await stream.aclose()


async def test_a_slow_client_loses_its_oldest_events_and_is_told_how_many(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    """With a buffer of 4, a client that reads after 7 events gets 'lagged' {"n": 3} and then the last 4."""
    hub: Hub[Any] = Hub()
    feeds = _feeds(hub, nursery)
    feed = await _open(feeds, buffer=4)
    stream = feeds.stream(feed, 0)
    first = await _publish_and_read(hub, stream)  # attached and reading
    assert first.seq == 1
    for k in range(7):
        hub.publish(TRADES_KEY, trades(1, 10 + k))
        await trio.sleep(0.2)
    got = [await stream.__anext__() for _ in range(5)]
    assert got[0].raw == b'event: lagged\r\ndata: {"n":3}\r\n\r\n'
    assert [f.seq for f in got[1:]] == [5, 6, 7, 8]
    assert feeds.stats()["trades"] == (1, 3)  # one client; 3 events evicted, counted at eviction
    await stream.aclose()


async def _publish_and_read(hub: Hub[Any], stream: Any) -> Any:
    hub.publish(TRADES_KEY, trades(1, 0))
    return await stream.__anext__()


async def test_replay_after_an_id_counts_what_fell_out_of_the_ring(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """Ring of 3 after ids 1..6: resuming after 1 gives lagged 2 then 4,5,6; after 6 or a future id nothing."""
    hub: Hub[Any] = Hub()
    feeds = _feeds(hub, nursery)
    feed = await _open(feeds, ring=3)
    for k in range(6):
        hub.publish(TRADES_KEY, trades(1, k))
        await trio.sleep(0.2)
    replay = feed.replay(1)
    assert replay[0].raw == b'event: lagged\r\ndata: {"n":2}\r\n\r\n'
    assert [f.seq for f in replay[1:]] == [4, 5, 6]
    assert [f.seq for f in feed.replay(4)] == [5, 6]
    assert feed.replay(6) == [] and feed.replay(99) == []


async def test_the_tap_outlives_its_last_client_by_linger_s_exactly(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """One hub subscription per topic while watched; released linger_s after the last client left; ids continue after."""
    hub: Hub[Any] = Hub()
    feeds = _feeds(hub, nursery, linger_s=30.0)
    feed = await _open(feeds)
    a, b = feeds.stream(feed, 0), feeds.stream(feed, 0)
    await _publish_and_read(hub, a)
    await b.__anext__()
    assert hub.subscriber_count == 1 and feeds.subscribers() == 2
    await a.aclose()
    await b.aclose()
    await trio.sleep(29.999)
    assert hub.subscriber_count == 1  # still lingering: a reconnecting client could resume
    await trio.sleep(0.002)
    assert hub.subscriber_count == 0 and feeds.feeds == {}
    again = await _open(feeds)
    assert again is not feed and again.last_seq == 1  # the id sequence of the topic continues


async def test_the_ring_is_bounded_in_bytes_too(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """Events of ~300 bytes with a 700-byte budget: the ring keeps the newest two, and replay says 3 are gone."""
    hub: Hub[Any] = Hub()
    feeds = _feeds(hub, nursery)
    feed = await _open(feeds, ring=100, ring_bytes=700)
    for k in range(5):
        hub.publish(TRADES_KEY, trades(3, 3 * k))
        await trio.sleep(0.2)
    assert all(250 < len(f.raw) < 350 for f in feed.ring)
    assert [f.seq for f in feed.ring] == [4, 5]
    assert feed.replay(0)[0].raw == b'event: lagged\r\ndata: {"n":3}\r\n\r\n'
