"""run_ws_connection against the fake Binance server.

Timing tests use the fake's in-memory connector under ``autojump_clock`` and
assert exact trio times (offsets from the fake's start, when trade 1 is due at
10 trades/s). Wire tests use real sockets on 127.0.0.1 without clock asserts.
"""

from __future__ import annotations

import itertools
import random
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from dccd.domain.backoff import RestartPolicy, backoff_delay
from dccd.domain.symbols import Symbol
from dccd.errors import ConnectFailed, Disconnected, ExchangeRejected
from dccd.sources.binance import ws as bws
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    StreamEvent,
    TradesReceived,
    Unrecognised,
)
from dccd.transport.ws import RECONNECT_POLICY, Heartbeat, WsConn, WsEvent, WsEventKind, WsHandle, run_ws_connection
from tests.fake.binance_ws import FakeBinanceWs, open_fake_binance_ws, recorded_frames
from tests.fake.tape import TAPE_EPOCH_MS, candle_at

RECORDING = Path(__file__).parent.parent / "fixtures" / "binance_ws" / "BINANCE.ws.1.0"

STEADY = RestartPolicy(initial_s=0.5, jitter=0.0)
T = partial(pytest.approx, abs=1e-9)  # trio times are sums of floats: equal to the nanosecond


class Feed:
    """Collects what the runner delivers, parsed by the Binance adapter (combined and raw frames alike)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.per_frame: list[list[StreamEvent]] = []
        self.events: list[StreamEvent] = []
        self.ws_events: list[WsEvent] = []
        self.recv: list[int] = []

    def on_frame(self, frame: str | bytes, recv_ns: int) -> None:
        events = bws.parse_frame(frame, recv_ns)
        self.per_frame.append(events)
        self.events.extend(events)
        self.recv.append(recv_ns)
        for ev in events:
            if isinstance(ev, TradesReceived):
                self.ids.extend(int(t.id) for t in ev.trades)
            if isinstance(ev, ControlFailed):
                raise ExchangeRejected("binance", int(ev.code) if ev.code.isdigit() else None, ev.message)

    def on_event(self, ev: WsEvent) -> None:
        self.ws_events.append(ev)

    def kinds(self, fake: FakeBinanceWs) -> list[tuple[str, float]]:
        """(kind, time since the fake started) of every connection event."""
        return [(e.kind, round(e.at - fake.t0, 9)) for e in self.ws_events]


async def run_for(fake: FakeBinanceWs, seconds: float, url: str, feed: Feed, **kw: Any) -> WsHandle:
    """Run a connection to ``url`` until ``seconds`` after the fake started, then cancel it."""
    kw.setdefault("connect", fake.connect)
    kw.setdefault("backoff", STEADY)
    async with trio.open_nursery() as nursery:
        handle: WsHandle = await nursery.start(
            partial(run_ws_connection, url, on_frame=feed.on_frame, on_event=feed.on_event, **kw)
        )
        await trio.sleep_until(fake.t0 + seconds)
        nursery.cancel_scope.cancel()
    return handle


def trade_url(fake: FakeBinanceWs, *markets: str) -> str:
    return bws.build_stream_url([bws.trade_stream(m) for m in markets or ("BTCUSDT",)], fake.url or "ws://fake")


# --- exact timing, in memory ---------------------------------------------------------------


async def test_reconnects_after_abrupt_drop_with_backoff(autojump_clock: trio.abc.Clock) -> None:
    """A TCP drop without close frame is reported as 1006 and reconnected after exactly the backoff delay."""
    async with open_fake_binance_ws(rate_per_s=10, drop_after=5) as fake:
        feed = Feed()
        handle = await run_for(fake, 2.95, trade_url(fake), feed, backoff=RestartPolicy(initial_s=1.0, jitter=0.0))
    assert feed.kinds(fake) == [("connected", 0.0), ("disconnected", 0.5), ("reconnecting", 0.5), ("connected", 1.5)]
    assert [type(e.kind) for e in feed.ws_events] == [WsEventKind] * 4  # an enum, not bare strings
    assert feed.ws_events[1].reason == "closed 1006 ABNORMAL_CLOSURE"
    assert feed.ws_events[2].delay_s == 1.0
    # Trades 6..15 happened while disconnected: the gap a REST fill must close.
    assert feed.ids == [*range(1, 6), *range(16, 31)]
    assert (handle.stats.connects, handle.stats.reconnects, handle.stats.messages) == (2, 1, 20)
    assert fake.opened_at == [T(fake.t0), T(fake.t0 + 1.5)]


async def test_backoff_grows_then_resets_after_a_healthy_period(autojump_clock: trio.abc.Clock) -> None:
    """Connections that die young wait 1, 2, 4 s; after one stays up past healthy_s the next wait is 1 s again."""
    backoff = RestartPolicy(initial_s=1.0, factor=2.0, jitter=0.0, healthy_s=5.0)
    async with open_fake_binance_ws(rate_per_s=10, drop_after=2, fault_connections=3) as fake:
        feed = Feed()
        async with trio.open_nursery() as nursery:
            handle: WsHandle = await nursery.start(
                partial(
                    run_ws_connection,
                    trade_url(fake),
                    on_frame=feed.on_frame,
                    on_event=feed.on_event,
                    connect=fake.connect,
                    backoff=backoff,
                )
            )
            await trio.sleep_until(fake.t0 + 13.0)
            handle.reconnect("test: resync")
            await trio.sleep_until(fake.t0 + 15.0)
            nursery.cancel_scope.cancel()
    connected = [at for kind, at in feed.kinds(fake) if kind == "connected"]
    assert connected == [T(0.0), T(1.2), T(3.4), T(7.6), T(14.0)]
    assert [e.delay_s for e in feed.ws_events if e.kind == "reconnecting"] == [1.0, 2.0, 4.0, 1.0]
    assert [e.attempt for e in feed.ws_events if e.kind == "reconnecting"] == [1, 2, 3, 1]
    assert feed.ws_events[-2].reason == "test: resync"


async def test_watchdog_replaces_a_silent_connection(autojump_clock: trio.abc.Clock) -> None:
    """A connection that stops sending (but stays open) is replaced exactly watchdog_s after its last frame."""
    async with open_fake_binance_ws(rate_per_s=10, silent_after=5) as fake:
        feed = Feed()
        handle = await run_for(fake, 5.0, trade_url(fake), feed, watchdog_s=3.0)
    assert feed.kinds(fake)[:4] == [
        ("connected", 0.0),
        ("disconnected", 3.4),
        ("reconnecting", 3.4),
        ("connected", 3.9),
    ]
    assert feed.ws_events[1].reason == "no frame for 3s"
    assert handle.stats.watchdog_trips == 1
    assert fake.connections == 2
    assert fake.close_codes[0] == 1000  # we closed the silent one properly
    assert feed.ids[:6] == [1, 2, 3, 4, 5, 40]


async def test_watchdog_leaves_a_busy_connection_alone(autojump_clock: trio.abc.Clock) -> None:
    """Frames every 0.1 s keep a 0.5 s watchdog quiet for a whole minute."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()
        handle = await run_for(fake, 60.0, trade_url(fake), feed, watchdog_s=0.5)
    assert feed.kinds(fake) == [("connected", 0.0)]
    assert handle.stats.watchdog_trips == 0
    assert feed.ids == list(range(1, 601))


