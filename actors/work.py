"""The work-queue actor: distributed backfills planned into units on JetStream, pulled by every collector.

::

    distribute(request) ─► one planner run per symbol ─► units (one per UTC day, ``bus.work_unit``)
        ─► DCCD_WORK (work-queue retention, Nats-Msg-Id = unit key) ─► KV dccd_work: "queued"
    every collector with bus.work_queue: durable pull consumer "dccd_workers" (explicit ack)
        fetch 1 ─► KV "running" ─► an ordinary backfill run over the unit's range (its own writer)
                   while it runs: msg.in_progress() every ack_wait/3 (a long day is not redelivered)
               ─► run succeeded/partial (writer drained: rows committed) ─► KV "done" ─► ack
               ─► run failed ─► KV "retrying" ─► nak(backoff)   … the max_deliver-th failure:
                                KV "dead" ─► term (dead letter: a WorkUnitFinished(result=dead) event)
    planner run (its own actor): reads the units' KV states every ``poll_s`` ─► RunProgressed (unit
        counts), run record ``work`` counters ─► finished when every unit is done or dead

A collector killed mid-unit never acks: JetStream redelivers the unit to another collector after
``ack_wait``, whose run refetches the range over what the killed one wrote (backfills skip stored
rows, reads deduplicate on the natural key), so the lake ends exact. Without ``bus:`` none of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import structlog
import trio

from dccd.bus.link import BusError, NatsLink
from dccd.bus.work import (
    WORK_BUCKET,
    WORK_CONSUMER,
    WORK_STREAM,
    WORK_SUBJECTS,
    UnitState,
    WorkCounts,
    WorkUnit,
    count_units,
    decode_state,
    decode_unit,
    encode_state,
    encode_unit,
    plan_units,
    state_key,
    unit_key,
    unit_subject,
)
from dccd.config import resolve_end, resolve_start
from dccd.domain.dataset import DatasetId
from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import DccdError
from dccd.ops import BackfillRequest, InvalidRequest
from dccd.storage.runs import RunState

from .messages import RunProgressed, RunStateChanged, WorkUnitFinished
from .operations import RunHandle
from .supervisor import Role

log = structlog.get_logger()

_OK = (RunState.SUCCEEDED, RunState.PARTIAL)
MAX_DELIVERIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.{WORK_CONSUMER}"


class WorkStats(msgspec.Struct, frozen=True):
    """Counters of one collector's work queue (exported as ``dccd_work_*``).

    ``queued``/``ack_pending``: the shared consumer's backlog and units delivered but not acked (all
    collectors), as of the last poll (None before the first).
    """

    planned: int
    running: int
    done: int
    retried: int
    dead: int
    queued: int | None
    ack_pending: int | None


class WorkQueue:
    """Distributed backfills of one service (see the module docstring).

    Args:
        svc: the service (``start_backfill``, ``wait_run``, ``operations``, ``start_actor``, ``emit``).
        worker: pull units (``bus.work_queue``); a planner-only process leaves this off.
        unit_s: length of a unit (ranges are cut at multiples of it: UTC days for ``86400``).
        ack_wait_s: a unit not acked nor marked in progress this long is redelivered.
        max_deliver: deliveries of a unit before it is dead-lettered.
        concurrency: units one collector runs at once.
        max_age_s: how long the queue and the unit states are kept.
        duplicate_window_s: a unit planned again within this window is not enqueued again.
        poll_s: how often planner runs read their units' states.
        name: this collector's name in the unit states (``shard-K`` or the host's pid).
    """

    def __init__(
        self,
        svc: Any,
        *,
        worker: bool = False,
        unit_s: float = 86_400.0,
        ack_wait_s: float = 60.0,
        max_deliver: int = 4,
        concurrency: int = 1,
        max_age_s: float = 7 * 86_400.0,
        duplicate_window_s: float = 600.0,
        poll_s: float = 0.5,
        name: str = "",
    ) -> None:
        self.svc = svc
        self.worker = worker
        self.unit_ns = round(unit_s * 1e9)
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.concurrency = max(1, concurrency)
        self.max_age_s = max_age_s
        self.duplicate_window_s = duplicate_window_s
        self.poll_s = poll_s
        self.name = name or f"pid-{os.getpid()}"
        self.link: NatsLink | None = None
        self._connected = trio.Event()
        self._kv: Any = None
        self._psub: Any = None
        self._advisories: Any = None
        self.planned = self.running = self.done = self.retried = self.dead = 0
        self.queued: int | None = None
        self.ack_pending: int | None = None

    def statistics(self) -> WorkStats:
        return WorkStats(self.planned, self.running, self.done, self.retried, self.dead, self.queued, self.ack_pending)

    # -- connection --------------------------------------------------------------------------------

    async def run(self, link: NatsLink, *, task_status: trio.TaskStatus[WorkQueue] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the stream, bucket (and, as a worker, the consumer) on ``link``; pull until cancelled."""
        await self._open(link)
        self.link = link
        self._connected.set()
        task_status.started(self)
        try:
            async with trio.open_nursery() as nursery:
                if self.worker:
                    for _ in range(self.concurrency):
                        nursery.start_soon(self._pull_loop)
                nursery.start_soon(self._poll_stats)
                if self.worker:
                    nursery.start_soon(self._dead_loop)
        finally:
            self.link, self._psub = None, None
            self._connected = trio.Event()

    async def _open(self, link: NatsLink) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StreamConfig

        async def make() -> tuple[Any, Any]:
            js = link.js
            cfg = StreamConfig(
                name=WORK_STREAM,
                subjects=WORK_SUBJECTS,
                retention=RetentionPolicy.WORK_QUEUE,
                max_age=self.max_age_s,
                duplicate_window=self.duplicate_window_s,
            )
            try:
                await js.add_stream(cfg)
            except Exception:
                await js.update_stream(cfg)
            try:
                kv = await js.key_value(WORK_BUCKET)
            except Exception:
                kv = await js.create_key_value(KeyValueConfig(bucket=WORK_BUCKET, history=1, ttl=self.max_age_s))
            psub = None
            if self.worker:
                ccfg = ConsumerConfig(
                    durable_name=WORK_CONSUMER,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait_s,
                    max_deliver=self.max_deliver,
                    max_ack_pending=-1,
                )
                psub = await js.pull_subscribe(WORK_SUBJECTS[0], durable=WORK_CONSUMER, stream=WORK_STREAM, config=ccfg)
                ci = await psub.consumer_info()
                if ci.config.max_deliver and ci.config.max_deliver > 0:
                    self.max_deliver = int(ci.config.max_deliver)  # the consumer's, should collectors disagree
                # one collector (a queue group) hears of each unit JetStream stopped delivering
                self._advisories = await link.nc.subscribe(MAX_DELIVERIES, queue=WORK_CONSUMER)
            return kv, psub

        self._kv, self._psub = await link.call(make)

    async def wait_connected(self, timeout_s: float = 10.0) -> NatsLink:
        """The link once the queue is open on it.

        Raises:
            BusError: not connected within ``timeout_s``.
        """
        with trio.move_on_after(timeout_s):
            await self._connected.wait()
        if self.link is None:
            raise BusError(f"the bus is not connected (waited {timeout_s:g} s)")
        return self.link

    # -- planning ----------------------------------------------------------------------------------

    async def distribute(self, req: BackfillRequest) -> list[str]:
        """Plan a backfill into units on the queue: one planner run per symbol; returns their run ids.

        Raises:
            InvalidRequest: no start time (``last``/``origin`` cannot be cut into units), ``derive_from``.
            NoCapability, ConfigError: as :meth:`Operations.start_backfill`, before anything is queued.
            BusError: the bus is not connected or did not store the units.
        """
        ops = self.svc.operations
        if req.derive_from is not None:
            raise InvalidRequest("distribute", "bars derived from stored trades run locally, not as work units")
        ops.check_backfill(req)
        now = ops.now_ns()
        start, end = resolve_start(req.start, now), resolve_end(req.end, now)
        if not isinstance(start, int):
            raise InvalidRequest("start", "a distributed backfill needs a start time (ISO or -30d), not last/origin")
        link = await self.wait_connected()
        run_ids = []
        for sym in req.symbols:
            ds = DatasetId(req.exchange, sym, req.data_type, req.span)
            run_id = await ops.runs.acreate("backfill", ds)
            units = plan_units(run_id, ds, start, min(end, now), self.unit_ns, source=req.source)
            await ops.runs.aprogress(
                run_id, requested_start=start, requested_end=end, distributed=True, unit="units", total=len(units)
            )
            await self._enqueue(link, units)
            handle = RunHandle(run_id, f"work-plan:{run_id}", "")
            ops.active[run_id] = handle
            try:
                await self.svc.start_actor(
                    handle.actor, partial(self._track, ds, [state_key(u) for u in units], handle),
                    role=Role.SOURCE, escalate=False,
                )  # fmt: skip
            except BaseException:
                ops.active.pop(run_id, None)
                raise
            log.info("work.planned", run_id=run_id, dataset=str(ds), units=len(units))
            run_ids.append(run_id)
        return run_ids

    async def _enqueue(self, link: NatsLink, units: list[WorkUnit]) -> None:
        """Publish the units (pipelined, acked) and mark the new ones ``queued``.

        A unit published again within the duplicate window is not enqueued again and keeps its state
        (running, or done by the earlier plan). A new unit's ``queued`` is written only if its entry is
        still the one read before publishing: a worker that already took it wrote a newer state.
        """
        kv = self._kv

        async def send() -> int:
            from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

            before: dict[str, int] = {}
            for u in units:
                with contextlib.suppress(KeyNotFoundError):
                    before[state_key(u)] = (await kv.get(state_key(u))).revision
            futs = []
            for u in units:
                hdr = {"Nats-Msg-Id": unit_key(u), "Content-Type": "application/json"}
                futs.append(await link.js.publish_async(unit_subject(u), encode_unit(u), headers=hdr))
            acks = await asyncio.gather(*futs)
            fresh = 0
            queued = encode_state(UnitState("queued"))
            for u, ack in zip(units, acks, strict=True):
                if ack.duplicate:
                    continue
                fresh += 1
                key = state_key(u)
                with contextlib.suppress(KeyWrongLastSequenceError):
                    if key in before:
                        await kv.update(key, queued, last=before[key])
                    else:
                        await kv.create(key, queued)
            return fresh

        fresh = await link.call(send, timeout_s=link.timeout_s + 0.01 * len(units))
        self.planned += fresh

    async def _track(
        self,
        ds: DatasetId,
        keys: list[str],
        handle: RunHandle,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The planner run: unit counts into progress events and the run record until every unit is over."""
        ops, run_id = self.svc.operations, handle.run_id
        await ops.runs.astart(run_id)
        self.svc.emit(RunStateChanged(run_id, "backfill", RunState.RUNNING, str(ds)))
        task_status.started()
        error: str | None = "cancelled"
        state, counts = RunState.CANCELLED, WorkCounts(len(keys), len(keys), 0, 0, 0, 0, 0)
        dead_seen: set[str] = set()
        t0 = trio.current_time()
        try:
            while True:
                try:
                    states = await self._states(keys)
                except BusError as exc:
                    log.warning("work.poll_failed", run_id=run_id, error=str(exc))
                    await trio.sleep(self.poll_s * 4)
                    continue
                counts = count_units(keys, states)
                for k, st in states.items():
                    if st is not None and st.status == "dead" and k not in dead_seen:
                        dead_seen.add(k)
                        await ops.runs.aevent(run_id, "dead_letter", None, None, f"{k}: {st.error}")
                elapsed = max(trio.current_time() - t0, 1e-9)
                self.svc.emit(
                    RunProgressed(
                        run_id, counts.done + counts.dead, counts.total, "units", 0, counts.rows, counts.rows / elapsed
                    )
                )
                await ops.runs.aprogress(run_id, done=counts.done + counts.dead, work=msgspec.to_builtins(counts))
                if counts.finished:
                    break
                await trio.sleep(self.poll_s * max(1.0, len(keys) / 200))  # big plans: fewer reads
            if counts.dead:
                errors = sorted({st.error or "" for st in states.values() if st is not None and st.status == "dead"})
                state = RunState.FAILED
                error = (
                    f"{counts.dead} of {counts.total} work units failed {self.max_deliver} times (dead letters): "
                    + "; ".join(errors)[:500]
                )
            else:
                state, error = RunState.SUCCEEDED, None
        finally:
            with trio.CancelScope(shield=True):
                try:
                    ops.runs.add_rows(run_id, counts.rows)
                    await ops.runs.aprogress(run_id, work=msgspec.to_builtins(counts))
                    await ops.runs.afinish(run_id, state, error=error)
                finally:
                    self.svc.emit(RunStateChanged(run_id, "backfill", state, str(ds), error, counts.rows))
                    (log.error if state is RunState.FAILED else log.info)(
                        "work.plan_finished", run_id=run_id, state=state, units=counts.total, dead=counts.dead
                    )
                    ops.active.pop(run_id, None)
                    handle.done.set()

    async def _states(self, keys: list[str]) -> dict[str, UnitState | None]:
        link, kv = await self.wait_connected(), self._kv

        async def read() -> dict[str, UnitState | None]:
            from nats.js.errors import KeyNotFoundError

            out: dict[str, UnitState | None] = {}
            for k in keys:
                try:
                    entry = await kv.get(k)
                    out[k] = decode_state(entry.value)
                except KeyNotFoundError:
                    out[k] = None
            return out

        return await link.call(read, timeout_s=link.timeout_s + 0.005 * len(keys))

    # -- working -----------------------------------------------------------------------------------

    async def _pull_loop(self) -> None:
        fetch_s = 2.0
        while True:
            link, psub = self.link, self._psub
            if link is None or psub is None:
                return

            async def fetch(psub: Any = psub) -> list[Any]:
                import nats.errors

                try:
                    return list(await psub.fetch(1, timeout=fetch_s))
                except nats.errors.TimeoutError:
                    return []

            try:
                msgs = await link.call(fetch, timeout_s=fetch_s + 5.0)
            except BusError as exc:
                log.warning("work.fetch_failed", error=str(exc))
                await trio.sleep(1.0)
                continue
            for msg in msgs:
                await self._handle(link, msg)

    async def _set(self, link: NatsLink, unit: WorkUnit, st: UnitState) -> None:
        kv = self._kv
        try:
            await link.call(partial(kv.put, state_key(unit), encode_state(st)))
        except BusError as exc:
            log.warning("work.state_failed", unit=unit_key(unit), status=st.status, error=str(exc))

    async def _reply(self, link: NatsLink, what: Callable[[], Awaitable[Any]], action: str) -> None:
        try:
            await link.call(what)
        except BusError as exc:  # not acked: redelivered after ack_wait, and the writer deduplicates
            log.warning("work.reply_failed", action=action, error=str(exc))

    async def _handle(self, link: NatsLink, msg: Any) -> None:
        deliveries = int(msg.metadata.num_delivered)
        try:
            unit = decode_unit(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.dead += 1
            log.error("work.unit_unreadable", error=str(exc), subject=msg.subject)
            self.svc.emit(WorkUnitFinished("", "", "", "", 0, 0, "dead", deliveries, error=f"unreadable unit: {exc}"))
            await self._reply(link, msg.term, "term")
            return
        key = unit_key(unit)
        await self._set(link, unit, UnitState("running", self.name, deliveries=deliveries))
        self.running += 1
        try:
            run_id, record = await self._run_unit(link, unit, msg, deliveries)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await self._set(link, unit, UnitState("queued", self.name, deliveries=deliveries, error="interrupted"))
                await self._reply(link, msg.nak, "nak")  # another collector takes it at once
            raise
        finally:
            self.running -= 1
        rows = record.rows_written if record is not None else 0
        if record is not None and record.state in _OK:
            await self._set(link, unit, UnitState("done", self.name, run_id, rows, deliveries))
            await self._reply(link, msg.ack_sync, "ack")
            self.done += 1
            result, error = "done", None
        else:
            error = (record.error if record is not None else None) or "failed"
            if record is not None and record.state is RunState.CANCELLED:
                error = "cancelled"
            if deliveries >= self.max_deliver:
                await self._set(link, unit, UnitState("dead", self.name, run_id, 0, deliveries, error))
                await self._reply(link, msg.term, "term")
                self.dead += 1
                result = "dead"
            else:
                await self._set(link, unit, UnitState("retrying", self.name, run_id, 0, deliveries, error))
                await self._reply(link, partial(msg.nak, delay=min(2.0**deliveries, 30.0)), "nak")
                self.retried += 1
                result = "retrying"
        (log.info if result == "done" else log.error if result == "dead" else log.warning)(
            "work.unit_" + result, unit=key, run_id=run_id, rows=rows, deliveries=deliveries, error=error
        )
        self.svc.emit(
            WorkUnitFinished(
                unit.plan, key, unit.exchange, unit.symbol, unit.start_ns, unit.end_ns, result, deliveries,
                run_id, rows, error,
            )
        )  # fmt: skip

    async def _run_unit(self, link: NatsLink, unit: WorkUnit, msg: Any, deliveries: int) -> tuple[str | None, Any]:
        """One ordinary backfill run over the unit's range, heartbeating the message while it runs."""
        try:
            req = BackfillRequest(
                unit.exchange,
                (Symbol.parse(unit.symbol),),
                DataType.parse(unit.type),
                Span.parse(unit.span) if unit.span else None,
                ns_to_iso(unit.start_ns),
                ns_to_iso(unit.end_ns),
                job_id=f"work:{unit.plan}",
                source=unit.source,
            )
            (run_id,) = await self.svc.start_backfill(req)
        except (DccdError, ValueError) as exc:
            log.error("work.unit_rejected", unit=unit_key(unit), error=str(exc))
            return None, _Failed(str(exc))
        await self._set(link, unit, UnitState("running", self.name, run_id, deliveries=deliveries))
        async with trio.open_nursery() as nursery:

            async def heartbeat() -> None:
                while True:
                    await trio.sleep(self.ack_wait_s / 3)
                    await self._reply(link, msg.in_progress, "in_progress")

            nursery.start_soon(heartbeat)
            record = await self.svc.wait_run(run_id)
            nursery.cancel_scope.cancel()
        return run_id, record

    async def _dead_loop(self) -> None:
        """Units JetStream stopped delivering without an ack (the collector running their last delivery
        stopped): read the unit from the stream, record it dead, delete it (the advisory names its sequence)."""
        import json

        while True:
            link, sub = self.link, self._advisories
            if link is None or sub is None:
                return

            async def next_advisory(sub: Any = sub) -> Any:
                import nats.errors

                try:
                    return await sub.next_msg(timeout=2.0)
                except nats.errors.TimeoutError:
                    return None

            try:
                adv = await link.call(next_advisory, timeout_s=7.0)
                if adv is None:
                    continue
                seq = int(json.loads(adv.data)["stream_seq"])
                raw = await link.call(partial(link.js.get_msg, WORK_STREAM, seq))
                unit = decode_unit(raw.data)
            except (BusError, ValueError, KeyError, msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.warning("work.advisory_unreadable", error=str(exc))
                continue
            error = f"delivered {self.max_deliver} times without an ack (the collector running it stopped)"
            await self._set(link, unit, UnitState("dead", "", None, 0, self.max_deliver, error))
            with contextlib.suppress(BusError):
                await link.call(partial(link.js.delete_msg, WORK_STREAM, seq))
            self.dead += 1
            log.error("work.unit_dead", unit=unit_key(unit), deliveries=self.max_deliver, error=error)
            self.svc.emit(
                WorkUnitFinished(
                    unit.plan, unit_key(unit), unit.exchange, unit.symbol, unit.start_ns, unit.end_ns, "dead",
                    self.max_deliver, error=error,
                )
            )  # fmt: skip

    async def _poll_stats(self) -> None:
        """The shared consumer's backlog (``dccd_work_queued``/``_ack_pending``) every few seconds."""
        while True:
            link = self.link
            if link is None:
                return
            with contextlib.suppress(BusError):

                async def info(link: NatsLink = link) -> tuple[int, int]:
                    ci = await link.js.consumer_info(WORK_STREAM, WORK_CONSUMER)
                    return int(ci.num_pending or 0), int(ci.num_ack_pending or 0)

                if self.worker:
                    self.queued, self.ack_pending = await link.call(info, timeout_s=5.0)
            await trio.sleep(2.0)


async def read_queue(link: NatsLink) -> dict[str, Any]:
    """The shared queue as NATS holds it: backlog, unacked, redelivered units, and unit states by status.

    Raises:
        BusError: NATS did not answer (or the queue was never created: no collector or planner ran yet).
    """

    async def read() -> dict[str, Any]:
        from nats.js.errors import NoKeysError, NotFoundError

        out: dict[str, Any] = {"queued": 0, "unacked": 0, "redelivered": 0, "units": {}}
        try:
            ci = await link.js.consumer_info(WORK_STREAM, WORK_CONSUMER)
            out.update(queued=ci.num_pending or 0, unacked=ci.num_ack_pending or 0, redelivered=ci.num_redelivered or 0)
        except NotFoundError:
            pass
        kv = await link.js.key_value(WORK_BUCKET)
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        for k in keys:
            st = decode_state((await kv.get(k)).value)
            status = st.status if st is not None else "unreadable"
            out["units"][status] = out["units"].get(status, 0) + 1
        return out

    return await link.call(read, timeout_s=30.0)


class _Failed(msgspec.Struct, frozen=True):
    """A unit whose run could not even start (bad unit, unknown symbol): looks like a failed run record."""

    error: str
    state: RunState = RunState.FAILED
    rows_written: int = 0


def work_queue_of(svc: Any, bus: Any, shard: str | None) -> WorkQueue:
    """The :class:`WorkQueue` of a service from its ``bus:`` settings (``shard`` names the collector)."""
    from dccd.config.timeexpr import parse_duration_s

    return WorkQueue(
        svc,
        worker=bool(getattr(bus, "work_queue", False)),
        unit_s=parse_duration_s(getattr(bus, "work_unit", "1d")),
        ack_wait_s=parse_duration_s(getattr(bus, "work_ack_wait", "60s")),
        max_deliver=int(getattr(bus, "work_max_deliver", 4)),
        concurrency=int(getattr(bus, "work_concurrency", 1)),
        duplicate_window_s=parse_duration_s(bus.duplicate_window),
        name=f"shard-{shard}" if shard else f"pid-{os.getpid()}-{time.time_ns() % 10**6}",
    )


__all__ = ["WorkQueue", "WorkStats", "read_queue", "work_queue_of"]
