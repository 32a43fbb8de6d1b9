"""Jobs: next fire times, misfire coalescing, API job validation, the jobs file.

The scheduler actor (:mod:`dccd.actors.scheduler`) owns the loops and the
clock; every decision it takes is a function of ``now_ns`` here, so cron and
interval arithmetic is tested without sleeping. The only I/O is the
blocking read/atomic write of ``{root}/_dccd/jobs.json``, which the actor
runs in a worker thread.

Schedules (all UTC):

- ``every``: aligned to the clock, the next multiple of ``every_s`` since the
  Unix epoch (``every: 1h`` fires at :00 whatever the start time);
- ``cron``: cron(5) semantics through :func:`dccd.cron.cron_trigger`;
- ``once``: once when the scheduler starts; ``manual``: only on run-now;
  ``stream``: a supervised stream, never fired.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Collection, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from dccd.config import Config, Job, JobSpec, check_job, exchange_names, expand_jobs, schema_error
from dccd.cron import cron_trigger
from dccd.domain.timeutil import NS_PER_S
from dccd.errors import ConfigError
from dccd.storage.layout import temp_name
from dccd.storage.runs import RunState
from dccd.storage.writer import ensure_dir, fsync_dir

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
JOBS_FILE_VERSION = 1


class NextFire:
    """Fire times of one job's schedule (``every`` or ``cron``; others never fire on their own)."""

    def __init__(self, spec: JobSpec) -> None:
        self.kind = spec.schedule
        self._every_ns = spec.every_s * NS_PER_S if spec.schedule == "every" and spec.every_s else None
        self._trigger = cron_trigger(spec.cron) if spec.schedule == "cron" and spec.cron else None

    @property
    def periodic(self) -> bool:
        """True for ``every`` and ``cron`` schedules."""
        return self._every_ns is not None or self._trigger is not None

    def after(self, ns: int) -> int | None:
        """The first fire time strictly after ``ns`` (None: never)."""
        if self._every_ns is not None:
            return (ns // self._every_ns + 1) * self._every_ns
        if self._trigger is None:
            return None
        # APScheduler answers the first time >= now (ceiled to the second): ask from 1 µs past ``ns``.
        now = _EPOCH + dt.timedelta(microseconds=ns // 1000) + _US
        nxt = self._trigger.get_next_fire_time(None, now)
        return None if nxt is None else (nxt - _EPOCH) // _US * 1000

    def count(self, first_ns: int, now_ns: int, cap: int = 100_000) -> int:
        """How many fire times lie in ``[first_ns, now_ns]`` (``first_ns`` being one); at most ``cap``."""
        if now_ns < first_ns:
            return 0
        if self._every_ns is not None:
            return min(cap, (now_ns - first_ns) // self._every_ns + 1)
        n, t = 0, first_ns
        while t <= now_ns and n < cap:
            n += 1
            nxt = self.after(t)
            if nxt is None:
                break
            t = nxt
        return n


class FirePlan(msgspec.Struct, frozen=True):
    """What to do when a scheduled fire time ``due_ns`` has come and it is ``now_ns``.

    One run is made for all fire times in ``[due_ns, now_ns]``: ``slots`` of
    them (more than one when the scheduler woke late). ``misfired`` is true
    when the oldest was late by more than the grace period (the process was
    blocked, suspended or the clock stepped); ``next_ns`` is the first fire
    time after ``now_ns``.
    """

    due_ns: int
    now_ns: int
    slots: int
    late_ns: int
    misfired: bool
    next_ns: int | None


def plan_fire(nf: NextFire, due_ns: int, now_ns: int, grace_ns: int) -> FirePlan:
    """Coalesce every fire time due by ``now_ns`` into one run (see :class:`FirePlan`)."""
    late = max(0, now_ns - due_ns)
    return FirePlan(
        due_ns=due_ns,
        now_ns=now_ns,
        slots=max(1, nf.count(due_ns, now_ns)),
        late_ns=late,
        misfired=late > grace_ns,
        next_ns=nf.after(max(now_ns, due_ns)),
    )


# --- jobs created through the API ----------------------------------------------------------------


def _field_error(exc: ConfigError) -> ConfigError:
    """``jobs[0].span: ...`` (the config's wording) -> ``span: ...`` (a field of the request body)."""
    path = re.sub(r"^jobs\[0\]\.?", "", exc.path)
    return ConfigError(path or "job", exc.message)


def default_job_id(job: Job, taken: Collection[str]) -> str:
    """``api-binance-backfill-ohlc-1m``, with ``-2``, ``-3``... appended while taken."""
    base = f"api-{job.exchange}-{job.operation}-{job.type}" + (f"-{job.span}" if job.span else "")
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", base)[:60]
    n, jid = 1, base
    while jid in taken:
        n += 1
        jid = f"{base}-{n}"
    return jid


def parse_job(raw: Any, taken: Collection[str], known_exchanges: Sequence[str] | None = None) -> tuple[Job, JobSpec]:
    """Validate one job mapping (same schema, rules and one-line messages as a config job).

    ``taken`` are the ids in use; without a ``name`` the job gets a fresh id. ``known_exchanges`` defaults
    to the adapter registry's (plugins included).

    Raises:
        ConfigError: the first problem, its path a field of the mapping (``span: '7m' is not a span ...``).
    """
    try:
        job = msgspec.convert(raw, Job, strict=True)
    except msgspec.ValidationError as exc:
        raise _field_error(schema_error(exc, "jobs[0]")) from None
    try:
        check_job(0, job, exchange_names() if known_exchanges is None else tuple(known_exchanges))
    except ConfigError as exc:
        raise _field_error(exc) from None
    if job.name is not None and job.name in taken:
        raise ConfigError("name", f"job id {job.name!r} is already used")
    job = msgspec.structs.replace(job, name=job.name or default_job_id(job, taken))
    return job, spec_of(job)


def spec_of(job: Job) -> JobSpec:
    """The :class:`JobSpec` of a validated job that has a ``name`` (its id)."""
    return expand_jobs(Config(jobs=[job]))[0]


class StoredJob(msgspec.Struct, frozen=True):
    """One API-created job as kept in ``{root}/_dccd/jobs.json``."""

    id: str
    created_ns: int
    job: dict[str, Any]


class JobsFile(msgspec.Struct):
    """The whole jobs file."""

    version: int = JOBS_FILE_VERSION
    jobs: list[StoredJob] = msgspec.field(default_factory=list)


def encode_jobs_file(jobs: Sequence[StoredJob]) -> bytes:
    """The file's bytes (indented JSON, so a person can read and fix it)."""
    return msgspec.json.format(msgspec.json.encode(JobsFile(JOBS_FILE_VERSION, list(jobs))), indent=2) + b"\n"


def decode_jobs_file(data: bytes) -> list[StoredJob]:
    """Parse the jobs file.

    Raises:
        ValueError: not a jobs file (one line saying why).
    """
    try:
        doc = msgspec.json.decode(data, type=JobsFile)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a jobs file: {exc}") from None
    if doc.version != JOBS_FILE_VERSION:
        raise ValueError(f"jobs file version {doc.version} is not supported (expected {JOBS_FILE_VERSION})")
    return doc.jobs


def stored_body(job: Job) -> dict[str, Any]:
    """A job as the mapping a person would have written (its name, no nulls, no defaults)."""
    body: dict[str, Any] = msgspec.to_builtins(job)
    defaults = dict(zip(Job.__struct_fields__[-len(Job.__struct_defaults__) :], Job.__struct_defaults__, strict=True))
    return {k: v for k, v in body.items() if k not in defaults or v != defaults[k] or k == "name"}


def read_jobs_file(path: Path) -> bytes | None:
    """The file's bytes, or None if there is none (blocking: call it from a worker thread)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_jobs_file(path: Path, jobs: Sequence[StoredJob]) -> None:
    """Replace the file atomically and durably: temp file, fsync, rename, fsync of the directory.

    A crash leaves the old file or the new one, never a torn one (blocking: call it from a worker thread).
    """
    ensure_dir(path.parent)
    tmp = path.parent / temp_name(path.name)
    try:
        with open(tmp, "wb") as f:
            f.write(encode_jobs_file(jobs))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class JobStatus(StrEnum):
    """What a job shows as ``last_state``: its own status (queued, running, streaming) or its runs' worst."""

    QUEUED = "queued"
    RUNNING = "running"
    STREAMING = "streaming"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    CANCELLED = "cancelled"
    FAILED = "failed"


class JobInfo(msgspec.Struct, frozen=True):
    """What the API shows of one job.

    ``source`` is ``config`` (from the YAML file, not deletable through the
    API) or ``api``. ``schedule`` is ``every``/``cron``/``once``/``manual``/
    ``stream``; ``next_fire_ns`` is None when the job is not scheduled (the
    scheduler is not started, a manual job, a stream, or a once job that
    fired). ``last_state`` is ``queued`` (waiting for an exchange slot),
    ``running``, the worst final state of the last fire's runs
    (``succeeded`` < ``partial`` < ``cancelled`` < ``failed``), or for streams
    ``streaming``/``failed``.
    """

    id: str
    source: str
    exchange: str
    symbols: tuple[str, ...]
    type: str
    span: str | None
    operation: str
    schedule: str
    every_s: int | None
    cron: str | None
    start: str | None
    end: str | None
    next_fire_ns: int | None
    running: bool
    last_run_ids: tuple[str, ...]
    last_state: JobStatus | None
    last_fired_ns: int | None
    last_error: str | None = None
    stream_id: str | None = None
    fires: int = 0
    skipped: int = 0
    misfires: int = 0


class JobState:
    """One job's spec and what happened to it (mutated by the scheduler actor; :meth:`info` snapshots it)."""

    def __init__(self, spec: JobSpec, source: str, stored: StoredJob | None = None) -> None:
        self.spec = spec
        self.source = source
        self.stored = stored
        self.nf = NextFire(spec)
        self.next_fire_ns: int | None = None
        self.running = False
        self.last_run_ids: tuple[str, ...] = ()
        self.last_state: JobStatus | None = None
        self.last_fired_ns: int | None = None
        self.last_error: str | None = None
        self.stream_id: str | None = None
        self.fires = self.skipped = self.misfires = 0

    def info(self) -> JobInfo:
        """A frozen snapshot for the API."""
        s = self.spec
        return JobInfo(
            id=s.id,
            source=self.source,
            exchange=s.exchange,
            symbols=tuple(str(x) for x in s.symbols),
            type=s.data_type.value,
            span=s.span.label if s.span else None,
            operation=s.operation,
            schedule=s.schedule,
            every_s=s.every_s,
            cron=s.cron,
            start=s.start,
            end=s.end,
            next_fire_ns=self.next_fire_ns,
            running=self.running,
            last_run_ids=self.last_run_ids,
            last_state=self.last_state,
            last_fired_ns=self.last_fired_ns,
            last_error=self.last_error,
            stream_id=self.stream_id,
            fires=self.fires,
            skipped=self.skipped,
            misfires=self.misfires,
        )


def validate_stored(
    stored: Sequence[StoredJob], taken: Collection[str]
) -> tuple[list[tuple[StoredJob, JobSpec]], list[tuple[StoredJob, str]]]:
    """Split the file's jobs into valid ones (with their specs) and invalid ones (with the reason).

    An entry that no longer validates (a renamed exchange, an id now taken
    by a config job) is kept in the file as it was, so nothing is lost.
    """
    valid: list[tuple[StoredJob, JobSpec]] = []
    invalid: list[tuple[StoredJob, str]] = []
    ids = set(taken)
    for entry in stored:
        try:
            _, spec = parse_job({**entry.job, "name": entry.id}, ids)
        except ConfigError as exc:
            invalid.append((entry, str(exc)))
            continue
        ids.add(spec.id)
        valid.append((entry, spec))
    return valid, invalid


_STATE_RANK = {RunState.SUCCEEDED: 0, RunState.PARTIAL: 1, RunState.CANCELLED: 2, RunState.FAILED: 3}


def worst_state(states: Sequence[RunState]) -> RunState:
    """The state a job fire reports for its runs: any failure wins, then a cancel, then a partial run, else success."""
    return max(states, key=lambda s: _STATE_RANK.get(s, 3), default=RunState.SUCCEEDED)
