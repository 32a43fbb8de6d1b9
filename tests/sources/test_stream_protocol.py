"""NativeSymbols: the per-connection exchange-name map every WS session shares."""

from __future__ import annotations

import msgspec
import pytest

from dccd.domain import DataType, Symbol
from dccd.errors import ProtocolDrift, UnsupportedSymbol
from dccd.sources import get_adapter
from dccd.sources.stream import NativeSymbols, StreamAdapter, Subscription, Unrecognised, WsPlan, undecodable_frame

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


@pytest.mark.parametrize("exchange", ["binance", "bitfinex", "bitmex", "bybit", "coinbase", "kraken", "okx"])
def test_every_session_reads_frames_through_the_one_envelope_decoder(exchange: str) -> None:
    """JSON that is not an object is Unrecognised("<not an object>") on sessions with an envelope view;
    a frame that is not JSON raises ProtocolDrift "invalid JSON" naming the exchange, on every session."""
    adapter = get_adapter(exchange)
    assert isinstance(adapter, StreamAdapter)
    session = adapter.open_session(WsPlan(adapter.ws_url, ()))
    with pytest.raises(ProtocolDrift, match=rf"^{exchange} ws( v1)?: unexpected payload: invalid JSON: "):
        session.parse(b'{"unterminated', 0)
    if exchange not in ("bitfinex", "kraken"):  # their frames are arrays: no envelope view to refuse "1"
        assert session.parse(b"1", 0) == [Unrecognised("<not an object>")]


def test_undecodable_frame_sorts_refusals() -> None:
    """A schema refusal is an Unrecognised event; a syntax error is ProtocolDrift carrying the endpoint."""
    decoder = msgspec.json.Decoder(dict[str, int])
    with pytest.raises(msgspec.ValidationError) as refused:
        decoder.decode(b"[1]")
    assert undecodable_frame(refused.value, "x") == [Unrecognised("<not an object>")]
    with pytest.raises(msgspec.DecodeError) as broken:
        decoder.decode(b"{")
    with pytest.raises(ProtocolDrift, match=r"^x ws v1: unexpected payload: invalid JSON: ") as drift:
        undecodable_frame(broken.value, "x", "ws v1")
    assert drift.value.__cause__ is broken.value
