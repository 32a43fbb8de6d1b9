"""The runs:lease actor: beats and checks on the wall clock, a lost lease replaced, no Trio timers; the service runs it.

The lease is a wall-clock promise, so these tests run it with short real
periods and an injected wall clock (``Wall``) they move by hand; only the last
test uses ``autojump_clock``, to pin that the lease leaves virtual time alone.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import trio
from dccd.actors import open_service
from dccd.actors.lease import serve_run_lease
from structlog.testing import capture_logs

from dccd.config import Config, Storage
from dccd.storage.runs import RunStore

WALL0 = 1_700_000_000 * 10**9
S = 10**9
FAST = {"heartbeat_s": 0.02, "check_s": 0.05}


class Wall:
    """A wall clock (ns) the test sets."""

    def __init__(self) -> None:
        self.ns = WALL0

    def __call__(self) -> int:
        return self.ns


def heartbeat_of(store: RunStore, owner_id: str | None) -> int:
    (beat,) = [o[4] for o in store.owners() if o[0] == owner_id]
    return beat


async def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    """Poll ``predicate`` on the real clock until it holds."""
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


async def test_lease_beats_and_fails_a_silent_owners_runs_once_its_heartbeat_is_older_than_the_ttl(
    tmp_path: Path,
) -> None:
    """The lease writes the wall time on each beat; a run whose owner last beat at 0 s lives at 60 s and fails at 61 s."""
    wall = Wall()
    runs = RunStore(tmp_path)
    other = RunStore(tmp_path)
    other.register_owner(now_ns=WALL0)
    orphan = other.create("stream", state="running")  # owned by this very (live) pid: only the lease can tell
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_run_lease, runs, now_ns=wall, **FAST))
        mine = runs.create("stream", state="running")
        wall.ns = WALL0 + 60 * S
        await wait_for(lambda: heartbeat_of(runs, runs.owner_id) == WALL0 + 60 * S)
        await trio.sleep(0.2)  # several checks at 60 s: a heartbeat exactly the TTL old is alive
        assert other.get(orphan).state == "running"  # type: ignore[union-attr]
        with capture_logs() as logs:
            wall.ns = WALL0 + 61 * S
            await wait_for(lambda: other.get(orphan).state == "failed")  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
    run = other.get(orphan)
    assert run is not None
    assert (run.state, run.error, run.ended_ns) == (
        "failed",
        f"orphaned: owner {other.owner_id} stopped heartbeating",
        WALL0 + 61 * S,
    )
    assert [(e["event"], e["run_ids"]) for e in logs if e["event"] == "runs.orphaned"] == [("runs.orphaned", [orphan])]
    assert runs.get(mine).state == "running"  # type: ignore[union-attr]


async def test_a_lease_declared_dead_is_logged_and_replaced(tmp_path: Path) -> None:
    """When another process failed this owner's runs (it was frozen past the TTL), the next beat takes a new lease."""
    wall = Wall()
    runs = RunStore(tmp_path)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_run_lease, runs, now_ns=wall, heartbeat_s=0.02, check_s=1e6))
            first = runs.owner_id
            frozen = runs.create("stream", state="running")
            judge = RunStore(tmp_path)
            judge.register_owner(now_ns=WALL0 + 100 * S)
            assert judge.mark_orphans(now_ns=WALL0 + 100 * S) == [frozen]
            await wait_for(lambda: runs.owner_id != first)
            nursery.cancel_scope.cancel()
    assert runs.owner_id is not None
    lost = [e for e in logs if e["event"] == "runs.lease_lost"]
    assert [(e["log_level"], e["owner_id"], e["new_owner_id"]) for e in lost] == [("error", first, runs.owner_id)]


async def test_cancelling_the_lease_stops_its_beats(tmp_path: Path) -> None:
    """Once the actor is cancelled its thread writes no further heartbeat."""
    wall = Wall()
    runs = RunStore(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_run_lease, runs, now_ns=wall, **FAST))
        wall.ns = WALL0 + S
        await wait_for(lambda: heartbeat_of(runs, runs.owner_id) == WALL0 + S)
        nursery.cancel_scope.cancel()
    await trio.sleep(0.05)  # a beat already under way may still land
    wall.ns = WALL0 + 2 * S
    await trio.sleep(0.2)
    assert heartbeat_of(runs, runs.owner_id) == WALL0 + S


async def test_the_service_takes_a_lease_and_its_periodic_check_fails_a_stopped_owners_runs(tmp_path: Path) -> None:
    """A service owns the runs it creates, beats its lease, and while serving fails a run whose owner went silent."""
    wall = Wall()
    other = RunStore(tmp_path)
    other.register_owner(now_ns=WALL0)
    orphan = other.create("backfill", state="running")
    lease = {"now_ns": wall, **FAST}
    async with open_service(Config(storage=Storage(str(tmp_path))), lease_options=lease) as svc:
        runs = svc.operations.runs
        mine = await runs.acreate("compact", state="running")
        assert other.get(orphan).state == "running"  # type: ignore[union-attr]  # alive at the startup check
        wall.ns = WALL0 + 61 * S
        await wait_for(lambda: other.get(orphan).state == "failed")  # type: ignore[union-attr]
        await wait_for(lambda: heartbeat_of(runs, runs.owner_id) == WALL0 + 61 * S)
    assert other.get(orphan).error == f"orphaned: owner {other.owner_id} stopped heartbeating"  # type: ignore[union-attr]
    record = runs.get(mine)
    assert record is not None and record.owner_id == runs.owner_id and record.state == "running"


async def test_the_lease_adds_no_trio_timer(autojump_clock: Any, tmp_path: Path) -> None:
    """A service idle for a virtual day beats no heartbeat: the lease follows the wall clock, not Trio's."""
    async with open_service(Config(storage=Storage(str(tmp_path)))) as svc:
        runs = svc.operations.runs
        registered = heartbeat_of(runs, runs.owner_id)
        await trio.sleep(86_400)
        assert heartbeat_of(runs, runs.owner_id) == registered
