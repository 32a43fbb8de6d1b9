"""NativeSymbols: the per-connection exchange-name map every WS session shares."""

from __future__ import annotations

import pytest

from dccd.domain import DataType, Symbol
from dccd.errors import UnsupportedSymbol
from dccd.sources.stream import NativeSymbols, Subscription

BTC = Symbol.parse("BTC/USDT")


def _from_native(native: str) -> Symbol:
    if native == "ETH-USDT":
        return Symbol.parse("ETH/USDT")
    raise UnsupportedSymbol("x", native)


def test_plan_names_map_and_unknown_names_are_learned_once() -> None:
    """Planned names come from the plan; an unplanned name is mapped once and remembered; unmappable ones raise or give None."""
    calls: list[str] = []

    def from_native(native: str) -> Symbol:
        calls.append(native)
        return _from_native(native)

    names = NativeSymbols([Subscription(BTC, DataType.TRADES)], lambda s: s.slug, from_native)
    assert names.get("BTC-USDT") == BTC and calls == []
    assert names.get("ETH-USDT") == names.get("ETH-USDT") == Symbol.parse("ETH/USDT")
    assert calls == ["ETH-USDT"]
    assert names.find("NOPE") is None
    with pytest.raises(UnsupportedSymbol):
        names.get("NOPE")
