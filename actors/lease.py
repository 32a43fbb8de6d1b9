"""The run-ownership lease as an actor: heartbeat this process's owner row, fail the runs of dead owners.

A service registers an owner in the run store at start (see
:mod:`dccd.storage.runs`); this actor renews it every ``heartbeat_s`` and,
every ``check_s``, fails the open runs of owners (other processes on any host
sharing the lake) whose heartbeat is older than ``ttl_s``. A lease found
declared dead (this process was frozen past the TTL and another process failed
its runs) is logged as an error and replaced by a fresh one, so the runs
started from then on are protected again.

The loop runs in one dedicated worker thread paced by the wall clock, not by
Trio timers: a lease is a wall-clock promise compared by other processes, and
a periodic Trio timer plus disk I/O in worker threads would let an
``autojump_clock`` race ahead in every service test. Cancelling the actor
stops the thread at its next wake-up (at most one period later; it is not
waited for).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypedDict

import structlog
import trio

from dccd.storage.runs import LEASE_HEARTBEAT_S, LEASE_TTL_S, ORPHAN_CHECK_S, RunStore

log = structlog.get_logger()


class LeaseOptions(TypedDict, total=False):
    """Keyword options of :func:`serve_run_lease` (``open_service(lease_options=...)``)."""

    heartbeat_s: float
    check_s: float
    ttl_s: float
    now_ns: Callable[[], int]


async def serve_run_lease(
    runs: RunStore,
    *,
    heartbeat_s: float = LEASE_HEARTBEAT_S,
    check_s: float = ORPHAN_CHECK_S,
    ttl_s: float = LEASE_TTL_S,
    now_ns: Callable[[], int] = time.time_ns,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``runs``' owner lease alive and sweep dead owners' runs, forever.

    Args:
        runs: the service's run store (an owner is registered if it has none).
        heartbeat_s: lease renewal period (wall-clock seconds).
        check_s: period of the dead-owner check (the first one runs ``check_s`` after start;
            the service checks once itself before starting this actor).
        ttl_s: heartbeat age after which an owner is dead.
        now_ns: wall clock (ns UTC) written to and compared with the owners table.
    """
    structlog.contextvars.bind_contextvars(actor="runs:lease")
    if runs.owner_id is None:
        await runs.aregister_owner(now_ns=now_ns())
    stop = threading.Event()
    lease = _Lease(runs, heartbeat_s, check_s, ttl_s, now_ns, stop)
    task_status.started()
    try:
        await trio.to_thread.run_sync(lease.run, limiter=trio.CapacityLimiter(1), abandon_on_cancel=True)
    finally:
        stop.set()


class _Lease:
    """The thread body: beat and check on wall-clock deadlines until ``stop`` is set."""

    def __init__(
        self,
        runs: RunStore,
        heartbeat_s: float,
        check_s: float,
        ttl_s: float,
        now_ns: Callable[[], int],
        stop: threading.Event,
    ) -> None:
        self.runs = runs
        self.heartbeat_s = heartbeat_s
        self.check_s = check_s
        self.ttl_s = ttl_s
        self.now_ns = now_ns
        self.stop = stop

    def run(self) -> None:
        start = time.monotonic()
        next_beat, next_check = start + self.heartbeat_s, start + self.check_s
        # Absolute deadlines: a slow disk write does not stretch the periods.
        while not self.stop.wait(max(0.0, min(next_beat, next_check) - time.monotonic())):
            now = time.monotonic()
            if now >= next_beat:
                while next_beat <= now:  # after a stall, beat once and keep the grid
                    next_beat += self.heartbeat_s
                self.beat()
            if now >= next_check:
                while next_check <= now:
                    next_check += self.check_s
                self.check()

    def beat(self) -> None:
        try:
            alive = self.runs.heartbeat(now_ns=self.now_ns())
            if not alive:
                lost = self.runs.owner_id
                owner_id = self.runs.register_owner(now_ns=self.now_ns())
                log.error("runs.lease_lost", actor="runs:lease", owner_id=lost, new_owner_id=owner_id)
        except sqlite3.Error as exc:  # busy or failing disk: the next beat may succeed within the TTL
            log.warning("runs.heartbeat_failed", actor="runs:lease", owner_id=self.runs.owner_id, error=str(exc))

    def check(self) -> None:
        try:
            failed = self.runs.mark_orphans(now_ns=self.now_ns(), ttl_s=self.ttl_s)
        except sqlite3.Error as exc:
            log.warning("runs.orphan_check_failed", actor="runs:lease", error=str(exc))
            return
        if failed:
            log.warning("runs.orphaned", actor="runs:lease", run_ids=failed, count=len(failed))
