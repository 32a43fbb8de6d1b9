"""Coinbase Exchange feed: planner and session parser on the recorded payloads and the 2021 session."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from dccd.domain import DataType, Span, Symbol, Trade
from dccd.domain.records import BookSnapshot
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources import get_adapter as _get_adapter
from dccd.sources.coinbase import ws as cws
from dccd.sources.stream import (
    BookReceived,
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

FIXTURES = Path(__file__).parent.parent / "fixtures" / "coinbase"
RECV = 1_700_000_000_123_456_789
BAND = Symbol("BAND", "GBP")


def get_adapter(name: str) -> StreamAdapter:
    """The registered adapter, as the StreamAdapter it also is."""
    adapter = _get_adapter(name)
    assert isinstance(adapter, StreamAdapter)
    return adapter


def payload(name: str) -> list[str]:
    return [json.dumps(m, separators=(",", ":")) for m in json.loads((FIXTURES / name).read_text())]


def kinds(events: Sequence[object]) -> Counter[str]:
    return Counter(f"Unrecognised:{e.key}" if isinstance(e, Unrecognised) else type(e).__name__ for e in events)


# --- planner -------------------------------------------------------------------------------------


def test_plan_subscribes_at_once_with_heartbeats() -> None:
    """One subscribe, sent immediately (Coinbase drops silent clients after 5 s), adds heartbeat for every product."""
    subs = [Subscription(Symbol("BTC", "USD"), DataType.TRADES), Subscription(Symbol("ETH", "USD"), DataType.BOOK)]
    (plan,) = get_adapter("coinbase").plan_streams(subs, "wss://ws-feed.exchange.coinbase.com/")
    assert plan.url == "wss://ws-feed.exchange.coinbase.com" and plan.watchdog_s == 10.0 and plan.heartbeat_s is None
    assert len(plan.on_open) == 1 and plan.on_open[0].delay_s == 0.0
    assert json.loads(plan.on_open[0].text) == {
        "type": "subscribe",
        "channels": [
            {"name": "matches", "product_ids": ["BTC-USD"]},
            {"name": "level2_batch", "product_ids": ["ETH-USD"]},
            {"name": "heartbeat", "product_ids": ["BTC-USD", "ETH-USD"]},
        ],
    }


def test_plan_splits_products_across_connections() -> None:
    """More than 100 products spread over several connections, each with its own subscribe."""
    subs = [Subscription(Symbol(f"A{i}", "USD"), DataType.TRADES) for i in range(150)]
    plans = cws.plan_streams(subs, "wss://x")
    assert [len(p.subscriptions) for p in plans] == [100, 50]
    assert sum(len(json.loads(p.on_open[0].text)["channels"][0]["product_ids"]) for p in plans) == 150


def test_plan_rejects_candles_before_connecting() -> None:
    """The Exchange feed has no candle channel: OHLC over WS is NoCapability, explained."""
    with pytest.raises(NoCapability, match=r"ohlc over ws \(the Exchange feed has no candle channel\)"):
        cws.plan_streams([Subscription(Symbol("BTC", "USD"), DataType.OHLC, Span("1m"))], "wss://x")


# --- parser on real payloads ---------------------------------------------------------------------


def test_matches_payload_gives_taker_sides_and_exact_times() -> None:
    """last_match is a snapshot trade, every match inverts the maker side, times are exact µs."""
    session = cws.CoinbaseSession()
    events = [e for m in payload("exchange_ws_matches.json") for e in session.parse(m, RECV)]
    assert kinds(events) == Counter({"TradesReceived": 40, "ControlAck": 3})
    first = events[2]
    assert first == TradesReceived(
        BAND, [Trade(1618677810244075000, "881613", 14.7775, 0.04, "buy", RECV)], snapshot=True
    )
    skl_btc = [
        t.id for e in events if isinstance(e, TradesReceived) and e.symbol == Symbol("SKL", "BTC") for t in e.trades
    ]
    assert skl_btc == ["280231", "280232", "280233", "280234", "280235", "280236"]
    assert sum(e.snapshot for e in events if isinstance(e, TradesReceived)) == 10


def test_recording_replays_through_a_session() -> None:
    """The 2021 session (level2, ticker, matches for 10 products) parses completely into generic events."""
    frames = recorded_frames(FIXTURES / "COINBASE.ws.28.0")
    session = get_adapter("coinbase").open_session(WsPlan("wss://ws-feed.pro.coinbase.com", ()))
    events = [e for f in frames for e in session.parse(f, RECV)]
    assert len(frames) == 9946
    assert kinds(events) == Counter(
        {"BookReceived": 9729, "TradesReceived": 107, "Unrecognised:ticker": 107, "ControlAck": 3}
    )
    books = [e for e in events if isinstance(e, BookReceived)]
    assert sum(b.snapshot for b in books) == 10
    first_update = next(b for b in books if not b.snapshot)
    assert first_update == BookReceived(
        Symbol("SKL", "BTC"), BookSnapshot(1618677817075687000, [], [(0.00001306, 660.5)]), snapshot=False
    )


def test_recording_trade_ids_are_contiguous_per_product() -> None:
    """In real traffic trade_id steps by exactly 1 per product: sequential_trade_ids is honest."""
    session = cws.CoinbaseSession()
    ids: dict[Symbol, list[int]] = defaultdict(list)
    for f in recorded_frames(FIXTURES / "COINBASE.ws.28.0"):
        for e in session.parse(f, RECV):
            if isinstance(e, TradesReceived):
                ids[e.symbol].extend(int(t.id or 0) for t in e.trades)
    assert len(ids) == 10 and sum(map(len, ids.values())) == 107
    assert all(v == list(range(v[0], v[0] + len(v))) for v in ids.values())
    assert ids[Symbol("SKL", "USD")][:2] == [1568267, 1568268] and len(ids[Symbol("SKL", "USD")]) == 53


def test_recording_values_match_raw_lines() -> None:
    """Every recorded match becomes a trade with the raw price, size, µs time and the opposite of the maker side."""
    session = cws.CoinbaseSession()
    checked = 0
    for f in recorded_frames(FIXTURES / "COINBASE.ws.28.0"):
        raw = json.loads(f)
        if raw["type"] not in ("match", "last_match"):
            continue
        (event,) = session.parse(f, RECV)
        assert isinstance(event, TradesReceived)
        (t,) = event.trades
        assert (t.id, t.price, t.amount) == (str(raw["trade_id"]), float(raw["price"]), float(raw["size"]))
        assert t.side == {"buy": "sell", "sell": "buy"}[raw["side"]]
        assert t.ts % 1000 == 0 and t.ts // 1000 % 1_000_000 == int(raw["time"][20:26])
        checked += 1
    assert checked == 107


def test_advanced_trade_messages_are_unrecognised() -> None:
    """Advanced Trade frames (another API, keyed by `channel`) are counted as unrecognised, never misread."""
    session = cws.CoinbaseSession()
    for name in ("advanced_ws_market_trades.json", "advanced_ws_candles.json", "advanced_ws_heartbeats.json"):
        events = [e for m in payload(name) for e in session.parse(m, RECV)]
        assert all(isinstance(e, Unrecognised) for e in events)
        assert events[0] == Unrecognised("subscribe") and events[1] == Unrecognised("<no type>")


# --- control messages and drift ------------------------------------------------------------------


def test_control_and_heartbeat_messages() -> None:
    """subscriptions acks, heartbeats and error replies become generic control events."""
    session = cws.CoinbaseSession()
    hb = '{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}'
    assert session.parse(hb, RECV) == [HeartbeatReceived()]
    err = '{"type":"error","message":"Failed to subscribe","reason":"BTC-XYZ is not a valid product"}'
    assert session.parse(err, RECV) == [ControlFailed("Failed to subscribe", "BTC-XYZ is not a valid product")]
    assert session.parse('{"type":"subscriptions","channels":[]}', RECV) == [ControlAck("subscriptions")]
    assert session.parse("[1,2]", RECV) == [Unrecognised("<not an object>")]
    assert session.parse('{"type":"status","products":[]}', RECV) == [Unrecognised("status")]


def test_level2_snapshot_without_time_uses_receive_time() -> None:
    """A book snapshot carries no time, so it is stamped with the receive time."""
    snap = '{"type":"snapshot","product_id":"BTC-USD","bids":[["10","1"]],"asks":[["11","2"]]}'
    (event,) = cws.CoinbaseSession().parse(snap, RECV)
    assert event == BookReceived(Symbol("BTC", "USD"), BookSnapshot(RECV, [(10.0, 1.0)], [(11.0, 2.0)]), snapshot=True)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            '{"type":"match","trade_id":"x","side":"buy","size":"1","price":"1","product_id":"A-B","time":"t"}',
            r"ws match: .*`\$.trade_id`",
        ),
        (
            '{"type":"match","trade_id":1,"side":"up","size":"1","price":"1","product_id":"A-B","time":"2021-01-01T00:00:00Z"}',
            "side 'up'",
        ),
        (
            '{"type":"match","trade_id":1,"side":"buy","size":"1","price":"p","product_id":"A-B","time":"2021-01-01T00:00:00Z"}',
            "could not convert",
        ),
        (
            '{"type":"l2update","product_id":"A-B","changes":[["hold","1","1"]],"time":"2021-01-01T00:00:00Z"}',
            "change side 'hold'",
        ),
        ('{"type":"match"', "invalid JSON"),
    ],
)
def test_malformed_known_messages_raise_protocol_drift(frame: str, message: str) -> None:
    """A known message type that fails validation is drift, not a silently dropped trade."""
    with pytest.raises(ProtocolDrift, match=message):
        cws.CoinbaseSession().parse(frame, RECV)
