"""Kraken WebSocket: v2 planner and session, and the v1 parser on the recorded 2021 sessions."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from dccd.domain import DataType, Span, Symbol, Trade
from dccd.domain.records import BookSnapshot, Candle
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources import get_adapter as _get_adapter
from dccd.sources.kraken import ws as kws
from dccd.sources.kraken.ws_v1 import KrakenV1Session
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    HeartbeatReceived,
    StreamAdapter,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
)
from tests.fake.binance_ws import recorded_frames

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kraken"
RECV = 1_700_000_000_123_456_789
S = 1_000_000_000
BTCUSD = Symbol("BTC", "USD")
MATIC = Symbol("MATIC", "USD")


def get_adapter(name: str) -> StreamAdapter:
    """The registered adapter, as the StreamAdapter it also is."""
    adapter = _get_adapter(name)
    assert isinstance(adapter, StreamAdapter)
    return adapter


def payload(name: str) -> list[bytes]:
    """The messages of a payload file, each as its exact raw JSON text."""
    return [bytes(m) for m in msgspec.json.decode((FIXTURES / name).read_bytes(), type=list[msgspec.Raw])]


def kinds(events: Sequence[object]) -> Counter[str]:
    return Counter(f"Unrecognised:{e.key}" if isinstance(e, Unrecognised) else type(e).__name__ for e in events)


def v2() -> kws.KrakenSession:
    session = get_adapter("kraken").open_session(WsPlan("wss://ws.kraken.com/v2", ()))
    assert isinstance(session, kws.KrakenSession)
    return session


# --- planner -------------------------------------------------------------------------------------


def test_plan_uses_v2_with_one_paced_subscribe_per_channel() -> None:
    """Books, 1m candles and trades of two pairs become three subscribes on {origin}/v2, 0.1 s apart."""
    subs = [
        Subscription(BTCUSD, DataType.TRADES),
        Subscription(Symbol("DOGE", "USD"), DataType.TRADES),
        Subscription(BTCUSD, DataType.OHLC, Span("1m")),
        Subscription(BTCUSD, DataType.BOOK),
    ]
    (plan,) = get_adapter("kraken").plan_streams(subs, "wss://ws.kraken.com")
    assert plan.url == "wss://ws.kraken.com/v2" and plan.watchdog_s == 10.0
    assert [o.delay_s for o in plan.on_open] == [0.0, 0.1, 0.2]
    assert [json.loads(o.text) for o in plan.on_open] == [
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 100, "snapshot": True},
            "req_id": 1,
        },
        {
            "method": "subscribe",
            "params": {"channel": "ohlc", "symbol": ["BTC/USD"], "interval": 1, "snapshot": True},
            "req_id": 2,
        },
        {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": ["BTC/USD", "DOGE/USD"], "snapshot": True},
            "req_id": 3,
        },
    ]


def test_plan_rejects_what_kraken_does_not_stream() -> None:
    """Undeclared spans, spanless candles and funding fail with NoCapability before any connection."""
    with pytest.raises(NoCapability, match="ohlc span 3m over ws"):
        kws.plan_streams([Subscription(BTCUSD, DataType.OHLC, Span("3m"))], "wss://x")
    with pytest.raises(NoCapability, match="ohlc over ws without a span"):
        kws.plan_streams([Subscription(BTCUSD, DataType.OHLC)], "wss://x")
    with pytest.raises(NoCapability, match="funding over ws"):
        kws.plan_streams([Subscription(BTCUSD, DataType.FUNDING)], "wss://x")


def test_session_version_follows_the_url() -> None:
    """A .../v2 plan gets the v2 parser; the bare v1 host (the recordings) the v1 parser."""
    assert isinstance(kws.open_session(WsPlan("ws://127.0.0.1:9/v2/", ())), kws.KrakenSession)
    assert isinstance(kws.open_session(WsPlan("wss://ws.kraken.com", ())), KrakenV1Session)


# --- v2 parser -----------------------------------------------------------------------------------


def test_v2_trade_payload_keeps_the_trade_id_and_taker_side() -> None:
    """The v2 trade update: trade_id kept, side is the taker's, RFC 3339 time exact."""
    (msg,) = payload("ws_v2_trade.json")
    assert v2().parse(msg, RECV) == [
        TradesReceived(MATIC, [Trade(1695628177708706000, "4665906", 0.5117, 40.0, "sell", RECV)])
    ]


