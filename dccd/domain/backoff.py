"""Restart policy arithmetic: jittered exponential backoff and a restart-intensity window.

Pure functions of ``now`` (seconds on any monotonic clock) and of a uniform
sample ``u`` in ``[0, 1)``: the supervisor supplies Trio's clock and its random
source, tests supply exact values. Nothing here sleeps or reads a clock.

Semantics (Erlang/OTP's, with backoff added):

- the *n*-th consecutive failure (``attempt = n - 1``) waits
  ``min(max_s, initial_s * factor**attempt)``, shortened by up to ``jitter``
  of itself (``jitter=0`` gives the exact sequence, ``1`` is "full jitter");
- a child may be restarted at most ``max_restarts`` times in any window of
  ``within_s`` seconds; the failure that would exceed that gives up;
- a child that stayed up for ``healthy_s`` before failing starts over at
  ``attempt = 0`` (its backoff resets; the intensity window does not).
"""

from __future__ import annotations

import msgspec


class RestartPolicy(msgspec.Struct, frozen=True):
    """How a supervisor restarts a child that failed with a transient error."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2
    max_restarts: int = 5
    within_s: float = 60.0
    healthy_s: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < 0:
            raise ValueError("restart delays must be >= 0")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.within_s <= 0:
            raise ValueError(f"within_s must be > 0, got {self.within_s}")


class RestartState(msgspec.Struct, frozen=True):
    """What a supervisor remembers about one child between failures."""

    attempt: int = 0
    """Consecutive failures since the child last ran healthy."""
    window: tuple[float, ...] = ()
    """Restart times (``now`` values) still inside the intensity window."""
    total: int = 0
    """Restarts over the child's whole life (for statistics)."""


def backoff_delay(policy: RestartPolicy, attempt: int, u: float = 0.0) -> float:
    """Delay before restart number ``attempt + 1`` of a consecutive run of failures.

    Args:
        policy: the restart policy.
        attempt: consecutive failures before this one (0 for the first failure).
        u: a uniform sample in ``[0, 1)``; 0 gives the un-jittered delay.

    Returns:
        The delay in seconds, within ``[base * (1 - jitter), base]``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    try:
        base = min(policy.max_s, policy.initial_s * policy.factor**attempt)
    except OverflowError:  # factor**attempt left the float range: long past max_s
        base = policy.max_s
    return base * (1.0 - policy.jitter * u)


def prune_window(window: tuple[float, ...], now: float, within_s: float) -> tuple[float, ...]:
    """Drop restart times that fell out of the window ``(now - within_s, now]``."""
    horizon = now - within_s
    return tuple(t for t in window if t > horizon)


def on_failure(
    policy: RestartPolicy, state: RestartState, *, started_at: float, now: float, u: float = 0.0
) -> tuple[float | None, RestartState]:
    """Decide what to do about a child that failed at ``now`` after starting at ``started_at``.

    Args:
        policy: the restart policy.
        state: the child's state before this failure.
        started_at: when the failed run started (same clock as ``now``).
        now: the failure time.
        u: a uniform sample in ``[0, 1)`` for the jitter.

    Returns:
        ``(delay_s, new_state)`` to restart after ``delay_s``, or ``(None, new_state)``
        when the restart intensity would be exceeded (give up / escalate).
    """
    attempt = 0 if now - started_at >= policy.healthy_s else state.attempt
    window = prune_window(state.window, now, policy.within_s)
    if len(window) >= policy.max_restarts:
        return None, RestartState(attempt=attempt, window=window, total=state.total)
    delay = backoff_delay(policy, attempt, u)
    return delay, RestartState(attempt=attempt + 1, window=(*window, now), total=state.total + 1)
