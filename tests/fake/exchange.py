"""Shared machinery of the fake exchanges (Coinbase, Kraken, Bitfinex, ...): real HTTP and WS on 127.0.0.1.

An exchange fake subclasses :class:`FakeRest` (answer ``route(path, params,
now_ms)`` in the exchange's wire format) and :class:`FakeWs` (greeting,
replies to control messages, frames per tape trade). This module supplies
what they share, following :mod:`tests.fake.binance`:

- REST: request numbering, injected faults by request number (status codes
  with the exchange's error body, 429 with ``Retry-After``, exact error
  bodies such as Kraken's HTTP-200 errors, malformed answers, delays), a
  request log, a Litestar catch-all app served by hypercorn inside the
  caller's Trio run, and an in-memory httpx transport for ``autojump_clock``.
- WS: a trio-websocket server on an ephemeral port (or in memory through
  :meth:`FakeWs.connect`), one control loop and one push loop per
  connection, the tape pushed at ``rate_per_s`` trades per second of trio
  time (or as fast as possible), faults (drop TCP / close after N frames,
  skipped trade ids, refused handshakes, a deadline to subscribe) and logs.
- :func:`synthetic_bar`: deterministic OHLCV of any bar, so candle endpoints
  answer in O(1) per row.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import trio
import trio.testing
import trio_websocket
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from litestar import Litestar, Response, get
from litestar import Request as LitestarRequest

from dccd.errors import ConnectFailed
from tests.fake.tape import TAPE_EPOCH_MS, TAPE_STEP_MS

# --- REST ---------------------------------------------------------------------------------------


@dataclass
class RestFaults:
    """Injected misbehaviour keyed by request number (1-based); mutable while serving."""

    errors: dict[int, int] = field(default_factory=dict)  # n -> status, with the exchange's error body
    too_many: dict[int, str] = field(default_factory=dict)  # n -> 429 with this Retry-After
    bodies: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # n -> exactly this (status, body)
    malformed: dict[int, str] = field(default_factory=dict)  # n -> "truncated" | "empty" | "html"
    delay_s: float = 0.0


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the fake saw it (``t`` on its clock, seconds)."""

    n: int
    t: float
    method: str
    path: str
    params: dict[str, str]
    status: int


