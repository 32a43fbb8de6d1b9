"""A resilient WebSocket connection, exchange-agnostic (trio + trio-websocket).

:func:`run_ws_connection` keeps one logical feed alive: it connects, lets the
caller subscribe, hands every frame to a synchronous callback with its local
receive time, and

- sends heartbeats (an application message such as OKX's ``ping``, or a
  protocol ping that must be answered within a timeout); server pings are
  answered by trio-websocket itself;
- replaces a connection that has been silent for ``watchdog_s``;
- gives every connection attempt a deadline (``open_timeout_s``: TCP, TLS,
  handshake and subscribing together; :func:`open_ws` bounds the handshake
  and the close too), so an exchange that accepts TCP but never answers
  costs a retried failure, never a hang;
- reconnects after any drop with jittered exponential backoff
  (:mod:`dccd.domain.backoff`) that starts over once a connection has
  stayed up for ``healthy_s`` or delivered :data:`HEALTHY_FRAMES` frames,
  capped at :data:`ANSWERED_MAX_S` after the drop of an open connection;
- rotates proactively (``rotate_after_s``): opens the replacement, runs both
  for ``overlap_s`` and only then closes the old one, so an exchange's
  periodic cut (Binance: 24 h) loses nothing. The caller dedups by id.

Only trio's clock schedules anything, so all of it runs exactly under
``autojump_clock``. trio-websocket errors become :mod:`dccd.errors` here:
handshake failures :class:`~dccd.errors.ConnectFailed`, drops
:class:`~dccd.errors.Disconnected` (reported through ``on_event``).
Exceptions raised by ``on_frame``/``on_connect`` (bugs, drift, rejected
subscriptions) are not retried: they end the run.

Over 500 lines for one reason: one connection state machine (:class:`_Runner`: connect, heartbeat, watchdog,
rotation, backoff) and the handshake it drives.
"""

from __future__ import annotations

import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn, Protocol
from urllib.parse import urlsplit

import msgspec
import trio
import trio_websocket

from dccd.domain.backoff import RestartPolicy, backoff_delay
from dccd.errors import ConnectFailed, Disconnected, sole_leaf


class WsConn(Protocol):
    """What the runner needs of a connection (trio-websocket's WebSocketConnection)."""

    async def get_message(self) -> str | bytes: ...
    async def send_message(self, message: str | bytes) -> None: ...
    async def ping(self, payload: bytes | None = None) -> None: ...


Connector = Callable[[str], AbstractAsyncContextManager[WsConn]]
OnFrame = Callable[[str | bytes, int], object]
OnConnect = Callable[[WsConn], Awaitable[object]]


def describe_close(exc: trio_websocket.ConnectionClosed) -> str:
    """One line for a closed connection: ``closed 1006 ABNORMAL_CLOSURE``."""
    r = exc.reason
    if r is None:
        return "closed"
    return f"closed {r.code} {r.name}" + (f" ({r.reason})" if r.reason else "")


