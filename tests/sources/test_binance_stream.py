"""Binance as a StreamAdapter: plans and sessions emitting the generic stream events."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from dccd.domain.capability import Transport
from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.binance import BinanceAdapter
from dccd.sources.binance import ws as bws
from dccd.sources.binance.common import CAPABILITIES
from dccd.sources.registry import get_adapter
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    ReconnectRequested,
    StreamAdapter,
    StreamSession,
    Subscription,
    TradesReceived,
    Unrecognised,
)
from dccd.transport.ws import run_ws_connection
from tests.fake.binance_ws import open_fake_binance_ws, recorded_frames
from tests.fake.tape import depth_ids, trade_at

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance_ws"
RECV = 1_700_000_000_123_456_789
BTC, ETH = Symbol("BTC", "USDT"), Symbol("ETH", "USDT")
ADAPTER = BinanceAdapter()


def payload(name: str) -> list[str]:
    return [json.dumps(item, separators=(",", ":")) for item in json.loads((FIXTURES / name).read_text())]


def session(*subs: Subscription) -> StreamSession:
    (plan,) = ADAPTER.plan_streams(list(subs), "ws://x")
    return ADAPTER.open_session(plan)


def test_adapter_implements_both_protocols() -> None:
    """The registered Binance adapter is a StreamAdapter with sequential ids and the real WS origin."""
    adapter = get_adapter("binance")
    assert isinstance(adapter, StreamAdapter)
    assert adapter.sequential_trade_ids and adapter.ws_url == "wss://stream.binance.com:9443"
    for dtype in (DataType.TRADES, DataType.OHLC, DataType.BOOK):
        CAPABILITIES.require(dtype, Transport.WS, Span("1m") if dtype is DataType.OHLC else None)


def test_plan_names_trade_kline_and_depth_streams() -> None:
    """@trade for trades (ids match historicalTrades), @kline_<span> for ohlc, @depth@100ms for books."""
    subs = [
        Subscription(BTC, DataType.TRADES),
        Subscription(ETH, DataType.OHLC, Span("1m")),
        Subscription(BTC, DataType.BOOK),
        Subscription(BTC, DataType.TRADES),  # duplicates are planned once
    ]
    (plan,) = ADAPTER.plan_streams(subs, "ws://127.0.0.1:9")
    assert plan.url == "ws://127.0.0.1:9/stream?streams=btcusdt@trade/ethusdt@kline_1m/btcusdt@depth@100ms"
    assert plan.subscriptions == tuple(subs[:3])
    assert plan.on_open == () and plan.heartbeat_s == bws.HEARTBEAT_S and plan.heartbeat_message is None
    assert plan.watchdog_s == bws.WATCHDOG_S and plan.rotate_after_s == 23.5 * 3600


def test_plan_splits_connections_and_paces_subscribes() -> None:
    """1500 symbols: two connections (1024-stream cap); streams beyond the URL go in SUBSCRIBEs 0.25 s apart."""
    symbols = [Symbol(f"C{i:04d}", "USDT") for i in range(1500)]
    plans = ADAPTER.plan_streams([Subscription(s, DataType.TRADES) for s in symbols], "ws://h")
    assert [len(p.subscriptions) for p in plans] == [1024, 476]
    first = plans[0]
    assert len(first.url) <= bws.MAX_URL_LEN
    subscribed = [name for out in first.on_open for name in json.loads(out.text)["params"]]
    in_url = first.url.split("streams=")[1].split("/")
    assert len(in_url) + len(subscribed) == 1024
    assert [out.delay_s for out in first.on_open] == [0.25 * k for k in range(len(first.on_open))]
    assert all(len(json.loads(out.text)["params"]) <= bws.MAX_PARAMS_PER_MESSAGE for out in first.on_open)


def test_plan_rejects_what_binance_spot_does_not_stream() -> None:
    """Funding, perps and OHLC without a span fail before any connection."""
    with pytest.raises(NoCapability, match="funding over ws"):
        ADAPTER.plan_streams([Subscription(BTC, DataType.FUNDING)], "ws://h")
    with pytest.raises(UnsupportedSymbol):
        ADAPTER.plan_streams([Subscription(Symbol("BTC", "USDT", "perp"), DataType.TRADES)], "ws://h")
    with pytest.raises(NoCapability, match="without a span"):
        ADAPTER.plan_streams([Subscription(BTC, DataType.OHLC)], "ws://h")


def test_trade_frame_becomes_trades_received() -> None:
    """The documented @trade payload: one Trade, taker side from m (buyer maker -> sell), recv_ts kept."""
    (doc,) = payload("ws_trade.json")
    frame = json.dumps({"stream": "ethbtc@trade", "data": json.loads(doc)})
    events = session(Subscription(Symbol("ETH", "BTC"), DataType.TRADES)).parse(frame, RECV)
    trade = Trade(1579481530910_000000, "158410082", 0.019141, 0.007, "buy", RECV)
    assert events == [TradesReceived(Symbol("ETH", "BTC"), [trade])]


def test_closed_klines_only_become_candles() -> None:
    """An open kline yields no event; the same bar with x=true yields CandlesClosed with the exact values."""
    (doc,) = payload("ws_kline_docs.json")
    msg = json.loads(doc)
    s = session(Subscription(Symbol("BNB", "BTC"), DataType.OHLC, Span("1m")))
    assert s.parse(json.dumps({"stream": "bnbbtc@kline_1m", "data": msg}), RECV) == []
    msg["k"]["x"] = True
    candle = Candle(1672515780000_000000, 0.001, 0.0025, 0.0015, 0.002, 1000.0, 1.0, 100)
    expected = [CandlesClosed(Symbol("BNB", "BTC"), Span("1m"), [candle])]
    assert s.parse(json.dumps({"stream": "bnbbtc@kline_1m", "data": msg}), RECV) == expected


def test_depth_diff_becomes_a_numbered_book_delta() -> None:
    """A diff-depth event is a BookReceived delta with first_seq=U, last_seq=u and exchange time."""
    frame = payload("ws_depth_diff.json")[0]
    (ev,) = session(Subscription(Symbol("NKN", "USDT"), DataType.BOOK)).parse(frame, RECV)
    bids = [(0.3513, 6195.0), (0.3475, 5548.0), (0.3464, 6222.0)]
    book = BookSnapshot(1633998512068_000000, bids, [], 499869752)
    assert ev == BookReceived(Symbol("NKN", "USDT"), book, False, 499869750, 499869752)


def test_control_and_shutdown_frames() -> None:
    """Subscribe reply -> ControlAck, error reply -> ControlFailed(code, message), serverShutdown -> ReconnectRequested."""
    s = session(Subscription(BTC, DataType.TRADES))
    assert s.parse(payload("ws_subscribe_docs.json")[1], RECV) == [ControlAck("id 1")]
    err = '{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":7}'
    assert s.parse(err, RECV) == [ControlFailed("2", "Invalid request: unknown variant (request id 7)")]
    (shutdown,) = payload("ws_server_shutdown_docs.json")
    assert s.parse(shutdown, RECV) == [ReconnectRequested("serverShutdown")]


def test_unknown_frames_and_unsubscribed_markets_are_unrecognised() -> None:
    """bookTicker frames and trades of a market the connection did not plan are counted, not parsed into data."""
    s = session(Subscription(BTC, DataType.TRADES))
    ticker = '{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}'
    assert s.parse(ticker, RECV) == [Unrecognised("btcusdt@bookTicker")]
    t = trade_at("ETHUSDT", 9)
    other = (
        f'{{"stream":"ethusdt@trade","data":{{"e":"trade","E":1,"s":"ETHUSDT","t":9,"p":"{t.price}",'
        f'"q":"{t.qty}","T":1,"m":true,"M":true}}}}'
    )
    assert s.parse(other, RECV) == [Unrecognised("ethusdt@trade")]


def test_drift_raises_with_the_path() -> None:
    """A trade with a non-numeric price or a wrong field type raises ProtocolDrift naming the problem."""
    s = session(Subscription(BTC, DataType.TRADES))
    bad = '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"x","q":"1","T":1,"m":true}}'
    with pytest.raises(ProtocolDrift, match="bad number"):
        s.parse(bad, RECV)
    with pytest.raises(ProtocolDrift, match=r"\$.data.T"):
        s.parse(bad.replace('"p":"x"', '"p":"1"').replace('"T":1', '"T":"soon"'), RECV)


def test_trade_fast_path_equals_the_strict_parser() -> None:
    """A trades-only session decodes prices straight to floats; every value equals the strict path's float()."""
    fast = session(Subscription(BTC, DataType.TRADES))
    strict = session(Subscription(BTC, DataType.TRADES), Subscription(BTC, DataType.BOOK))
    for i in range(0, 20_000, 7):
        t = trade_at("BTCUSDT", i)
        frame = (
            f'{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":{i},"p":"{t.price}",'
            f'"q":"{t.qty}","T":{t.time_ms},"m":{"true" if t.is_buyer_maker else "false"},"M":true}}}}'
        )
        (a,) = fast.parse(frame, RECV)
        assert a == strict.parse(frame, RECV)[0]
        assert (
            isinstance(a, TradesReceived) and a.trades[0].price == float(t.price) and a.trades[0].amount == float(t.qty)
        )


