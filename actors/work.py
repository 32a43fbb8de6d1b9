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

import os
import time
from functools import partial
from typing import Any

import msgspec
import structlog
import trio

from dccd.bus.link import BusError, NatsLink
from dccd.bus.queue import Reply, WorkQueueClient
from dccd.bus.work import (
    UnitState,
    WorkCounts,
    WorkUnit,
    after_failure,
    count_units,
    decode_unit,
    plan_units,
    state_key,
    unit_key,
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
        max_deliver: deliveries of a unit before it is dead-lettered (the consumer's wins once open).
        concurrency: units one collector runs at once.
        max_age_s: how long the queue and the unit states are kept.
        duplicate_window_s: a unit planned again within this window is not enqueued again.
        poll_s: how often planner runs read their units' states.
        name: this collector's name in the unit states (``shard-K/N`` or ``pid-…``).
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
        self.queue: WorkQueueClient | None = None
        self._connected = trio.Event()
        self.planned = self.running = self.done = self.retried = self.dead = 0
        self.queued: int | None = None
        self.ack_pending: int | None = None

    @property
    def link(self) -> NatsLink | None:
        """The bus connection while the queue is open on it."""
        return self.queue.link if self.queue is not None else None

    def statistics(self) -> WorkStats:
        return WorkStats(self.planned, self.running, self.done, self.retried, self.dead, self.queued, self.ack_pending)

    # -- connection --------------------------------------------------------------------------------

    async def run(self, link: NatsLink, *, task_status: trio.TaskStatus[WorkQueue] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the queue on ``link`` (as a worker: pull units) until cancelled."""
        q = await WorkQueueClient.open(
            link, worker=self.worker, ack_wait_s=self.ack_wait_s, max_deliver=self.max_deliver,
            max_age_s=self.max_age_s, duplicate_window_s=self.duplicate_window_s,
        )  # fmt: skip
        self.queue, self.max_deliver = q, q.max_deliver
        self._connected.set()
        task_status.started(self)
        try:
            if self.worker:
                async with trio.open_nursery() as nursery:
                    for _ in range(self.concurrency):
                        nursery.start_soon(self._pull_loop, q)
                    nursery.start_soon(self._dead_loop, q)
                    nursery.start_soon(self._poll_backlog, q)
            else:
                await trio.sleep_forever()
        finally:
            self.queue = None
            self._connected = trio.Event()

    async def wait_connected(self, timeout_s: float = 10.0) -> NatsLink:
        """The link once the queue is open on it.

        Raises:
            BusError: not connected within ``timeout_s``.
        """
        return (await self._queue(timeout_s)).link

    async def _queue(self, timeout_s: float = 10.0) -> WorkQueueClient:
        with trio.move_on_after(timeout_s):
            await self._connected.wait()
        if self.queue is None:
            raise BusError(f"the bus is not connected (waited {timeout_s:g} s)")
        return self.queue

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
        q = await self._queue()
        run_ids = []
        for sym in req.symbols:
            ds = DatasetId(req.exchange, sym, req.data_type, req.span)
            run_id = await ops.runs.acreate("backfill", ds)
            units = plan_units(run_id, ds, start, min(end, now), self.unit_ns, source=req.source)
            await ops.runs.aprogress(
                run_id, requested_start=start, requested_end=end, distributed=True, unit="units", total=len(units)
            )
            self.planned += await q.enqueue(units)
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
        states: dict[str, UnitState | None] = {}
        dead_seen: set[str] = set()
        t0 = trio.current_time()
        try:
            while True:
                try:
                    states = await (await self._queue()).states(keys)
                except BusError as exc:
                    log.warning("work.poll_failed", run_id=run_id, error=str(exc))
                    await trio.sleep(self.poll_s * 4)
                    continue
                counts = count_units(keys, states)
                for k, st in states.items():
                    if st is not None and st.status == "dead" and k not in dead_seen:
                        dead_seen.add(k)
                        await ops.runs.aevent(run_id, "dead_letter", None, None, f"{k}: {st.error}")
                rate = counts.rows / max(trio.current_time() - t0, 1e-9)
                done = counts.done + counts.dead
                self.svc.emit(RunProgressed(run_id, done, counts.total, "units", 0, counts.rows, rate))
                await ops.runs.aprogress(run_id, done=done, work=msgspec.to_builtins(counts))
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

    # -- working -----------------------------------------------------------------------------------

    async def _pull_loop(self, q: WorkQueueClient) -> None:
        while True:
            try:
                msgs = await q.fetch(2.0)
            except BusError as exc:
                log.warning("work.fetch_failed", error=str(exc))
                await trio.sleep(1.0)
                continue
            for msg in msgs:
                await self._handle(q, msg)

    async def _set(self, q: WorkQueueClient, unit: WorkUnit, st: UnitState) -> None:
        try:
            await q.set_state(unit, st)
        except BusError as exc:
            log.warning("work.state_failed", unit=unit_key(unit), status=st.status, error=str(exc))

    async def _reply(self, q: WorkQueueClient, msg: Any, what: Reply, delay_s: float | None = None) -> None:
        try:
            await q.reply(msg, what, delay_s=delay_s)
        except BusError as exc:  # not acked: redelivered after ack_wait, and the writer deduplicates
            log.warning("work.reply_failed", action=what, error=str(exc))

    def _finished(
        self, unit: WorkUnit, result: str, deliveries: int, run_id: str | None, rows: int, error: str | None
    ) -> None:
        (log.info if result == "done" else log.error if result == "dead" else log.warning)(
            "work.unit_" + result, unit=unit_key(unit), run_id=run_id, rows=rows, deliveries=deliveries, error=error
        )
        self.svc.emit(
            WorkUnitFinished(
                unit.plan, unit_key(unit), unit.exchange, unit.symbol, unit.start_ns, unit.end_ns, result,
                deliveries, run_id, rows, error,
            )
        )  # fmt: skip

    async def _handle(self, q: WorkQueueClient, msg: Any) -> None:
        deliveries = int(msg.metadata.num_delivered)
        try:
            unit = decode_unit(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.dead += 1
            log.error("work.unit_unreadable", error=str(exc), subject=msg.subject)
            self.svc.emit(WorkUnitFinished("", "", "", "", 0, 0, "dead", deliveries, error=f"unreadable unit: {exc}"))
            await self._reply(q, msg, "term")
            return
        await self._set(q, unit, UnitState("running", self.name, deliveries=deliveries))
        self.running += 1
        try:
            run_id, state, rows, error = await self._run_unit(q, unit, msg, deliveries)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await self._set(q, unit, UnitState("queued", self.name, deliveries=deliveries, error="interrupted"))
                await self._reply(q, msg, "nak")  # another collector takes it at once
            raise
        finally:
            self.running -= 1
        if state in _OK:
            await self._set(q, unit, UnitState("done", self.name, run_id, rows, deliveries))
            await self._reply(q, msg, "ack")
            self.done += 1
            self._finished(unit, "done", deliveries, run_id, rows, None)
            return
        status, delay_s = after_failure(deliveries, self.max_deliver)
        await self._set(q, unit, UnitState(status, self.name, run_id, 0, deliveries, error))
        if status == "dead":
            await self._reply(q, msg, "term")
            self.dead += 1
        else:
            await self._reply(q, msg, "nak", delay_s)
            self.retried += 1
        self._finished(unit, status, deliveries, run_id, 0, error)

    async def _run_unit(
        self, q: WorkQueueClient, unit: WorkUnit, msg: Any, deliveries: int
    ) -> tuple[str | None, RunState, int, str | None]:
        """One ordinary backfill run over the unit's range, heartbeating the message while it runs;
        returns its run id, final state, rows written and error."""
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
            return None, RunState.FAILED, 0, str(exc)
        await self._set(q, unit, UnitState("running", self.name, run_id, deliveries=deliveries))
        async with trio.open_nursery() as nursery:

            async def heartbeat() -> None:
                while True:
                    await trio.sleep(self.ack_wait_s / 3)
                    await self._reply(q, msg, "in_progress")

            nursery.start_soon(heartbeat)
            record = await self.svc.wait_run(run_id)
            nursery.cancel_scope.cancel()
        error = "cancelled" if record.state is RunState.CANCELLED else (record.error or None)
        return run_id, record.state, record.rows_written, error if record.state not in _OK else None

    async def _dead_loop(self, q: WorkQueueClient) -> None:
        """Units JetStream stopped delivering without an ack (the collector running their last delivery
        stopped): recorded dead by the one collector the advisory reached."""
        while True:
            try:
                got = await q.next_dead(2.0)
                if got is None:
                    continue
                unit = decode_unit(got[1])
            except (BusError, ValueError, KeyError, msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.warning("work.advisory_unreadable", error=str(exc))
                continue
            error = f"delivered {self.max_deliver} times without an ack (the collector running it stopped)"
            await self._set(q, unit, UnitState("dead", "", None, 0, self.max_deliver, error))
            self.dead += 1
            self._finished(unit, "dead", self.max_deliver, None, 0, error)

    async def _poll_backlog(self, q: WorkQueueClient) -> None:
        """The shared consumer's backlog (``dccd_work_queued``/``_unacked``) every few seconds."""
        while True:
            try:
                self.queued, self.ack_pending, _ = await q.backlog()
            except BusError as exc:
                log.debug("work.backlog_failed", error=str(exc))
            await trio.sleep(2.0)


async def read_queue(link: NatsLink) -> dict[str, Any]:
    """The shared queue as NATS holds it: backlog, unacked, redelivered units, and unit states by status.

    Raises:
        BusError: NATS did not answer (or the queue was never created: no collector or planner ran yet).
    """
    q = await WorkQueueClient.attach(link)
    queued, unacked, redelivered = await q.backlog()
    return {"queued": queued, "unacked": unacked, "redelivered": redelivered, "units": await q.status_counts()}


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