@asynccontextmanager
async def open_ws(
    url: str,
    *,
    connect_timeout_s: float = 10.0,
    close_timeout_s: float = 2.0,
    max_message_size: int = 16 * 2**20,
    receive_buffer_size: int = 64 * 2**10,
    message_queue_size: int = 64,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WsConn]:
    """Open a trio-websocket client connection; the default :data:`Connector`.

    ``max_message_size`` is generous (16 MiB) because full order-book
    snapshots exceed trio-websocket's 1 MiB default; ``message_queue_size``
    lets the reader parse a burst without a task switch per message while
    bounding memory.

    Deadlines: TCP connect, TLS and the HTTP upgrade together get
    ``connect_timeout_s``; the closing handshake gets ``close_timeout_s``.
    The connection's reader task lives in a nursery owned here and is
    cancelled when either deadline passes. (trio-websocket's own
    ``open_websocket_url`` starts that reader before the handshake and, when
    its connect timeout fires against a peer that accepted TCP but never
    answers the upgrade -- a frozen exchange --, waits for the reader forever.)

    Raises:
        ConnectFailed: DNS, TCP, TLS or handshake failure or timeout (HTTP status included).
    """
    host, port, resource, tls = _url_parts(url, ssl_context)
    ws: trio_websocket.WebSocketConnection | None = None
    stream: trio.abc.Stream | None = None
    failure: ConnectFailed | None = None
    body_exc: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(connect_timeout_s):
                    if tls is None:
                        stream = await trio.open_tcp_stream(host, port)
                    else:
                        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=tls, https_compatible=True)
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,
                        _host_header(host, port),
                        resource,
                        message_queue_size=message_queue_size,
                        max_message_size=max_message_size,
                        receive_buffer_size=receive_buffer_size,
                    )
            except trio.TooSlowError:
                failure = ConnectFailed(f"{url}: no handshake within {connect_timeout_s:g}s")
            except (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError) as exc:
                failure = _connect_failed(url, exc)
            if ws is None:
                nursery.cancel_scope.cancel()  # the reader of a half-open connection
            else:
                try:
                    yield ws
                except BaseException as exc:
                    body_exc = exc
                    raise
                finally:
                    with trio.move_on_after(close_timeout_s):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()  # whatever the peer did, the reader stops now
    except BaseExceptionGroup as group:
        sole = _sole_error(group)
        if ws is None and isinstance(sole, trio_websocket.HandshakeError | OSError | trio.BrokenResourceError):
            failure = _connect_failed(url, sole)  # the reader failed the handshake (e.g. HTTP 503)
        elif sole is None or (body_exc is not None and sole is not body_exc):
            raise
        else:  # the body's own error, bare, as a caller of a plain context manager expects
            context = sole.__context__
            try:
                raise sole
            finally:
                sole.__context__ = context
    finally:
        if ws is None and stream is not None:
            await trio.aclose_forcefully(stream)
    if failure is not None:
        raise failure


def _url_parts(url: str, ssl_context: ssl.SSLContext | None) -> tuple[str, int, str, ssl.SSLContext | None]:
    """``(host, port, resource, TLS context or None)`` of a ws/wss URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a WebSocket URL (ws:// or wss://)")
    tls = (ssl_context or ssl.create_default_context()) if parts.scheme == "wss" else None
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, resource, tls


def _host_header(host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port in (80, 443) else f"{name}:{port}"


def _connect_failed(url: str, exc: BaseException) -> ConnectFailed:
    if isinstance(exc, trio_websocket.ConnectionRejected):
        detail = f"HTTP {exc.status_code}"
    else:
        detail = repr(exc.__cause__ or exc)
    failure = ConnectFailed(f"{url}: {detail}")
    failure.__cause__ = exc
    return failure


RECONNECT_POLICY = RestartPolicy(initial_s=0.5, factor=2.0, max_s=15.0, jitter=0.5, healthy_s=10.0)
"""Default reconnect delays: 0.5 s doubling to 15 s while connects fail, jittered by up to half.

Only ``initial_s``, ``factor``, ``max_s``, ``jitter`` and ``healthy_s`` apply to
reconnects (a feed is retried forever unless ``max_failures`` is set). The
delays start over after a connection that stayed up ``healthy_s`` or
delivered :data:`HEALTHY_FRAMES` frames, and after the drop of a connection
that was open (the exchange answers) they never exceed :data:`ANSWERED_MAX_S`:
an exchange that works but cuts connections costs seconds, not minutes.
"""

HEALTHY_FRAMES = 10
"""Frames a connection must deliver for its drop to start the backoff over."""

ANSWERED_MAX_S = 4.0
"""Longest reconnect delay after the drop of a connection that was open."""

OPEN_TIMEOUT_S = 30.0
"""Default deadline for one connection attempt: connect, handshake and ``on_connect`` (subscribing)."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Keepalive policy.

    ``message`` is sent every ``interval_s`` (a str/bytes, or a function of the
    1-based heartbeat count for exchanges that want a fresh request id). With
    ``message=None`` a protocol ping is sent instead and, if ``pong_timeout_s``
    is set, a missing pong drops the connection. ``idle_only`` sends only
    after ``interval_s`` without any frame (OKX-style keepalive).
    """

    interval_s: float
    message: str | bytes | Callable[[int], str | bytes] | None = None
    pong_timeout_s: float | None = None
    idle_only: bool = False


class WsEventKind(StrEnum):
    """What a :class:`WsEvent` says happened to the connection."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"
    """An attempt failed or a connection dropped; ``attempt`` and ``delay_s`` say what comes next."""
    ROTATED = "rotated"
    """A planned replacement took over (``conn_id`` is the new connection)."""


