"""The stream actor: WebSocket connections of one stream, REST repairs, and the end of its run.

:class:`LiveStream.run` is an actor body (role SOURCE). Per connection plan
it runs :func:`~dccd.transport.ws.run_ws_connection` (protocol pings,
watchdog, rotation with overlap, jittered reconnects) with a connection
factory that gives every physical connection a fresh parser session, so
during a rotation each frame is parsed by the session of the connection it
came from. Next to the connections run: the ingress pump into the writer,
a flusher (pending rows every ``flush_s``), the refiller (holes over REST),
the book loop (snapshots to sync from, top-N every ``book_interval_s``), the
run-event recorder and a progress reporter.

The stream's actor graph, composed in :meth:`LiveStream._wire` and :meth:`LiveStream.run`::

    WebSocket frames ─► session.parse ─► Recording.on_* (dedupe, holes, books; synchronous, per frame)
    interval(flush_s, TrioScheduler) ─► Recording.flush_all
    Recording.batches ──► BoundedIngress.input ══pump: await writer.wait_writable()══► Writer.input
          │                   └──► BoundedIngress.rejected ──► Recording.on_rejected (holes to refill)
          └──► Hub.observer(topic of the batch)   (live taps: lossy, never blocks)
    Writer.events (PartWritten), RunProgressed/RunStateChanged/RunLogged ──► service events

Rx carries every edge but two: the ingress→writer pump and the REST refills
wait for the writer's gate (``await``), which an ``on_next`` cannot do; the
WebSocket side cannot wait at all, so the ingress bounds it in rows instead.
Frames and rows do not travel through Rx: a batch per flush does (a frame
often holds one trade, and an ``on_next`` costs ~2 µs).

Stopping (cancel) hands every received row to the writer, records every
hole still open as a ``gap``, drains the writer and ends the run:
``succeeded`` when stopped on request, ``cancelled`` when the service shut
down under it, ``failed`` on an error (a refused subscription, drift).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import reactivex
import structlog
import trio

from dccd.domain.capability import Transport
from dccd.domain.dataset import DatasetId
from dccd.domain.records import DataType, Record
from dccd.errors import DccdError, ExchangeRejected, leaves
from dccd.ops import StreamRequest
from dccd.sources.base import sequential_ids
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    HeartbeatReceived,
    ReconnectRequested,
    StreamAdapter,
    StreamSession,
    TradesReceived,
    Unrecognised,
    WsPlan,
)
from dccd.storage.runs import RunState
from dccd.storage.writer import Provenance
from dccd.transport.ws import (
    OPEN_TIMEOUT_S,
    Connector,
    Heartbeat,
    WsConn,
    WsEvent,
    WsEventKind,
    WsHandle,
    run_ws_connection,
)

from .gapfill import Repairer
from .ingress import BoundedIngress
from .messages import RunLogged, RunProgressed, RunStateChanged
from .recording import Recording, SymbolState
from .rx import TrioScheduler
from .stats import ActorMetrics, StreamState
from .writer import Writer

if TYPE_CHECKING:
    from .streams import StreamInfo, StreamOps

log = structlog.get_logger()


class _Feed:
    """One planned connection (two physical ones during a rotation overlap) and its state."""

    def __init__(self, plan: WsPlan, index: int) -> None:
        self.plan = plan
        self.index = index
        self.session: StreamSession | None = None  # of the connection whose frame is being handled
        self.handle: WsHandle | None = None
        self.conn_id = 0
        self.up = False
        self.down_since_ns: int | None = None
        self.down_reason = ""


class _SessionConn:
    """A connection that tells its feed which session parses the frame it just returned.

    ``run_ws_connection`` calls ``on_frame`` right after ``get_message`` with
    no await in between, so the feed's ``session`` is always the one of the
    connection the frame came from.
    """

    __slots__ = ("_feed", "_ws", "session")

    def __init__(self, ws: WsConn, feed: _Feed, session: StreamSession) -> None:
        self._ws, self._feed, self.session = ws, feed, session

    async def get_message(self) -> str | bytes:
        frame = await self._ws.get_message()
        self._feed.session = self.session
        return frame

    async def send_message(self, message: str | bytes) -> None:
        await self._ws.send_message(message)

    async def ping(self, payload: bytes | None = None) -> None:
        await self._ws.ping(payload)


class LiveStream:
    """One stream: its actor body (:meth:`run`), writer, recording and counters. Made by ``StreamOps.start``."""

    def __init__(
        self, ops: StreamOps, stream_id: str, request: StreamRequest, adapter: StreamAdapter, plans: list[WsPlan]
    ) -> None:
        self.id = self.run_id = stream_id
        self.request = request
        self.exchange = request.exchange
        self.actor = f"stream:{stream_id}"
        self._ops = ops
        self._opt = opt = ops.options
        self._adapter = adapter
        self.feeds = [_Feed(p, i) for i, p in enumerate(plans)]
        datasets = [DatasetId(self.exchange, s, request.data_type, request.span) for s in request.symbols]
        self._provenance = Provenance(self.exchange, Transport.WS.value, stream_id)
        self.writer = Writer(self._write, name=f"writer:{stream_id}", **opt.writer)
        self.ingress = BoundedIngress(opt.ingress_rows, name=f"ingress:{stream_id}")
        self.recording = Recording(
            datasets,
            source=self.actor,
            sequential=sequential_ids(adapter),
            on_gap=self._gap,
            batch_rows=opt.batch_rows,
            settle_s=opt.settle_s,
        )
        self._wire()
        self.started_ns = ops.now_ns()
        self.state = StreamState.RECONNECTING
        self.error: str | None = None
        self.stop_requested = False
        self.done = trio.Event()
        self.rows_written = self.gap_rows = 0
        self.reconnects = self.gaps_open = self.acks = 0
        self.last_data_ns: int | None = None  # wall time of the latest trades/candles/book frame
        self.repairs = Repairer(
            self.recording,
            ops.pool,
            self.writer.put,
            self.actor,
            record=self._record,
            on_gap=self._gap,
            snapshot_depth=opt.snapshot_depth,
            book_depth=opt.book_depth,
            book_interval_s=opt.book_interval_s,
        )
        records = trio.open_memory_channel[tuple[str, int | None, int | None, str]](math.inf)
        self._records_in, self._records_out = records
        rec = self.recording
        self._handlers: dict[type, Callable[[Any, _Feed], None]] = {
            TradesReceived: rec.on_trades,
            CandlesClosed: rec.on_candles,
            BookReceived: rec.on_book,
            ControlAck: self._on_ack,
            ControlFailed: self._on_failed,
            HeartbeatReceived: _ignore,
            ReconnectRequested: self._on_reconnect_requested,
            Unrecognised: lambda ev, feed: rec.on_unrecognised(ev.key),
        }

    def _wire(self) -> None:
        """Compose the stream's observables (the edges that need no ``await``; see the module docstring)."""
        rec, ingress = self.recording, self.ingress
        rec.batches.subscribe(ingress.input)  # hard-bounded in rows: a WebSocket cannot be made to wait
        ingress.rejected.subscribe(on_next=rec.on_rejected)  # what did not fit becomes a hole, refilled over REST
        rec.batches.subscribe(self._ops.hub.observer(rec.key_of))  # live taps: lossy, never blocks
        self.writer.events.subscribe(on_next=self._ops.emit)  # PartWritten -> service events
        ingress.overflow_events.subscribe(on_next=self._ops.emit)  # OverflowRecorded -> service events

    # -- introspection ---------------------------------------------------------------------------

    @property
    def messages(self) -> int:
        """Frames received over every connection."""
        return sum(f.handle.stats.messages for f in self.feeds if f.handle is not None)

    @property
    def gaps_filled(self) -> int:
        """Ranges refilled over REST."""
        return self.repairs.filled

    @property
    def rows_refilled(self) -> int:
        """Rows refilled over REST."""
        return self.repairs.rows

    def info(self) -> StreamInfo:
        """A snapshot for the CLI, the API and the UI."""
        from .streams import StreamInfo  # the ops module imports this one

        r = self.request
        live = self.state in (StreamState.CONNECTED, StreamState.RECONNECTING)
        return StreamInfo(
            self.id, self.exchange, tuple(str(s) for s in r.symbols), r.data_type.value,
            r.span.label if r.span else None, self.state, self.messages, self.rows_written, self.reconnects,
            self.gaps_filled, self.gaps_open, self.run_id, self.started_ns, self.error,
            connections=len(self.feeds), connections_up=sum(f.up for f in self.feeds) if live else 0,
            down_since_ns=min((f.down_since_ns or self.started_ns for f in self.feeds if not f.up), default=None)
            if live else None,
            last_data_ns=self.last_data_ns,
            reconnect_attempts=sum(f.handle.stats.attempts for f in self.feeds if f.handle is not None),
            reconnect_failures=sum(f.handle.stats.connect_failures for f in self.feeds if f.handle is not None),
            refills_done=self.repairs.filled, refills_failed=self.repairs.failed,
            watchdog_trips=sum(f.handle.stats.watchdog_trips for f in self.feeds if f.handle is not None),
        )  # fmt: skip

    def actor_metrics(self) -> ActorMetrics:
        """Ingress depth (rows), frames in, rows out, and rows lost in unfillable gaps as drops."""
        depth = self.ingress.statistics().rows
        rows = self.recording.rows_received
        return ActorMetrics(depth, self.ingress.max_rows, self.messages, rows, self.gap_rows, None)

    # -- the actor -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[LiveStream] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect every planned connection and record until cancelled; then drain and finish the run."""
        structlog.contextvars.bind_contextvars(actor=self.actor, exchange=self.exchange, stream=self.id)
        await self._ops.runs.astart(self.run_id)
        self._state_event(RunState.RUNNING)
        state, error, ready = RunState.SUCCEEDED, None, False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.ingress.run, self.writer.input, self.writer)  # gated: awaits the writer
                flush = self.recording.flush_all
                reactivex.interval(self._opt.flush_s, TrioScheduler(nursery)).subscribe(lambda _: flush())
                for loop in (self._record_loop, self.repairs.run_fills, self._progress_loop):
                    nursery.start_soon(loop)
                if self.request.data_type is DataType.BOOK:
                    nursery.start_soon(self.repairs.run_books)
                await self._resume_from_lake()
                for feed in self.feeds:
                    feed.handle = await nursery.start(self._connection, feed)
                log.info("stream.started", symbols=[str(s) for s in self.request.symbols], connections=len(self.feeds))
                ready = True
                task_status.started(self)
        except BaseException as exc:  # the nursery groups its children's errors (and Cancelled)
            state, error, recorded = _outcome(exc, self.stop_requested)
            if not (recorded and ready):
                raise
        finally:
            # Shielded but not time-boxed: the writer bounds its own drain (drain_s), the service its shutdown (grace_s).
            with trio.CancelScope(shield=True):
                await self._finish(state, error)

    async def _resume_from_lake(self) -> None:
        """Continue after the newest stored trade (consecutive ids only): the first live id then opens the hole.

        The hole (trades stored last .. the first one received) is refilled over REST like any other,
        from the stored trade's time; a trade older than ``resume_window_s`` is not resumed from.
        """
        window_ns = round(self._opt.resume_window_s * 1e9)
        if window_ns <= 0:
            return
        now = self._ops.now_ns()
        for st in self.recording.symbols.values():
            if st.tracker is None or st.tracker.next >= 0:
                continue
            last = await self._ops.lake.alast_trade(st.dataset)
            if last is None or last.id is None:
                continue
            # its age by when it was received (an exchange's clock, or a replayed tape, may differ from ours)
            seen_ns = last.recv_ts if last.recv_ts is not None else last.ts
            if now - seen_ns > window_ns:
                continue
            try:
                after = int(last.id)
            except ValueError:
                continue
            st.tracker.next, st.seq_ts = after + 1, last.ts
            log.info("stream.resumed", symbol=str(st.dataset.symbol), after_id=after, age_s=(now - seen_ns) / 1e9)

    async def _connection(self, feed: _Feed, *, task_status: trio.TaskStatus[WsHandle]) -> None:
        plan, opt = feed.plan, self._opt
        beat_s = opt.heartbeat_s or plan.heartbeat_s
        keepalive = None
        if beat_s:
            pong_s = None if plan.heartbeat_message else opt.pong_timeout_s
            keepalive = Heartbeat(beat_s, plan.heartbeat_message, pong_s)
        await run_ws_connection(
            plan.url,
            on_frame=self._frame_handler(feed),
            on_connect=partial(self._subscribe, feed),
            on_event=partial(self._on_ws_event, feed),
            heartbeat=keepalive,
            watchdog_s=opt.watchdog_s or plan.watchdog_s,
            rotate_after_s=opt.rotate_after_s or plan.rotate_after_s,
            overlap_s=opt.overlap_s,
            backoff=self._ops.backoff,
            rand=self._ops.rand,
            connect=self._connector(feed),
            open_timeout_s=OPEN_TIMEOUT_S + max((out.delay_s for out in plan.on_open), default=0.0),
            task_status=task_status,
        )

    def _connector(self, feed: _Feed) -> Connector:
        connect, adapter = self._ops.connect, self._adapter

        @asynccontextmanager
        async def opener(url: str) -> AsyncIterator[WsConn]:
            async with connect(url) as ws:
                yield _SessionConn(ws, feed, adapter.open_session(feed.plan))

        return opener

    async def _subscribe(self, feed: _Feed, ws: WsConn) -> None:
        t0 = trio.current_time()
        for out in feed.plan.on_open:  # paced as planned: exchanges cap control messages per second
            await trio.sleep_until(t0 + out.delay_s)
            await ws.send_message(out.text)

    def _frame_handler(self, feed: _Feed) -> Callable[[str | bytes, int], None]:
        handlers = self._handlers

        def on_frame(frame: str | bytes, recv_ns: int) -> None:
            session = feed.session
            assert session is not None
            for event in session.parse(frame, recv_ns):
                kind = type(event)
                if kind in _DATA_EVENTS:
                    self.last_data_ns = recv_ns
                handlers[kind](event, feed)

        return on_frame

    def _on_ws_event(self, feed: _Feed, ev: WsEvent) -> None:
        if ev.kind in (WsEventKind.CONNECTED, WsEventKind.ROTATED):
            feed.conn_id, feed.up = ev.conn_id, True
            if ev.kind is WsEventKind.CONNECTED and feed.down_since_ns is not None:
                self.reconnects += 1
                detail = f"connection {feed.index}: {feed.down_reason}"
                self._record("reconnect", feed.down_since_ns, self._ops.now_ns(), detail)
                feed.down_since_ns = None
            log.info(f"ws.{ev.kind}", connection=feed.index, conn_id=ev.conn_id, reason=ev.reason or None)
        elif ev.kind is WsEventKind.DISCONNECTED and ev.conn_id == feed.conn_id:
            feed.up, feed.down_since_ns, feed.down_reason = False, self._ops.now_ns(), ev.reason
            self.recording.on_disconnect(s.symbol for s in feed.plan.subscriptions)
            log.warning("ws.disconnected", connection=feed.index, conn_id=ev.conn_id, reason=ev.reason)
        elif ev.kind is WsEventKind.DISCONNECTED:
            log.warning("ws.replacement_dropped", connection=feed.index, conn_id=ev.conn_id, reason=ev.reason)
        elif ev.conn_id == 0:  # an attempt that failed: the exchange does not answer
            log.warning(
                "ws.connect_failed", connection=feed.index, attempt=ev.attempt, delay_s=ev.delay_s, reason=ev.reason
            )
        else:
            log.info("ws.reconnecting", connection=feed.index, attempt=ev.attempt, delay_s=ev.delay_s, reason=ev.reason)
        if self.state in (StreamState.CONNECTED, StreamState.RECONNECTING):
            self.state = StreamState.CONNECTED if all(f.up for f in self.feeds) else StreamState.RECONNECTING

    def _on_ack(self, ev: ControlAck, feed: _Feed) -> None:
        self.acks += 1

    def _on_failed(self, ev: ControlFailed, feed: _Feed) -> None:
        raise ExchangeRejected(self.exchange, ev.code, f"subscription refused: {ev.message}")

    def _on_reconnect_requested(self, ev: ReconnectRequested, feed: _Feed) -> None:
        log.info("ws.reconnect_requested", connection=feed.index, reason=ev.reason)
        if feed.handle is not None:
            feed.handle.rotate(ev.reason)  # the replacement overlaps the old connection: nothing is lost

    # -- loops ---------------------------------------------------------------------------------------

    def _gap(self, st: SymbolState, lo: int, hi: int, detail: str) -> None:
        self.gaps_open += 1
        if st.tracker is not None:
            self.gap_rows += hi - lo + 1
        log.warning("stream.gap", symbol=str(st.dataset.symbol), lo=lo, hi=hi, detail=detail)
        self._record("gap", lo, hi, f"{st.dataset.symbol}: {detail}")

    # -- the run record ------------------------------------------------------------------------------

    def _record(self, kind: str, lo: int | None, hi: int | None, detail: str) -> None:
        self._records_in.send_nowait((kind, lo, hi, detail))
        level = "info" if kind == "filled" else "warning"
        self._ops.emit(RunLogged(self.run_id, level, f"{kind} {lo}..{hi}: {detail}"))

    async def _record_loop(self) -> None:
        async for kind, lo, hi, detail in self._records_out:
            await self._ops.runs.aevent(self.run_id, kind, lo, hi, detail)

    async def _progress_loop(self) -> None:
        """Every ``progress_s``: a RunProgressed on the bus, then the counters saved in the run store.

        An awaiting loop, not an Rx interval: saving awaits the run store (an ``on_next`` cannot await).
        """
        last = 0
        while True:
            await trio.sleep(self._opt.progress_s)
            messages = self.messages
            rate = (messages - last) / self._opt.progress_s
            last = messages
            self._ops.emit(RunProgressed(self.run_id, messages, None, "messages", 0, self.rows_written, rate))
            await self._save_progress()

    async def _save_progress(self) -> None:
        rec = self.recording
        await self._ops.runs.aprogress(
            self.run_id, unit="messages", done=self.messages, rows=self.rows_written, reconnects=self.reconnects,
            gaps_filled=self.gaps_filled, gaps_open=self.gaps_open, refilled_rows=self.rows_refilled,
            dropped_rows=rec.dropped_rows, book_resyncs=rec.book_resyncs, unrecognised=dict(rec.unrecognised),
        )  # fmt: skip

    def _state_event(self, state: RunState, error: str | None = None) -> None:
        symbols = ",".join(str(s) for s in self.request.symbols)
        dataset = f"{self.exchange}:{symbols}:{self.request.data_type.value}"
        self._ops.emit(RunStateChanged(self.run_id, "stream", state, dataset, error, self.rows_written))

    def _write(self, dataset: DatasetId, records: list[Record]) -> Any:
        """The writer's ``write`` (in a worker thread): one lake append, counted on the run."""
        result = self._ops.lake.write(dataset, records, self._provenance)
        self.rows_written += result.rows_written
        self._ops.runs.add_rows(self.run_id, result.rows_written, result.rows_quarantined)
        return result

    async def _finish(self, state: RunState, error: str | None) -> None:
        """Hand every received row to the writer, record what stays missing, drain, end the run."""
        try:
            await self._wind_up(state, error)
        finally:
            if self.state in (StreamState.CONNECTED, StreamState.RECONNECTING):  # wind-up failed half way
                self.state = StreamState.FAILED if state is RunState.FAILED else StreamState.STOPPED
            self._ops.ended(self)
            self.done.set()

    async def _refill_at_stop(self) -> None:
        """A graceful stop: refill pending holes and what a disconnected connection missed, else record gaps.

        The window between a connection's drop and the stop is known exactly
        for sequential ids (after the last id kept) and is fetched over REST
        up to the exchange's head; for other exchanges it is recorded as a
        time gap from the last trade kept to the stop.
        """
        stop_ns = self._ops.now_ns()
        pending = [*self.repairs.filling, *self.recording.claim_all()]
        self.repairs.filling.clear()
        down = {sub.symbol for f in self.feeds if not f.up for sub in f.plan.subscriptions}
        blind = [st for sym, st in self.recording.symbols.items() if sym in down]
        if self.request.data_type is DataType.TRADES:
            await self.repairs.drain(pending, blind, self._opt.stop_refill_s)
        else:
            await self.repairs.drain(pending, [], self._opt.stop_refill_s)
        for st in blind:
            if st.tracker is None and st.last_trade is not None and self.request.data_type is DataType.TRADES:
                detail = (
                    "trades after the last one kept may be missing: stopped while disconnected (ids not consecutive)"
                )
                self._gap(st, st.last_trade.ts, max(st.last_trade.ts, stop_ns), detail)

    async def _wind_up(self, state: RunState, error: str | None) -> None:
        for batch in self.recording.take_pending():
            try:
                self.writer.send(batch)  # never blocks; the writer drains it below
                self.recording.rows_received += batch.rows
            except trio.ClosedResourceError:
                self.recording.dropped_rows += batch.rows
        if state is RunState.FAILED:  # the exchange or the data is the problem: record what is open, fetch nothing more
            for st, lo, hi in self.repairs.filling:
                self._gap(st, lo, hi, "the stream stopped during the refill (rows may be partly stored)")
            for st, lo, hi in self.recording.claim_all():
                self._gap(st, lo, hi, "the stream stopped before the refill")
        else:
            await self._refill_at_stop()
        self._records_in.close()
        async for kind, first, last, detail in self._records_out:
            await self._ops.runs.aevent(self.run_id, kind, first, last, detail)
        await self._ops.stop_actor(self.writer.name)
        if state is RunState.SUCCEEDED and self.writer.lost_rows:
            state, error = RunState.FAILED, f"{self.writer.lost_rows} rows could not be written"
        await self._save_progress()
        await self._ops.runs.afinish(self.run_id, state, error=error)
        self.state, self.error = (StreamState.FAILED if state is RunState.FAILED else StreamState.STOPPED), error
        self._state_event(state, error)
        (log.error if state is RunState.FAILED else log.info)(
            "stream.finished", state=state, messages=self.messages, rows=self.rows_written, reconnects=self.reconnects,
            gaps_filled=self.gaps_filled, gaps_open=self.gaps_open, error=error,
        )  # fmt: skip


_DATA_EVENTS = frozenset((TradesReceived, CandlesClosed, BookReceived))


def _ignore(ev: Any, feed: _Feed) -> None:
    pass


def _outcome(exc: BaseException, stop_requested: bool) -> tuple[RunState, str | None, bool]:
    """``(run state, error, recorded)`` for what ended a stream.

    Cancellation alone (possibly grouped) is a stop: ``succeeded`` if asked
    for, else ``cancelled``. A :class:`DccdError` (refused subscription, drift)
    fails the run and is fully ``recorded`` there; anything else is a bug the
    supervisor must see as well.
    """
    found = leaves(exc, trio.Cancelled)
    if not found:
        return (RunState.SUCCEEDED, None, False) if stop_requested else (RunState.CANCELLED, "cancelled", False)
    first = found[0]
    if all(isinstance(e, DccdError) for e in found):
        return RunState.FAILED, str(first), True
    return RunState.FAILED, f"{type(first).__name__}: {first}", False