async def test_unanswered_protocol_ping_drops_the_connection(autojump_clock: trio.abc.Clock) -> None:
    """A ping without pong for pong_timeout_s ends the connection; an answered ping counts as a heartbeat."""
    async with open_fake_binance_ws(rate_per_s=10, freeze_after=20) as fake:
        feed = Feed()
        hb = Heartbeat(interval_s=1.5, pong_timeout_s=2.0)
        handle = await run_for(fake, 5.2, trade_url(fake), feed, heartbeat=hb)
    # Pings at 1.5 (answered) and 3.0 (the server froze at 2.0): dropped at 3.0 + 2.0.
    assert feed.kinds(fake) == [("connected", 0.0), ("disconnected", 5.0), ("reconnecting", 5.0)]
    assert feed.ws_events[1].reason == "no pong within 2s"
    assert handle.stats.heartbeats == 1


async def test_application_heartbeat_is_sent_on_schedule(autojump_clock: trio.abc.Clock) -> None:
    """An app-level heartbeat (here LIST_SUBSCRIPTIONS with a fresh id) goes out every interval_s."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()
        hb = Heartbeat(interval_s=5.0, message=lambda n: bws.build_list_subscriptions(100 + n))
        handle = await run_for(fake, 16.0, trade_url(fake), feed, heartbeat=hb)
    sent = [(round(at - fake.t0, 9), text) for at, _, text in fake.received]
    assert sent == [(5.0 * n, bws.build_list_subscriptions(100 + n)) for n in (1, 2, 3)]
    replies = [e for e in feed.events if isinstance(e, ControlAck)]
    assert replies == [ControlAck(f'id {100 + n} ["btcusdt@trade"]') for n in (1, 2, 3)]
    assert handle.stats.heartbeats == 3


async def test_idle_heartbeat_waits_for_silence(autojump_clock: trio.abc.Clock) -> None:
    """idle_only heartbeats start interval_s after the last frame, and each reply restarts the wait."""
    async with open_fake_binance_ws(rate_per_s=10, silent_after=10) as fake:
        feed = Feed()
        hb = Heartbeat(interval_s=2.0, message=lambda n: bws.build_list_subscriptions(n), idle_only=True)
        await run_for(fake, 7.0, trade_url(fake), feed, heartbeat=hb)
    assert [round(at - fake.t0, 9) for at, _, _ in fake.received] == [2.9, 4.9, 6.9]


async def test_rotation_overlaps_connections_without_loss(autojump_clock: trio.abc.Clock) -> None:
    """Each connection is replaced after rotate_after_s; both run overlap_s; the union of ids has no hole."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()
        handle = await run_for(fake, 25.0, trade_url(fake), feed, rotate_after_s=10.0, overlap_s=2.0)
    assert feed.kinds(fake) == [("connected", 0.0), ("rotated", 12.0), ("rotated", 22.0)]
    assert fake.opened_at == [T(fake.t0), T(fake.t0 + 10.0), T(fake.t0 + 20.0)]
    assert fake.close_codes[0] == fake.close_codes[1] == 1000  # old connections closed gracefully after the overlap
    unique = sorted(set(feed.ids))
    assert unique == list(range(1, unique[-1] + 1))
    assert unique[-1] >= 250
    dups = sorted(i for i in unique if feed.ids.count(i) == 2)
    assert dups == [*range(101, 121), *range(201, 221)]  # 2 s x 10 trades/s, delivered by both connections
    assert handle.stats.rotations == 2 and handle.stats.reconnects == 0


