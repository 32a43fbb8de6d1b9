"""Live SSE over a real server: batching, event ids, Last-Event-ID resume, lagged notices, fan-out, release."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx_sse
import trio
from dccd.actors import Batch
from dccd.actors.messages import RunProgressed
from dccd.web import WebOptions

from dccd.domain import Candle, DatasetId, DataType, Span

from .conftest import BTC, FAST, TRADES_KEY, Web, make_config, open_web, trades

LIVE = "/api/v1/live/trades"
PARAMS = {"exchange": "binance", "symbol": "BTC/USDT"}


@asynccontextmanager
async def sse(web: Web, path: str = LIVE, params: Any = PARAMS, **headers: str) -> AsyncIterator[AsyncIterator[Any]]:
    """An httpx-sse event iterator on ``path`` (open once the response headers arrived)."""
    async with httpx_sse.aconnect_sse(web.client, "GET", path, params=params, headers=headers) as es:
        assert es.response.headers["content-type"].startswith("text/event-stream")
        yield es.aiter_sse()


async def take(events: AsyncIterator[Any], n: int) -> list[Any]:
    out = []
    async for ev in events:
        out.append(ev)
        if len(out) == n:
            break
    return out


def trade_ids(ev: Any) -> list[str]:
    return [t["id"] for t in json.loads(ev.data)]


async def test_published_batches_arrive_batched_with_ids_within_a_second(web: Web) -> None:
    """Three batches published together arrive as one 'trades' event (all fields, id 1) well within 1 s."""
    async with sse(web) as events:
        t0 = time.perf_counter()
        for k in range(3):
            assert web.svc.hub.publish(TRADES_KEY, trades(4, 4 * k)) == 1  # one tap, however many clients
        [ev] = await take(events, 1)
        latency = time.perf_counter() - t0
    assert latency < 1.0
    assert (ev.event, ev.id) == ("trades", "1")
    rows = json.loads(ev.data)
    assert [r["id"] for r in rows] == [str(i) for i in range(12)]
    assert rows[0] == {
        "ts": 1_700_000_000_000_000_000,
        "id": "0",
        "price": 100.0,
        "amount": 0.5,
        "side": "buy",
        "recv_ts": 0,
    }


async def test_last_event_id_resume_replays_what_was_missed(tmp_path: Path) -> None:
    """A client reconnecting with Last-Event-ID gets exactly the events it missed, from the ring, then live ones."""
    async with open_web(make_config(tmp_path), options=WebOptions(linger_s=5.0, live_window_s=0.02)) as web:
        await _resume(web)


async def _resume(web: Web) -> None:
    async with sse(web) as events:
        web.svc.hub.publish(TRADES_KEY, trades(2, 0))
        [first] = await take(events, 1)
    for k in range(1, 4):  # published while nobody listens (the tap lingers)
        web.svc.hub.publish(TRADES_KEY, trades(2, 2 * k))
        await trio.sleep(FAST.live_window_s * 3)
    async with sse(web, **{"Last-Event-ID": first.id}) as events:
        replayed = await take(events, 3)
        web.svc.hub.publish(TRADES_KEY, trades(2, 8))
        [live] = await take(events, 1)
    assert [e.id for e in replayed] == ["2", "3", "4"] and live.id == "5"
    assert [trade_ids(e) for e in [*replayed, live]] == [["2", "3"], ["4", "5"], ["6", "7"], ["8", "9"]]


async def test_resume_beyond_the_ring_says_how_many_events_are_gone(tmp_path: Path) -> None:
    """With a ring of 2, resuming from id 1 after 5 events gives 'lagged' {"n": 2} and then events 4 and 5."""
    options = WebOptions(linger_s=5.0, live_window_s=0.01, live_ring=2)
    async with open_web(make_config(tmp_path), options=options) as web:
        async with sse(web) as events:
            for k in range(5):
                web.svc.hub.publish(TRADES_KEY, trades(1, k))
                await trio.sleep(0.05)
            await take(events, 5)
        async with sse(web, **{"Last-Event-ID": "1"}) as events:
            got = await take(events, 3)
    assert [(e.event, e.id, e.data) for e in got[:1]] == [("lagged", "", '{"n":2}')]
    assert [e.id for e in got[1:]] == ["4", "5"]


async def test_candles_are_a_feed_of_their_own(web: Web) -> None:
    """/live/candles?span=1m streams Batches published under ("ohlc", exchange, symbol, span) as 'candles' events."""
    bar = Candle(ts=0, open=1.0, high=2.0, low=0.5, close=1.5, volume=10.0)
    batch = Batch(DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m")), [bar], source="t", transport="ws")
    async with sse(web, "/api/v1/live/candles", {**PARAMS, "span": "1m"}) as events:
        web.svc.hub.publish(("ohlc", "binance", "BTC/USDT", "5m"), batch)  # another span: not this feed
        web.svc.hub.publish(("ohlc", "binance", "BTC/USDT", "1m"), batch)
        [ev] = await take(events, 1)
    assert ev.event == "candles"
    assert json.loads(ev.data) == [{"ts": 0, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0,
                                    "quote_volume": None, "trades": None}]  # fmt: skip


async def test_events_stream_names_events_by_type_and_filters_by_run(web: Web) -> None:
    """/api/v1/events: event name = message type, data = its JSON; ?run_id= keeps only that run's events."""
    async with sse(web, "/api/v1/events", None) as everything, sse(web, "/api/v1/events", {"run_id": "aaa"}) as mine:
        web.svc.emit(RunProgressed("bbb", 1, 10, "bars", 1, 100))
        web.svc.emit(RunProgressed("aaa", 5, 10, "bars", 2, 500))
        all_events = await take(everything, 2)
        [only] = await take(mine, 1)
    assert [(e.event, json.loads(e.data)["run_id"]) for e in all_events] == [
        ("run_progressed", "bbb"),
        ("run_progressed", "aaa"),
    ]
    assert only.event == "run_progressed" and json.loads(only.data) == {
        "type": "run_progressed", "run_id": "aaa", "done": 5, "total": 10, "unit": "bars", "pages": 2, "rows": 500,
        "rate_rows_s": 0.0, "eta_s": None}  # fmt: skip
    assert only.id == all_events[1].id  # one id sequence per topic, shared by filtered clients