class WsEvent(msgspec.Struct, frozen=True):
    """A connection-state change, for logging and metrics.

    ``at`` is trio time; ``attempt`` and ``delay_s`` describe a reconnect.
    """

    kind: WsEventKind
    conn_id: int
    at: float
    reason: str = ""
    attempt: int = 0
    delay_s: float = 0.0


class WsStats:
    """Counters of one :func:`run_ws_connection` (read them any time)."""

    __slots__ = (
        "attempts",
        "connect_failures",
        "connects",
        "heartbeats",
        "last_frame_at",
        "messages",
        "reconnects",
        "rotations",
        "watchdog_trips",
    )

    def __init__(self) -> None:
        self.messages = 0
        self.connects = 0
        self.attempts = 0  # connection attempts after the first one, failed ones included
        self.reconnects = 0  # attempts that succeeded
        self.rotations = 0
        self.connect_failures = 0
        self.watchdog_trips = 0
        self.heartbeats = 0
        self.last_frame_at: float | None = None  # trio time of the latest frame


class _Link:
    """One physical connection; ``end`` stops its tasks, the close runs after."""

    __slots__ = ("ended", "error", "frames", "id", "last_rx", "opened_at", "scope", "ws")

    def __init__(self, link_id: int) -> None:
        self.id = link_id
        self.ws: WsConn | None = None
        self.opened_at = 0.0
        self.last_rx = 0.0
        self.frames = 0
        self.ended = False
        self.error: Disconnected | None = None  # None when we closed it on purpose
        self.scope = trio.CancelScope()

    def end(self, error: Disconnected | None, wake: Callable[[], None]) -> None:
        if not self.ended:
            self.ended, self.error = True, error
            self.scope.cancel()
            wake()


class WsHandle:
    """Given by ``nursery.start(run_ws_connection, ...)``: counters and controls."""

    def __init__(self, runner: _Runner) -> None:
        self._runner = runner

    @property
    def stats(self) -> WsStats:
        """Live counters."""
        return self._runner.stats

    @property
    def connected(self) -> bool:
        """True while at least one connection is open and subscribed."""
        return bool(self._runner.live)

    async def wait_connected(self) -> None:
        """Return once a connection is open and subscribed."""
        while not self._runner.live:
            await self._runner.connected_event.wait()

    def rotate(self, reason: str = "requested") -> None:
        """Open a replacement connection now (e.g. on a server-shutdown notice)."""
        self._runner.rotate_reason = reason
        self._runner.wake()

    def reconnect(self, reason: str = "requested") -> None:
        """Drop every connection and reconnect with backoff (e.g. after a sequence gap)."""
        for link in list(self._runner.live):
            link.end(Disconnected(reason), self._runner.wake)

    async def send(self, message: str | bytes) -> None:
        """Send on every open connection (both during a rotation overlap).

        Raises:
            Disconnected: no open connection took the message.
        """
        sent = 0
        for link in list(self._runner.live):
            if link.ws is None or link.ended:
                continue
            try:
                await link.ws.send_message(message)
                sent += 1
            except trio_websocket.ConnectionClosed:
                continue  # its reader reports the drop
        if not sent:
            raise Disconnected("no open connection to send on")


