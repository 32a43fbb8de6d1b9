"""A fake Binance spot WebSocket server: real WebSocket on 127.0.0.1, or in memory.

Speaks the combined-stream format at ``/stream?streams=...`` and raw frames at
``/ws`` and ``/ws/<stream>``, answers SUBSCRIBE / UNSUBSCRIBE /
LIST_SUBSCRIPTIONS like Binance (``{"result":null,"id":N}``, documented error
bodies), and pushes the deterministic tape of :mod:`tests.fake.tape`: trades
(``@trade``, ``@aggTrade``; one aggregate per trade, ``a == t``), klines (open
updates and the closed bar when the next one starts) and diff-depth events.

Market model: trade ``i`` happens at ``t0 + (i - first_id) / rate_per_s`` on
trio's clock. A connection streams every trade from the one due when it
subscribed, so a disconnected client misses exactly the trades in between
(to be filled over REST from the same tape). With ``rate_per_s=None`` it
sends as fast as the socket takes them, each connection starting at the
highest id sent so far.

Faults (for the first ``fault_connections`` connections; None = all):
``drop_after`` N frames close TCP without a close frame; ``silent_after``
stops sending but keeps answering pings; ``freeze_after`` also stops reading
(pings go unanswered); ``close_after`` closes gracefully with 1001;
``shutdown_after`` sends one ``serverShutdown`` notice and carries on. ``skip_ids``
never sends trades in ``[a, b)`` on any connection. ``refuse_connections``
rejects the first N handshakes with HTTP 503. ``max_control_per_s`` drops a
connection that sends more control messages per second (Binance: 5).
``replay`` sends the received frames of a recording file instead of the tape.

``connect`` is a :data:`dccd.transport.ws.Connector` over in-memory streams:
the same server logic with no sockets, so tests can run under
``autojump_clock`` and assert exact times.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import trio
import trio.testing
import trio_websocket

from dccd.domain.spans import SPAN_SECONDS
from dccd.errors import ConnectFailed
from tests.fake.tape import candle_at, depth_ids, trade_at

_RECEIVED_LINE = re.compile(r"^\d+(?:\.\d+)?: (.*)$")
_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"


def recorded_frames(path: str | Path) -> list[str]:
    """The received messages of a recorder file (``EPOCH: TEXT`` lines), in order."""
    out = []
    for line in Path(path).read_text().splitlines():
        m = _RECEIVED_LINE.match(line)
        if m:
            out.append(m.group(1))
    return out


def _bool(value: bool) -> str:
    return "true" if value else "false"


class _Stop(Exception):
    """The session ended on purpose (a fault fired)."""


class _ScopedNursery:
    """Lets trio-websocket start its reader task inside a scope we can cancel (freeze)."""

    def __init__(self, nursery: trio.Nursery, scope: trio.CancelScope) -> None:
        self._nursery, self._scope = nursery, scope

    def start_soon(self, fn: Any, *args: Any) -> None:
        async def run() -> None:
            with self._scope:
                await fn(*args)

        self._nursery.start_soon(run)


class FakeBinanceWs:
    """The server state; create it with :func:`open_fake_binance_ws`."""

    def __init__(
        self,
        *,
        rate_per_s: float | None = 10.0,
        first_id: int = 1,
        kline_every: int = 10,
        depth_every: int = 5,
        drop_after: int | None = None,
        silent_after: int | None = None,
        freeze_after: int | None = None,
        close_after: int | None = None,
        shutdown_after: int | None = None,
        fault_connections: int | None = 1,
        skip_ids: tuple[int, int] | None = None,
        refuse_connections: int = 0,
        max_control_per_s: int | None = 5,
        replay: str | Path | None = None,
    ) -> None:
        self.rate_per_s, self.first_id = rate_per_s, first_id
        self.kline_every, self.depth_every = kline_every, depth_every
        self.faults = {"drop": drop_after, "silent": silent_after, "freeze": freeze_after, "close": close_after}
        self.faults["shutdown"] = shutdown_after
        self.fault_connections, self.skip_ids = fault_connections, skip_ids
        self.max_control_per_s = max_control_per_s
        self.replay = recorded_frames(replay) if replay is not None else None
        self.url = ""  # ws://127.0.0.1:PORT once started
        self.connections = 0  # accepted handshakes
        self.refused = 0
        self.refuse_left = refuse_connections  # handshakes still to refuse (tests may raise it later)
        self.paths: list[str] = []  # request path of each accepted connection
        self.opened_at: list[float] = []  # trio time of each accepted connection
        self.sent = 0  # data frames over all connections
        self.received: list[tuple[float, int, str]] = []  # (trio time, connection index, text)
        self.close_codes: dict[int, int | None] = {}  # connection index -> close code the server saw
        self._head = first_id
        self.t0 = 0.0  # trio time of the server start: trade first_id is due then
        self._nursery: trio.Nursery | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.t0 = trio.current_time()
        listeners = await nursery.start(trio.serve_tcp, self._handle_stream, 0)
        port = listeners[0].socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"

    @asynccontextmanager
    async def connect(self, url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """In-memory client connection to this server (a ``Connector``).

        Raises:
            ConnectFailed: a refused handshake (``refuse_connections``).
        """
        assert self._nursery is not None
        if self.refuse_left:
            self.refuse_left -= 1
            self.refused += 1
            raise ConnectFailed(f"{url}: HTTP 503 (fake)")
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._handle_stream, server)
        parts = urlsplit(url)
        resource = parts.path + (f"?{parts.query}" if parts.query else "")
        ws = await trio_websocket.wrap_client_stream(
            self._nursery,
            client,  # type: ignore[arg-type]
            "127.0.0.1",
            resource,
        )
        try:
            yield ws
        finally:
            with trio.move_on_after(2.0):  # a frozen server never answers the close frame
                await ws.aclose()

    async def _handle_stream(self, stream: trio.abc.Stream) -> None:
        reader_scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(
                cast(trio.Nursery, _ScopedNursery(nursery, reader_scope)), stream
            )
            if self.refuse_left:
                self.refuse_left -= 1
                self.refused += 1
                await request.reject(503, body=b"fake: refused")
                return
            parsed = _parse_path(request.path)
            if parsed is None:
                await request.reject(404, body=b"fake: unknown path")
                return
            ws = await request.accept()
            index = self.connections
            self.connections += 1
            self.paths.append(request.path)
            self.opened_at.append(trio.current_time())
            faulty = self.fault_connections is None or index < self.fault_connections
            session = _Session(self, ws, stream, index, parsed[0], parsed[1], faulty, reader_scope)
            try:
                await session.run()
            finally:
                self.close_codes[index] = ws.closed.code if ws.closed else None
                nursery.cancel_scope.cancel()
                await ws.aclose()

    # --- the tape ------------------------------------------------------------------------

    def start_id(self) -> int:
        """First trade id a connection subscribing now will get."""
        if self.rate_per_s is None:
            return self._head
        # The epsilon keeps float noise in trio time from skipping a trade that is due now.
        return self.first_id + max(0, math.ceil((trio.current_time() - self.t0) * self.rate_per_s - 1e-9))

    def due_at(self, trade_id: int) -> float:
        """Trio time at which trade ``trade_id`` happens (rate mode)."""
        assert self.rate_per_s is not None
        return self.t0 + (trade_id - self.first_id) / self.rate_per_s

    def sent_up_to(self, trade_id: int) -> None:
        self._head = max(self._head, trade_id + 1)

    def skipped(self, trade_id: int) -> bool:
        return self.skip_ids is not None and self.skip_ids[0] <= trade_id < self.skip_ids[1]


def _parse_path(path: str) -> tuple[bool, list[str]] | None:
    """``(combined, streams)`` of a request path, None when Binance would 404."""
    parts = urlsplit(path)
    if parts.path == "/stream":
        streams = parse_qs(parts.query).get("streams", [""])[0]
        return True, [s for s in streams.split("/") if s]
    if parts.path == "/ws":
        return False, []
    if parts.path.startswith("/ws/"):
        return False, [s for s in parts.path[4:].split("/") if s]
    return None


def _split_stream(name: str) -> tuple[str, str] | None:
    """``('BTCUSDT', kind)`` for streams the fake serves: trade, aggTrade, kline_<iv>, depth."""
    market, _, kind = name.partition("@")
    if kind in ("trade", "aggTrade") or kind.startswith("depth"):
        return market.upper(), kind.split("@")[0]
    if kind.startswith("kline_") and kind[6:] in SPAN_SECONDS and kind[6:] not in ("1w", "1M"):
        return market.upper(), kind
    return None


class _Session:
    """One accepted connection: a control-message loop and a push loop."""

    def __init__(
        self,
        fake: FakeBinanceWs,
        ws: trio_websocket.WebSocketConnection,
        stream: trio.abc.Stream,
        index: int,
        combined: bool,
        streams: list[str],
        faulty: bool,
        reader_scope: trio.CancelScope,
    ) -> None:
        self.fake, self.ws, self.stream, self.index = fake, ws, stream, index
        self.combined, self.faulty, self.reader_scope = combined, faulty, reader_scope
        self.streams: list[str] = list(dict.fromkeys(streams))
        self.changed = trio.Event()
        self.limits = {k: v for k, v in fake.faults.items() if v is not None} if faulty else {}
        self.sent = 0
        self.frozen = False
        self.bar_open: dict[tuple[str, str], int] = {}  # (market, kline kind) -> open ms of the bar in progress

    def _due(self, fault: str) -> bool:
        limit = self.limits.get(fault)
        return limit is not None and self.sent >= limit

    async def _faults(self) -> None:
        if self._due("shutdown"):
            del self.limits["shutdown"]  # once per connection
            notice = f'{{"e":"serverShutdown","E":{int(trio.current_time() * 1000)}}}'
            await self.ws.send_message(self._wrap("!serverShutdown", notice))
        if self._due("drop"):
            await self.stream.aclose()  # TCP closes with no WebSocket close frame: the client sees 1006
            raise _Stop
        if self._due("close"):
            await self.ws.aclose(1001, "going away")
            raise _Stop
        if self._due("freeze"):
            self.frozen = True
            self.reader_scope.cancel()  # nobody reads: pings stay unanswered
            await trio.sleep_forever()
        if self._due("silent"):
            await trio.sleep_forever()

    async def run(self) -> None:
        """Serve until a fault fires or either side closes."""
        async with trio.open_nursery() as nursery:

            async def until_over(loop: Any) -> None:
                try:
                    await loop()
                except (_Stop, trio_websocket.ConnectionClosed):
                    if self.frozen:  # a hung server: keep the socket open, do nothing
                        await trio.sleep_forever()
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_over, self._control_loop)
            await until_over(self._push_loop)

    async def send(self, frame: str) -> None:
        if self.limits:
            await self._faults()
        await self.ws.send_message(frame)
        self.sent += 1
        self.fake.sent += 1

    # --- control messages ----------------------------------------------------------------

    async def _control_loop(self) -> None:
        window: deque[float] = deque()
        limit = self.fake.max_control_per_s
        while True:
            text = await self.ws.get_message()
            now = trio.current_time()
            self.fake.received.append((now, self.index, text if isinstance(text, str) else text.decode()))
            if limit is not None:
                window.append(now)
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) > limit:  # Binance disconnects a client over its message rate
                    await self.stream.aclose()
                    raise _Stop
            reply = self._reply(text)
            if reply is not None:
                await self.ws.send_message(reply)

    def _reply(self, text: str | bytes) -> str:
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return '{"error":{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}}'
        rid = req.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
            return '{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"}}'
        method, params = req.get("method"), req.get("params") or []
        if method == "SUBSCRIBE":
            self.streams.extend(s for s in params if s not in self.streams)
            self.changed.set()
            return json.dumps({"result": None, "id": rid}, separators=(",", ":"))
        if method == "UNSUBSCRIBE":
            self.streams = [s for s in self.streams if s not in params]
            return json.dumps({"result": None, "id": rid}, separators=(",", ":"))
        if method == "LIST_SUBSCRIPTIONS":
            return json.dumps({"result": self.streams, "id": rid}, separators=(",", ":"))
        msg = f"Invalid request: unknown variant `{method}`, expected one of {_METHODS} at line 1 column 28"
        return json.dumps({"error": {"code": 2, "msg": msg}, "id": rid}, separators=(",", ":"))

    # --- data ----------------------------------------------------------------------------

    def _markets(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for name in self.streams:
            split = _split_stream(name)
            if split is not None:
                out.setdefault(split[0], []).append((name, split[1]))
        return out

    async def _push_loop(self) -> None:
        fake = self.fake
        if fake.replay is not None:
            for frame in fake.replay:
                await self.send(frame)
            await trio.sleep_forever()
        next_id = None
        while True:
            markets = self._markets()
            if not markets:
                await self.changed.wait()
                self.changed = trio.Event()
                continue
            if next_id is None:
                next_id = fake.start_id()
            if fake.rate_per_s is not None:
                await trio.sleep_until(fake.due_at(next_id))
            if not fake.skipped(next_id):
                for market, subs in markets.items():
                    for name, kind in subs:
                        for frame in self._frames(market, name, kind, next_id):
                            await self.send(frame)
                fake.sent_up_to(next_id)
            next_id += 1

    def _wrap(self, name: str, data: str) -> str:
        return f'{{"stream":"{name}","data":{data}}}' if self.combined else data

    def _frames(self, market: str, name: str, kind: str, trade_id: int) -> list[str]:
        t = trade_at(market, trade_id)
        if kind == "trade":
            data = (
                f'{{"e":"trade","E":{t.time_ms},"s":"{market}","t":{t.id},"p":"{t.price}","q":"{t.qty}",'
                f'"T":{t.time_ms},"m":{_bool(t.is_buyer_maker)},"M":true}}'
            )
            return [self._wrap(name, data)]
        if kind == "aggTrade":
            data = (
                f'{{"e":"aggTrade","E":{t.time_ms},"s":"{market}","a":{t.id},"p":"{t.price}","q":"{t.qty}",'
                f'"f":{t.id},"l":{t.id},"T":{t.time_ms},"m":{_bool(t.is_buyer_maker)},"M":true}}'
            )
            return [self._wrap(name, data)]
        if kind == "depth":
            if trade_id % self.fake.depth_every:
                return []
            first, last = depth_ids(trade_id, self.fake.depth_every)
            data = (
                f'{{"e":"depthUpdate","E":{t.time_ms},"s":"{market}","U":{first},"u":{last},'
                f'"b":[["{t.price}","{t.qty}"]],"a":[["{t.price}","0.00000000"]]}}'
            )
            return [self._wrap(name, data)]
        return self._kline_frames(market, name, kind[6:], t.time_ms, trade_id)

    def _kline_frames(self, market: str, name: str, interval: str, time_ms: int, trade_id: int) -> list[str]:
        step = SPAN_SECONDS[interval] * 1000
        bar = time_ms // step * step
        out = []
        prev = self.bar_open.get((market, interval))
        if prev is not None and prev != bar:
            out.append(self._kline(market, name, interval, step, prev, None, closed=True, event_ms=time_ms))
        self.bar_open[(market, interval)] = bar
        if trade_id % self.fake.kline_every == 0:
            out.append(self._kline(market, name, interval, step, bar, trade_id, closed=False, event_ms=time_ms))
        return out

    def _kline(
        self,
        market: str,
        name: str,
        interval: str,
        step: int,
        bar: int,
        last_id: int | None,
        *,
        closed: bool,
        event_ms: int,
    ) -> str:
        c = candle_at(market, step, bar, last_id)
        assert c is not None
        k = (
            f'{{"t":{c.open_ms},"T":{c.close_ms},"s":"{market}","i":"{interval}","f":{c.first_id},"L":{c.last_id},'
            f'"o":"{c.open}","c":"{c.close}","h":"{c.high}","l":"{c.low}","v":"{c.volume}","n":{c.trades},'
            f'"x":{_bool(closed)},"q":"{c.quote_volume}","V":"0","Q":"0","B":"0"}}'
        )
        return self._wrap(name, f'{{"e":"kline","E":{event_ms},"s":"{market}","k":{k}}}')


@asynccontextmanager
async def open_fake_binance_ws(**options: Any) -> AsyncIterator[FakeBinanceWs]:
    """Run a :class:`FakeBinanceWs` (keyword options as its constructor) for the block.

    ``fake.url`` is its loopback origin (``ws://127.0.0.1:PORT``); ``fake.connect``
    reaches the same server in memory.
    """
    fake = FakeBinanceWs(**options)
    async with trio.open_nursery() as nursery:
        await fake._start(nursery)
        yield fake
        nursery.cancel_scope.cancel()