async def test_idle_streams_get_heartbeat_comments(tmp_path: Path) -> None:
    """Without events, a ': keep-alive' comment is sent every heartbeat_s."""
    async with open_web(make_config(tmp_path), options=WebOptions(heartbeat_s=0.1)) as web:
        t0 = trio.current_time()
        async with web.client.stream("GET", LIVE, params=PARAMS) as r:
            lines = []
            async for line in r.aiter_lines():
                lines.append(line)
                if lines.count(": keep-alive") == 3:
                    break
        assert 0.3 <= trio.current_time() - t0 < 1.0


async def _stuck_client(port: int) -> trio.socket.SocketType:
    """A client that sends its request and never reads (tiny receive buffer, so the server's sends block soon)."""
    s = trio.socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await s.connect(("127.0.0.1", port))
    request = f"GET /api/v1/live/trades?exchange=binance&symbol=BTC/USDT HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    await s.send(request.encode())
    return s


async def _publish(web: Web, rate: float, duration_s: float) -> tuple[int, float]:
    """Publish ``rate`` batches/s on absolute deadlines; returns (batches published, slowest publish call in s)."""
    t0, n, slowest = trio.current_time(), 0, 0.0
    while trio.current_time() - t0 < duration_s:
        c0 = time.perf_counter()
        web.svc.hub.publish(TRADES_KEY, trades(PER_BATCH, n * PER_BATCH))
        slowest = max(slowest, time.perf_counter() - c0)
        n += 1
        await trio.sleep_until(t0 + n / rate)
    return n, slowest