def test_v2_ohlc_bar_closes_when_the_next_bar_starts() -> None:
    """The recorded update is a bar in progress (nothing emitted); the next bar's update closes it with its last values."""
    session = v2()
    (msg,) = payload("ws_v2_ohlc.json")
    assert session.parse(msg, RECV) == []
    later = json.loads(msg)
    later["data"][0] |= {"interval_begin": "2023-10-04T16:30:00.000000000Z", "open": 0.5627}
    (closed,) = session.parse(json.dumps(later), RECV)
    assert closed == CandlesClosed(
        MATIC, Span("5m"), [Candle(1696436700 * S, 0.5624, 0.5628, 0.5622, 0.5627, 30927.68066226, None, 12)]
    )
    assert session.parse(msg, RECV) == []  # a late update of the closed bar changes nothing


def test_v2_heartbeat_status_and_method_replies() -> None:
    """Heartbeats, the status greeting, subscribe acks/failures and pongs become control events."""
    session = v2()
    (hb,) = payload("ws_v2_heartbeat.json")
    assert session.parse(hb, RECV) == [HeartbeatReceived()]
    status = '{"channel":"status","type":"update","data":[{"api_version":"v2","system":"online","version":"2.0.0"}]}'
    assert session.parse(status, RECV) == [ControlAck("status online")]
    ack = '{"method":"subscribe","result":{"channel":"trade","snapshot":true,"symbol":"BTC/USD"},"success":true,"req_id":2}'
    assert session.parse(ack, RECV) == [ControlAck("subscribe BTC/USD")]
    nack = '{"method":"subscribe","error":"Currency pair not supported XYZ/USD","success":false,"symbol":"XYZ/USD"}'
    assert session.parse(nack, RECV) == [ControlFailed("subscribe", "Currency pair not supported XYZ/USD")]
    assert session.parse('{"method":"pong","req_id":7}', RECV) == [ControlAck("pong")]
    assert session.parse('{"channel":"ticker","type":"update","data":[]}', RECV) == [Unrecognised("ticker")]


def test_v2_trade_snapshot_and_book_messages() -> None:
    """A trade snapshot is marked as such; book snapshots without time use the receive time, updates their own."""
    session = v2()
    snap = '{"channel":"trade","type":"snapshot","data":[{"symbol":"BTC/USD","side":"buy","price":1.5,"qty":2,"ord_type":"limit","trade_id":7,"timestamp":"2024-01-01T00:00:00.5Z"}]}'
    assert session.parse(snap, RECV) == [
        TradesReceived(BTCUSD, [Trade(1704067200500000000, "7", 1.5, 2.0, "buy", RECV)], True)
    ]
    book = '{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":10.0,"qty":1.0}],"asks":[{"price":11.0,"qty":2.0}],"checksum":1}]}'
    assert session.parse(book, RECV) == [BookReceived(BTCUSD, BookSnapshot(RECV, [(10.0, 1.0)], [(11.0, 2.0)]), True)]
    upd = '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[{"price":11.0,"qty":0.0}],"checksum":2,"timestamp":"2024-01-01T00:00:01.000001Z"}]}'
    assert session.parse(upd, RECV) == [
        BookReceived(BTCUSD, BookSnapshot(1704067201000001000, [], [(11.0, 0.0)]), False)
    ]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":"1","qty":1,"trade_id":1,"timestamp":"x"}]}',
            r"ws trade: .*`\$.data\[0\].price`",
        ),
        (
            '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"hold","price":1,"qty":1,"trade_id":1,"timestamp":"2024-01-01T00:00:00Z"}]}',
            "side 'hold'",
        ),
        (
            '{"channel":"ohlc","type":"update","data":[{"symbol":"BTC/USD","open":1,"high":1,"low":1,"close":1,"volume":1,"interval_begin":"2024-01-01T00:00:00Z","interval":7}]}',
            "interval 7",
        ),
        ("{", "invalid JSON"),
    ],
)
def test_v2_malformed_messages_raise_protocol_drift(frame: str, message: str) -> None:
    """Known channels that fail validation are drift naming the path."""
    with pytest.raises(ProtocolDrift, match=message):
        v2().parse(frame, RECV)


