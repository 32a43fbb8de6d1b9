"""The scheduler actor: configured and API-created jobs, fired on time (UTC).

``svc.scheduler`` exists on every service with storage, but fires nothing
until asked, so ``dccd backfill`` (which opens a service too) never runs the
configured jobs::

    await svc.scheduler.start(run_config_jobs=True)   # dccd serve

Rules:

- a fire of a backfill job is ``svc.start_backfill(BackfillRequest)`` with the
  job's own start/end strings (``-30d`` resolves at fire time), then waiting
  for its runs; a fire that comes while the job's previous fire is still
  queued or running is skipped (``job.skipped``); a job never runs twice at once;
- scheduled fires of one exchange share a :class:`trio.CapacityLimiter`
  (``limit_per_exchange``, default 2 fires at once); :meth:`Scheduler.run_now`
  is an operator's request and starts at once, like ``POST /backfills``;
- fire times a late wake-up (a blocked loop, a suspended machine, a clock
  step) has passed are coalesced into one run, logged ``job.misfired`` when
  the oldest is later than ``grace_s``;
- stream jobs are started once through ``svc.start_stream`` and supervised
  by the service; ``once`` jobs fire when the scheduler starts.

The wall-clock loops (one task per job: they await the next fire time,
which an Rx timer cannot follow across clock steps) emit on
:attr:`Scheduler.triggers`, an Rx Subject of :class:`JobTriggered`; starting
the fire is subscribed to it.

Time is Trio's clock anchored to the wall clock (``wall_ns``), so autojump
tests are exact; the anchor is re-taken when the wall clock has stepped by
more than a second (NTP step, suspend), checked at least every
``max_sleep_s``. API jobs are kept in ``{root}/_dccd/jobs.json`` (atomic
rewrite); the YAML config is never written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
import trio
from reactivex.subject import Subject

from dccd.bus.shard import shard_of
from dccd.config import Config, JobSpec, expand_jobs
from dccd.domain.capability import Transport
from dccd.errors import ConfigError, DccdError
from dccd.jobs import (
    JobInfo,
    JobState,
    JobStatus,
    StoredJob,
    decode_jobs_file,
    parse_job,
    plan_fire,
    read_jobs_file,
    stored_body,
    validate_stored,
    worst_state,
    write_jobs_file,
)
from dccd.ops import BackfillRequest, InvalidRequest, StreamRequest
from dccd.sources.registry import get_adapter

from .messages import JobTriggered
from .scans import job_scan_spec
from .supervisor import Role

log = structlog.get_logger()

CLOCK_STEP_NS = 1_000_000_000


class UnknownJob(KeyError):
    """No job with that id."""

    def __str__(self) -> str:
        return f"no job {self.args[0]!r}"


class JobRunning(InvalidRequest):
    """``run_now`` on a job whose previous fire is still queued or running."""


class Scheduler:
    """Jobs of one service; see the module docstring.

    Args:
        service: provides ``start_actor``, ``start_backfill``, ``wait_run`` and,
            for stream jobs, ``start_stream``/``stop_stream`` (a
            :class:`~dccd.actors.Service`, or a stub in tests).
        jobs: the configured jobs (:func:`dccd.config.expand_jobs`).
        jobs_path: where API-created jobs are kept (None: not kept).
        grace_s: a fire later than this is logged as a misfire.
        limit_per_exchange: scheduled fires running at once per exchange.
        wall_ns: the wall clock (ns since the epoch) Trio's clock is anchored to.
        max_sleep_s: longest sleep between wall-clock checks.
    """

    def __init__(
        self,
        service: Any,
        jobs: Sequence[JobSpec] = (),
        *,
        jobs_path: Path | None = None,
        grace_s: float = 60.0,
        limit_per_exchange: int = 2,
        wall_ns: Callable[[], int] = time.time_ns,
        max_sleep_s: float = 60.0,
    ) -> None:
        self._svc = service
        self.jobs_path = jobs_path
        self.grace_ns = round(grace_s * 1e9)
        self.limit_per_exchange = limit_per_exchange
        self.max_sleep_s = max_sleep_s
        self._wall_ns = wall_ns
        self._anchor = (wall_ns(), trio.current_time())
        self._jobs: dict[str, JobState] = {s.id: JobState(s, "config") for s in jobs}
        self._kept: list[StoredJob] = []  # entries of the file that no longer validate: written back as they were
        self._file_error: str | None = None
        self._limiters: dict[str, trio.CapacityLimiter] = {}
        self._scopes: dict[JobState, trio.CancelScope] = {}  # the loop (or stream start) of each scheduled job
        self._watches: dict[str, Any] = {}  # on_new_bars scan jobs: their new-bars subscription
        self._nursery: trio.Nursery | None = None
        self._enabled: set[str] = set()
        self._started = False
        self._actor_lock = trio.Lock()
        self._file_lock = trio.Lock()
        self._sharding: tuple[int, int] | None = None  # (me, n): run only the jobs of the shards owned
        self._owned: frozenset[int] = frozenset()
        self.triggers: Subject[JobTriggered] = Subject()
        """Output: every trigger of a scheduled job (the wall-clock loops emit; firing is subscribed to it)."""
        self.triggers.subscribe(on_next=self._on_triggered)

    @classmethod
    async def open(cls, service: Any, config: Any, root: Path, **options: Any) -> Scheduler:
        """The scheduler of a service: the config's jobs plus those kept in ``{root}/_dccd/jobs.json``."""
        specs = expand_jobs(config) if isinstance(config, Config) else []
        sched = cls(service, specs, jobs_path=root / "_dccd" / "jobs.json", **options)
        await sched.load()
        return sched

    # -- clock -----------------------------------------------------------------------------------

    def now_ns(self) -> int:
        """Wall-clock time (ns UTC) as the scheduler sees it: the anchor plus Trio's time since."""
        wall0, t0 = self._anchor
        return wall0 + round((trio.current_time() - t0) * 1e9)

    def _resync(self) -> None:
        wall = self._wall_ns()
        drift = wall - self.now_ns()
        if abs(drift) > CLOCK_STEP_NS:
            log.warning("scheduler.clock_stepped", drift_s=drift / 1e9)
            self._anchor = (wall, trio.current_time())

    async def _sleep_until_ns(self, target_ns: int) -> None:
        while True:
            self._resync()
            remaining_s = (target_ns - self.now_ns()) / 1e9
            if remaining_s <= 0:
                return
            await trio.sleep_until(trio.current_time() + min(remaining_s, self.max_sleep_s))

    # -- the API ---------------------------------------------------------------------------------

    def list_jobs(self) -> list[JobInfo]:
        """Every job (config jobs first, then API jobs in creation order)."""
        return [j.info() for j in self._jobs.values()]

    def get_job(self, job_id: str) -> JobInfo:
        """One job.

        Raises:
            UnknownJob: no such job.
        """
        return self._job(job_id).info()

    async def start(self, *, run_config_jobs: bool = True, run_api_jobs: bool = True) -> None:
        """Start firing jobs (and start stream jobs); returns once they are scheduled.

        Raises:
            RuntimeError: already started.
        """
        if self._started:
            raise RuntimeError("the scheduler is already started")
        self._started = True
        self._enabled = {src for src, on in (("config", run_config_jobs), ("api", run_api_jobs)) if on}
        await self._ensure_actor()
        for job in list(self._jobs.values()):
            self._schedule(job)
        log.info("scheduler.started", jobs=len(self._jobs), sources=sorted(self._enabled))

    async def create_job(self, raw: dict[str, Any]) -> JobInfo:
        """Validate, keep and (when started) schedule a job given as a config-style mapping.

        Raises:
            ConfigError: invalid job (``span: '7m' is not a span (...)``), or the jobs file is unusable.
            NoCapability: the exchange does not offer the operation.
        """
        if self._file_error is not None:
            raise ConfigError(
                str(self.jobs_path), f"cannot change API jobs: {self._file_error}; fix or remove the file"
            )
        async with self._file_lock:
            job, spec = parse_job(raw, self._jobs.keys())
            self._check_capability(spec)
            stored = StoredJob(spec.id, self.now_ns(), stored_body(job))
            await self._save([*self._api_stored(), stored])
            entry = self._jobs[spec.id] = JobState(spec, "api", stored)
        self._schedule(entry)
        log.info("job.created", job_id=spec.id, schedule=spec.schedule)
        return entry.info()

    async def delete_job(self, job_id: str) -> bool:
        """Remove an API job (its current runs finish); False if there is no such job.

        Raises:
            InvalidRequest: the job comes from the config file.
        """
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if job.source == "config":
            raise InvalidRequest("job_id", f"job {job_id!r} comes from the config file: remove it there")
        async with self._file_lock:
            await self._save([j.stored for j in self._jobs.values() if j.stored is not None and j is not job])
            self._jobs.pop(job_id, None)
        if (scope := self._scopes.get(job)) is not None:
            scope.cancel()
        if (watch := self._watches.pop(job_id, None)) is not None:
            watch.dispose()
        stop_stream = getattr(self._svc, "stop_stream", None)
        if job.stream_id is not None and stop_stream is not None:
            await stop_stream(job.stream_id)
        log.info("job.deleted", job_id=job_id)
        return True

    async def run_now(self, job_id: str) -> list[str]:
        """Fire a backfill job now (not limited by the exchange's slots); returns its run ids.

        Raises:
            UnknownJob: no such job.
            JobRunning: its previous fire is still queued or running.
            InvalidRequest: a stream job.
            NoCapability, ConfigError, ValueError: the backfill could not start.
        """
        job = self._job(job_id)
        if job.spec.operation == "stream":
            raise InvalidRequest("job_id", f"job {job_id!r} is a stream: it runs supervised, nothing to run now")
        if job.running:
            runs = " ".join(job.last_run_ids) or "waiting for a slot"
            raise JobRunning("job_id", f"job {job_id!r} is already running ({runs})")
        job.running = True
        try:
            nursery = await self._ensure_actor()
            run_ids: list[str] = await nursery.start(self._fire, job, True)
        except BaseException:
            job.running = False
            raise
        return run_ids

    # -- internals -------------------------------------------------------------------------------

    def _job(self, job_id: str) -> JobState:
        job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    def _api_stored(self) -> list[StoredJob]:
        return [j.stored for j in self._jobs.values() if j.stored is not None]

    def _check_capability(self, spec: JobSpec) -> None:
        if spec.operation == "scan":
            return  # a scan reads the lake, not the exchange
        transport = Transport.WS if spec.operation == "stream" else Transport.REST
        try:
            adapter = get_adapter(spec.exchange)
        except ConfigError as exc:
            raise ConfigError("exchange", exc.message) from None
        for sym in spec.symbols:
            adapter.capabilities.require_symbol(spec.data_type, transport, spec.span, sym)

    def _limiter(self, exchange: str) -> trio.CapacityLimiter:
        if exchange not in self._limiters:
            self._limiters[exchange] = trio.CapacityLimiter(self.limit_per_exchange)
        return self._limiters[exchange]

    async def _ensure_actor(self) -> trio.Nursery:
        async with self._actor_lock:
            if self._nursery is None:
                await self._svc.start_actor("scheduler", self._run, role=Role.SOURCE)
        assert self._nursery is not None
        return self._nursery

    async def _run(self, *, task_status: trio.TaskStatus[Scheduler] = trio.TASK_STATUS_IGNORED) -> None:
        """The actor: owns the job loops and fires; stops first on shutdown (no new runs then)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for job in list(self._jobs.values()):
                    self._schedule(job)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None

    # -- sharding --------------------------------------------------------------------------------

    def shard_jobs(self, me: int, n: int) -> None:
        """Run only the jobs of the shards :meth:`set_owned` gives this collector (none until then)."""
        self._sharding = (me, n)

    def job_shard(self, job_id: str) -> int | None:
        """The shard a job belongs to (None without sharding)."""
        if self._sharding is None:
            return None
        s = self._job(job_id).spec
        return shard_of(s.exchange, s.symbols, self._sharding[1])

    def _owns(self, job: JobState) -> bool:
        if self._sharding is None:
            return True
        return shard_of(job.spec.exchange, job.spec.symbols, self._sharding[1]) in self._owned

    async def set_owned(self, shards: frozenset[int]) -> None:
        """Start the jobs of newly owned shards and stop (streams: gracefully) those of shards let go."""
        self._owned = frozenset(shards)
        for job in list(self._jobs.values()):
            if self._owns(job):
                self._schedule(job)
            else:
                await self._unschedule(job)

    async def _unschedule(self, job: JobState) -> None:
        if (watch := self._watches.pop(job.spec.id, None)) is not None:
            watch.dispose()
        scope = self._scopes.pop(job, None)
        if scope is not None:
            scope.cancel()
        if job.spec.schedule == "stream" and job.stream_id is not None:
            stream_id, job.stream_id = job.stream_id, None
            stop_stream = getattr(self._svc, "stop_stream", None)
            if stop_stream is not None:
                await stop_stream(stream_id)
            log.info("job.released", job_id=job.spec.id, stream_id=stream_id)
        if job.spec.schedule in ("stream", "once"):
            job.running, job.last_state = False, None

    def _schedule(self, job: JobState) -> None:
        if self._nursery is None or job.source not in self._enabled or job in self._scopes:
            return
        if not self._owns(job):
            return
        self._watch_bars(job)
        if job.spec.schedule in ("stream", "once") and (job.running or job.last_state is not None):
            return  # started (or failed to) already: the actor's start and start() both schedule
        scope = self._scopes[job] = trio.CancelScope()
        if job.spec.schedule == "stream":
            self._nursery.start_soon(self._stream, job, scope)
        elif job.spec.schedule in ("every", "cron", "once"):
            job.next_fire_ns = job.nf.after(self.now_ns()) if job.nf.periodic else None  # visible at once
            self._nursery.start_soon(self._loop, job, scope)
        else:
            del self._scopes[job]

    async def _loop(self, job: JobState, scope: trio.CancelScope) -> None:
        try:
            with scope:
                if job.spec.schedule == "once":
                    self.triggers.on_next(JobTriggered(job.spec.id))
                    return
                while job.next_fire_ns is not None:
                    await self._sleep_until_ns(job.next_fire_ns)
                    plan = plan_fire(job.nf, job.next_fire_ns, self.now_ns(), self.grace_ns)
                    job.next_fire_ns = plan.next_ns
                    if plan.misfired:
                        job.misfires += 1
                        log.warning(
                            "job.misfired",
                            job_id=job.spec.id,
                            due_ns=plan.due_ns,
                            late_s=plan.late_ns / 1e9,
                            slots=plan.slots,
                        )
                    self.triggers.on_next(JobTriggered(job.spec.id, plan.due_ns))
        finally:
            self._forget(job, scope)
            job.next_fire_ns = None

    def _on_triggered(self, trigger: JobTriggered) -> None:
        job = self._jobs.get(trigger.job_id)
        if job is not None:
            self._trigger(job)

    def _trigger(self, job: JobState) -> None:
        if job.running:
            job.skipped += 1
            log.info(
                "job.skipped", job_id=job.spec.id, reason="previous run still running", run_ids=list(job.last_run_ids)
            )
            return
        assert self._nursery is not None
        job.running = True
        self._nursery.start_soon(self._fire, job, False)

    async def _fire(
        self, job: JobState, manual: bool, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """One fire; the caller has set ``job.running``."""
        s = job.spec
        job.fires += 1
        job.last_fired_ns = self.now_ns()
        job.last_state, job.last_error, job.last_run_ids = JobStatus.QUEUED, None, ()
        slot: contextlib.AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext() if manual else self._limiter(s.exchange)
        )
        try:
            async with slot:
                try:
                    run_ids = await self._start_fire(s)
                except trio.ClosedResourceError:  # the service is shutting down: no new runs
                    job.last_state = JobStatus.CANCELLED
                    if manual:
                        raise
                    return
                except (DccdError, ValueError) as exc:
                    job.last_state, job.last_error = JobStatus.FAILED, str(exc)
                    log.error("job.failed", job_id=s.id, error=str(exc))
                    if manual:
                        raise
                    return
                except Exception as exc:  # a bug: this fire's failure, never the scheduler's (nor the service's)
                    self._crashed(job, exc)
                    if manual:  # before started(): raised to run_now's caller, the scheduler's nursery is untouched
                        raise
                    return
                job.last_run_ids, job.last_state = tuple(run_ids), JobStatus.RUNNING
                log.info("job.fired", job_id=s.id, run_ids=run_ids, manual=manual)
                task_status.started(run_ids)
                try:
                    wait = self._svc.scans.wait if s.operation == "scan" else self._svc.wait_run
                    records = [await wait(r) for r in run_ids]
                except Exception as exc:
                    self._crashed(job, exc)
                    return
                job.last_state = JobStatus(worst_state([r.state for r in records]))
                errors = [f"{r.run_id}: {r.error}" for r in records if getattr(r, "error", None)]
                job.last_error = "; ".join(errors) or None
                log.info("job.finished", job_id=s.id, state=job.last_state, run_ids=run_ids)
        finally:
            job.running = False

    async def _start_fire(self, s: JobSpec) -> list[str]:
        """Start what one fire of the job runs: a backfill (one run per symbol) or a scan run."""
        if s.operation == "scan":
            scans = getattr(self._svc, "scans", None)
            if scans is None:
                raise ConfigError("operation", "this service cannot run scans (no storage)")
            return [await scans.start([job_scan_spec(s)], trigger="job", job_id=s.id)]
        req = BackfillRequest(
            s.exchange, s.symbols, s.data_type, s.span, s.start, s.end, s.id,
            derive_from=s.derive_from, source=s.source,
        )  # fmt: skip
        if s.distribute:  # cut into units on the bus's work queue (actors/work.py); every collector pulls them
            work = getattr(self._svc, "work", None)
            if work is None:
                raise ConfigError("distribute", "needs bus.url: the units travel on the bus's work queue")
            return list(await work.distribute(req))
        return list(await self._svc.start_backfill(req))

    def _watch_bars(self, job: JobState) -> None:
        """``on_new_bars`` scan jobs: fire (debounced) when bars of their datasets are written."""
        scans = getattr(self._svc, "scans", None)
        if not job.spec.on_new_bars or scans is None or job.spec.id in self._watches:
            return
        jid = job.spec.id
        self._watches[jid] = scans.watch(job.spec, lambda: self.triggers.on_next(JobTriggered(jid)))

    async def _stream(self, job: JobState, scope: trio.CancelScope) -> None:
        s = job.spec
        try:
            with scope:
                start_stream = getattr(self._svc, "start_stream", None)
                if start_stream is None:
                    job.last_state, job.last_error = (
                        JobStatus.FAILED,
                        "this service cannot run streams (no start_stream)",
                    )
                    log.error("job.stream_unavailable", job_id=s.id, error=job.last_error)
                    return
                job.last_fired_ns, job.fires = self.now_ns(), job.fires + 1
                req = StreamRequest(s.exchange, s.symbols, s.data_type, s.span, s.id)
                try:
                    job.stream_id = str(await start_stream(req))
                except (DccdError, ValueError) as exc:
                    job.last_state, job.last_error = JobStatus.FAILED, str(exc)
                    log.error("job.stream_failed", job_id=s.id, error=str(exc))
                    return
                except Exception as exc:  # a bug: this job's failure, never the scheduler's
                    self._crashed(job, exc)
                    return
                job.running, job.last_state = True, JobStatus.STREAMING
                log.info("job.stream_started", job_id=s.id, stream_id=job.stream_id)
        finally:
            self._forget(job, scope)

    def _crashed(self, job: JobState, exc: Exception) -> None:
        job.last_state, job.last_error = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
        log.error("job.crashed", job_id=job.spec.id, error=job.last_error, exc_info=exc)

    def _forget(self, job: JobState, scope: trio.CancelScope) -> None:
        if self._scopes.get(job) is scope:
            del self._scopes[job]

    # -- the jobs file ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the API jobs kept in :attr:`jobs_path` (a bad file is left untouched and reported)."""
        if self.jobs_path is None:
            return
        data = await trio.to_thread.run_sync(read_jobs_file, self.jobs_path)
        if data is None:
            return
        try:
            stored = decode_jobs_file(data)
        except ValueError as exc:
            self._file_error = str(exc)
            log.error("jobs.file_unreadable", path=str(self.jobs_path), error=str(exc))
            return
        valid, invalid = validate_stored(stored, self._jobs.keys())
        for entry, spec in valid:
            self._jobs[spec.id] = JobState(spec, "api", entry)
        for entry, error in invalid:
            self._kept.append(entry)
            log.error("jobs.entry_invalid", path=str(self.jobs_path), job_id=entry.id, error=error)
        log.info("jobs.loaded", path=str(self.jobs_path), jobs=len(stored) - len(self._kept), invalid=len(self._kept))

    async def _save(self, stored: list[StoredJob]) -> None:
        if self.jobs_path is None:
            return
        await trio.to_thread.run_sync(write_jobs_file, self.jobs_path, [*stored, *self._kept])
