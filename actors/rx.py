"""A reactivex scheduler whose timers are Trio tasks.

reactivex ships no Trio scheduler, and a time operator given none runs on
``TimeoutScheduler`` threads, from which touching Trio objects is unsafe.
:class:`TrioScheduler` runs every scheduled action as a child task of an
actor's nursery, on the Trio thread: the task sleeps on Trio's clock, then
invokes the action. So ``buffer_with_time_or_count``, ``debounce``,
``throttle_first``, ``sample``, ``timeout`` and ``interval`` follow
``trio.current_time()`` and are exact under ``MockClock``/``autojump_clock``.

Pass it to every time-based operator (``scheduler=sched``) or once at
``subscribe(..., scheduler=sched)``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import trio
from reactivex import abc, typing
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler.periodicscheduler import PeriodicScheduler

_TState = TypeVar("_TState")


class TrioScheduler(PeriodicScheduler):
    """Run Rx actions as tasks in ``nursery``, timed by Trio's clock.

    Create it on the Trio thread (it captures the run's token and clock).
    Actions scheduled from another thread are handed to the Trio thread with
    ``TrioToken.run_sync_soon``; they never run anywhere else. An exception
    raised by an action propagates into ``nursery``, i.e. crashes the owning
    actor, which its supervisor then handles.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        super().__init__()
        self._nursery = nursery
        self._token = trio.lowlevel.current_trio_token()
        self._clock = trio.lowlevel.current_clock()
        self._thread = threading.get_ident()
        self._t0 = self._clock.current_time()
        self._wall0 = datetime.now(UTC)
        self.scheduled = 0
        """Actions scheduled so far (statistics)."""

    @property
    def nursery(self) -> trio.Nursery:
        """The nursery the timer tasks run in."""
        return self._nursery

    @property
    def now(self) -> datetime:
        """Wall time anchored at creation, advancing with Trio's clock (virtual under MockClock)."""
        return self._wall0 + timedelta(seconds=self._clock.current_time() - self._t0)

    def schedule(self, action: typing.ScheduledAction[_TState], state: _TState | None = None) -> abc.DisposableBase:
        """Run ``action`` at the next Trio scheduling point."""
        return self._spawn(0.0, action, state)

    def schedule_relative(
        self,
        duetime: typing.RelativeTime,
        action: typing.ScheduledAction[_TState],
        state: _TState | None = None,
    ) -> abc.DisposableBase:
        """Run ``action`` after ``duetime`` (seconds or timedelta) of Trio time."""
        return self._spawn(max(0.0, self.to_seconds(duetime)), action, state)

    def schedule_absolute(
        self,
        duetime: typing.AbsoluteTime,
        action: typing.ScheduledAction[_TState],
        state: _TState | None = None,
    ) -> abc.DisposableBase:
        """Run ``action`` at ``duetime`` on this scheduler's :attr:`now` scale."""
        return self.schedule_relative(self.to_datetime(duetime) - self.now, action, state)

    def _spawn(
        self, seconds: float, action: typing.ScheduledAction[_TState], state: _TState | None
    ) -> abc.DisposableBase:
        sad = SingleAssignmentDisposable()
        scope = trio.CancelScope()
        self.scheduled += 1

        async def run() -> None:
            with scope:
                if seconds > 0:
                    await trio.sleep(seconds)
                else:
                    await trio.lowlevel.checkpoint()
                if not sad.is_disposed:
                    sad.disposable = self.invoke_action(action, state=state)

        def cancel() -> None:
            if threading.get_ident() == self._thread:
                scope.cancel()
            else:
                self._token.run_sync_soon(scope.cancel)

        if threading.get_ident() == self._thread:
            self._nursery.start_soon(run, name="rx-timer")
        else:
            self._token.run_sync_soon(self._nursery.start_soon, run)
        return CompositeDisposable(sad, Disposable(cancel))


@asynccontextmanager
async def open_trio_scheduler() -> AsyncIterator[TrioScheduler]:
    """A :class:`TrioScheduler` on a fresh nursery whose pending timers are cancelled on exit."""
    async with trio.open_nursery() as nursery:
        try:
            yield TrioScheduler(nursery)
        finally:
            nursery.cancel_scope.cancel()