PER_BATCH = 20


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def test_fan_out_to_100_clients_with_10_stuck_never_slows_the_publisher(tmp_path: Path) -> None:
    """90 reading + 10 never-reading clients: publish rate as with none, stuck ones get 'lagged', all released after."""
    options = WebOptions(linger_s=0.2, live_window_s=0.05, live_client_buffer=16)
    async with open_web(make_config(tmp_path), options=options) as web:
        rate = 100.0
        alone, _ = await _publish(web, rate, 0.5)
        port = int(web.url.rsplit(":", 1)[1])
        received: list[int] = [0] * 90
        lagged_readers: list[int] = []

        async def reader(i: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            # Counting in C (bytes.count) keeps 90 in-process readers from starving the event loop.
            async with web.client.stream("GET", LIVE, params=PARAMS) as r:
                task_status.started()
                tail = b""
                async for chunk in r.aiter_raw():
                    data = tail + chunk
                    received[i] += data.count(b'"side":') - tail.count(b'"side":')
                    if b"event: lagged" in data:
                        lagged_readers.append(i)
                    tail = data[-16:]

        stuck = [await _stuck_client(port) for _ in range(10)]
        try:
            with trio.fail_after(20):
                async with trio.open_nursery() as readers:
                    for i in range(90):
                        await readers.start(reader, i)
                    while web.ctx.feeds.subscribers() < 100:
                        await trio.sleep(0.01)
                    assert web.svc.hub.subscriber_count == 1  # the one tap
                    crowded, slowest = await _publish(web, rate, 1.5)
                    await trio.sleep(0.3)  # the readers catch up with the last window
                    readers.cancel_scope.cancel()
                # A burst far larger than socket buffers: the stuck clients' bounded buffers overflow.
                for k in range(24):
                    web.svc.hub.publish(TRADES_KEY, trades(4000, 10**6 + k * 4000))
                    await trio.sleep(options.live_window_s * 1.5)
                drops = _metric((await web.client.get("/metrics")).text, "dccd_sse_dropped_events_total")
                for s in stuck:  # they read at last: each finds its 'lagged' notice in the stream
                    seen = b""
                    while b"event: lagged" not in seen:
                        seen = seen[-64:] + await s.recv(1 << 20)
        finally:
            for s in stuck:
                s.close()
        with trio.fail_after(3):
            while web.ctx.feeds.subscribers() or web.svc.hub.subscriber_count:
                await trio.sleep(0.05)
        metrics = (await web.client.get("/metrics")).text
    assert crowded / 1.5 >= 0.95 * alone / 0.5  # same ingest rate with 100 clients attached
    assert slowest < 0.05  # a publish never waits for a client (a stuck one would hold it for seconds)
    assert lagged_readers == [] and min(received) == crowded * PER_BATCH  # the readers lost nothing
    assert drops >= 10  # the stuck clients lost events, counted at eviction
    assert _metric(metrics, "dccd_sse_subscribers") == 0


async def test_a_disconnect_releases_the_subscription_every_time(web: Web) -> None:
    """50 connect/disconnect cycles (some mid-event) leave no client and, after the linger, no hub subscription."""
    for i in range(50):
        async with web.client.stream("GET", LIVE, params=PARAMS) as r:
            if i % 2:
                web.svc.hub.publish(TRADES_KEY, trades(500, 0))
                async for _ in r.aiter_bytes():
                    break
    with trio.fail_after(3):
        while web.ctx.feeds.subscribers() or web.svc.hub.subscriber_count:
            await trio.sleep(0.02)
    assert web.svc.hub.subscriber_count == 0


async def test_a_closed_hub_ends_live_streams_cleanly(web: Web) -> None:
    """hub.close() ends every SSE response with a clean end of stream (no truncated chunked body)."""
    async with web.client.stream("GET", LIVE, params=PARAMS) as r:
        web.svc.hub.close()
        body = b"".join([chunk async for chunk in r.aiter_bytes()])
    assert body == b""
    r2 = await web.client.get(LIVE, params=PARAMS)  # after the close a new client ends at once
    assert r2.status_code == 200 and r2.content == b""


async def test_non_sse_clients_still_get_http_errors(web: Web) -> None:
    """Validation happens before the stream starts: a bad request is a plain JSON 400."""
    r = await web.client.get(LIVE, params={"exchange": "binance"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
