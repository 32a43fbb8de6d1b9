"""TrioScheduler: Rx time operators run on Trio's thread and follow Trio's (virtual) clock exactly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import reactivex
import reactivex.operators as ops
import trio
import trio.testing
from dccd.actors import TrioScheduler, open_trio_scheduler
from reactivex import abc
from reactivex.subject import Subject


class Recorder(abc.ObserverBase[Any]):
    """Observer recording (trio time, value, thread) for every notification."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Any]] = []
        self.threads: set[int] = set()
        self.error: tuple[float, Exception] | None = None
        self.completed_at: float | None = None

    def on_next(self, value: Any) -> None:
        self.threads.add(threading.get_ident())
        self.items.append((trio.current_time(), value))

    def on_error(self, error: Exception) -> None:
        self.threads.add(threading.get_ident())
        self.error = (trio.current_time(), error)

    def on_completed(self) -> None:
        self.threads.add(threading.get_ident())
        self.completed_at = trio.current_time()


async def feed(subject: Subject[Any], timeline: list[tuple[float, Any]], complete_at: float | None = None) -> None:
    """Emit each value at its absolute trio time, then optionally complete."""
    for at, value in timeline:
        await trio.sleep_until(at)
        subject.on_next(value)
    if complete_at is not None:
        await trio.sleep_until(complete_at)
        subject.on_completed()


BURSTS = [(0.0, 0), (0.25, 1), (0.5, 2), (0.75, 3), (2.125, 4), (2.375, 5)]  # no ties with timer ticks


@pytest.mark.parametrize(
    ("name", "operator", "timeline", "expected"),
    [
        (
            "buffer_with_time_or_count",
            lambda s: ops.buffer_with_time_or_count(timespan=1.0, count=3, scheduler=s),
            BURSTS,
            # count 3 closes [0,1,2] at 0.5; the window opened then closes on time at 1.5, then 2.5;
            # completion at 3.25 flushes the open (empty) window
            [(0.5, [0, 1, 2]), (1.5, [3]), (2.5, [4, 5]), (3.25, [])],
        ),
        ("debounce", lambda s: ops.debounce(0.5, scheduler=s), BURSTS, [(1.25, 3), (2.875, 5)]),
        ("throttle_first", lambda s: ops.throttle_first(1.0, scheduler=s), BURSTS, [(0.0, 0), (2.125, 4)]),
        ("sample", lambda s: ops.sample(1.0, scheduler=s), BURSTS, [(1.0, 3), (3.0, 5)]),
    ],
)
async def test_time_operators_are_exact_and_on_the_trio_thread(
    autojump_clock: Any,
    name: str,
    operator: Callable[[TrioScheduler], Any],
    timeline: list[tuple[float, Any]],
    expected: list[tuple[float, Any]],
) -> None:
    """Each time operator emits at exact virtual times, and every callback runs on the Trio thread."""
    trio_thread = threading.get_ident()
    rec = Recorder()
    async with open_trio_scheduler() as sched:
        subject: Subject[Any] = Subject()
        subject.pipe(operator(sched)).subscribe(rec)
        await feed(subject, timeline, complete_at=3.25)
        await trio.sleep(2)
    assert rec.items == expected, name
    assert rec.threads == {trio_thread}


async def test_timeout_errors_at_the_exact_time_on_the_trio_thread(autojump_clock: Any) -> None:
    """timeout(1) passes items through and errors exactly 1 s after the last one, on the Trio thread."""
    rec = Recorder()
    async with open_trio_scheduler() as sched:
        subject: Subject[int] = Subject()
        subject.pipe(ops.timeout(1.0, scheduler=sched)).subscribe(rec)
        await feed(subject, [(0.5, 1), (1.25, 2)])
        await trio.sleep(5)
    assert rec.items == [(0.5, 1), (1.25, 2)]
    assert rec.error is not None and rec.error[0] == 2.25
    assert rec.threads == {threading.get_ident()}


async def test_scheduler_given_at_subscribe_is_used(autojump_clock: Any) -> None:
    """An operator without scheduler= picks up the one passed to subscribe(), staying on Trio."""
    rec = Recorder()
    async with open_trio_scheduler() as sched:
        reactivex.interval(0.5).pipe(ops.take(3)).subscribe(rec, scheduler=sched)
        await trio.sleep(5)
    assert rec.items == [(0.5, 0), (1.0, 1), (1.5, 2)]
    assert rec.completed_at == 1.5
    assert rec.threads == {threading.get_ident()}


async def test_schedule_from_a_worker_thread_runs_on_the_trio_thread(autojump_clock: Any) -> None:
    """An action scheduled from another thread is marshalled to the Trio thread, timed on Trio's clock."""
    ran: list[tuple[float, int]] = []
    async with open_trio_scheduler() as sched:

        def action(scheduler: Any, state: Any) -> None:
            ran.append((trio.current_time(), threading.get_ident()))

        await trio.to_thread.run_sync(lambda: sched.schedule_relative(timedelta(seconds=0.5), action))
        await trio.sleep(1)
    assert ran == [(0.5, threading.get_ident())]


async def test_now_follows_the_trio_clock(autojump_clock: Any) -> None:
    """scheduler.now advances exactly with trio time (virtual under MockClock)."""
    async with open_trio_scheduler() as sched:
        t0 = sched.now
        await trio.sleep(5.5)
        assert (sched.now - t0).total_seconds() == 5.5


async def test_absolute_schedule_uses_now(autojump_clock: Any) -> None:
    """schedule_absolute(now + 2 s) fires after exactly 2 s."""
    ran: list[float] = []
    async with open_trio_scheduler() as sched:
        sched.schedule_absolute(sched.now + timedelta(seconds=2), lambda s, st: ran.append(trio.current_time()))
        await trio.sleep(3)
    assert ran == [2.0]


async def test_disposing_cancels_timer_tasks(autojump_clock: Any) -> None:
    """Disposed timers' tasks leave the nursery at once and their actions never run."""
    ran: list[int] = []
    async with trio.open_nursery() as nursery:
        sched = TrioScheduler(nursery)
        disposables = [sched.schedule_relative(10.0, lambda s, st, i=i: ran.append(i)) for i in range(100)]
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 100
        for d in disposables:
            d.dispose()
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 0 and trio.current_time() == 0.0
        await trio.sleep(20)
    assert ran == []


async def test_action_error_crashes_the_owning_nursery(autojump_clock: Any) -> None:
    """An exception raised by a scheduled action propagates into the actor's nursery (let it crash)."""

    def boom(scheduler: Any, state: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(ExceptionGroup) as info:
        async with open_trio_scheduler() as sched:
            sched.schedule_relative(1.0, boom)
            await trio.sleep_forever()
    assert [str(e) for e in info.value.exceptions] == ["boom"]
    assert trio.current_time() == 1.0
