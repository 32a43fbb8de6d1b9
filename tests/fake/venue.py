"""Shared machinery of the fake Bybit, OKX and BitMEX exchanges (REST and WebSocket on 127.0.0.1).

:class:`FakeRest` is the REST front: a Litestar app served by hypercorn inside
the caller's Trio run (or an httpx ``MockTransport`` for exact-time tests), a
request log, and faults injected by request number (1-based)::

    faults = Faults(bodies={2: (200, b'{"retCode":10006,...}')}, too_many={3: "1"}, malformed={4: "truncated"})

Subclasses declare ``routes`` (path -> handler of the query) and how the
exchange words an error (:meth:`FakeRest.error_body`).

:class:`FakeWs` is the WebSocket front (trio-websocket on a TCP listener):
each connection gets a control loop (subscribe, ping) and a push loop that
emits, step after step, the frames of every subscribed topic. Subclasses
implement :meth:`FakeWs.reply` and :meth:`FakeWs.frames`. ``drop_after`` N
frames closes TCP without a close frame (on the first ``fault_connections``).

The synthetic data helpers (:func:`bar`, :func:`funding_rate`, :func:`open_interest`)
are pure functions of (market, time), exact decimal strings, so a test can
compare what the adapter parsed with what the fake meant to send.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import trio
import trio_websocket
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from litestar import Litestar, Response, get
from litestar import Request as LitestarRequest
from litestar.handlers import BaseRouteHandler

from tests.fake.binance_data import dec8, mix

UNIT = 10**8


# --- synthetic data ----------------------------------------------------------------------------


def _h(key: str, x: int) -> int:
    return mix(x ^ (hash_key(key) << 1))


def hash_key(key: str) -> int:
    """A stable 32-bit hash of a string (Python's ``hash`` is salted per process)."""
    h = 2166136261
    for ch in key.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


@dataclass(frozen=True)
class Bar:
    """One synthetic bar: 8-decimal strings; ``quote`` = volume x close, exact."""

    open_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote: str
    trades: int


def bar(key: str, open_ms: int, base_units: int = 30_000 * UNIT) -> Bar:
    """The bar of market ``key`` opening at ``open_ms`` (prices within 1% of ``base_units``)."""
    h = _h(key, open_ms)
    step = max(1, base_units // 10_000)
    o = base_units + (h % 100 - 50) * step
    c = base_units + ((h >> 8) % 100 - 50) * step
    hi = max(o, c) + ((h >> 16) % 10) * step
    lo = min(o, c) - ((h >> 24) % 10) * step
    vol = 1 + (h >> 32) % (50 * UNIT)
    quote = vol * c // UNIT
    return Bar(open_ms, dec8(o), dec8(hi), dec8(lo), dec8(c), dec8(vol), dec8(quote), 1 + (h >> 40) % 900)


def signed_dec8(units: int) -> str:
    """``units * 1e-8`` with a sign (``-123`` -> ``'-0.00000123'``)."""
    return ("-" + dec8(-units)) if units < 0 else dec8(units)


def rate(key: str, ts_ms: int) -> str:
    """A funding rate of market ``key`` at ``ts_ms``: within +-0.0005, 8 decimals."""
    return signed_dec8(_h(key + "/f", ts_ms) % 100_001 - 50_000)


def open_interest(key: str, ts_ms: int) -> tuple[str, str]:
    """(open interest in base units, its value in quote units) of ``key`` at ``ts_ms``."""
    units = 1_000 * UNIT + _h(key + "/oi", ts_ms) % (9_000 * UNIT)
    return dec8(units), dec8(units * 30_000)


# --- REST --------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Injected misbehaviour, keyed by request number (1-based); mutable while serving."""

    errors: dict[int, int] = field(default_factory=dict)  # n -> HTTP status with the exchange's error body
    too_many: dict[int, str] = field(default_factory=dict)  # n -> 429 with this Retry-After
    bodies: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # n -> this exact (status, body)
    malformed: dict[int, str] = field(default_factory=dict)  # n -> "truncated" | "empty" | "html"
    delay_s: float = 0.0


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the fake saw it."""

    n: int
    method: str
    path: str
    params: dict[str, str]
    status: int


class ApiError(Exception):
    """An error answer of the exchange: HTTP ``status`` with ``body`` in the exchange's words."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body.decode())
        self.status, self.body = status, body


Route = Callable[[Mapping[str, str], int], bytes]


class FakeRest:
    """REST side of a fake exchange; subclasses fill :attr:`routes` and :meth:`error_body`."""

    name = "fake"

    def __init__(self, *, clock: Callable[[], float] = time.time, faults: Faults | None = None) -> None:
        self.clock = clock
        self.faults = faults or Faults()
        self.url = ""
        self.requests: list[LoggedRequest] = []
        self.routes: dict[str, Route] = {}

    def error_body(self, status: int, message: str) -> bytes:
        """The exchange's error body for ``message`` (subclasses override)."""
        return json.dumps({"error": message}).encode()

    def count(self, path: str | None = None) -> int:
        """Requests received (to ``path`` if given)."""
        return sum(1 for r in self.requests if path is None or r.path == path)

    def handle(self, method: str, path: str, query: Sequence[tuple[str, str]]) -> tuple[int, bytes, dict[str, str]]:
        """Answer one request: (status, body, headers), faults first."""
        n = len(self.requests) + 1
        params = dict(query)
        status, body, headers = self._answer(n, method, path, params)
        self.requests.append(LoggedRequest(n, method, path, params, status))
        return status, body, headers

    def _answer(self, n: int, method: str, path: str, params: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        f = self.faults
        if n in f.bodies:
            status, body = f.bodies[n]
            return status, body, {}
        if n in f.too_many:
            return 429, self.error_body(429, "Too many requests"), {"Retry-After": f.too_many[n]}
        if n in f.errors:
            return f.errors[n], self.error_body(f.errors[n], "Internal server error"), {}
        route = self.routes.get(path)
        if route is None or method != "GET":
            return 404, b"Not Found", {}
        try:
            body = route(params, math.floor(self.clock() * 1000))
        except ApiError as err:
            return err.status, err.body, {}
        kind = f.malformed.get(n)
        if kind == "truncated":
            body = body[: max(1, len(body) // 2)]
        elif kind == "empty":
            body = b""
        elif kind == "html":
            body = b"<html><body>502 Bad Gateway</body></html>"
        return 200, body, {}

    def mock_transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake without sockets."""

        async def handler(request: httpx.Request) -> httpx.Response:
            query = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
            status, body, headers = self.handle(request.method, request.url.path, query)
            if self.faults.delay_s:
                await trio.sleep(self.faults.delay_s)
            return httpx.Response(status, headers={"content-type": "application/json", **headers}, content=body)

        return httpx.MockTransport(handler)

    def route_handlers(self) -> list[BaseRouteHandler]:
        """The Litestar handler serving every route of the fake."""

        @get(path=sorted(self.routes))
        async def rest(request: LitestarRequest[Any, Any, Any]) -> Response[bytes]:
            query = parse_qsl(request.scope["query_string"].decode("ascii"), keep_blank_values=True)
            status, body, headers = self.handle(request.method, request.url.path, query)
            if self.faults.delay_s:
                await trio.sleep(self.faults.delay_s)
            return Response(body, status_code=status, headers=headers, media_type="application/json")

        return [rest]

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on an ephemeral 127.0.0.1 port until cancelled; ``started(url)``."""
        cfg = HypercornConfig()
        cfg.bind = ["127.0.0.1:0"]
        cfg.errorlog = logging.getLogger(f"tests.fake.{self.name}")
        cfg.accesslog = None
        cfg.graceful_timeout = 0.1
        app: Any = Litestar(self.route_handlers(), logging_config=None, openapi_config=None)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(lambda task_status: hypercorn_serve(app, cfg, task_status=task_status))
            self.url = binds[0]
            task_status.started(self.url)


@asynccontextmanager
async def serving(fake: FakeRest) -> AsyncIterator[FakeRest]:
    """Serve ``fake`` on 127.0.0.1 for the block (``fake.url`` is its origin)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()


# --- WebSocket ---------------------------------------------------------------------------------


class WsConnection:
    """One accepted connection: its path, subscribed topics and frame count."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, stream: trio.abc.Stream, index: int, path: str) -> None:
        self.ws, self.stream, self.index, self.path = ws, stream, index, path
        self.topics: list[str] = []
        self.changed = trio.Event()
        self.sent = 0
        self.state: dict[str, Any] = {}  # per-topic state of the subclass (book update ids ...)


class _Dropped(Exception):
    """The fake cut the connection on purpose."""


class FakeWs:
    """WebSocket side of a fake exchange; subclasses implement :meth:`reply`, :meth:`frames`, :meth:`welcome`.

    Args:
        rate_per_s: push steps per second (None = as fast as the socket takes them).
        drop_after: close TCP abruptly after this many data frames.
        fault_connections: how many connections (from the first) the fault applies to.
        steps: steps one connection pushes before it goes quiet (None = forever).
    """

    paths: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        rate_per_s: float | None = None,
        drop_after: int | None = None,
        fault_connections: int = 1,
        steps: int | None = None,
    ) -> None:
        self.rate_per_s, self.drop_after, self.fault_connections, self.steps = rate_per_s, drop_after, fault_connections, steps  # fmt: skip
        self.url = ""
        self.connections: list[WsConnection] = []
        self.received: list[tuple[int, str]] = []  # (connection index, text)
        self.head = 0  # next step to push (shared by connections: a reconnect resumes at the head)

    # --- subclass hooks ---

    def welcome(self, conn: WsConnection) -> list[str]:
        """Frames sent right after the handshake."""
        return []

    def reply(self, conn: WsConnection, text: str) -> list[str]:
        """Answers to one client message; may change ``conn.topics`` (then set ``conn.changed``)."""
        raise NotImplementedError

    def frames(self, conn: WsConnection, topic: str, step: int) -> list[str]:
        """Data frames of ``topic`` at push step ``step``."""
        raise NotImplementedError

    # --- server ---

    async def start(self, nursery: trio.Nursery) -> None:
        """Listen on 127.0.0.1; ``self.url`` becomes ``ws://127.0.0.1:PORT``."""
        listeners = await nursery.start(trio.serve_tcp, self._handle_stream, 0)
        self.url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    async def _handle_stream(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, stream)
            path = urlsplit(request.path).path
            if self.paths and path not in self.paths:
                await request.reject(404, body=b"fake: unknown path")
                return
            ws = await request.accept()
            conn = WsConnection(ws, stream, len(self.connections), path)
            self.connections.append(conn)
            try:
                for frame in self.welcome(conn):
                    await ws.send_message(frame)
                async with trio.open_nursery() as inner:
                    inner.start_soon(self._control, conn, inner.cancel_scope)
                    await self._push(conn)
                    inner.cancel_scope.cancel()
            except* (_Dropped, trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                pass  # the client left, or the fake cut the line on purpose
            finally:
                nursery.cancel_scope.cancel()
                with trio.move_on_after(1):
                    await ws.aclose()

    async def _control(self, conn: WsConnection, scope: trio.CancelScope) -> None:
        try:
            while True:
                text = await conn.ws.get_message()
                text = text if isinstance(text, str) else text.decode()
                self.received.append((conn.index, text))
                for answer in self.reply(conn, text):
                    await conn.ws.send_message(answer)
        except trio_websocket.ConnectionClosed:
            scope.cancel()

    async def _push(self, conn: WsConnection) -> None:
        faulty = conn.index < self.fault_connections
        pushed = 0
        while self.steps is None or pushed < self.steps:
            if not conn.topics:
                await conn.changed.wait()
                conn.changed = trio.Event()
                continue
            step = self.head
            self.head += 1
            pushed += 1
            for topic in list(conn.topics):
                for frame in self.frames(conn, topic, step):
                    if faulty and self.drop_after is not None and conn.sent >= self.drop_after:
                        await conn.stream.aclose()  # no close frame: the client sees 1006
                        raise _Dropped
                    await conn.ws.send_message(frame)
                    conn.sent += 1
            await trio.sleep(1 / self.rate_per_s if self.rate_per_s else 0)
        await trio.sleep_forever()


@asynccontextmanager
async def running(fake: FakeWs) -> AsyncIterator[FakeWs]:
    """Run ``fake`` on 127.0.0.1 for the block (``fake.url`` is its origin)."""
    async with trio.open_nursery() as nursery:
        await fake.start(nursery)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