# --- the real recording, at the session level --------------------------------------------------

REC_SYMBOLS = [Symbol("NKN", "USDT"), Symbol("BLZ", "ETH"), Symbol("LRC", "BTC"), Symbol("RUNE", "EUR")]


def test_recording_replays_through_the_session() -> None:
    """BINANCE.ws.1.0 through a session: its 2 trades and 177 depth deltas exactly, no candle, bookTickers counted."""
    frames = recorded_frames(FIXTURES / "BINANCE.ws.1.0")
    s = session(*(Subscription(sym, DataType.TRADES) for sym in REC_SYMBOLS))
    events = [(raw, ev) for raw in frames for ev in s.parse(raw, RECV)]
    trades = [(raw, ev) for raw, ev in events if isinstance(ev, TradesReceived)]
    books = [ev for _, ev in events if isinstance(ev, BookReceived)]
    assert len(trades) == 2 and len(books) == 177
    assert not any(isinstance(ev, CandlesClosed) for _, ev in events)  # the session holds only open klines
    unknown = {ev.key for _, ev in events if isinstance(ev, Unrecognised)}
    assert unknown == {"nknusdt@bookTicker", "blzeth@bookTicker", "lrcbtc@bookTicker"}
    for raw, ev in trades:
        data = json.loads(raw)["data"]
        (t,) = ev.trades
        assert str(ev.symbol) == {"NKNUSDT": "NKN/USDT", "BLZETH": "BLZ/ETH", "LRCBTC": "LRC/BTC"}.get(data["s"], "")
        assert (t.id, t.price, t.amount, t.ts, t.recv_ts) == (
            str(data["a"]),
            float(data["p"]),
            float(data["q"]),
            data["T"] * 1_000_000,
            RECV,
        )
        assert t.side == ("sell" if data["m"] else "buy")
    last = books[-1]
    assert (last.symbol, last.first_seq, last.last_seq) == (Symbol("NKN", "USDT"), 499870179, 499870179)
    assert last.book == BookSnapshot(1633998542082_000000, [], [(0.3536, 16324.0)], 499870179)


