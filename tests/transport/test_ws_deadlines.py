"""Deadlines on every await of a WebSocket connection attempt, and the reconnect backoff of a working exchange.

A frozen exchange (``kill -STOP``) still completes TCP handshakes from the
kernel's backlog but never answers the HTTP upgrade, a subscription, or a
close. Each such attempt must become a failed connect that is retried, so the
feed comes back by itself once the exchange answers again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio_websocket

from dccd.domain.backoff import RestartPolicy
from dccd.errors import ConnectFailed
from dccd.transport.ws import ANSWERED_MAX_S, WsConn, WsEvent, WsHandle, open_ws, run_ws_connection
from tests.fake.binance_ws import open_fake_binance_ws


class Freezable:
    """A loopback WebSocket server that can stop answering while it keeps accepting TCP (a SIGSTOPped exchange)."""

    def __init__(self) -> None:
        self.frozen = False
        self.thawed = trio.Event()
        self.url = ""
        self.accepted = 0
        self.upgraded = 0
        self.streams: list[trio.SocketStream] = []

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(trio.serve_tcp, self._handle, 0)
        self.url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/ws"

    def thaw(self) -> None:
        self.frozen = False
        self.thawed.set()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        if self.frozen:  # hold the socket open, read nothing, answer nothing
            self.streams.append(stream)
            await trio.sleep_forever()
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, stream)
            ws = await request.accept()
            self.upgraded += 1
            n = 0
            try:
                while True:
                    if self.frozen:
                        await self.thawed.wait()
                    n += 1
                    await ws.send_message(f"frame {n}")
                    await trio.sleep(0.01)
            except trio_websocket.ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()


async def test_open_ws_gives_up_on_a_peer_that_never_answers_the_upgrade() -> None:
    """TCP accepted but no HTTP answer: ConnectFailed after connect_timeout_s, not a hang (trio-websocket alone hangs)."""
    async with trio.open_nursery() as nursery:
        server = Freezable()
        server.frozen = True
        await server.start(nursery)
        t0 = trio.current_time()
        with trio.fail_after(5), pytest.raises(ConnectFailed, match=r"no handshake within 0\.3s"):
            async with open_ws(server.url, connect_timeout_s=0.3):
                pass
        assert 0.3 <= trio.current_time() - t0 < 2.0
        nursery.cancel_scope.cancel()


async def test_feed_recovers_after_the_exchange_stalls_for_longer_than_the_watchdog() -> None:
    """Freeze the exchange past the watchdog: attempts fail (counted) and keep coming; after the thaw frames flow again."""
    events: list[WsEvent] = []
    frames: list[str] = []
    backoff = RestartPolicy(initial_s=0.05, max_s=0.4, jitter=0.0, healthy_s=10.0)
    async with trio.open_nursery() as nursery:
        server = Freezable()
        await server.start(nursery)
        handle: WsHandle = await nursery.start(
            partial(
                run_ws_connection,
                server.url,
                on_frame=lambda f, ns: frames.append(str(f)),
                on_event=events.append,
                watchdog_s=0.5,
                backoff=backoff,
                connect=partial(open_ws, connect_timeout_s=0.3, close_timeout_s=0.2),
            )
        )
        with trio.fail_after(5):
            await handle.wait_connected()
            while len(frames) < 5:
                await trio.sleep(0.01)
        server.frozen, server.thawed = True, trio.Event()
        await trio.sleep(3.0)  # watchdog trips at 0.5 s, then every attempt hangs in the handshake
        failed = handle.stats.connect_failures
        assert failed >= 3, events
        assert handle.stats.attempts >= failed
        assert not handle.connected
        n_before = len(frames)
        server.thaw()
        with trio.fail_after(3):  # the next attempt lands; no restart of anything needed
            await handle.wait_connected()
            while len(frames) < n_before + 5:
                await trio.sleep(0.01)
        assert handle.stats.watchdog_trips == 1
        assert any(e.kind == "reconnecting" and "no handshake" in e.reason for e in events)
        nursery.cancel_scope.cancel()


class _NoAck:
    """A connection whose ``on_connect`` waits for an acknowledgement that never comes."""


async def test_a_subscription_that_is_never_acknowledged_is_a_retried_failure(autojump_clock: trio.abc.Clock) -> None:
    """on_connect awaiting an ack forever: the attempt fails at open_timeout_s and is retried with backoff."""
    events: list[WsEvent] = []
    acks_wanted = 0

    async def wait_for_ack(ws: WsConn) -> None:
        nonlocal acks_wanted
        acks_wanted += 1
        await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
        if acks_wanted <= 2:
            await trio.sleep_forever()  # the exchange never acknowledges

    async with open_fake_binance_ws(rate_per_s=10) as fake, trio.open_nursery() as nursery:
        handle: WsHandle = await nursery.start(
            partial(
                run_ws_connection,
                fake.url + "/ws",
                on_frame=lambda f, ns: None,
                on_connect=wait_for_ack,
                on_event=events.append,
                connect=fake.connect,
                backoff=RestartPolicy(initial_s=1.0, jitter=0.0),
                open_timeout_s=5.0,
            )
        )
        await handle.wait_connected()
        t = trio.current_time() - fake.t0
        nursery.cancel_scope.cancel()
    # attempt 1 fails at 5 s, waits 1 s; attempt 2 fails at 11 s, waits 2 s; attempt 3 connects at 13 s
    assert t == pytest.approx(13.0)
    assert [e.delay_s for e in events if e.kind == "reconnecting"] == [1.0, 2.0]
    assert all("not connected and subscribed within 5s" in e.reason for e in events if e.kind == "reconnecting")
    assert (handle.stats.connect_failures, handle.stats.attempts, handle.stats.connects) == (2, 2, 1)


async def test_backoff_starts_over_after_a_connection_that_delivered_data(autojump_clock: trio.abc.Clock) -> None:
    """Short-lived but working connections (100 frames, then a drop) reconnect after the initial delay every time."""
    events: list[WsEvent] = []
    async with (
        open_fake_binance_ws(rate_per_s=100, drop_after=100, fault_connections=None) as fake,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            partial(
                run_ws_connection,
                fake.url + "/ws/btcusdt@trade",
                on_frame=lambda f, ns: None,
                on_event=events.append,
                connect=fake.connect,
                backoff=RestartPolicy(initial_s=0.5, max_s=60.0, jitter=0.0, healthy_s=60.0),
            )
        )
        await trio.sleep(30.0)
        nursery.cancel_scope.cancel()
    delays = [e.delay_s for e in events if e.kind == "reconnecting"]
    assert len(delays) >= 15
    assert set(delays) == {0.5}  # before: 0.5, 1, 2, 4, 8, 16, 32, 60 ... (each connection lived 1 s < healthy_s)


async def test_reconnect_delay_after_an_open_connection_is_capped(autojump_clock: trio.abc.Clock) -> None:
    """Connections that open but deliver nothing (dropped at once) back off, but never past ANSWERED_MAX_S."""
    events: list[WsEvent] = []
    async with (
        open_fake_binance_ws(rate_per_s=10, drop_after=0, fault_connections=None) as fake,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            partial(
                run_ws_connection,
                fake.url + "/ws/btcusdt@trade",
                on_frame=lambda f, ns: None,
                on_event=events.append,
                connect=fake.connect,
                backoff=RestartPolicy(initial_s=0.5, max_s=60.0, jitter=0.0, healthy_s=60.0),
            )
        )
        await trio.sleep(60.0)
        nursery.cancel_scope.cancel()
    delays = [e.delay_s for e in events if e.kind == "reconnecting"]
    assert delays[:4] == [0.5, 1.0, 2.0, ANSWERED_MAX_S]
    assert max(delays) == ANSWERED_MAX_S


@asynccontextmanager
async def _never(url: str) -> AsyncIterator[WsConn]:
    await trio.sleep_forever()
    yield  # type: ignore[misc]  # pragma: no cover


async def test_a_connector_that_never_returns_is_cut_at_open_timeout(autojump_clock: trio.abc.Clock) -> None:
    """Even a connector without deadlines of its own cannot hang the feed: each attempt ends at open_timeout_s."""
    events: list[WsEvent] = []
    async with trio.open_nursery() as nursery:
        handle: WsHandle = await nursery.start(
            partial(
                run_ws_connection,
                "ws://127.0.0.1:9/x",
                on_frame=lambda f, ns: None,
                on_event=events.append,
                connect=_never,
                backoff=RestartPolicy(initial_s=1.0, max_s=4.0, jitter=0.0),
                open_timeout_s=10.0,
            )
        )
        await trio.sleep(60.0)
        nursery.cancel_scope.cancel()
    # 10 + 1, 10 + 2, 10 + 4, 10 + 4 ... -> failures at 10, 21, 33, 47 (and the 5th at 61 is past the end)
    assert handle.stats.connect_failures == 4
    assert [e.delay_s for e in events] == [1.0, 2.0, 4.0, 4.0]
