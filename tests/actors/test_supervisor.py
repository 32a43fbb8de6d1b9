"""Supervisor: ordered start, restart timing, intensity limit, let-it-crash, stop alone, ordered shutdown."""

from __future__ import annotations

import random
from typing import Any

import pytest
import structlog
import trio
from dccd.actors import (
    ActorFailed,
    ActorRestarted,
    ActorStarted,
    ActorStopped,
    RestartPolicy,
    Role,
    open_supervisor,
)

from dccd.errors import ConnectFailed, Disconnected, RateLimited

from .conftest import EventLog, leaves

EXACT = RestartPolicy(initial_s=1.0, factor=2.0, max_s=30.0, jitter=0.0, max_restarts=5, within_s=60.0, healthy_s=30.0)


class Flaky:
    """An actor that fails with ConnectFailed on its first ``failures`` runs, before or after readiness."""

    def __init__(self, failures: int, *, before_ready: bool = False, run_s: float = 0.0) -> None:
        self.failures = failures
        self.before_ready = before_ready
        self.run_s = run_s
        self.starts: list[float] = []

    async def __call__(self, *, task_status: trio.TaskStatus[str]) -> None:
        self.starts.append(trio.current_time())
        attempt = len(self.starts)
        if not self.before_ready:
            task_status.started(f"run {attempt}")
        if attempt <= self.failures:
            await trio.sleep(self.run_s)
            raise ConnectFailed(f"attempt {attempt}")
        if self.before_ready:
            task_status.started(f"run {attempt}")
        await trio.sleep_forever()


async def test_transient_failures_restart_at_backoff_times(autojump_clock: Any, events: EventLog) -> None:
    """Three ConnectFailed restart the child at exactly 1, 1+2 and 1+2+4 s (jitter off)."""
    flaky = Flaky(3)
    async with open_supervisor(policy=EXACT, emit=events) as sup:
        assert await sup.start("flaky", flaky) == "run 1"
        await trio.sleep(20)
        assert flaky.starts == [0.0, 1.0, 3.0, 7.0]
        [stats] = sup.statistics()
        assert (stats.state, stats.restarts, stats.last_error) == ("running", 3, "ConnectFailed('attempt 3')")
        assert sup.handle("flaky") == "run 4"
    assert [(e.attempt, e.delay_s) for e in events.of(ActorRestarted)] == [(1, 1.0), (2, 2.0), (3, 4.0)]
    assert len(events.of(ActorStarted)) == 1


async def test_start_waits_for_readiness_through_restarts(autojump_clock: Any) -> None:
    """A child failing before it is ready is restarted, and start() returns only once it is ready."""
    flaky = Flaky(2, before_ready=True)
    async with open_supervisor(policy=EXACT) as sup:
        assert await sup.start("flaky", flaky) == "run 3"
        assert trio.current_time() == 3.0


async def test_seeded_jitter_gives_reproducible_shorter_delays(autojump_clock: Any) -> None:
    """With jitter 0.5 each delay is base * (1 - 0.5 * u), u drawn from the supervisor's rng."""
    policy = RestartPolicy(initial_s=1.0, factor=2.0, jitter=0.5, max_restarts=5, within_s=60.0)
    draws = random.Random(7)
    expected = [1.0 * (1 - 0.5 * draws.random()), 2.0 * (1 - 0.5 * draws.random())]
    flaky = Flaky(2)
    async with open_supervisor(policy=policy, rng=random.Random(7)) as sup:
        await sup.start("flaky", flaky)
        await trio.sleep(10)
    assert flaky.starts == [0.0, expected[0], expected[0] + expected[1]]


