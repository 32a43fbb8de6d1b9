"""Subjects, message ids and payloads of the bus (dccd.bus.wire)."""

from __future__ import annotations

import msgspec
import pytest
from dccd.actors.messages import RunStateChanged, SignalGenerated

from dccd.bus.wire import (
    BusCandle,
    BusTrade,
    batch_messages,
    data_subject,
    decode,
    event_message,
    record_id,
    token,
)
from dccd.domain.dataset import DatasetId
from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol

BTC = Symbol.parse("BTC/USDT")
PERP = Symbol.parse("BTC/USDT:perp")


def test_subjects_name_exchange_slug_and_span() -> None:
    assert data_subject(DatasetId("binance", BTC, DataType.TRADES)) == "dccd.trades.binance.BTC-USDT"
    assert data_subject(DatasetId("okx", PERP, DataType.TRADES)) == "dccd.trades.okx.BTC-USDT-PERP"
    ohlc = DatasetId("kraken", BTC, DataType.OHLC, Span.parse("1m"))
    assert data_subject(ohlc) == "dccd.candles.kraken.BTC-USDT.1m"
    assert data_subject(DatasetId("bybit", BTC, DataType.BOOK)) == "dccd.book.bybit.BTC-USDT"


@pytest.mark.parametrize(("text", "want"), [("a.b", "a_b"), ("x*", "x_"), (">", "_"), ("a b", "a_b"), ("", "_")])
def test_tokens_never_split_or_wildcard_a_subject(text: str, want: str) -> None:
    assert token(text) == want


def test_message_ids_are_the_natural_keys() -> None:
    ds = DatasetId("binance", BTC, DataType.TRADES)
    assert record_id(ds, Trade(5, "123", 1.5, 2.0, "buy")) == "t:binance:BTC-USDT:123"
    no_id = record_id(ds, Trade(5, None, 1.5, 2.0, "buy"))
    assert no_id == "t:binance:BTC-USDT:@5:1.5:2.0:buy"
    assert no_id != record_id(ds, Trade(5, None, 1.5, 2.5, "buy"))  # another trade at the same time
    bars = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1h"))
    assert record_id(bars, Candle(3600 * 10**9, 1, 2, 0.5, 1.5, 10)) == f"c:binance:BTC-USDT:1h:{3600 * 10**9}"
    book = DatasetId("binance", BTC, DataType.BOOK)
    assert record_id(book, BookSnapshot(7, [(1.0, 2.0)], [(1.1, 3.0)], 42)) == "b:binance:BTC-USDT:7:42"


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_batch_becomes_one_decodable_message_per_record(fmt: str) -> None:
    ds = DatasetId("coinbase", Symbol.parse("BTC/USD"), DataType.TRADES)
    trades = [Trade(10**18 + i, str(i), 100.25 + i, 0.5, "sell", 10**18 + i + 7) for i in range(3)]
    msgs = list(batch_messages(ds, trades, fmt))  # type: ignore[arg-type]
    assert [m.msg_id for m in msgs] == [f"t:coinbase:BTC-USD:{i}" for i in range(3)]
    ctype = "application/msgpack" if fmt == "msgpack" else "application/json"
    got = [msgspec.convert(decode(m.payload, ctype), BusTrade) for m in msgs]
    assert got == [BusTrade("coinbase", "BTC/USD", t.ts, t.id, t.price, t.amount, t.side, t.recv_ts) for t in trades]


def test_msgpack_is_the_compact_form() -> None:
    ds = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))
    bar = Candle(1_700_000_000_000_000_000, 37000.1, 37010.5, 36990.0, 37005.25, 12.5, 462_000.0, 321)
    (j,) = batch_messages(ds, [bar], "json")
    (m,) = batch_messages(ds, [bar], "msgpack")
    assert len(m.payload) < len(j.payload)
    assert msgspec.convert(decode(m.payload, "application/msgpack"), BusCandle).close == 37005.25


def test_events_go_to_their_kind_and_signals_to_their_scanner() -> None:
    ev = RunStateChanged("r1", "backfill", "failed", "binance:BTC/USDT:trades", "boom")
    out = event_message(ev, "json")
    assert out.subject == "dccd.events.run_state_changed"
    assert out.msg_id == event_message(ev, "json").msg_id  # the same event: the same id
    assert decode(out.payload)["error"] == "boom"
    sig = SignalGenerated("r2", "breakout", "1", "abc", "binance", "BTC/USDT", 60 * 10**9, {"close": 1.0})
    s = event_message(sig, "json")
    assert s.subject == "dccd.signals.breakout"
    assert s.msg_id == "s:breakout:abc:binance:BTC/USDT:60000000000"