async def test_failed_rotation_keeps_the_old_connection(autojump_clock: trio.abc.Clock) -> None:
    """When the replacement cannot connect, the old connection keeps streaming and rotation retries after backoff."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    run_ws_connection,
                    trade_url(fake),
                    on_frame=feed.on_frame,
                    on_event=feed.on_event,
                    connect=fake.connect,
                    backoff=STEADY,
                    rotate_after_s=5.0,
                    overlap_s=1.0,
                )
            )
            await trio.sleep_until(fake.t0 + 1.0)
            fake.refuse_left = 1
            await trio.sleep_until(fake.t0 + 8.0)
            nursery.cancel_scope.cancel()
    assert feed.kinds(fake) == [("connected", 0.0), ("reconnecting", 5.0), ("rotated", 6.5)]
    assert feed.ws_events[1].reason.startswith("rotation: ")
    unique = sorted(set(feed.ids))
    assert unique == list(range(1, 81))


async def test_rotation_on_request(autojump_clock: trio.abc.Clock) -> None:
    """handle.rotate() (e.g. on a serverShutdown notice) opens the replacement at once."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()
        async with trio.open_nursery() as nursery:
            handle: WsHandle = await nursery.start(
                partial(
                    run_ws_connection,
                    trade_url(fake),
                    on_frame=feed.on_frame,
                    on_event=feed.on_event,
                    connect=fake.connect,
                    overlap_s=1.0,
                )
            )
            await trio.sleep_until(fake.t0 + 3.0)
            handle.rotate("server shutdown")
            await trio.sleep_until(fake.t0 + 5.0)
            nursery.cancel_scope.cancel()
    assert feed.kinds(fake) == [("connected", 0.0), ("rotated", 4.0)]
    assert feed.ws_events[1].reason == "replaced #1 (server shutdown)"
    assert fake.opened_at[1] == T(fake.t0 + 3.0)