async def test_intensity_exceeded_escalates_the_last_error(autojump_clock: Any, events: EventLog) -> None:
    """With 2 restarts allowed in 10 s, the third failure (t=3) escalates its own ConnectFailed."""
    policy = RestartPolicy(initial_s=1.0, factor=2.0, jitter=0.0, max_restarts=2, within_s=10.0)
    flaky = Flaky(100)
    with pytest.raises(ExceptionGroup) as info:
        async with open_supervisor(policy=policy, emit=events) as sup:
            await sup.start("flaky", flaky)
            await trio.sleep_forever()
    assert [str(e) for e in leaves(info.value)] == ["attempt 3"]
    assert trio.current_time() == 3.0
    assert flaky.starts == [0.0, 1.0, 3.0]
    [failed] = events.of(ActorFailed)
    assert (failed.name, failed.escalated) == ("flaky", True)


async def test_healthy_run_resets_the_backoff(autojump_clock: Any) -> None:
    """A run that lasted healthy_s (30 s) before failing restarts after the initial delay again."""
    flaky = Flaky(3, run_s=0.0)

    async def actor(*, task_status: trio.TaskStatus[None]) -> None:
        flaky.starts.append(trio.current_time())
        task_status.started()
        # runs: fail at once, then run 40 s (healthy) and fail, then fail at once, then live
        if len(flaky.starts) in (1, 3):
            raise Disconnected("dropped")
        if len(flaky.starts) == 2:
            await trio.sleep(40)
            raise Disconnected("dropped")
        await trio.sleep_forever()

    async with open_supervisor(policy=EXACT) as sup:
        await sup.start("ws", actor)
        await trio.sleep(60)
    # delays: 1 (attempt 0), 1 (healthy reset -> attempt 0), 2 (attempt 1)
    assert flaky.starts == [0.0, 1.0, 42.0, 44.0]


async def test_non_transient_error_propagates_at_once(autojump_clock: Any, events: EventLog) -> None:
    """A bug (ValueError) is never retried: it cancels the supervisor at t=0 and propagates."""
    runs = []

    async def buggy(*, task_status: trio.TaskStatus[None]) -> None:
        runs.append(trio.current_time())
        task_status.started()
        raise ValueError("bug")

    with pytest.raises(ExceptionGroup) as info:
        async with open_supervisor(policy=EXACT, emit=events) as sup:
            await sup.start("buggy", buggy)
            await trio.sleep_forever()
    assert [type(e) for e in leaves(info.value)] == [ValueError]
    assert runs == [0.0] and trio.current_time() == 0.0
    assert events.of(ActorFailed)[0].escalated is True


async def test_error_before_ready_is_raised_by_start(autojump_clock: Any) -> None:
    """A permanent error before readiness surfaces from start() itself, not from the nursery,
    and leaves the running siblings alone."""

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        raise ValueError("bad config")

    async with open_supervisor() as sup:
        await sup.start("steady", Flaky(0))
        with pytest.raises(ValueError, match="bad config"):
            await sup.start("broken", broken)
        await trio.sleep(1)
        assert {s.name: s.state for s in sup.statistics()} == {"steady": "running", "broken": "failed"}


