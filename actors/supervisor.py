"""Supervision: start actors in order, restart them on transient errors, stop them in order.

An actor is an async function taking ``task_status`` that calls
``task_status.started(handle)`` once it is ready (connected, subscribed...).
:meth:`Supervisor.start` returns that handle, so actors start in order and
each sees its dependencies ready. Each actor runs in its own cancel scope and
can be stopped alone; actors can be added and removed while the supervisor
runs (the service starts backfills and streams on demand).

Failure handling (policy arithmetic in :mod:`dccd.domain.backoff`):

- :class:`~dccd.errors.TransientError` (alone or as every leaf of an
  exception group): restart after a jittered exponential backoff (at least
  the error's ``retry_after_s``, e.g. a 429's Retry-After); more than
  ``max_restarts`` in ``within_s`` gives up and escalates the last error
  (or, with ``escalate=False``, marks the actor failed and carries on);
- any other exception is a bug or a permanent condition: it propagates at
  once, cancelling the supervisor (let it crash), unless the actor was
  started with ``escalate=False``: then (once the actor is ready) it is that
  actor's failure alone: logged at error with its traceback, the actor marked
  failed, its siblings untouched. The service starts every per-run actor
  (a backfill, a stream, their writers) that way, so no single run can stop
  the service or its HTTP server;
- ``Cancelled`` passes through untouched.

Shutdown is ordered by :class:`Role`: sources stop first, then writers
drain, then hubs close their subscribers, then everything else.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any

import structlog
import trio
from reactivex.subject import Subject

from dccd.domain.backoff import RestartPolicy, RestartState, on_failure
from dccd.errors import TransientError, leaves

from .messages import ActorFailed, ActorRestarted, ActorStarted, ActorStopped, Message
from .stats import ActorMetrics, ActorStats, Instrumented

log = structlog.get_logger()

ActorFn = Callable[..., Awaitable[Any]]


class Role(StrEnum):
    """What an actor is, which fixes when it stops during shutdown."""

    SOURCE = "source"
    WRITER = "writer"
    HUB = "hub"
    OTHER = "other"


SHUTDOWN_ORDER: tuple[Role, ...] = (Role.SOURCE, Role.WRITER, Role.HUB, Role.OTHER)


class State(StrEnum):
    """Lifecycle of a supervised actor."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def is_transient(exc: BaseException) -> bool:
    """True for a :class:`TransientError`, or a group whose every leaf is one."""
    return all(isinstance(e, TransientError) for e in leaves(exc))


def retry_after(exc: BaseException) -> float:
    """The longest ``retry_after_s`` the error (or any leaf of a group) asks for, else 0."""
    hints = (getattr(e, "retry_after_s", None) for e in leaves(exc))
    return max((float(h) for h in hints if isinstance(h, int | float)), default=0.0)


class _Child:
    def __init__(
        self, name: str, role: Role, fn: ActorFn, args: tuple[Any, ...], policy: RestartPolicy, escalate: bool
    ) -> None:
        self.name = name
        self.role = role
        self.fn = fn
        self.args = args
        self.policy = policy
        self.escalate = escalate
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.state = State.STARTING
        self.restart = RestartState()
        self.started_at: float | None = None
        self.last_error: str | None = None
        self.handle: Any = None
        self.ready = False


class _Readiness:
    """The ``task_status`` an actor sees: forwards the first ``started`` to ``nursery.start``."""

    def __init__(self, outer: trio.TaskStatus[Any], child: _Child, sup: Supervisor) -> None:
        self._outer = outer
        self._child = child
        self._sup = sup

    def started(self, value: Any = None) -> None:
        child = self._child
        child.handle = value
        child.state = State.RUNNING
        if not child.ready:
            child.ready = True
            # From now on the actor belongs to the supervisor: only stop()/shutdown (or an escalation)
            # cancel it, so an outer cancel still gets the ordered, draining shutdown.
            child.scope.shield = True
            log.info("actor.started", role=child.role.value)
            self._sup._emit(ActorStarted(name=child.name, role=child.role.value))
            self._outer.started(value)