async def test_graceful_going_away_close_reconnects(autojump_clock: trio.abc.Clock) -> None:
    """A 1001 close from the server is a disconnect like any other: reported with its code, then reconnected."""
    async with open_fake_binance_ws(rate_per_s=10, close_after=3) as fake:
        feed = Feed()
        await run_for(fake, 1.0, trade_url(fake), feed)
    assert feed.kinds(fake) == [("connected", 0.0), ("disconnected", 0.3), ("reconnecting", 0.3), ("connected", 0.8)]
    assert feed.ws_events[1].reason == "closed 1001 GOING_AWAY (going away)"


async def test_subscribe_reply_then_raw_frames(autojump_clock: trio.abc.Clock) -> None:
    """On /ws, on_connect's SUBSCRIBE is answered {"result":null,"id":1} before the first raw trade; send reaches the server."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()

        async def subscribe(ws: WsConn) -> None:
            await ws.send_message(bws.build_subscribe([bws.agg_trade_stream("ETHBTC")], 1))

        async with trio.open_nursery() as nursery:
            handle: WsHandle = await nursery.start(
                partial(
                    run_ws_connection,
                    bws.build_raw_url("ws://fake"),
                    on_frame=feed.on_frame,
                    on_connect=subscribe,
                    connect=fake.connect,
                )
            )
            await handle.wait_connected()
            await handle.send(bws.build_list_subscriptions(2))
            await trio.sleep_until(fake.t0 + 0.55)
            nursery.cancel_scope.cancel()
    assert feed.events[0] == ControlAck("id 1")
    replies = [e for e in feed.events if isinstance(e, ControlAck)]
    assert replies == [ControlAck("id 1"), ControlAck('id 2 ["ethbtc@aggTrade"]')]
    assert feed.ids == [1, 2, 3, 4, 5, 6]
    assert len(feed.events) == len(replies) + len(feed.ids)
    assert fake.paths == ["/ws"]


async def test_rejected_request_ends_the_run_without_retry(autojump_clock: trio.abc.Clock) -> None:
    """An error reply raised from on_frame propagates bare (ExchangeRejected) and is not reconnected."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()

        async def bad_subscribe(ws: WsConn) -> None:
            await ws.send_message('{"method":"SUBSCRIB","params":["btcusdt@trade"],"id":7}')

        with pytest.raises(
            ExchangeRejected, match=r"code 2: Invalid request: unknown variant `SUBSCRIB`.*request id 7"
        ):
            await run_ws_connection(
                bws.build_stream_url([], "ws://fake"),
                on_frame=feed.on_frame,
                on_connect=bad_subscribe,
                connect=fake.connect,
            )
    assert fake.connections == 1


async def test_paced_subscribes_stay_under_the_message_limit(autojump_clock: trio.abc.Clock) -> None:
    """The planner's SUBSCRIBE pacing keeps a connection alive where the same burst gets it dropped (5 msgs/s)."""
    streams = [bws.trade_stream(f"C{i:03d}USDT") for i in range(80)]
    (plan,) = bws.plan_connections(streams, origin="ws://fake", max_url_len=60, max_params=10)
    assert len(plan.subscribes) == 8

    def subscriber(paced: bool) -> Callable[[WsConn], Any]:
        async def on_connect(ws: WsConn) -> None:
            start = trio.current_time()
            for msg in plan.subscribes:
                if paced:
                    await trio.sleep_until(start + msg.delay_s)
                await ws.send_message(msg.text)

        return on_connect

    for paced, expected in ((True, ["connected"]), (False, ["connected", "disconnected", "reconnecting"])):
        async with open_fake_binance_ws(rate_per_s=1) as fake:
            feed = Feed()
            await run_for(fake, 2.5, plan.url, feed, on_connect=subscriber(paced), max_failures=1)
        assert [k for k, _ in feed.kinds(fake)][:3] == expected, paced


# --- real sockets on 127.0.0.1 -------------------------------------------------------------


