"""Bitfinex WebSocket: planner, chanId mapping, te/tu deduplication, snapshots, on real payloads and the 2021 session."""

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
from dccd.sources.bitfinex import ws as bws
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    HeartbeatReceived,
    ReconnectRequested,
    StreamAdapter,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
)
from tests.fake.binance_ws import recorded_frames

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bitfinex"
RECV = 1_700_000_000_123_456_789
MS = 1_000_000
ETHUSD = Symbol("ETH", "USD")


def get_adapter(name: str) -> StreamAdapter:
    """The registered adapter, as the StreamAdapter it also is."""
    adapter = _get_adapter(name)
    assert isinstance(adapter, StreamAdapter)
    return adapter


def payload(name: str) -> list[bytes]:
    return [bytes(m) for m in msgspec.json.decode((FIXTURES / name).read_bytes(), type=list[msgspec.Raw])]


def kinds(events: Sequence[object]) -> Counter[str]:
    return Counter(f"Unrecognised:{e.key}" if isinstance(e, Unrecognised) else type(e).__name__ for e in events)


def subscribed(session: bws.BitfinexSession, chan: int, channel: str = "trades", **extra: str) -> None:
    """Feed the `subscribed` event a capture lacks, so its data messages have a chanId to map to."""
    assert session.parse(json.dumps({"event": "subscribed", "channel": channel, "chanId": chan, **extra}), RECV)


# --- planner -------------------------------------------------------------------------------------


def test_plan_subscribes_each_channel_paced_on_ws_2() -> None:
    """Trades, candles (key trade:TF:SYM) and P0 books are separate subscribes 0.1 s apart on {origin}/ws/2."""
    subs = [
        Subscription(Symbol("BTC", "USDT"), DataType.TRADES),
        Subscription(Symbol("BTC", "USDT"), DataType.OHLC, Span("1d")),
        Subscription(Symbol("AAVE", "USD"), DataType.BOOK),
    ]
    (plan,) = get_adapter("bitfinex").plan_streams(subs, "wss://api-pub.bitfinex.com")
    assert plan.url == "wss://api-pub.bitfinex.com/ws/2" and plan.watchdog_s == 45.0
    assert [(json.loads(o.text), o.delay_s) for o in plan.on_open] == [
        (
            {"event": "subscribe", "channel": "book", "symbol": "tAAVE:USD", "prec": "P0", "freq": "F0", "len": "25"},
            0.0,
        ),
        ({"event": "subscribe", "channel": "candles", "key": "trade:1D:tBTCUST"}, 0.1),
        ({"event": "subscribe", "channel": "trades", "symbol": "tBTCUST"}, 0.2),
    ]


def test_plan_splits_at_25_channels_and_rejects_undeclared_streams() -> None:
    """More than 25 channels open another connection; a 1w candle stream is NoCapability."""
    subs = [Subscription(Symbol(f"A{i}", "USD"), DataType.TRADES) for i in range(30)]
    assert [len(p.on_open) for p in bws.plan_streams(subs, "wss://x")] == [25, 5]
    with pytest.raises(NoCapability, match="ohlc span 1w over ws"):
        bws.plan_streams([Subscription(ETHUSD, DataType.OHLC, Span("1w"))], "wss://x")


# --- trades: snapshots, te/tu --------------------------------------------------------------------


def test_trades_payload_snapshots_map_by_chan_id_ascending() -> None:
    """The recorded session maps 7 chanIds; each newest-first snapshot comes out ascending, trailing seq ignored."""
    session = get_adapter("bitfinex").open_session(WsPlan("wss://api.bitfinex.com/ws/2", ()))
    events = [e for m in payload("ws_trades.json") for e in session.parse(m, RECV)]
    assert kinds(events) == Counter({"TradesReceived": 7, "HeartbeatReceived": 14, "ControlAck": 9})
    bft = events[3]
    assert (
        isinstance(bft, TradesReceived)
        and bft.snapshot
        and bft.symbol == Symbol("BFT", "USD")
        and len(bft.trades) == 30
    )
    assert bft.trades[0] == Trade(1618617842840 * MS, "669293762", 0.071361, 393.46666667, "sell", RECV)
    assert bft.trades[-1] == Trade(1618665870435 * MS, "669899159", 0.076989, 166.391496, "buy", RECV)
    mna = events[5]
    assert isinstance(mna, TradesReceived) and mna.symbol == Symbol("MANA", "BTC")  # MNA is Bitfinex's MANA
    assert mna.trades[-1].price == 0.00002516


def test_te_is_emitted_once_and_tu_repeats_are_dropped() -> None:
    """The captured snapshot + te: te emits at once; the tu of the same id is dropped; a tu whose te was missed emits."""
    session = bws.BitfinexSession()
    subscribed(session, 188687, symbol="tETHUSD")
    subscribed(session, 360141, symbol="tETHUSD")
    snap, te = payload("ws_trades_update.json")
    (snapshot,) = session.parse(snap, RECV)
    assert isinstance(snapshot, TradesReceived) and snapshot.snapshot and [t.id for t in snapshot.trades] == [
        "1128060639", "1128060641", "1128060642", "1128060647", "1128060656", "1128060664", "1128060665", "1128060675",
    ]  # fmt: skip
    assert snapshot.trades[1] == Trade(1654701484656 * MS, "1128060641", 1816.0, 0.00088557, "sell", RECV)
    (executed,) = session.parse(te, RECV)
    assert executed == TradesReceived(
        ETHUSD, [Trade(1654702500098 * MS, "1128060969", 1818.5, 0.00325131, "buy", RECV)]
    )
    assert session.parse(te.replace(b'"te"', b'"tu"'), RECV) == []
    assert session.parse(te, RECV) == []
    late = b'[360141,"tu",[1128060970,1654702500099,-0.5,1818.4],42]'
    assert session.parse(late, RECV) == [
        TradesReceived(ETHUSD, [Trade(1654702500099 * MS, "1128060970", 1818.4, 0.5, "sell", RECV)])
    ]
    assert session.parse(b"[188687,[[1128060675,1654701572690,0.00217533,1815.3]]]", RECV)[0].trades == []  # type: ignore[union-attr]


