"""The one walk over exception groups (dccd.errors.leaves / sole_leaf)."""

from __future__ import annotations

import trio

from dccd.errors import ConnectFailed, leaves, sole_leaf


def _cancelled() -> trio.Cancelled:
    return trio.Cancelled._create()  # type: ignore[attr-defined]


def test_leaves_depth_first_left_to_right() -> None:
    """Nested groups flatten in the order they hold their exceptions; a plain exception is its own leaf."""
    a, b, c = ValueError("a"), KeyError("b"), OSError("c")
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [a, b]), c])
    assert leaves(group) == [a, b, c]
    assert leaves(a) == [a]


def test_leaves_skip_types() -> None:
    """``skip`` leaves out the given types (Trio's Cancelled) wherever they sit in the groups."""
    err = ConnectFailed("x")
    group = BaseExceptionGroup("g", [_cancelled(), BaseExceptionGroup("h", [_cancelled(), err])])
    assert leaves(group, trio.Cancelled) == [err]
    assert leaves(_cancelled(), trio.Cancelled) == []
    assert len(leaves(group)) == 3


def test_sole_leaf() -> None:
    """The one leaf, else None for none or several."""
    err = OSError("in use")
    assert sole_leaf(BaseExceptionGroup("g", [BaseExceptionGroup("h", [err])])) is err
    assert sole_leaf(BaseExceptionGroup("g", [err, _cancelled()]), trio.Cancelled) is err
    assert sole_leaf(BaseExceptionGroup("g", [err, _cancelled()])) is None
    assert sole_leaf(BaseExceptionGroup("g", [_cancelled()]), trio.Cancelled) is None
