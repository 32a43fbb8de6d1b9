"""The writer's flush rule: per-key size and oldest-row age, as functions of now."""

from __future__ import annotations

import pytest

from dccd.domain.batching import RowBuffer


def test_size_reached_is_reported_by_add() -> None:
    """add() returns True once a key holds max_rows rows, counting across calls."""
    buf: RowBuffer[str, int] = RowBuffer(max_rows=5, max_age_s=10)
    assert buf.add("a", [1, 2, 3], now=0) is False
    assert buf.add("b", [1, 2, 3, 4], now=0) is False
    assert buf.add("a", [4, 5], now=1) is True
    assert buf.take("a") == [1, 2, 3, 4, 5] and buf.rows() == 4


def test_age_counts_from_the_oldest_row_per_key() -> None:
    """A key is due max_age_s after its first buffered row, not its latest; keys age independently."""
    buf: RowBuffer[str, int] = RowBuffer(max_rows=100, max_age_s=3)
    buf.add("a", [1], now=1.0)
    buf.add("b", [1], now=2.0)
    buf.add("a", [2], now=2.5)
    assert buf.next_due() == 4.0 and buf.due_at("b") == 5.0
    assert buf.due(3.999) == [] and buf.due(4.0) == ["a"] and buf.due(5.0) == ["a", "b"]
    buf.take("a")
    buf.add("a", [3], now=4.5)  # a new window starts at the next row
    assert buf.due_at("a") == 7.5


def test_deadline_that_fired_is_always_due() -> None:
    """due(next_due()) is never empty, even where since + age - since != age in floats."""
    buf: RowBuffer[str, int] = RowBuffer(max_rows=100, max_age_s=0.3)
    buf.add("a", [1], now=0.1)
    assert buf.due(buf.next_due()) == ["a"]


def test_everything_is_due_at_infinity_and_empty_never_is() -> None:
    """now=inf selects every key (drain); an empty buffer's next deadline is inf."""
    buf: RowBuffer[str, int] = RowBuffer(max_rows=100, max_age_s=60)
    assert buf.next_due() == float("inf") and buf.due_at("x") == float("inf")
    buf.add("a", [1], now=0)
    buf.add("b", [2], now=1)
    assert buf.due(float("inf")) == ["a", "b"] and len(buf) == 2
    buf.clear()
    assert len(buf) == 0 and buf.rows() == 0 and buf.take("a") == []


@pytest.mark.parametrize(("rows", "age", "message"), [(0, 1.0, "max_rows"), (1, 0.0, "max_age_s")])
def test_bad_limits_are_rejected(rows: int, age: float, message: str) -> None:
    """A buffer that could never flush (or always would) is refused, naming the limit."""
    with pytest.raises(ValueError, match=message):
        RowBuffer(rows, age)