async def test_receives_frames_over_loopback() -> None:
    """Over a real socket, combined frames arrive in order with wall-clock receive times."""
    async with open_fake_binance_ws(rate_per_s=None) as fake:
        feed = Feed()
        url = bws.build_stream_url([bws.trade_stream("BTCUSDT"), bws.agg_trade_stream("ETHUSDT")], fake.url)
        before = trio.current_time()
        async with trio.open_nursery() as nursery:
            handle: WsHandle = await nursery.start(
                partial(run_ws_connection, url, on_frame=feed.on_frame, on_event=feed.on_event)
            )
            with trio.fail_after(10):
                while handle.stats.messages < 400:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert fake.paths == ["/stream?streams=btcusdt@trade/ethusdt@aggTrade"]
    trades = [e for e in feed.events if isinstance(e, TradesReceived)]
    btc = [int(t.id) for e in trades if e.symbol == Symbol.parse("BTC/USDT") for t in e.trades]
    eth = [int(t.id) for e in trades if e.symbol == Symbol.parse("ETH/USDT") for t in e.trades]
    assert len(btc) + len(eth) == len(feed.ids)
    assert btc == list(range(1, len(btc) + 1)) and eth == list(range(1, len(eth) + 1))
    assert len(btc) >= 199
    assert feed.recv == sorted(feed.recv)
    assert handle.stats.last_frame_at is not None and handle.stats.last_frame_at >= before
    assert [e.kind for e in feed.ws_events] == ["connected"]


async def test_loopback_drop_reconnects() -> None:
    """Over a real socket, an abrupt drop is seen as 1006 and a second connection resumes the feed."""
    async with open_fake_binance_ws(rate_per_s=None, drop_after=50) as fake:
        feed = Feed()
        async with trio.open_nursery() as nursery:
            handle: WsHandle = await nursery.start(
                partial(
                    run_ws_connection,
                    trade_url(fake),
                    on_frame=feed.on_frame,
                    on_event=feed.on_event,
                    backoff=RestartPolicy(initial_s=0.01),
                )
            )
            with trio.fail_after(10):
                while handle.stats.messages < 100:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert fake.connections == 2
    assert [e.kind for e in feed.ws_events][:4] == ["connected", "disconnected", "reconnecting", "connected"]
    assert feed.ws_events[1].reason == "closed 1006 ABNORMAL_CLOSURE"
    assert feed.ids[:50] == list(range(1, 51))


async def test_rejected_handshakes_map_to_connect_failed() -> None:
    """HTTP 503 handshakes become ConnectFailed retries (reason names the status) until one is accepted."""
    async with open_fake_binance_ws(rate_per_s=None, refuse_connections=2) as fake:
        feed = Feed()
        async with trio.open_nursery() as nursery:
            handle: WsHandle = await nursery.start(
                partial(
                    run_ws_connection,
                    trade_url(fake),
                    on_frame=feed.on_frame,
                    on_event=feed.on_event,
                    backoff=RestartPolicy(initial_s=0.01, jitter=0.0),
                )
            )
            with trio.fail_after(10):
                await handle.wait_connected()
            nursery.cancel_scope.cancel()
    assert [e.kind for e in feed.ws_events] == ["reconnecting", "reconnecting", "connected"]
    assert "HTTP 503" in feed.ws_events[0].reason
    assert handle.stats.connect_failures == 2 and fake.refused == 2


async def test_gives_up_after_max_failures() -> None:
    """A refused TCP port raises ConnectFailed (bare) after max_failures attempts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nobody listens
    feed = Feed()
    with trio.fail_after(10), pytest.raises(ConnectFailed, match=f"ws://127.0.0.1:{port}/stream"):
        await run_ws_connection(
            f"ws://127.0.0.1:{port}/stream",
            on_frame=feed.on_frame,
            on_event=feed.on_event,
            backoff=RestartPolicy(initial_s=0.01),
            max_failures=3,
        )
    assert [e.kind for e in feed.ws_events] == ["reconnecting", "reconnecting"]


# --- policies and arguments ----------------------------------------------------------------


async def test_reconnect_jitter_comes_from_rand(autojump_clock: trio.abc.Clock) -> None:
    """The reconnect delay is the policy's delay jittered by the given rand(), so a seed reproduces it."""
    policy = RestartPolicy(initial_s=2.0, jitter=0.5)
    expected = backoff_delay(policy, 0, random.Random(7).random())
    assert 1.0 <= expected < 2.0
    async with open_fake_binance_ws(rate_per_s=10, drop_after=1) as fake:
        feed = Feed()
        await run_for(fake, 3.0, trade_url(fake), feed, backoff=policy, rand=random.Random(7).random)
    assert feed.ws_events[2].delay_s == expected
    assert fake.opened_at[1] == T(fake.t0 + 0.1 + expected)
    assert RECONNECT_POLICY.healthy_s == 10.0 and RECONNECT_POLICY.jitter > 0