def test_dedup_window_is_bounded() -> None:
    """Only the last 10000 ids per channel are remembered, so a long session does not grow without bound."""
    chan = bws._Channel("trades", ETHUSD)
    assert all(chan.first_sight(i) for i in range(10_001))
    assert len(chan.seen) == 10_000 and chan.first_sight(0) and not chan.first_sight(10_000)


# --- candles and books ---------------------------------------------------------------------------


def test_candle_snapshot_closes_all_but_the_newest_bar() -> None:
    """The captured newest-first snapshot closes its two older bars (close before high on the wire); the next bar closes the third."""
    session = bws.BitfinexSession()
    subscribed(session, 341527, channel="candles", key="trade:1m:tETHUSD")
    (msg,) = payload("ws_candles.json")
    (closed,) = session.parse(msg, RECV)
    assert closed == CandlesClosed(
        ETHUSD,
        Span("1m"),
        [
            Candle(1654705740000 * MS, 1802.5, 1804.4, 1802.4, 1803.2, 23.61801085),
            Candle(1654705800000 * MS, 1803.6, 1804.9, 1802.3, 1802.6, 74.6348086),
        ],
    )
    assert session.parse(b"[341527,[1654705860000,1802.6,1801.0,1802.8,1800.3,90.0]]", RECV) == []
    (nxt,) = session.parse(b"[341527,[1654705920000,1801.0,1801.0,1801.0,1801.0,1.0]]", RECV)
    assert nxt == CandlesClosed(ETHUSD, Span("1m"), [Candle(1654705860000 * MS, 1802.6, 1802.8, 1800.3, 1801.0, 90.0)])


def test_book_recording_replays_through_a_session() -> None:
    """The 2021 session (ticker, P0 books, trades with SEQ_ALL numbers) parses fully; deletes become amount 0."""
    frames = recorded_frames(FIXTURES / "BITFINEX.ws.11.0")
    session = bws.BitfinexSession()
    events = [e for f in frames for e in session.parse(f, RECV)]
    assert kinds(events) == Counter(
        {
            "BookReceived": 1600,
            "HeartbeatReceived": 42,
            "ControlAck": 23,
            "Unrecognised:ticker": 21,
            "TradesReceived": 7,
        }
    )
    assert sum(len(e.trades) for e in events if isinstance(e, TradesReceived)) == 210
    books = [e for e in events if isinstance(e, BookReceived)]
    assert sum(b.snapshot for b in books) == 7
    dog = [b for b in books if b.symbol == Symbol("DOG", "USD") and not b.snapshot]
    assert dog[0] == BookReceived(Symbol("DOG", "USD"), BookSnapshot(RECV, [(215350.0, 0.0)], []), False)
    assert dog[1].book.bids == [(279380.0, 0.0089)]
    assert BookReceived(Symbol("DOG", "USD"), BookSnapshot(RECV, [], [(283460.0, 0.0)]), False) in dog
    iota = next(b for b in books if b.symbol == Symbol("IOTA", "ETH") and not b.snapshot)
    assert iota.book == BookSnapshot(RECV, [], [(0.0010273, 0.0)])


# --- events and drift ----------------------------------------------------------------------------


def test_info_error_and_reconnect_events() -> None:
    """info greets, 20051/20061 ask for a reconnect, error events fail the subscription, unknown chanIds are counted."""
    session = bws.BitfinexSession()
    assert session.parse('{"event":"info","version":2,"platform":{"status":1}}', RECV) == [ControlAck("info 2")]
    assert session.parse('{"event":"info","code":20051,"msg":"Stop/Restart Websocket Server"}', RECV) == [
        ReconnectRequested("info 20051: Stop/Restart Websocket Server")
    ]
    assert session.parse('{"event":"info","code":20060,"msg":"maintenance"}', RECV) == [ControlAck("info 20060")]
    assert session.parse('{"event":"error","msg":"symbol: invalid","code":10300}', RECV) == [
        ControlFailed("10300", "symbol: invalid")
    ]
    assert session.parse("[999,[1,2,3]]", RECV) == [Unrecognised("<unknown chanId>")]
    assert session.parse('[999,"hb"]', RECV) == [HeartbeatReceived()]
    assert session.parse('{"event":"pong","cid":1}', RECV) == [ControlAck("pong")]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b'[7,"te",[1,2,"x",4]]', r"ws trades: .*expected an array of 4 numbers at `\$\[2\]`"),
        (b'[7,{"a":1}]', "trades snapshot array"),
        (b"[7,[1", "invalid JSON"),
    ],
)
def test_malformed_channel_data_raises_protocol_drift(frame: bytes, message: str) -> None:
    """Data of a subscribed channel with the wrong shape is drift naming the path."""
    session = bws.BitfinexSession()
    subscribed(session, 7, symbol="tETHUSD")
    with pytest.raises(ProtocolDrift, match=message):
        session.parse(frame, RECV)
