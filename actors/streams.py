"""Live recordings ("streams") as runs: the service's stream operations.

One stream = one :class:`~dccd.ops.StreamRequest` = one run (operation
``stream``, run id = stream id) = a source actor (:class:`~dccd.actors.live.LiveStream`)
plus its own batched writer::

    frames ─► run_ws_connection (per WsPlan: pings, watchdog, 24 h rotation, jittered reconnect)
           ─► the adapter's session.parse (one per connection) ─► generic events
           ─► Recording: dedupe and holes by id (trades) or ts (bars), local books ─► pending rows
           ─► every flush_s (Rx interval on the TrioScheduler): Recording.batches (an Rx Subject)
           ─► BoundedIngress (hard memory bound) ═await gate═► Writer    and ─► Hub (live taps)
    holes ─► REST refill through the service's shared client ─► Writer; run events reconnect/filled/gap

Everything exchange-specific comes from the adapter through the
:class:`~dccd.sources.stream.StreamAdapter` protocol (plans, sessions) and
the REST :class:`~dccd.sources.base.Adapter` protocol (refills, book
snapshots): no exchange is named here. Hub keys: ``("trades", exchange,
symbol)``, ``("ohlc", exchange, symbol, span)``, ``("book", exchange, symbol)``,
each item a :class:`~dccd.actors.messages.Batch`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypedDict

import msgspec
import structlog
import trio
from reactivex.subject import Subject

from dccd.config import Config
from dccd.domain.backoff import RestartPolicy
from dccd.domain.capability import Transport
from dccd.domain.dataset import DatasetId
from dccd.errors import DccdError, NoCapability
from dccd.ops import StreamRequest
from dccd.sources.registry import get_adapter
from dccd.sources.stream import StreamAdapter, Subscription, WsPlan
from dccd.storage.lake import Lake
from dccd.storage.runs import RunStore
from dccd.transport.ws import RECONNECT_POLICY, Connector, open_ws

from .clients import ClientPool
from .hub import Hub
from .live import LiveStream
from .messages import Message
from .stats import StreamState
from .supervisor import Role
from .writer import WriterOptions

__all__ = ["LiveStream", "StreamInfo", "StreamOps", "StreamOptions", "check_stream", "ws_url_lookup"]

log = structlog.get_logger()

WS_QUEUE_MESSAGES = 1024
"""Frames trio-websocket may hold between its reader and ours. With the default 64, a consumer only a little
slower than the reader makes them hand over the CPU once per frame; at 1024 the reader parses whole socket
reads in one go (measured: +3 µs of work per frame cost +8.5 µs of CPU at 64, +1 µs at 1024). Bounded in
frames: about 1 MB for trade streams."""


class StreamInfo(msgspec.Struct, frozen=True):
    """A snapshot of one stream.

    ``state``: ``connected`` (every connection up), ``reconnecting`` (some are
    down or not up yet), ``stopped`` or ``failed``. ``messages`` counts frames,
    ``rows`` rows written to the lake, ``gaps_filled`` ranges refilled over
    REST, ``gaps_open`` ranges recorded as unfillable. Health: ``connections``
    planned and ``connections_up`` open now, ``last_data_ns`` wall time of the
    latest data frame (trades/candles/book; None before the first),
    ``reconnect_attempts`` every attempt after a drop (failed ones included),
    ``reconnect_failures`` attempts that failed, ``refills_done`` /
    ``refills_failed`` REST refills, ``watchdog_trips`` connections replaced
    for silence, ``down_since_ns`` wall time since which some connection of a
    running stream has been down (its start if it never came up; None when all are up).
    """

    id: str
    exchange: str
    symbols: tuple[str, ...]
    type: str
    span: str | None
    state: StreamState
    messages: int
    rows: int
    reconnects: int
    gaps_filled: int
    gaps_open: int
    run_id: str
    started_ns: int
    error: str | None = None
    connections: int = 0
    connections_up: int = 0
    last_data_ns: int | None = None
    reconnect_attempts: int = 0
    reconnect_failures: int = 0
    refills_done: int = 0
    refills_failed: int = 0
    watchdog_trips: int = 0
    down_since_ns: int | None = None


class StreamOptions(msgspec.Struct, frozen=True):
    """Tunables of every stream of a service (defaults suit the real exchanges).

    ``watchdog_s`` / ``rotate_after_s`` / ``heartbeat_s`` override the
    adapter's plan when set; ``settle_s`` is how long a hole waits for a late
    copy before it is refilled; ``ingress_rows`` bounds memory between the
    socket and the writer; ``book_depth`` levels are written every
    ``book_interval_s`` from a book synced with ``snapshot_depth`` levels.
    ``stop_refill_s`` bounds the REST refills a graceful stop still runs
    (pending holes, and the trades missed while disconnected at the stop).
    ``resume_window_s``: a trades stream with consecutive ids starts after the
    newest trade the lake holds when that trade is younger than this, so the
    trades missed while no stream ran (a restart, a shard taking over a dead
    one's streams) are refilled over REST; 0 starts from the live feed only.
    """

    flush_s: float = 0.25
    batch_rows: int = 10_000
    ingress_rows: int = 500_000
    settle_s: float = 1.0
    overlap_s: float = 5.0
    pong_timeout_s: float = 15.0
    watchdog_s: float | None = None
    rotate_after_s: float | None = None
    heartbeat_s: float | None = None
    book_depth: int = 100
    book_interval_s: float = 1.0
    snapshot_depth: int = 1000
    progress_s: float = 5.0
    stop_refill_s: float = 10.0
    resume_window_s: float = 3600.0
    writer: WriterOptions = msgspec.field(
        default_factory=lambda: WriterOptions(max_rows=100_000, max_age_s=2.0, high=8)
    )


def check_stream(req: StreamRequest, ws_url: str | None = None) -> tuple[StreamAdapter, list[WsPlan]]:
    """The adapter and its connection plans for ``req``; no I/O, so it fails before any run or connection.

    Args:
        req: what to record.
        ws_url: configured WebSocket origin (None: the adapter's real one).

    Raises:
        ConfigError: unknown exchange.
        NoCapability: the exchange does not stream this type/span/market.
        UnsupportedSymbol: a symbol the adapter cannot map.
    """
    adapter = get_adapter(req.exchange)
    if not isinstance(adapter, StreamAdapter):
        raise NoCapability(req.exchange, f"{req.data_type.value} over ws")
    for sym in req.symbols:
        adapter.capabilities.require_symbol(req.data_type, Transport.WS, req.span, sym)
    subs = [Subscription(sym, req.data_type, req.span) for sym in req.symbols]
    return adapter, adapter.plan_streams(subs, ws_url or adapter.ws_url)


class StreamOpsOptions(TypedDict, total=False):
    """Keyword options of :class:`StreamOps` (``open_service(stream_options=...)``)."""

    options: StreamOptions | None
    connect: Connector
    backoff: RestartPolicy
    rand: Callable[[], float]
    now_ns: Callable[[], int]
    keep_ended: int


class StreamOps:
    """The stream operations of one service (``svc.streams``): start, stop and list live recordings.

    Args:
        start_actor / stop_actor / emit: the service's.
        hub: where every live batch is published, under ``(type, exchange, symbol[, span])``.
        lake, runs, pool: storage, run history and the shared exchange clients (refills, book snapshots).
        ws_url: ``exchange -> configured WebSocket origin`` (None: the adapter's real one).
        options: :class:`StreamOptions`.
        connect: WebSocket connection factory (tests pass an in-memory one).
        backoff, rand: reconnect delays and their jitter source.
        now_ns: wall clock (ns).
        keep_ended: ended streams still listed, newest kept.
    """

    def __init__(
        self,
        start_actor: Callable[..., Any],
        stop_actor: Callable[[str], Any],
        emit: Callable[[Message], None],
        hub: Hub[Any],
        lake: Lake,
        runs: RunStore,
        pool: ClientPool,
        *,
        ws_url: Callable[[str], str | None] = lambda exchange: None,
        options: StreamOptions | None = None,
        connect: Connector = partial(open_ws, message_queue_size=WS_QUEUE_MESSAGES),
        backoff: RestartPolicy = RECONNECT_POLICY,
        rand: Callable[[], float] = random.random,
        now_ns: Callable[[], int] = time.time_ns,
        keep_ended: int = 100,
    ) -> None:
        self._start_actor = start_actor
        self.stop_actor = stop_actor
        self.emit = emit
        self.hub = hub
        self.lake = lake
        self.runs = runs
        self.pool = pool
        self._ws_url = ws_url
        self.options = options or StreamOptions()
        self.connect = connect
        self.backoff = backoff
        self.rand = rand
        self.now_ns = now_ns
        self._keep_ended = keep_ended
        self.streams: dict[str, LiveStream] = {}
        self.started: Subject[LiveStream] = Subject()
        """Output: every stream, once its graph is composed and before its actors start (probes, taps)."""

    def plan(self, req: StreamRequest) -> tuple[StreamAdapter, list[WsPlan]]:
        """The adapter and connection plans for ``req`` (see :func:`check_stream`)."""
        return check_stream(req, self._ws_url(req.exchange))

    async def _check_listing(self, req: StreamRequest) -> None:
        """Reject unlisted symbols early (a stream of one would just stay silent); best effort."""
        try:
            listing = await self.pool.listing(req.exchange)
        except DccdError as exc:
            log.warning("stream.listing_unavailable", exchange=req.exchange, error=str(exc))
            return
        for sym in req.symbols:
            listing.require(sym)

    async def start(self, req: StreamRequest) -> str:
        """Create the run, start the writer and the stream actor; returns the stream id (= run id).

        Raises:
            ConfigError, NoCapability, UnsupportedSymbol: before any run is created.
        """
        adapter, plans = self.plan(req)
        await self._check_listing(req)
        ds = DatasetId(req.exchange, req.symbols[0], req.data_type, req.span)
        run_id = await self.runs.acreate("stream", ds)
        if len(req.symbols) > 1:  # one run records the whole stream: name all its symbols
            await trio.to_thread.run_sync(self.runs.set_symbols, run_id, ",".join(str(s) for s in req.symbols))
        stream = LiveStream(self, run_id, req, adapter, plans)
        self.streams[run_id] = stream
        self.started.on_next(stream)
        await self._start_actor(stream.writer.name, stream.writer.run, role=Role.WRITER, escalate=False)
        await self._start_actor(stream.actor, stream.run, role=Role.SOURCE, escalate=False)
        return run_id

    async def stop(self, stream_id: str) -> bool:
        """Stop a stream: every received row is written, then its run succeeds; False if not running."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.done.is_set():
            return False
        stream.stop_requested = True
        await self.stop_actor(stream.actor)
        await stream.done.wait()
        return True

    def list(self) -> list[StreamInfo]:
        """Running streams and recently ended ones, oldest first."""
        return [s.info() for s in self.streams.values()]

    def get(self, stream_id: str) -> LiveStream | None:
        """The stream with this id, or None."""
        return self.streams.get(stream_id)

    def ended(self, stream: LiveStream) -> None:
        """Called by a stream when it finished: forget the oldest ended ones beyond ``keep_ended``."""
        ended = [sid for sid, s in self.streams.items() if s.done.is_set() or s is stream]
        for sid in ended[: max(0, len(ended) - self._keep_ended)]:
            del self.streams[sid]


def ws_url_lookup(config: Config) -> Callable[[str], str | None]:
    """``exchange -> ws_url`` of the config (None when not configured: the adapter's real origin)."""

    def lookup(exchange: str) -> str | None:
        return config.exchange(exchange).ws_url

    return lookup