async def test_arguments_are_checked() -> None:
    """Bad URLs and inconsistent intervals fail before any connection, with the value named."""
    with pytest.raises(ValueError, match="'http://x' is not a WebSocket URL"):
        await run_ws_connection("http://x", on_frame=print)
    with pytest.raises(ValueError, match="watchdog_s must be > 0, got 0"):
        await run_ws_connection("ws://x", on_frame=print, watchdog_s=0)
    with pytest.raises(ValueError, match=r"overlap_s \(5.0\) must be shorter than rotate_after_s \(5.0\)"):
        await run_ws_connection("ws://x", on_frame=print, rotate_after_s=5.0)


async def test_send_without_connection_raises(autojump_clock: trio.abc.Clock) -> None:
    """handle.send before any connection is open raises Disconnected."""
    async with open_fake_binance_ws(refuse_connections=100) as fake, trio.open_nursery() as nursery:
        handle: WsHandle = await nursery.start(
            partial(run_ws_connection, trade_url(fake), on_frame=print, connect=fake.connect)
        )
        assert not handle.connected
        with pytest.raises(Disconnected, match="no open connection"):
            await handle.send("x")
        nursery.cancel_scope.cancel()


async def test_fake_klines_and_depth_parse_into_tape_candles(autojump_clock: trio.abc.Clock) -> None:
    """Fake kline/depth streams parse into closed Candles equal to the tape's bars and chained U/u diffs."""
    async with open_fake_binance_ws(rate_per_s=10) as fake:
        feed = Feed()
        url = bws.build_stream_url([bws.kline_stream("ETHBTC", "1m"), bws.depth_stream("ETHBTC", 100)], "ws://fake")
        await run_for(fake, 130.0, url, feed)
    closed = [c for e in feed.events if isinstance(e, CandlesClosed) for c in e.candles]
    assert [c.ts for c in closed] == [(TAPE_EPOCH_MS + k * 60_000) * 1_000_000 for k in (0, 1)]
    tape = candle_at("ETHBTC", 60_000, TAPE_EPOCH_MS + 60_000)
    assert tape is not None
    assert closed[1].open == float(tape.open) and closed[1].close == float(tape.close)
    assert (closed[1].volume, closed[1].quote_volume) == (float(tape.volume), float(tape.quote_volume))
    assert closed[1].trades == 600
    assert sum(events == [] for events in feed.per_frame) == 130  # klines of bars still open: no event
    diffs = [e for e in feed.events if isinstance(e, BookReceived)]
    assert len(diffs) == 260
    assert all(b.first_seq == cast(int, a.last_seq) + 1 for a, b in itertools.pairwise(diffs))


async def test_replay_mode_sends_the_recording() -> None:
    """Over loopback, the fake replays BINANCE.ws.1.0 byte for byte: 265 frames, 2 aggTrades, 84 unknown."""
    async with open_fake_binance_ws(replay=RECORDING) as fake:
        frames: list[str | bytes] = []
        async with trio.open_nursery() as nursery:
            handle: WsHandle = await nursery.start(
                partial(run_ws_connection, f"{fake.url}/stream", on_frame=lambda f, _: frames.append(f))
            )
            with trio.fail_after(10):
                while handle.stats.messages < 265:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert frames == recorded_frames(RECORDING)
    events = [e for f in frames for e in bws.parse_frame(f, 0)]
    assert sum(isinstance(e, TradesReceived) for e in events) == 2
    assert sum(isinstance(e, Unrecognised) for e in events) == 84