async def test_group_of_transient_errors_is_transient(autojump_clock: Any) -> None:
    """An actor whose inner nursery raised only TransientErrors (an ExceptionGroup) is restarted."""
    starts = []

    async def with_nursery(*, task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()

        async def reader() -> None:
            raise Disconnected("ws dropped")

        if len(starts) == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep_forever()
        await trio.sleep_forever()

    async with open_supervisor(policy=EXACT) as sup:
        await sup.start("ws", with_nursery)
        await trio.sleep(5)
    assert starts == [0.0, 1.0]


async def test_group_mixing_a_bug_propagates(autojump_clock: Any) -> None:
    """A group holding a TransientError and a bug is not transient: it propagates."""

    async def mixed(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise ExceptionGroup("both", [Disconnected("x"), KeyError("bug")])

    with pytest.raises(ExceptionGroup) as info:
        async with open_supervisor(policy=EXACT) as sup:
            await sup.start("mixed", mixed)
            await trio.sleep_forever()
    assert {type(e) for e in leaves(info.value)} == {Disconnected, KeyError}


async def test_escalate_false_gives_up_quietly(autojump_clock: Any, events: EventLog) -> None:
    """An on-demand actor exceeding its intensity is marked failed; its siblings and the supervisor go on."""
    policy = RestartPolicy(initial_s=1.0, jitter=0.0, max_restarts=1, within_s=10.0)
    async with open_supervisor(policy=policy, emit=events) as sup:
        await sup.start("steady", Flaky(0))
        await sup.start("doomed", Flaky(100), escalate=False)
        await trio.sleep(5)
        states = {s.name: (s.state, s.restarts) for s in sup.statistics()}
        assert states == {"steady": ("running", 0), "doomed": ("failed", 1)}
        await sup.start("doomed", Flaky(0))  # the name can be reused
    assert [e.escalated for e in events.of(ActorFailed)] == [False]


async def test_ordered_start_sees_dependencies_ready(autojump_clock: Any) -> None:
    """start() returns the started() value after the actor's setup, so the next actor can use it."""
    log: list[str] = []

    async def slow_setup(*, task_status: trio.TaskStatus[dict[str, int]]) -> None:
        await trio.sleep(2)
        log.append("writer ready")
        task_status.started({"port": 1})
        await trio.sleep_forever()

    async def source(cfg: dict[str, int], *, task_status: trio.TaskStatus[None]) -> None:
        log.append(f"source got {cfg}")
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor() as sup:
        cfg = await sup.start("writer", slow_setup, role=Role.WRITER)
        await sup.start("source", source, cfg, role=Role.SOURCE)
        assert trio.current_time() == 2.0
    assert log == ["writer ready", "source got {'port': 1}"]


async def test_stop_one_actor_alone_and_add_at_runtime(autojump_clock: Any, events: EventLog) -> None:
    """stop(name) cancels only that actor and waits for its cleanup; names can be added and removed live."""
    cleaned: list[tuple[str, float]] = []

    async def actor(name: str, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
            cleaned.append((name, trio.current_time()))

    async with open_supervisor(emit=events) as sup:
        await sup.start("a", actor, "a")
        await sup.start("b", actor, "b")
        with pytest.raises(ValueError, match="already running"):
            await sup.start("a", actor, "a")
        await trio.sleep(5)
        await sup.stop("a")
        assert cleaned == [("a", 6.0)] and trio.current_time() == 6.0
        assert sup.names() == ["b"]
        await sup.start("c", actor, "c")
        assert sorted(sup.names()) == ["b", "c"]
        with pytest.raises(KeyError, match="no actor named 'a'"):
            await sup.stop("a")
    assert sorted(cleaned) == [("a", 6.0), ("b", 7.0), ("c", 7.0)]
    assert [e.reason for e in events.of(ActorStopped)] == ["stopped", "stopped", "stopped"]


async def test_actor_returning_is_removed(autojump_clock: Any) -> None:
    """An actor that finishes its work (a one-shot backfill) leaves the table, reason 'returned'."""

    async def once(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(3)

    async with open_supervisor() as sup:
        await sup.start("backfill", once)
        assert "backfill" in sup
        await trio.sleep(4)
        assert "backfill" not in sup


async def test_shutdown_order_sources_writers_hubs_rest(autojump_clock: Any) -> None:
    """On exit, sources stop first, then writers (1 s drain), then hubs, then the rest, whatever the start order."""
    exits: list[tuple[str, float]] = []

    async def actor(name: str, drain_s: float, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(drain_s)
            exits.append((name, trio.current_time()))

    async with open_supervisor() as sup:
        await sup.start("other", actor, "other", 0.0)
        await sup.start("hub", actor, "hub", 0.0, role=Role.HUB)
        await sup.start("writer", actor, "writer", 1.0, role=Role.WRITER)
        await sup.start("source", actor, "source", 0.5, role=Role.SOURCE)
    assert exits == [("source", 0.5), ("writer", 1.5), ("hub", 1.5), ("other", 1.5)]


async def test_start_during_shutdown_is_refused(autojump_clock: Any) -> None:
    """Once shutdown began, start() raises ClosedResourceError instead of racing it."""
    async with open_supervisor() as sup:
        await sup.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await sup.start("late", Flaky(0))


async def test_outer_cancel_still_shuts_down_in_order(autojump_clock: Any) -> None:
    """When the embedding code is cancelled, the ordered shutdown still runs (shielded, bounded)."""
    exits: list[str] = []

    async def actor(name: str, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            exits.append(name)

    with trio.move_on_after(1):
        async with open_supervisor() as sup:
            await sup.start("writer", actor, "writer", role=Role.WRITER)
            await sup.start("source", actor, "source", role=Role.SOURCE)
            await trio.sleep_forever()
    assert exits == ["source", "writer"]


async def test_escalation_cancels_the_other_actors(autojump_clock: Any) -> None:
    """When one actor escalates, its siblings are cancelled (they run their cleanup) and the error propagates."""
    cleaned: list[tuple[str, float]] = []

    async def steady(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            cleaned.append(("steady", trio.current_time()))

    async def buggy(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(2)
        raise ValueError("bug")

    with pytest.RaisesGroup(ValueError):
        async with open_supervisor() as sup:
            await sup.start("steady", steady, role=Role.WRITER)
            await sup.start("buggy", buggy)
            await trio.sleep_forever()
    assert cleaned == [("steady", 2.0)]


async def test_a_bug_in_an_escalate_false_actor_is_its_own_failure(autojump_clock: Any, events: EventLog) -> None:
    """A non-transient error (a bug) in a ready escalate=False actor fails that actor alone, logged at error with
    its traceback; the siblings run on and the supervisor keeps starting actors. Before readiness the error still
    goes to the start() caller, without touching the siblings."""
    cleaned: list[str] = []

    async def steady(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            cleaned.append("steady")

    async def buggy(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(2)
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    async def early_bug(*, task_status: trio.TaskStatus[None]) -> None:
        raise KeyError("before ready")

    with structlog.testing.capture_logs() as logs:
        async with open_supervisor(emit=events) as sup:
            await sup.start("steady", steady, role=Role.WRITER)
            await sup.start("run", buggy, role=Role.SOURCE, escalate=False)
            await trio.sleep(5)
            states = {s.name: s.state for s in sup.statistics()}
            assert states == {"steady": "running", "run": "failed"}
            with pytest.raises(KeyError):
                await sup.start("early", early_bug, escalate=False)
            await sup.start("run", steady)  # still supervising: the name can be reused
            assert cleaned == []
    assert cleaned == ["steady", "steady"]  # stopped by the ordinary shutdown, not by the bug
    failed = events.of(ActorFailed)
    assert [(e.name, e.escalated) for e in failed] == [("run", False), ("early", False)]
    [entry] = [e for e in logs if e["event"] == "actor.failed" and "OverflowError" in e["error"]]
    assert entry["log_level"] == "error" and isinstance(entry["exc_info"], OverflowError)


async def test_cancelling_the_caller_cancels_an_actor_still_starting(autojump_clock: Any) -> None:
    """Before it is ready an actor belongs to its caller: cancelling start() cancels the actor too."""
    flaky = Flaky(1000, before_ready=True)
    async with open_supervisor(policy=EXACT) as sup:
        with trio.move_on_after(10):
            await sup.start("never-ready", flaky)
        assert trio.current_time() == 10.0
        await trio.sleep(100)
        assert len(flaky.starts) == 4  # 0, 1, 3, 7: no restarts after the cancel


async def test_retry_after_hint_lengthens_the_backoff(autojump_clock: Any, events: EventLog) -> None:
    """A RateLimited(retry_after_s=5) restarts after 5 s, not the 1 s backoff; shorter hints do not shorten it."""
    starts: list[float] = []

    async def limited(*, task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) == 1:
            raise RateLimited(5.0)
        if len(starts) == 2:
            raise RateLimited(0.5)
        await trio.sleep_forever()

    async with open_supervisor(policy=EXACT, emit=events) as sup:
        await sup.start("rest", limited)
        await trio.sleep(20)
    assert starts == [0.0, 5.0, 7.0]
    assert [e.delay_s for e in events.of(ActorRestarted)] == [5.0, 2.0]
