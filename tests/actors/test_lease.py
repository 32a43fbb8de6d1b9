"""The runs:lease actor: heartbeats on time, periodic dead-owner check, a lost lease replaced; the service runs it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from dccd.actors import open_service
from dccd.actors.lease import serve_run_lease
from structlog.testing import capture_logs

from dccd.config import Config, Storage
from dccd.storage.runs import RunStore

T = TypeVar("T")
WALL0 = 1_700_000_000 * 10**9
S = 10**9


def wall_ns() -> int:
    """The wall clock of these tests: WALL0 at Trio time 0."""
    return WALL0 + round(trio.current_time() * S)


class InlineRunStore(RunStore):
    """The real store, called on the Trio thread: a worker thread would let the autojump clock move under it."""

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args, **kwargs)


def heartbeat_of(store: RunStore, owner_id: str | None) -> int:
    (beat,) = [o[4] for o in store.owners() if o[0] == owner_id]
    return beat


async def test_lease_beats_every_10_s_and_fails_a_silent_owner_on_the_check_after_its_ttl(
    autojump_clock: Any, tmp_path: Path
) -> None:
    """Beats at 10, 20, 30 s; checks at 30, 60, 90 s fail a run whose owner last beat at 0 s on the 90 s check."""
    runs = InlineRunStore(tmp_path)
    other = RunStore(tmp_path)
    other.register_owner(now_ns=WALL0)
    orphan = other.create("stream", state="running")  # owned by this very (live) pid: only the lease can tell
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_run_lease, runs, now_ns=wall_ns))
        assert runs.owner_id is not None and heartbeat_of(runs, runs.owner_id) == WALL0
        await trio.sleep(35)
        assert heartbeat_of(runs, runs.owner_id) == WALL0 + 30 * S
        await trio.sleep(30)  # t = 65: the 60 s check saw a heartbeat exactly 60 s old, still alive
        assert other.get(orphan).state == "running"  # type: ignore[union-attr]
        with capture_logs() as logs:
            await trio.sleep(30)  # t = 95
        nursery.cancel_scope.cancel()
    run = other.get(orphan)
    assert run is not None
    assert (run.state, run.error, run.ended_ns) == (
        "failed",
        f"orphaned: owner {other.owner_id} stopped heartbeating",
        WALL0 + 90 * S,
    )
    assert [(e["event"], e["run_ids"]) for e in logs if e["event"] == "runs.orphaned"] == [("runs.orphaned", [orphan])]


async def test_a_lease_declared_dead_is_logged_and_replaced(autojump_clock: Any, tmp_path: Path) -> None:
    """When another process failed this owner's runs (it was frozen past the TTL), the next beat takes a new lease."""
    runs = InlineRunStore(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_run_lease, runs, now_ns=wall_ns))
        first = runs.owner_id
        frozen = runs.create("stream", state="running")
        judge = RunStore(tmp_path)
        judge.register_owner(now_ns=WALL0 + 100 * S)
        assert judge.mark_orphans(now_ns=WALL0 + 100 * S) == [frozen]
        with capture_logs() as logs:
            await trio.sleep(15)  # the beat at 10 s finds the lease dead
        nursery.cancel_scope.cancel()
    assert runs.owner_id not in (None, first)
    assert [(e["event"], e["log_level"], e["owner_id"], e["new_owner_id"]) for e in logs] == [
        ("runs.lease_lost", "error", first, runs.owner_id)
    ]
    assert heartbeat_of(runs, runs.owner_id) == WALL0 + 10 * S


async def test_the_service_takes_a_lease_and_its_periodic_check_fails_a_stopped_owners_runs(
    autojump_clock: Any, tmp_path: Path
) -> None:
    """A service owns the runs it creates, beats its lease, and while serving fails a run whose owner went silent."""
    other = RunStore(tmp_path)
    other.register_owner(now_ns=WALL0)
    orphan = other.create("backfill", state="running")
    async with open_service(Config(storage=Storage(str(tmp_path))), lease_options={"now_ns": wall_ns}) as svc:
        runs = svc.operations.runs
        mine = await runs.acreate("compact", state="running")
        await trio.sleep(45)
        assert other.get(orphan).state == "running"  # type: ignore[union-attr]  # alive at start and on the 30 s check
        with trio.fail_after(120):
            while other.get(orphan).state == "running":  # type: ignore[union-attr]
                await trio.sleep(1)
        assert heartbeat_of(runs, runs.owner_id) > WALL0 + 60 * S
    assert other.get(orphan).error == f"orphaned: owner {other.owner_id} stopped heartbeating"  # type: ignore[union-attr]
    record = runs.get(mine)
    assert record is not None and record.owner_id == runs.owner_id and record.state == "running"
