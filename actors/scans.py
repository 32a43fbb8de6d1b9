"""Scans as runs of the service, their signals on the bus, and the new-bars trigger.

::

    start (API, CLI, job fire, new bars) ─► ScanOps actor: run_scans in a worker thread (one at a time)
        ─► signals stored in {root}/signals/... ─► svc.bus: SignalGenerated × hits, ScanCompleted
                                               └► Hub.observer(SIGNALS_TOPIC): SignalGenerated (SSE /live/signals)
    svc.events ─filter PartWritten(ohlc of a watched job)─► debounce(debounce_s, TrioScheduler) ─► job trigger
    svc.events ─filter SignalGenerated─► AlertSender (bounded queue per webhook; never blocks the bus)

A scan run has an id (``scan-…``) and lives in memory (``wait``); its outcome is on the event bus
(``ScanCompleted`` per scanner, with ``error`` when it failed) and its hits in the signals lake.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import structlog
import trio
from reactivex import abc
from reactivex import operators as ops

from dccd.config import JobSpec
from dccd.domain.dataset import DatasetId
from dccd.domain.records import DataType
from dccd.errors import DccdError
from dccd.scan.engine import Prepared, ScanResult, ScanSpec, prepare, run_scans
from dccd.scan.signals import StoredSignal, read_signals, signal_values, write_signals
from dccd.storage.runs import RunState

from .alerts import AlertSender
from .messages import Message, PartWritten, ScanCompleted, SignalGenerated
from .rx import TrioScheduler
from .supervisor import Role

log = structlog.get_logger()

SIGNALS_TOPIC = ("signals",)
"""Hub topic carrying every :class:`SignalGenerated` (SSE ``/api/v1/live/signals``)."""


class ScanRun:
    """One scan run: its specs, and when done its results or error."""

    def __init__(self, run_id: str, specs: Sequence[Prepared], trigger: str, job_id: str | None) -> None:
        self.run_id = run_id
        self.specs = list(specs)
        self.trigger = trigger
        self.job_id = job_id
        self.done = trio.Event()
        self.results: list[ScanResult] = []
        self.error: str | None = None

    @property
    def state(self) -> RunState:
        """``succeeded`` or ``failed`` once done, ``running`` before."""
        if not self.done.is_set():
            return RunState.RUNNING
        return RunState.FAILED if self.error else RunState.SUCCEEDED

    def info(self) -> dict[str, Any]:
        """What the API shows of the run."""
        return {
            "run_id": self.run_id,
            "state": self.state.value,
            "trigger": self.trigger,
            "job_id": self.job_id,
            "error": self.error,
            "scans": [
                {"scanner": r.scanner, "span": r.span, "symbols": r.symbols, "hits": len(r.hits)} for r in self.results
            ],
        }


def job_scan_spec(spec: JobSpec) -> ScanSpec:
    """The scan a ``operation: scan`` job runs: its scanner and params on its exchange, symbols and span."""
    universe = {"exchanges": [spec.exchange], "symbols": [str(s) for s in spec.symbols]}
    return msgspec.convert(
        {
            "scanner": spec.scanner,
            "span": spec.span.label if spec.span else "1h",
            "params": spec.params or {},
            "universe": universe,
        },
        ScanSpec,
    )


class ScanOps:
    """Scans of one service (``svc.scans``).

    Args:
        svc: the service (``start_actor``, ``bus``, ``events``, ``hub``).
        root: the lake.
        alerts: the config's webhooks.
        debounce_s: quiet time after the last new bar before an ``on_new_bars`` job fires.
        now_ns: wall clock.
        alert_options: keyword arguments for :class:`AlertSender` (tests: ``transport``, ``backoff_s``).
    """

    def __init__(
        self,
        svc: Any,
        root: Path,
        alerts: Sequence[Any] = (),
        *,
        debounce_s: float = 2.0,
        now_ns: Callable[[], int] = time.time_ns,
        alert_options: dict[str, Any] | None = None,
    ) -> None:
        self._svc = svc
        self.root = root
        self.debounce_s = debounce_s
        self.now_ns = now_ns
        self.runs: dict[str, ScanRun] = {}
        self._nursery: trio.Nursery | None = None
        self._sched: TrioScheduler | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._signals = svc.hub.observer(SIGNALS_TOPIC)
        self.alerts = AlertSender(alerts, **(alert_options or {}))

    @classmethod
    async def open(cls, svc: Any, root: Path, alerts: Sequence[Any] = (), **options: Any) -> ScanOps:
        """Create and start the ``scans`` actor (and ``alerts`` when webhooks are configured)."""
        scans = cls(svc, root, alerts, **options)
        await svc.start_actor("scans", scans._run, role=Role.SOURCE)
        if alerts:
            await svc.start_actor("alerts", scans.alerts.run, svc.events, role=Role.OTHER)
        return scans

    async def _run(self, *, task_status: trio.TaskStatus[ScanOps] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery, self._sched = nursery, TrioScheduler(nursery)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = self._sched = None

    # -- runs -------------------------------------------------------------------------------------

    async def start(self, specs: Sequence[ScanSpec], *, trigger: str = "api", job_id: str | None = None) -> str:
        """Validate and start a scan run (the scans share one read where span and universe match).

        Raises:
            ConfigError: a bad spec (before anything runs).
            trio.ClosedResourceError: the service is shutting down.
        """
        prepared = [prepare(s, f"scans[{i}]" if len(specs) > 1 else "") for i, s in enumerate(specs)]
        if self._nursery is None:
            raise trio.ClosedResourceError("the scans actor is not running")
        run = ScanRun(f"scan-{secrets.token_hex(6)}", prepared, trigger, job_id)
        self.runs[run.run_id] = run
        while len(self.runs) > 1000:  # keep the newest runs' outcomes
            self.runs.pop(next(iter(self.runs)))
        self._nursery.start_soon(self._execute, run)
        return run.run_id

    async def run(self, specs: Sequence[ScanSpec], **kw: Any) -> ScanRun:
        """Start a scan run and wait for it."""
        return await self.wait(await self.start(specs, **kw))

    async def wait(self, run_id: str) -> ScanRun:
        """Wait for a run of this service to end.

        Raises:
            KeyError: no such run.
        """
        run = self.runs[run_id]
        await run.done.wait()
        return run

    def get_run(self, run_id: str) -> ScanRun | None:
        """A scan run of this service (the newest 1,000 are kept), or None."""
        return self.runs.get(run_id)

    async def signals(
        self, *, scanner: str | None = None, since_ns: int | None = None, run_id: str | None = None, limit: int = 1000
    ) -> list[StoredSignal]:
        """Stored signals, newest bar first (read in a worker thread); see :func:`read_signals`."""
        return await trio.to_thread.run_sync(
            lambda: read_signals(self.root, scanner=scanner, since_ns=since_ns, run_id=run_id, limit=limit)
        )

    async def _execute(self, run: ScanRun) -> None:
        try:
            async with self._limiter:
                try:
                    run.results = await trio.to_thread.run_sync(run_scans, self.root, run.specs)
                    now = self.now_ns()
                    stored = [
                        StoredSignal(
                            ts=h["ts"],
                            exchange=h["exchange"],
                            symbol=h["symbol"],
                            scanner=r.scanner,
                            version=r.version,
                            params_hash=r.params_hash,
                            span=r.span,
                            values=signal_values(h),
                            snapshot="",
                            run_id=run.run_id,
                            scanned_ns=now,
                        )
                        for r in run.results
                        for h in r.hits
                    ]
                    if stored:
                        await trio.to_thread.run_sync(write_signals, self.root, stored, now)
                except (DccdError, duckdb.Error, OSError, ValueError) as exc:
                    run.error = f"{type(exc).__name__}: {exc}"
                    log.error("scan.failed", run_id=run.run_id, error=run.error)
            self._publish(run)
        finally:
            run.done.set()

    def _publish(self, run: ScanRun) -> None:
        emit: Callable[[Message], None] = self._svc.bus.on_next
        if run.error is not None:
            for p in run.specs:
                emit(ScanCompleted(run.run_id, p.scanner.name, str(p.scanner.version), "", 0, 0, 0.0, error=run.error))
            return
        for r in run.results:
            for h in r.hits:
                sig = SignalGenerated(
                    run.run_id, r.scanner, r.version, r.params_hash, h["exchange"], h["symbol"], h["ts"],
                    signal_values(h),
                )  # fmt: skip
                emit(sig)
                self._signals.on_next(sig)
            emit(ScanCompleted(run.run_id, r.scanner, r.version, r.params_hash, r.symbols, len(r.hits), r.elapsed_s))
            log.info(
                "scan.completed", run_id=run.run_id, scanner=r.scanner, symbols=r.symbols, hits=len(r.hits),
                elapsed_s=round(r.elapsed_s, 3), trigger=run.trigger,
            )  # fmt: skip

    # -- the new-bars trigger ---------------------------------------------------------------------

    def watch(self, spec: JobSpec, fire: Callable[[], None]) -> abc.DisposableBase:
        """Call ``fire`` once new bars of the job's datasets have stopped landing for ``debounce_s``.

        Raises:
            RuntimeError: the scans actor is not running.
        """
        if self._sched is None:
            raise RuntimeError("the scans actor is not running")
        symbols = set(spec.symbols)

        def reads(m: Message) -> bool:
            if not isinstance(m, PartWritten):
                return False
            ds: DatasetId = m.dataset
            return (
                ds.data_type is DataType.OHLC
                and ds.exchange == spec.exchange
                and ds.span == spec.span
                and (not symbols or ds.symbol in symbols)
            )

        sub: abc.DisposableBase = self._svc.events.pipe(
            ops.filter(reads), ops.debounce(self.debounce_s, scheduler=self._sched)
        ).subscribe(on_next=lambda _m: fire())
        return sub