@dataclass
class Reply:
    """An answer before a front-end sends it."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


class ApiError(Exception):
    """An exchange error answer (status and exact body)."""

    def __init__(self, status: int, body: bytes | str | list[Any] | dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()


def dumps(value: Any) -> bytes:
    """Compact JSON, as exchanges send it."""
    return json.dumps(value, separators=(",", ":")).encode()


class FakeRest:
    """Base of a fake REST exchange; subclasses implement :meth:`route` and the error bodies."""

    log_name = "tests.fake"

    def __init__(self, *, clock: Callable[[], float] = time.time, faults: RestFaults | None = None) -> None:
        self.clock = clock
        self.faults = faults or RestFaults()
        self.url = ""
        self.requests: list[LoggedRequest] = []
        self._n = 0

    # --- exchange hooks ---

    def route(self, path: str, params: Mapping[str, str], now_ms: int) -> Reply:
        """The exchange's answer to a GET (raise :class:`ApiError` for error answers)."""
        raise NotImplementedError

    def error_body(self, status: int) -> bytes:
        """The exchange's body for an injected ``status`` (5xx, 429)."""
        return dumps({"message": f"HTTP {status}"})

    # --- serving ---

    def count(self, path: str | None = None) -> int:
        """Requests received (to paths starting with ``path`` if given)."""
        return sum(1 for r in self.requests if path is None or r.path.startswith(path))

    def handle(self, method: str, path: str, query: Sequence[tuple[str, str]]) -> Reply:
        """Answer one request exactly as the fake exchange would (no I/O)."""
        self._n += 1
        n, now, params = self._n, self.clock(), dict(query)
        reply = self._answer(n, now, method, path, params)
        self.requests.append(LoggedRequest(n, now, method, path, params, reply.status))
        return reply

    def _answer(self, n: int, now: float, method: str, path: str, params: dict[str, str]) -> Reply:
        f = self.faults
        if n in f.bodies:
            status, body = f.bodies[n]
            return Reply(status, body)
        if n in f.too_many:
            return Reply(429, self.error_body(429), {"Retry-After": f.too_many[n]})
        if n in f.errors:
            return Reply(f.errors[n], self.error_body(f.errors[n]))
        if method != "GET":
            return Reply(405, b"", media_type="text/plain")
        try:
            reply = self.route(path, params, int(now * 1000))
        except ApiError as err:
            return Reply(err.status, err.body)
        kind = f.malformed.get(n)
        if kind == "truncated":
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        if kind == "empty":
            return Reply(200, b"")
        if kind == "html":
            return Reply(200, b"<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        if kind is not None:
            raise ValueError(f"unknown malformation {kind!r} (truncated, empty, html)")
        return reply

    def mock_transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake without sockets (sleeps on Trio's clock)."""

        async def handler(request: httpx.Request) -> httpx.Response:
            query = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
            reply = self.handle(request.method, request.url.path, query)
            if self.faults.delay_s:
                await trio.sleep(self.faults.delay_s)
            headers = {"content-type": reply.media_type, **reply.headers}
            return httpx.Response(reply.status, headers=headers, content=reply.body)

        return httpx.MockTransport(handler)

    def app(self) -> Litestar:
        """A Litestar app routing every GET path to :meth:`handle`."""

        @get(path=["/", "/{path:path}"])
        async def rest(request: LitestarRequest[Any, Any, Any]) -> Response[bytes]:
            query = parse_qsl(request.scope["query_string"].decode("ascii"), keep_blank_values=True)
            reply = self.handle(request.method, request.scope["path"], query)
            if self.faults.delay_s:
                await trio.sleep(self.faults.delay_s)
            return Response(reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type)

        return Litestar([rest], logging_config=None, openapi_config=None)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on an ephemeral 127.0.0.1 port until cancelled; ``started(url)``."""
        cfg = HypercornConfig()
        cfg.bind = ["127.0.0.1:0"]
        cfg.errorlog = logging.getLogger(self.log_name)
        cfg.accesslog = None
        cfg.graceful_timeout = 0.1
        async with trio.open_nursery() as nursery:
            app: Any = self.app()
            binds = await nursery.start(lambda task_status: hypercorn_serve(app, cfg, task_status=task_status))
            self.url = binds[0]
            task_status.started(self.url)


@asynccontextmanager
async def open_rest(fake: FakeRest) -> AsyncIterator[Any]:
    """Serve ``fake`` on 127.0.0.1 for the block; ``fake.url`` is its origin."""
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()


# --- synthetic bars -----------------------------------------------------------------------------


def _mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    return z ^ (z >> 31)


def synthetic_bar(key: str, open_ms: int) -> tuple[int, int, int, int, int, int]:
    """(open, high, low, close, volume, trades) in integer units (price cents, volume 1e-5) of one bar."""
    h = _mix(zlib.crc32(key.encode()) * 1_000_003 + open_ms)
    base = 2_000_000 + zlib.crc32(key.encode()) % 5_000_000
    o, c = base + h % 10_000, base + (h >> 16) % 10_000
    hi = max(o, c) + (h >> 32) % 500
    lo = min(o, c) - (h >> 40) % 500
    return o, hi, lo, c, 1 + (h >> 8) % 50_000_000, 1 + (h >> 20) % 900


def dec(value: int, scale: int) -> str:
    """``value * 10**-scale`` as a plain decimal string."""
    q, r = divmod(value, 10**scale)
    return f"{q}.{r:0{scale}d}" if scale else str(q)


def cents(price: str) -> int:
    """A decimal price string in integer cents (``'6971.62000000'`` -> 697162)."""
    whole, _, frac = price.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def tape_head(now_ms: int) -> int:
    """Highest tape id traded at or before ``now_ms`` (-1 before the tape starts)."""
    return (now_ms - TAPE_EPOCH_MS) // TAPE_STEP_MS


# --- WebSocket ----------------------------------------------------------------------------------


@dataclass
class WsFaults:
    """Connection faults, applied to the first ``fault_connections`` connections (None = all)."""

    drop_after: int | None = None  # data frames, then TCP closes without a close frame (client sees 1006)
    close_after: int | None = None  # data frames, then a graceful close 1001
    fault_connections: int | None = 1
    skip_ids: tuple[int, int] | None = None  # tape ids [a, b) never pushed on any connection
    refuse_connections: int = 0  # handshakes rejected with HTTP 503
    subscribe_within_s: float | None = None  # close a connection that has not subscribed by then


class _Stop(Exception):
    """A session ended on purpose (a fault fired)."""


class WsSession:
    """One accepted connection: the fake's per-connection state (subscriptions live in ``subs``)."""

    def __init__(
        self, fake: FakeWs, ws: trio_websocket.WebSocketConnection, stream: trio.abc.Stream, index: int
    ) -> None:
        self.fake, self.ws, self.stream, self.index = fake, ws, stream, index
        self.subs: dict[Any, Any] = {}  # exchange-defined: what this connection subscribed to
        self.state: dict[str, Any] = {}  # exchange-defined per-connection state (chanIds, open bars, ...)
        self.changed = trio.Event()
        self.sent = 0
        limited = fake.faults.fault_connections is None or index < fake.faults.fault_connections
        self.faulty = limited and (fake.faults.drop_after is not None or fake.faults.close_after is not None)

    async def send(self, frame: str) -> None:
        """Send one frame, firing the drop/close faults when due."""
        f = self.fake.faults
        if self.faulty and f.drop_after is not None and self.sent >= f.drop_after:
            await self.stream.aclose()
            raise _Stop
        if self.faulty and f.close_after is not None and self.sent >= f.close_after:
            await self.ws.aclose(1001, "going away")
            raise _Stop
        await self.ws.send_message(frame)
        self.sent += 1
        self.fake.sent += 1


class FakeWs:
    """Base of a fake WebSocket exchange; subclasses implement the hooks below."""

    def __init__(self, *, rate_per_s: float | None = 10.0, first_id: int = 1, faults: WsFaults | None = None) -> None:
        self.rate_per_s, self.first_id = rate_per_s, first_id
        self.faults = faults or WsFaults()
        self.refuse_left = self.faults.refuse_connections
        self.url = ""
        self.connections = 0
        self.refused = 0
        self.paths: list[str] = []
        self.sent = 0
        self.received: list[tuple[float, int, str]] = []
        self.close_codes: dict[int, int | None] = {}
        self.t0 = 0.0
        self._head = first_id
        self._nursery: trio.Nursery | None = None

    # --- exchange hooks ---

    def accepts(self, path: str) -> bool:
        """Whether a handshake to ``path`` is accepted (else 404)."""
        return True

    def greeting(self, session: WsSession) -> list[str]:
        """Frames sent right after the handshake."""
        return []

    def reply(self, session: WsSession, text: str) -> list[str]:
        """Frames answering one client message (updates ``session.subs``)."""
        return []

    def frames(self, session: WsSession, trade_id: int) -> list[str]:
        """Data frames of tape trade ``trade_id`` for this session's subscriptions."""
        return []

    # --- the tape ---

    def start_id(self) -> int:
        """First tape id a connection subscribing now receives."""
        if self.rate_per_s is None:
            return self._head
        return self.first_id + max(0, math.ceil((trio.current_time() - self.t0) * self.rate_per_s - 1e-9))

    def skipped(self, trade_id: int) -> bool:
        """True for ids the fake never pushes (``skip_ids``)."""
        skip = self.faults.skip_ids
        return skip is not None and skip[0] <= trade_id < skip[1]

    # --- lifecycle ---

    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.t0 = trio.current_time()
        listeners = await nursery.start(trio.serve_tcp, self._handle_stream, 0)
        self.url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    @asynccontextmanager
    async def connect(self, url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """In-memory client connection to this server (a ``dccd.transport.ws.Connector``)."""
        assert self._nursery is not None
        if self.refuse_left:
            self.refuse_left -= 1
            self.refused += 1
            raise ConnectFailed(f"{url}: HTTP 503 (fake)")
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._handle_stream, server)
        parts = urlsplit(url)
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        ws = await trio_websocket.wrap_client_stream(self._nursery, client, "127.0.0.1", resource)  # type: ignore[arg-type]
        try:
            yield ws
        finally:
            with trio.move_on_after(2.0):
                await ws.aclose()

    async def _handle_stream(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, stream)
            if self.refuse_left:
                self.refuse_left -= 1
                self.refused += 1
                await request.reject(503, body=b"fake: refused")
                return
            if not self.accepts(urlsplit(request.path).path):
                await request.reject(404, body=b"fake: unknown path")
                return
            ws = await request.accept()
            index = self.connections
            self.connections += 1
            self.paths.append(request.path)
            session = WsSession(self, ws, stream, index)
            try:
                await self._run(session)
            finally:
                self.close_codes[index] = ws.closed.code if ws.closed else None
                nursery.cancel_scope.cancel()
                await ws.aclose()

    async def _run(self, session: WsSession) -> None:
        async with trio.open_nursery() as nursery:

            async def until_over(loop: Callable[[WsSession], Any]) -> None:
                with suppress(_Stop, trio_websocket.ConnectionClosed):
                    await loop(session)
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_over, self._control_loop)
            if self.faults.subscribe_within_s is not None:
                nursery.start_soon(until_over, self._subscribe_deadline)
            await until_over(self._push_loop)

    async def _subscribe_deadline(self, session: WsSession) -> None:
        assert self.faults.subscribe_within_s is not None
        await trio.sleep(self.faults.subscribe_within_s)
        if not session.subs:
            await session.ws.aclose(1000, "no subscription in time")
            raise _Stop
        await trio.sleep_forever()

    async def _control_loop(self, session: WsSession) -> None:
        for frame in self.greeting(session):
            await session.ws.send_message(frame)
        while True:
            message = await session.ws.get_message()
            text = message if isinstance(message, str) else message.decode()
            self.received.append((trio.current_time(), session.index, text))
            for frame in self.reply(session, text):
                await session.ws.send_message(frame)
            session.changed.set()

    async def _push_loop(self, session: WsSession) -> None:
        next_id = None
        while True:
            if not session.subs:
                await session.changed.wait()
                session.changed = trio.Event()
                continue
            if next_id is None:
                next_id = self.start_id()
            if self.rate_per_s is not None:
                await trio.sleep_until(self.t0 + (next_id - self.first_id) / self.rate_per_s)
            if not self.skipped(next_id):
                for frame in self.frames(session, next_id):
                    await session.send(frame)
                self._head = max(self._head, next_id + 1)
            next_id += 1


@asynccontextmanager
async def open_ws(fake: FakeWs) -> AsyncIterator[Any]:
    """Run ``fake`` for the block; ``fake.url`` is its loopback origin, ``fake.connect`` the in-memory route."""
    async with trio.open_nursery() as nursery:
        await fake._start(nursery)
        yield fake
        nursery.cancel_scope.cancel()


def loads(text: str) -> Any:
    """Parse a client message; None if it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None
