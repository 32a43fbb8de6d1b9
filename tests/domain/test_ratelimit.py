"""Pure rate-limit and retry arithmetic: weight windows, backoff delays, Retry-After."""

from __future__ import annotations

import pytest

from dccd.domain.ratelimit import RetryPolicy, WeightLedger, backoff_delay_s, parse_retry_after


def test_backoff_doubles_with_jitter_and_cap() -> None:
    """Delays double per attempt up to the cap, and jitter shortens them by at most its share."""
    policy = RetryPolicy(attempts=8, base_s=0.5, cap_s=4.0, jitter=0.5)
    assert [backoff_delay_s(a, policy, 0.0) for a in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [backoff_delay_s(a, policy, 1.0) for a in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert backoff_delay_s(2, policy, 0.5) == 0.75


def test_retry_policy_rejects_nonsense() -> None:
    """Zero attempts or negative delays are refused with a message naming the field."""
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="delays must be >= 0"):
        RetryPolicy(base_s=-1)
    with pytest.raises(ValueError, match="jitter must be within"):
        RetryPolicy(jitter=2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 2 ", 2.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wednesday, 21-Oct-15 07:28:10 GMT", 10.0),
        ("Wed Oct 21 07:28:05 2015", 5.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After is read as seconds or as an HTTP-date relative to now; junk gives None."""
    now = 1445412480.0  # 2015-10-21T07:28:00Z
    assert parse_retry_after(value, now) == expected


def test_ledger_counts_until_budget_then_waits_for_next_window() -> None:
    """Weight is counted while it fits; the next request waits exactly until the window ends plus guard."""
    ledger = WeightLedger(limit=10, window_s=60.0, guard_s=0.5)
    assert [ledger.reserve(4, 120.0), ledger.reserve(4, 121.0)] == [0.0, 0.0]
    assert ledger.reserve(4, 150.0) == 30.5  # 8 + 4 > 10: wait for 180 s + 0.5 s guard
    assert ledger.used(150.0) == 8  # nothing counted for the refused request
    assert ledger.reserve(4, 180.5) == 0.0 and ledger.used(180.5) == 4


def test_ledger_precharges_next_window_near_the_boundary() -> None:
    """Weight sent within guard_s of a window's end also counts in the next window (it may arrive there)."""
    ledger = WeightLedger(limit=10, window_s=60.0, guard_s=1.0)
    assert ledger.reserve(3, 58.5) == 0.0  # 1.5 s before the end: this window only
    assert ledger.reserve(4, 59.5) == 0.0  # 0.5 s before the end: both windows
    assert ledger.used(60.0) == 4
    assert ledger.reserve(7, 61.0) == 60.0  # 4 + 7 > 10: wait for 120 s + guard
    assert ledger.used(200.0) == 0  # a window not directly after keeps nothing


def test_ledger_lets_oversized_request_run_alone() -> None:
    """A request heavier than the budget runs in an empty window instead of waiting forever."""
    ledger = WeightLedger(limit=10, window_s=60.0)
    assert ledger.reserve(25, 0.0) == 0.0
    assert ledger.reserve(1, 1.0) == 59.0


def test_ledger_unlimited_still_counts() -> None:
    """limit 0 never delays but keeps the count (for metrics and headers)."""
    ledger = WeightLedger(limit=0, window_s=60.0)
    assert all(ledger.reserve(1000, 1.0) == 0.0 for _ in range(10))
    assert ledger.used(1.0) == 10_000


def test_ledger_adopts_larger_exchange_count_for_current_window_only() -> None:
    """The exchange's header raises the count of the current window; stale or smaller figures are ignored."""
    ledger = WeightLedger(limit=100, window_s=60.0)
    ledger.reserve(10, 61.0)
    ledger.observe(95, ledger.window_of(61.0))
    assert ledger.used(61.0) == 95
    ledger.observe(50, ledger.window_of(61.0))
    assert ledger.used(61.0) == 95
    ledger.observe(99, ledger.window_of(1.0))  # a late answer from the previous window
    assert ledger.used(61.0) == 95
    assert ledger.reserve(10, 62.0) == 58.0


def test_ledger_validates_window() -> None:
    """A non-positive window or a guard as long as the window is refused."""
    with pytest.raises(ValueError, match="window_s must be > 0"):
        WeightLedger(1, 0.0)
    with pytest.raises(ValueError, match="guard_s must be in"):
        WeightLedger(1, 1.0, 1.0)