class _Runner:
    def __init__(
        self,
        url: str,
        on_frame: OnFrame,
        on_connect: OnConnect | None,
        on_event: Callable[[WsEvent], object] | None,
        heartbeat: Heartbeat | None,
        watchdog_s: float | None,
        rotate_after_s: float | None,
        overlap_s: float,
        backoff: RestartPolicy,
        rand: Callable[[], float],
        connect: Connector,
        max_failures: int | None,
        wall_ns: Callable[[], int],
        open_timeout_s: float,
    ) -> None:
        self.open_timeout_s = open_timeout_s
        self.url, self.on_frame, self.on_connect, self.on_event = url, on_frame, on_connect, on_event
        self.heartbeat, self.watchdog_s = heartbeat, watchdog_s
        self.rotate_after_s, self.overlap_s = rotate_after_s, overlap_s
        self.backoff, self.rand, self.connect = backoff, rand, connect
        self.max_failures, self.wall_ns = max_failures, wall_ns
        self.stats = WsStats()
        self.live: list[_Link] = []
        self.connected_event = trio.Event()
        self.rotate_reason: str | None = None
        self._wake_event = trio.Event()
        self._next_id = 1
        self.nursery: trio.Nursery | None = None

    def wake(self) -> None:
        self._wake_event.set()

    async def _wait(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._wake_event.wait()
        if self._wake_event.is_set():
            self._wake_event = trio.Event()

    def _emit(self, kind: WsEventKind, conn_id: int, reason: str = "", attempt: int = 0, delay_s: float = 0.0) -> None:
        if self.on_event is not None:
            self.on_event(WsEvent(kind, conn_id, trio.current_time(), reason, attempt, delay_s))

    async def loop(self) -> NoReturn:
        attempt = failures = 0
        had_link = False
        while True:
            if had_link or failures:
                self.stats.attempts += 1
            try:
                link = await self._open_link()
            except ConnectFailed as exc:
                failures += 1
                self.stats.connect_failures += 1
                if self.max_failures is not None and failures >= self.max_failures:
                    raise
                delay = backoff_delay(self.backoff, attempt, self.rand())
                attempt += 1
                self._emit(WsEventKind.RECONNECTING, 0, str(exc), attempt, delay)
                await trio.sleep(delay)
                continue
            failures = 0
            self.stats.reconnects += had_link
            had_link = True
            self.rotate_reason = None
            self._emit(WsEventKind.CONNECTED, link.id)
            link = await self._serve(link)
            reason = str(link.error) if link.error else "closed"
            self._emit(WsEventKind.DISCONNECTED, link.id, reason)
            up_s = trio.current_time() - link.opened_at
            if up_s >= self.backoff.healthy_s or link.frames >= HEALTHY_FRAMES:
                attempt = 0  # it worked: start over
            delay = min(backoff_delay(self.backoff, attempt, self.rand()), ANSWERED_MAX_S)
            attempt += 1
            self._emit(WsEventKind.RECONNECTING, link.id, reason, attempt, delay)
            await trio.sleep(delay)

    async def _serve(self, link: _Link) -> _Link:
        """Wait for the link to end, rotating it when due; return the link that ended."""
        rotate_at = link.opened_at + self.rotate_after_s if self.rotate_after_s else math.inf
        failed = 0
        while True:
            if link.ended:
                return link
            reason = self.rotate_reason
            if reason is None and trio.current_time() >= rotate_at:
                reason = f"connection age {self.rotate_after_s:g}s"
            if reason is None:
                await self._wait(rotate_at)
                continue
            self.rotate_reason = None
            try:
                new = await self._open_link()
            except ConnectFailed as exc:  # keep the old link; retry while it lasts
                self.stats.connect_failures += 1
                delay = backoff_delay(self.backoff, failed, self.rand())
                failed += 1
                self._emit(WsEventKind.RECONNECTING, link.id, f"rotation: {exc}", failed, delay)
                rotate_at = trio.current_time() + delay
                continue
            deadline = trio.current_time() + self.overlap_s
            while not (link.ended or new.ended) and trio.current_time() < deadline:
                await self._wait(deadline)
            if new.ended and not link.ended:  # keep the old link; retry with backoff, not in a tight loop
                delay = backoff_delay(self.backoff, failed, self.rand())
                failed += 1
                self._emit(WsEventKind.DISCONNECTED, new.id, f"replacement dropped: {new.error}", failed, delay)
                rotate_at = trio.current_time() + delay
                continue
            failed = 0
            self.stats.rotations += 1
            self._emit(WsEventKind.ROTATED, new.id, f"replaced #{link.id} ({reason})")
            link.end(None, self.wake)  # graceful close, in its own task
            link, rotate_at = new, new.opened_at + self.rotate_after_s if self.rotate_after_s else math.inf

    async def _open_link(self) -> _Link:
        """Connect, handshake and subscribe within ``open_timeout_s``, or raise :class:`ConnectFailed`."""
        link = _Link(self._next_id)
        self._next_id += 1
        assert self.nursery is not None
        try:
            with trio.fail_after(self.open_timeout_s):
                await self.nursery.start(self._link_task, link)
        except trio.TooSlowError:
            raise ConnectFailed(f"{self.url}: not connected and subscribed within {self.open_timeout_s:g}s") from None
        self.stats.connects += 1
        return link

    async def _link_task(self, link: _Link, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with self.connect(self.url) as ws:
                try:
                    if self.on_connect is not None:
                        await self.on_connect(ws)
                except trio_websocket.ConnectionClosed as exc:
                    raise ConnectFailed(f"{self.url}: {describe_close(exc)} during on_connect") from exc
                link.ws = ws
                link.opened_at = link.last_rx = trio.current_time()
                self.live.append(link)
                self.connected_event.set()
                task_status.started()
                with link.scope:
                    async with trio.open_nursery() as tasks:
                        if self.heartbeat is not None:
                            tasks.start_soon(self._heartbeat, link, ws, self.heartbeat)
                        if self.watchdog_s is not None:
                            tasks.start_soon(self._watchdog, link, self.watchdog_s)
                        await self._read(link, ws)
                # leaving `async with` closes the connection: gracefully unless it already dropped
        finally:
            link.end(Disconnected("closed"), self.wake)
            if link in self.live:
                self.live.remove(link)
                if not self.live:
                    self.connected_event = trio.Event()

    async def _read(self, link: _Link, ws: WsConn) -> None:
        # The per-message path: keep it to attribute stores and the callback.
        get, on_frame, now, wall, stats = ws.get_message, self.on_frame, trio.current_time, self.wall_ns, self.stats
        try:
            while True:
                frame = await get()
                t = now()
                link.last_rx = t
                link.frames += 1
                stats.last_frame_at = t
                stats.messages += 1
                on_frame(frame, wall())
        except trio_websocket.ConnectionClosed as exc:
            link.end(Disconnected(describe_close(exc)), self.wake)

    async def _watchdog(self, link: _Link, limit_s: float) -> None:
        while True:
            due = link.last_rx + limit_s
            if trio.current_time() >= due:
                self.stats.watchdog_trips += 1
                link.end(Disconnected(f"no frame for {limit_s:g}s"), self.wake)
                return
            await trio.sleep_until(due)

    async def _heartbeat(self, link: _Link, ws: WsConn, hb: Heartbeat) -> None:
        count, last_sent = 0, link.opened_at
        try:
            while True:
                due = last_sent + hb.interval_s
                if hb.idle_only:
                    due = max(due, link.last_rx + hb.interval_s)
                if trio.current_time() < due:
                    await trio.sleep_until(due)
                    continue  # re-check: a frame may have moved the idle deadline
                count += 1
                last_sent = trio.current_time()
                if hb.message is None:
                    with trio.move_on_after(hb.pong_timeout_s if hb.pong_timeout_s else math.inf) as waited:
                        await ws.ping()
                    if waited.cancelled_caught:
                        link.end(Disconnected(f"no pong within {hb.pong_timeout_s:g}s"), self.wake)
                        return
                else:
                    await ws.send_message(hb.message(count) if callable(hb.message) else hb.message)
                self.stats.heartbeats += 1
        except trio_websocket.ConnectionClosed as exc:
            link.end(Disconnected(describe_close(exc)), self.wake)


def _sole_error(group: BaseExceptionGroup[BaseException]) -> Exception | None:
    """The one real error inside a (nested) group of otherwise-Cancelled exceptions."""
    sole = sole_leaf(group, trio.Cancelled)
    return sole if isinstance(sole, Exception) else None


async def run_ws_connection(
    url: str,
    *,
    on_frame: OnFrame,
    on_connect: OnConnect | None = None,
    on_event: Callable[[WsEvent], object] | None = None,
    heartbeat: Heartbeat | None = None,
    watchdog_s: float | None = None,
    rotate_after_s: float | None = None,
    overlap_s: float = 5.0,
    backoff: RestartPolicy = RECONNECT_POLICY,
    rand: Callable[[], float] = random.random,
    connect: Connector = open_ws,
    max_failures: int | None = None,
    wall_ns: Callable[[], int] = time.time_ns,
    open_timeout_s: float = OPEN_TIMEOUT_S,
    task_status: trio.TaskStatus[WsHandle] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Keep a WebSocket feed alive until cancelled.

    Call with ``handle = await nursery.start(run_ws_connection, url, on_frame=...)``;
    the :class:`WsHandle` is given at once (before the first connect).

    Args:
        url: ``ws://`` or ``wss://`` URL (the exchange's path included).
        on_frame: ``on_frame(frame, recv_ns)`` for every message, synchronously,
            in arrival order per connection; ``recv_ns`` comes from ``wall_ns``.
        on_connect: awaited on each new connection before it counts as open
            (send subscriptions here; it may read replies with ``get_message``).
        on_event: gets a :class:`WsEvent` on connect, drop, reconnect, rotation.
        heartbeat: keepalive policy; None relies on the server's pings.
        watchdog_s: replace a connection that delivered no frame for this long.
        rotate_after_s: open a replacement after this connection age.
        overlap_s: how long old and new connection run side by side.
        backoff: reconnect delays (:func:`dccd.domain.backoff.backoff_delay`);
            its ``healthy_s`` resets them. ``rand`` is the uniform [0, 1) jitter
            source (pass a seeded ``random.Random().random`` in tests).
        connect: connection factory, :func:`open_ws` by default.
        max_failures: raise after this many consecutive failed connects
            (None: retry forever).
        open_timeout_s: deadline of one attempt (connect, handshake and
            ``on_connect``); an attempt past it is a failed connect, retried.

    Raises:
        ConnectFailed: ``max_failures`` consecutive connects failed.
        ValueError: not a ws/wss URL, or a non-positive interval.
        Exception: whatever ``on_frame``/``on_connect`` raised (not retried).
    """
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"{url!r} is not a WebSocket URL (ws:// or wss://)")
    for name, value in (
        ("watchdog_s", watchdog_s),
        ("rotate_after_s", rotate_after_s),
        ("open_timeout_s", open_timeout_s),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if rotate_after_s is not None and overlap_s >= rotate_after_s:
        raise ValueError(f"overlap_s ({overlap_s}) must be shorter than rotate_after_s ({rotate_after_s})")
    runner = _Runner(
        url, on_frame, on_connect, on_event, heartbeat, watchdog_s, rotate_after_s, overlap_s,
        backoff, rand, connect, max_failures, wall_ns, open_timeout_s,
    )  # fmt: skip
    try:
        async with trio.open_nursery() as nursery:
            runner.nursery = nursery
            task_status.started(WsHandle(runner))
            await runner.loop()
    except BaseExceptionGroup as group:
        sole = _sole_error(group)
        if sole is None:
            raise
        context = sole.__context__
        try:
            raise sole  # bare, as a caller would expect from a plain call
        finally:
            sole.__context__ = context
