"""Operations on a running service: backfills (and, via streams.py, live recordings) as runs.

One run per (request, symbol). A run owns a backfill actor (role SOURCE) and
its own batched writer (role WRITER), so a run's rows, quarantine counts and
provenance are its own, and stopping a run drains exactly its writer.

The graph of one backfill run::

    Backfiller ══await writer.wait_writable()══► writer.input.on_next(Batch)   (one page per Batch)
    Backfiller: RunProgressed, RunLogged, GapDetected ──► service events
    writer.events: PartWritten ─────────────────────────► service events
    Operations: RunStateChanged ────────────────────────► service events

The page loop awaits the gate before every page (an ``on_next`` cannot
await), so the writer's speed sets the fetch rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypedDict

import pyarrow as pa
import structlog
import trio

from dccd.config import parse_duration_s, resolve_end, resolve_start
from dccd.domain.capability import Transport
from dccd.domain.dataset import DatasetId
from dccd.errors import DccdError
from dccd.ops import BackfillRequest
from dccd.sources.registry import get_adapter
from dccd.storage.compaction import CompactPolicy, CompactResult
from dccd.storage.lake import Lake
from dccd.storage.runs import RunRecord, RunState, RunStore
from dccd.storage.writer import Provenance

from .backfill import Backfiller, BackfillJob
from .clients import ClientPool
from .derive import TRANSPORT as DERIVED
from .derive import Deriver
from .messages import Message, RunStateChanged
from .supervisor import Role
from .writer import Writer, WriterOptions

log = structlog.get_logger()


def check_backfill(req: BackfillRequest) -> None:
    """Fail early (before any run or request) on what the adapter does not declare.

    Raises:
        NoCapability: type/span/market not offered over REST.
        ConfigError: unknown exchange.
    """
    adapter = get_adapter(req.exchange)
    if req.derive_from is not None:
        return  # bars from the stored trades: any span, no request to the exchange
    for sym in req.symbols:
        adapter.capabilities.require_symbol(req.data_type, Transport.REST, req.span, sym)


class RunHandle:
    """An in-flight run: its actor names and completion event."""

    def __init__(self, run_id: str, actor: str, writer: str) -> None:
        self.run_id = run_id
        self.actor = actor
        self.writer = writer
        self.done = trio.Event()
        self.rows_written = 0
        self.rows_quarantined = 0


class OperationsOptions(TypedDict, total=False):
    """Keyword options of :class:`Operations` (``open_service(ops_options=...)``)."""

    writer_options: WriterOptions | None
    concurrency: int
    now_ns: Callable[[], int]


class Operations:
    """Backfill (and stream) operations of one service.

    Args:
        start_actor / stop_actor / emit: the service's.
        lake, runs, pool: storage, run history and exchange clients.
        writer_options: :class:`Writer` options (``max_rows``, ``max_age_s``, ``high``).
        concurrency: OHLC windows in flight per backfill.
        now_ns: wall clock (ns); tests may pin it.
    """

    def __init__(
        self,
        start_actor: Callable[..., Any],
        stop_actor: Callable[[str], Any],
        emit: Callable[[Message], None],
        lake: Lake,
        runs: RunStore,
        pool: ClientPool,
        *,
        writer_options: WriterOptions | None = None,
        concurrency: int = 4,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._start_actor = start_actor
        self._stop_actor = stop_actor
        self._emit = emit
        self.lake = lake
        self.runs = runs
        self.pool = pool
        # high: pages the writer queues while a part is being written. 32 pages keep the fetchers busy
        # through a 100k-row write (~0.3 s) instead of stalling them after 4; memory stays bounded
        # by max_rows + high pages.
        self.writer_options: WriterOptions = {
            "max_rows": 100_000,
            "max_age_s": 2.0,
            "high": 32,
            **(writer_options or {}),
        }
        self.concurrency = concurrency
        self.now_ns = now_ns
        self.active: dict[str, RunHandle] = {}

    # -- backfills -----------------------------------------------------------------------------

    def check_backfill(self, req: BackfillRequest) -> None:
        """Fail early (before any run or request); see :func:`check_backfill`."""
        check_backfill(req)

    async def start_backfill(self, req: BackfillRequest) -> list[str]:
        """Create one run per symbol and start them; returns the run ids at once.

        Raises:
            NoCapability, ConfigError: before any run is created.
            ValueError: bad start/end.
        """
        self.check_backfill(req)
        now = self.now_ns()
        start = resolve_start(req.start, now)
        end = resolve_end(req.end, now)
        run_ids = []
        for sym in req.symbols:
            ds = DatasetId(req.exchange, sym, req.data_type, req.span)
            run_id = await self.runs.acreate("backfill", ds)
            # what was asked, for the inventory's requested-vs-stored coverage ("last"/"origin" kept as text)
            await self.runs.aprogress(run_id, requested_start=start if start is not None else "last", requested_end=end)
            job = BackfillJob(
                run_id,
                ds,
                start if start is not None else "last",
                end,
                now,
                concurrency=self.concurrency,
                derive_from=req.derive_from,
            )
            await self._launch(job)
            run_ids.append(run_id)
        return run_ids

    async def _launch(self, job: BackfillJob) -> None:
        handle = RunHandle(job.run_id, f"backfill:{job.run_id}", f"writer:{job.run_id}")
        transport = DERIVED if job.derive_from else Transport.REST.value
        provenance = Provenance(job.dataset.exchange, transport, job.run_id)
        lake, runs = self.lake, self.runs

        def write(dataset: DatasetId, records: list[Any]) -> Any:
            if records and isinstance(records[0], pa.Table):  # derived bars travel as Arrow tables
                result = lake.write_table(dataset, pa.concat_tables(records), provenance)
            else:
                result = lake.write(dataset, records, provenance)
            handle.rows_written += result.rows_written
            handle.rows_quarantined += result.rows_quarantined
            runs.add_rows(job.run_id, result.rows_written, result.rows_quarantined)
            return result

        options = self.writer_options
        if job.derive_from:  # a derived Batch holds one table (a day of bars): flush every few of them
            options = {**options, "max_rows": 8}
        writer = Writer(write, name=handle.writer, **options)
        writer.events.subscribe(on_next=self._emit)  # PartWritten -> service events
        await self._start_actor(handle.writer, writer.run, role=Role.WRITER, escalate=False)
        self.active[job.run_id] = handle
        try:
            await self._start_actor(
                handle.actor, self._run_backfill, job, writer, handle, role=Role.SOURCE, escalate=False
            )
        except BaseException as exc:  # it failed before it was running: no orphaned writer, no run left "pending"
            with trio.CancelScope(shield=True):
                self.active.pop(job.run_id, None)
                await self._stop_actor(handle.writer)
                error = "cancelled" if isinstance(exc, trio.Cancelled) else f"{type(exc).__name__}: {exc}"
                state = RunState.CANCELLED if isinstance(exc, trio.Cancelled) else RunState.FAILED
                try:
                    await self.runs.afinish(job.run_id, state, error=error)
                finally:
                    self._state(job, state, error)
                    handle.done.set()
            raise

    async def _run_backfill(
        self,
        job: BackfillJob,
        writer: Writer,
        handle: RunHandle,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        structlog.contextvars.bind_contextvars(
            actor=handle.actor, exchange=job.dataset.exchange, symbol=str(job.dataset.symbol)
        )
        await self.runs.astart(job.run_id)
        self._state(job, RunState.RUNNING)
        task_status.started()
        bf: Backfiller | Deriver
        if job.derive_from:
            bf = Deriver(job, self.lake, self.runs, writer.input.on_next, writer.wait_writable, self._emit)
        else:
            bf = Backfiller(
                job, self.pool, self.lake, self.runs, writer.input.on_next, writer.wait_writable, self._emit
            )
        state, error = RunState.SUCCEEDED, None
        try:
            await bf.run()
            if bf.partial is not None:  # part of the range is not served by the exchange: say so, exit non-zero
                state, error = RunState.PARTIAL, bf.partial
        except DccdError as exc:
            state, error = RunState.FAILED, str(exc)
        except Exception as exc:  # a bug: this run's failure (recorded, logged with its traceback), not the service's
            state, error = RunState.FAILED, f"{type(exc).__name__}: {exc}"
            log.error("backfill.crashed", run_id=job.run_id, error=error, exc_info=exc)
        except BaseException:  # Cancelled, also inside a nursery's group (the OHLC windows)
            state, error = RunState.CANCELLED, "cancelled"
            raise
        finally:
            with trio.CancelScope(shield=True):
                # Only the drain is bounded: the run must always be finished and its waiters woken,
                # whatever the writer does (a bounded drain that ran out must not leave it "running").
                with trio.move_on_after(writer.drain_s + 5) as drain:
                    await self._stop_actor(handle.writer)
                if state in (RunState.SUCCEEDED, RunState.PARTIAL) and drain.cancelled_caught:
                    state, error = RunState.FAILED, f"the writer did not drain within {writer.drain_s + 5:g}s"
                if state in (RunState.SUCCEEDED, RunState.PARTIAL) and writer.lost_rows:
                    state, error = RunState.FAILED, f"{writer.lost_rows} rows could not be written"
                try:
                    await bf.save()
                    await self.runs.afinish(job.run_id, state, error=error)
                finally:
                    self._state(job, state, error, handle.rows_written)
                    (log.error if state is RunState.FAILED else log.info)(
                        "backfill.finished",
                        run_id=job.run_id,
                        state=state,
                        rows=handle.rows_written,
                        quarantined=handle.rows_quarantined,
                        pages=bf.progress.pages,
                        error=error,
                    )
                    self.active.pop(job.run_id, None)
                    handle.done.set()

    def _state(self, job: BackfillJob, state: RunState, error: str | None = None, rows: int = 0) -> None:
        self._emit(RunStateChanged(job.run_id, "backfill", state, str(job.dataset), error, rows))

    # -- maintenance ---------------------------------------------------------------------------

    async def start_configured_maintenance(self, config: Any) -> bool:
        """Start maintenance as ``config.storage`` says (``compact_every``, ``compact_min_age``,
        ``compact_fan_in``); False when ``compact_every`` is null (no compaction)."""
        storage = getattr(config, "storage", None)
        every = getattr(storage, "compact_every", "5m")
        if every is None:
            return False
        policy = CompactPolicy(
            fan_in=getattr(storage, "compact_fan_in", 4),
            min_age_s=parse_duration_s(getattr(storage, "compact_min_age", "60s")),
        )
        await self.start_maintenance(parse_duration_s(every), policy)
        return True

    async def start_maintenance(self, interval_s: float = 300.0, policy: CompactPolicy | None = None) -> None:
        """Start the compaction actor: a pass now, then every ``interval_s`` (see :meth:`compact_pass`)."""
        await self._start_actor(
            "maintenance", self._run_maintenance, interval_s, policy, role=Role.OTHER, escalate=False
        )

    async def _run_maintenance(
        self,
        interval_s: float,
        policy: CompactPolicy | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        while True:
            await self.compact_pass(policy)
            await trio.sleep(interval_s)

    async def compact_pass(self, policy: CompactPolicy | None = None) -> list[CompactResult]:
        """One maintenance pass: per dataset, closed partitions merged whole, open ones (today's,
        this month's) by the rolling ``policy``.

        Each dataset runs in its own worker thread, so a stop waits for at most one dataset;
        writers never wait for it. A dataset that fails (disk full, unreadable part) is logged and
        retried on the next pass.
        """
        results: list[CompactResult] = []
        for ds in await self.lake.adatasets():
            try:
                results += await self.lake.acompact_rolling(ds, self.now_ns(), policy)
            except (OSError, DccdError) as exc:
                log.warning("lake.compaction_failed", dataset=str(ds), error=f"{type(exc).__name__}: {exc}")
        merged = [r for r in results if r.output is not None]
        if merged:
            log.info(
                "lake.compacted",
                merges=len(merged),
                partitions=len({r.partition for r in merged}),
                parts_removed=sum(r.removed for r in merged),
            )
        return results

    # -- runs ----------------------------------------------------------------------------------

    async def wait_run(self, run_id: str) -> RunRecord:
        """Wait until a run of this service ends; return its record.

        Raises:
            KeyError: unknown run.
        """
        handle = self.active.get(run_id)
        if handle is not None:
            await handle.done.wait()
        record = await self.runs.aget(run_id)
        if record is None:
            raise KeyError(run_id)
        return record

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel a run of this service (its written rows stay); False if it is not running here."""
        handle = self.active.get(run_id)
        if handle is None:
            return False
        await self._stop_actor(handle.actor)
        await handle.done.wait()
        return True