class Supervisor:
    """Runs actors in ``nursery``; see the module docstring for the rules.

    Args:
        nursery: where the actors run (the supervisor's own nursery).
        policy: default restart policy for its actors.
        emit: subscribed to :attr:`lifecycle` when given.

    Output (observable): :attr:`lifecycle`, the actors' :class:`ActorStarted`, ``ActorRestarted``,
    ``ActorFailed`` and ``ActorStopped`` events.
        rng: random source for the backoff jitter (seed it in tests).
        name: for logs.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        policy: RestartPolicy | None = None,
        emit: Callable[[Message], None] | None = None,
        rng: random.Random | None = None,
        name: str = "supervisor",
    ) -> None:
        self.name = name
        self.policy = policy or RestartPolicy()
        self._nursery = nursery
        self.lifecycle: Subject[Message] = Subject()
        if emit is not None:
            self.lifecycle.subscribe(on_next=emit)
        self._rng = rng or random.Random()
        self._children: dict[str, _Child] = {}
        self._closing = False

    def _emit(self, message: Message) -> None:
        self.lifecycle.on_next(message)

    async def start(
        self,
        name: str,
        fn: ActorFn,
        *args: Any,
        role: Role = Role.OTHER,
        policy: RestartPolicy | None = None,
        escalate: bool = True,
    ) -> Any:
        """Start ``fn(*args, task_status=...)`` as actor ``name`` and wait until it is ready.

        Returns:
            The value the actor passed to ``task_status.started``.

        Raises:
            ValueError: an actor with that name is running.
            trio.ClosedResourceError: the supervisor is shutting down.
            Exception: the actor failed permanently (or escalated) before it was ready.
        """
        if self._closing:
            raise trio.ClosedResourceError(f"{self.name} is shutting down; cannot start {name!r}")
        old = self._children.get(name)
        if old is not None and not old.done.is_set():
            raise ValueError(f"an actor named {name!r} is already running")
        child = _Child(name, Role(role), fn, args, policy or self.policy, escalate)
        self._children[name] = child
        return await self._nursery.start(self._run, child, name=f"actor:{name}")

    async def _run(self, child: _Child, *, task_status: trio.TaskStatus[Any]) -> None:
        readiness = _Readiness(task_status, child, self)
        reason = "returned"
        with structlog.contextvars.bound_contextvars(actor=child.name):
            try:
                with child.scope:
                    reason = await self._loop(child, readiness)
                if child.scope.cancelled_caught:
                    reason = "stopped"
                    child.state = State.STOPPED
                    if not child.ready:
                        raise RuntimeError(f"actor {child.name!r} was stopped before it was ready")
            except BaseException:
                if child.state not in (State.FAILED, State.STOPPED):
                    child.state = State.STOPPED
                    reason = "cancelled"
                raise
            finally:
                child.done.set()
                if child.state is not State.FAILED:
                    if self._children.get(child.name) is child:
                        del self._children[child.name]
                    log.info("actor.stopped", reason=reason)
                    self._emit(ActorStopped(name=child.name, role=child.role.value, reason=reason))

    async def _loop(self, child: _Child, readiness: _Readiness) -> str:
        while True:
            child.state = State.STARTING
            child.started_at = trio.current_time()
            try:
                await child.fn(*child.args, task_status=readiness)
            except Exception as exc:
                child.last_error = repr(exc)
                if not is_transient(exc):
                    self._fail(child, exc, escalated=child.escalate, bug=True)
                    if child.escalate or not child.ready:  # before readiness the start() caller gets it
                        raise
                    return "failed"
                now = trio.current_time()
                delay, child.restart = on_failure(
                    child.policy, child.restart, started_at=child.started_at, now=now, u=self._rng.random()
                )
                if delay is None:
                    self._fail(child, exc, escalated=child.escalate)
                    if child.escalate:
                        raise
                    return "failed"
                delay = max(delay, retry_after(exc))  # an exchange's Retry-After beats our backoff
                child.state = State.BACKOFF
                log.warning("actor.restarting", attempt=child.restart.attempt, delay_s=delay, error=repr(exc))
                self._emit(
                    ActorRestarted(
                        name=child.name,
                        role=child.role.value,
                        attempt=child.restart.attempt,
                        delay_s=delay,
                        error=repr(exc),
                    )
                )
                await trio.sleep(delay)
                continue
            child.state = State.STOPPED
            if not child.ready:
                raise RuntimeError(f"actor {child.name!r} returned without calling task_status.started()")
            return "returned"

    def _fail(self, child: _Child, exc: Exception, *, escalated: bool, bug: bool = False) -> None:
        child.state = State.FAILED
        log.error(
            "actor.failed",
            error=repr(exc),
            escalated=escalated,
            restarts=child.restart.total,
            **({"exc_info": exc} if bug else {}),  # a bug or a permanent condition: show where it happened
        )
        self._emit(ActorFailed(name=child.name, role=child.role.value, error=repr(exc), escalated=escalated))
        if escalated and child.ready:
            # The supervisor fails with this error: its other actors are cancelled, as a nursery would
            # (their scopes are shielded from the nursery's own cancel once ready). Before readiness
            # the error goes to the start() caller instead, and the siblings are not concerned.
            self.cancel_all()

    def cancel_all(self) -> None:
        """Cancel every actor at once, in no order (writers still run their bounded drain)."""
        for child in self._children.values():
            child.scope.cancel()

    async def stop(self, name: str) -> None:
        """Cancel actor ``name`` and wait until it has finished (writers drain first).

        Raises:
            KeyError: no such actor.
        """
        child = self._children.get(name)
        if child is None:
            raise KeyError(f"no actor named {name!r}")
        await self._stop(child)
        if self._children.get(name) is child:
            del self._children[name]

    async def _stop(self, child: _Child) -> None:
        if not child.done.is_set():
            child.state = State.STOPPING
            child.scope.cancel()
        await child.done.wait()

    async def aclose(self) -> None:
        """Stop every actor: sources, then writers, then hubs, then the rest (each group concurrently)."""
        self._closing = True
        for role in SHUTDOWN_ORDER:
            group = [c for c in self._children.values() if c.role is role]
            async with trio.open_nursery() as nursery:
                for child in group:
                    nursery.start_soon(self._stop, child)
        log.info("supervisor.closed", supervisor=self.name)

    def handle(self, name: str) -> Any:
        """The value actor ``name`` passed to ``task_status.started`` (its latest run).

        Raises:
            KeyError: no such actor.
        """
        try:
            return self._children[name].handle
        except KeyError:
            raise KeyError(f"no actor named {name!r}") from None

    def names(self, role: Role | None = None) -> list[str]:
        """Names of the current actors, optionally of one role."""
        return [c.name for c in self._children.values() if role is None or c.role is role]

    def __contains__(self, name: object) -> bool:
        return name in self._children

    def statistics(self) -> tuple[ActorStats, ...]:
        """One snapshot per actor (running, backing off, or failed without escalating)."""
        return tuple(_stats(c) for c in self._children.values())


def _stats(child: _Child) -> ActorStats:
    metrics = child.handle.actor_metrics() if isinstance(child.handle, Instrumented) else ActorMetrics()
    return ActorStats(
        name=child.name,
        role=child.role.value,
        state=child.state.value,
        restarts=child.restart.total,
        started_at=child.started_at,
        last_error=child.last_error,
        metrics=metrics,
    )


@asynccontextmanager
async def open_supervisor(
    *,
    grace_s: float = 15.0,
    policy: RestartPolicy | None = None,
    emit: Callable[[Message], None] | None = None,
    rng: random.Random | None = None,
    name: str = "supervisor",
) -> AsyncIterator[Supervisor]:
    """A :class:`Supervisor` on its own nursery; on exit, an ordered shutdown bounded by ``grace_s``.

    The shutdown runs shielded, so it also happens when the surrounding code
    is cancelled; after ``grace_s`` whatever is left is cancelled outright.
    """
    async with trio.open_nursery() as nursery:
        sup = Supervisor(nursery, policy=policy, emit=emit, rng=rng, name=name)
        try:
            yield sup
        finally:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + grace_s) as scope:
                await sup.aclose()
            if scope.cancelled_caught:
                log.error("supervisor.shutdown_timed_out", supervisor=name, grace_s=grace_s, left=sup.names())
            sup.cancel_all()
            nursery.cancel_scope.cancel()
