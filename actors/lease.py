"""The run-ownership lease as an actor: heartbeat this process's owner row, fail the runs of dead owners.

A service registers an owner in the run store at start (see
:mod:`dccd.storage.runs`); this actor renews it every ``heartbeat_s`` and,
every ``check_s``, fails the open runs of owners (other processes on any host
sharing the lake) whose heartbeat is older than ``ttl_s``. A lease found
declared dead (this process was frozen past the TTL and another process failed
its runs) is logged as an error and replaced by a fresh one, so the runs
started from then on are protected again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import structlog
import trio

from dccd.storage.runs import LEASE_HEARTBEAT_S, LEASE_TTL_S, ORPHAN_CHECK_S, RunStore

log = structlog.get_logger()


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
        heartbeat_s: lease renewal period.
        check_s: period of the dead-owner check (the first one runs ``check_s`` after start;
            the service checks once itself before starting this actor).
        ttl_s: heartbeat age after which an owner is dead.
        now_ns: wall clock (ns UTC) written to and compared with the owners table.
    """
    structlog.contextvars.bind_contextvars(actor="runs:lease")
    if runs.owner_id is None:
        await runs.aregister_owner(now_ns=now_ns())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_beat, runs, heartbeat_s, now_ns)
        nursery.start_soon(_check, runs, check_s, ttl_s, now_ns)
        task_status.started()


async def _beat(runs: RunStore, period_s: float, now_ns: Callable[[], int]) -> None:
    deadline = trio.current_time()
    while True:
        deadline += period_s  # absolute deadlines: a slow disk write does not stretch the period
        await trio.sleep_until(deadline)
        try:
            alive = await runs.aheartbeat(now_ns=now_ns())
        except sqlite3.Error as exc:  # busy or failing disk: the next beat may succeed within the TTL
            log.warning("runs.heartbeat_failed", owner_id=runs.owner_id, error=str(exc))
            continue
        if not alive:
            lost = runs.owner_id
            owner_id = await runs.aregister_owner(now_ns=now_ns())
            log.error("runs.lease_lost", owner_id=lost, new_owner_id=owner_id)


async def _check(runs: RunStore, period_s: float, ttl_s: float, now_ns: Callable[[], int]) -> None:
    deadline = trio.current_time()
    while True:
        deadline += period_s
        await trio.sleep_until(deadline)
        try:
            failed = await runs.amark_orphans(now_ns=now_ns(), ttl_s=ttl_s)
        except sqlite3.Error as exc:
            log.warning("runs.orphan_check_failed", error=str(exc))
            continue
        if failed:
            log.warning("runs.orphaned", run_ids=failed, count=len(failed))
