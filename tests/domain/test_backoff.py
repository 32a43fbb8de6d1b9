"""Restart policy arithmetic: backoff sequence, jitter bounds, intensity window, healthy reset."""

from __future__ import annotations

import pytest

from dccd.domain.backoff import RestartPolicy, RestartState, backoff_delay, on_failure, prune_window

EXACT = RestartPolicy(initial_s=1.0, factor=2.0, max_s=10.0, jitter=0.0, max_restarts=3, within_s=60.0, healthy_s=30.0)


def test_delays_double_up_to_the_cap() -> None:
    """Without jitter the delays are initial * factor**attempt, capped at max_s."""
    assert [backoff_delay(EXACT, a) for a in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_huge_attempt_does_not_overflow() -> None:
    """A float overflow of factor**attempt yields max_s instead of an OverflowError."""
    assert backoff_delay(EXACT, 5000) == 10.0


@pytest.mark.parametrize("u", [0.0, 0.25, 0.999])
def test_jitter_shortens_by_at_most_its_share(u: float) -> None:
    """Jitter j scales the delay by (1 - j*u), so it stays within [base*(1-j), base]."""
    policy = RestartPolicy(initial_s=4.0, jitter=0.5)
    assert backoff_delay(policy, 0, u) == 4.0 * (1 - 0.5 * u)
    assert 2.0 < backoff_delay(policy, 0, u) <= 4.0


def test_sequence_of_failures_until_intensity_exceeded() -> None:
    """Three restarts fit the window of max_restarts=3; the fourth failure inside it gives up."""
    state = RestartState()
    delays = []
    for now in (0.0, 1.0, 3.0):
        delay, state = on_failure(EXACT, state, started_at=now, now=now)
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0]
    assert state.window == (0.0, 1.0, 3.0) and state.total == 3
    delay, state = on_failure(EXACT, state, started_at=7.0, now=7.0)
    assert delay is None
    assert state.total == 3


def test_window_slides() -> None:
    """Restarts older than within_s no longer count towards the limit."""
    policy = RestartPolicy(jitter=0.0, max_restarts=1, within_s=5.0, healthy_s=1000.0)
    delay, state = on_failure(policy, RestartState(), started_at=0.0, now=0.0)
    assert delay == 0.5
    assert on_failure(policy, state, started_at=4.0, now=4.5)[0] is None  # t=0 is inside (-0.5, 4.5]
    delay, state = on_failure(policy, state, started_at=4.0, now=5.0)  # t=0 just left (0, 5]
    assert delay == 1.0 and state.window == (5.0,)


def test_healthy_run_resets_backoff() -> None:
    """A child that ran healthy_s before failing starts again from the initial delay."""
    state = RestartState(attempt=3, window=(), total=3)
    delay, state = on_failure(EXACT, state, started_at=0.0, now=30.0)
    assert delay == 1.0 and state.attempt == 1
    delay, _ = on_failure(EXACT, RestartState(attempt=3), started_at=0.0, now=29.0)
    assert delay == 8.0


def test_prune_window_keeps_the_open_interval() -> None:
    """The window is (now - within_s, now]: a restart exactly within_s ago is out."""
    assert prune_window((0.0, 1.0, 2.0), 11.0, 10.0) == (2.0,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.5}, "jitter"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"within_s": 0}, "within_s"),
        ({"initial_s": -1}, "delays"),
    ],
)
def test_bad_policy_is_rejected(kwargs: dict[str, float], message: str) -> None:
    """An impossible policy fails at construction with a message naming the field."""
    with pytest.raises(ValueError, match=message):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]