# --- v1 (recordings) -----------------------------------------------------------------------------


def test_v1_trade_session_has_exact_times_and_no_ids() -> None:
    """The recorded v1 trade session: ids are None (v1 has none), decimal-string times exact, sides taker."""
    session = KrakenV1Session()
    events = [e for m in payload("ws_v1_trade.json") for e in session.parse(m, RECV)]
    assert kinds(events) == Counter({"HeartbeatReceived": 30, "ControlAck": 11, "TradesReceived": 8})
    trades = [e for e in events if isinstance(e, TradesReceived)]
    assert trades[0] == TradesReceived(
        Symbol("XMR", "USD"), [Trade(1618678142557535000, None, 354.11, 0.89594024, "sell", RECV)]
    )
    assert trades[3].trades[1] == Trade(1618678150827816000, None, 353.81, 1.71754604, "sell", RECV)
    assert sum(len(e.trades) for e in trades) == 10


def test_v1_book_recording_replays_through_a_session() -> None:
    """The 2021 book-1000 session: 10 snapshots, 4269 deltas stamped with their newest level time, XBT named BTC."""
    frames = recorded_frames(FIXTURES / "KRAKEN.ws.50.0")
    session = get_adapter("kraken").open_session(WsPlan("wss://ws.kraken.com", ()))
    events = [e for f in frames for e in session.parse(f, RECV)]
    assert kinds(events) == Counter({"BookReceived": 4279, "HeartbeatReceived": 31, "ControlAck": 11})
    books = [e for e in events if isinstance(e, BookReceived)]
    snapshots = {b.symbol: (len(b.book.bids), len(b.book.asks)) for b in books if b.snapshot}
    assert (
        len(snapshots) == 10
        and snapshots[Symbol("ADA", "BTC")] == (707, 841)
        and snapshots[Symbol("BTC", "CHF")] == (502, 316)
    )
    first_delta = next(b for b in books if not b.snapshot)
    assert first_delta == BookReceived(
        Symbol("XMR", "USD"), BookSnapshot(1618678133365913000, [(354.15, 5.0)], []), False
    )
    both = next(b for b in books if b.book.bids and b.book.asks and not b.snapshot)
    assert both == BookReceived(
        Symbol("SC", "EUR"), BookSnapshot(1618678145920708000, [(0.04299, 0.0)], [(0.04299, 364630.28272081)]), False
    )
    assert {b.symbol for b in books} >= {Symbol("BTC", "CHF"), Symbol("KSM", "BTC"), Symbol("ADA", "BTC")}


def test_v1_ohlc_closes_on_the_next_bar_and_unused_channels_are_counted() -> None:
    """v1 ohlc rows end at `etime`: a bar closes when the next one starts; spread/ticker are unrecognised."""
    session = KrakenV1Session()
    row = '[42,["1618678140.100000","1618678200.000000","1.0","2.0","0.5","1.5","1.2","10.0",{n}],"ohlc-1","XBT/USD"]'
    assert session.parse(row.format(n=3), RECV) == []
    nxt = '[42,["1618678200.100000","1618678260.000000","1.5","1.5","1.5","1.5","1.5","1.0",1],"ohlc-1","XBT/USD"]'
    assert session.parse(nxt, RECV) == [
        CandlesClosed(BTCUSD, Span("1m"), [Candle(1618678140 * S, 1.0, 2.0, 0.5, 1.5, 10.0, None, 3)])
    ]
    assert session.parse('[1,["1","2"],"spread","XBT/USD"]', RECV) == [Unrecognised("spread")]
    with pytest.raises(ProtocolDrift, match="ws v1 trade"):
        session.parse('[1,[["1","2","soon","b","l",""]],"trade","XBT/USD"]', RECV)