# --- over loopback ------------------------------------------------------------------------------


async def test_fake_server_frames_parse_through_a_session() -> None:
    """Trades and depth deltas from the fake server over 127.0.0.1 come out of the session equal to the tape."""
    subs = [Subscription(BTC, DataType.TRADES), Subscription(BTC, DataType.BOOK)]
    got: list[Any] = []
    async with open_fake_binance_ws(rate_per_s=None, max_control_per_s=None) as fake:
        (plan,) = ADAPTER.plan_streams(subs, fake.url)
        s = ADAPTER.open_session(plan)

        def on_frame(frame: str | bytes, recv_ns: int) -> None:
            got.extend(s.parse(frame, recv_ns))

        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_ws_connection, plan.url, on_frame=on_frame))
            with trio.fail_after(10):
                while sum(isinstance(e, TradesReceived) for e in got) < 100:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    trades = [e.trades[0] for e in got if isinstance(e, TradesReceived)][:100]
    first = int(trades[0].id or 0)
    for k, t in enumerate(trades):
        tape = trade_at("BTCUSDT", first + k)
        assert (t.id, t.price, t.amount, t.ts) == (
            str(first + k),
            float(tape.price),
            float(tape.qty),
            tape.time_ms * 1_000_000,
        )
    deltas = [e for e in got if isinstance(e, BookReceived)]
    assert deltas and all(not d.snapshot for d in deltas)
    assert (deltas[0].first_seq, deltas[0].last_seq) == depth_ids(
        int(deltas[0].book.ts // 1_000_000 - 1_704_067_200_000) // 100
    )
