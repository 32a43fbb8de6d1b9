"""Bybit v5 WebSocket: plans, the session parser on the recorded payloads, and the fake over loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
import trio_websocket

from dccd.domain import Candle, DataType, Span, Symbol, Trade
from dccd.domain.records import BookSnapshot
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources import get_adapter
from dccd.sources.bybit import ws as bws
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    Outgoing,
    StreamAdapter,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
)
from tests.fake import tape
from tests.fake.bybit import FakeBybitWs
from tests.fake.venue import bar, running

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bybit"
RECORDING = FIXTURES / "BYBIT.ws.25.0.head"  # the first 400 lines of the real session
MS = 1_000_000
RECV = 1_700_000_000_123_456_789
SPOT, PERP = Symbol("BTC", "USDT"), Symbol("BTC", "USDT", "perp")


def payload(name: str) -> list[str]:
    return [json.dumps(item) for item in json.loads((FIXTURES / name).read_text())]


def session(*subs: Subscription) -> bws.BybitSession:
    return bws.open_session(bws.plan_streams(subs)[0])


# --- plans -----------------------------------------------------------------------------------


def test_plan_splits_categories_and_paces_spot_subscribes() -> None:
    """Spot and linear topics go to their own URLs; spot subscribes carry at most 10 topics, 0.1 s apart."""
    subs = [Subscription(Symbol(f"C{i}", "USDT"), DataType.TRADES) for i in range(12)]
    subs += [Subscription(PERP, DataType.OHLC, Span("1h")), Subscription(PERP, DataType.BOOK)]
    adapter = get_adapter("bybit")
    assert isinstance(adapter, StreamAdapter)
    spot, linear = adapter.plan_streams(subs, "ws://127.0.0.1:9")
    assert spot.url == "ws://127.0.0.1:9/v5/public/spot" and linear.url == "ws://127.0.0.1:9/v5/public/linear"
    first, second = (json.loads(m.text) for m in spot.on_open)
    assert (len(first["args"]), second["args"], spot.on_open[1].delay_s) == (10, ["publicTrade.C10USDT", "publicTrade.C11USDT"], 0.1)  # fmt: skip
    assert linear.on_open == (Outgoing('{"req_id":"1","op":"subscribe","args":["kline.60.BTCUSDT","orderbook.50.BTCUSDT"]}'),)  # fmt: skip
    assert (linear.heartbeat_s, linear.heartbeat_message, linear.watchdog_s) == (20.0, '{"op":"ping"}', 60.0)


def test_plan_refuses_what_bybit_does_not_stream() -> None:
    """1s klines, funding over WS and inverse contracts fail before any connection."""
    with pytest.raises(NoCapability, match="live ohlc span 1s"):
        bws.plan_streams([Subscription(SPOT, DataType.OHLC, Span("1s"))])
    with pytest.raises(NoCapability, match="funding over ws"):
        bws.plan_streams([Subscription(PERP, DataType.FUNDING)])
    with pytest.raises(UnsupportedSymbol, match="inverse"):
        bws.plan_streams([Subscription(Symbol("BTC", "USD", "perp"), DataType.TRADES)])


# --- payloads ----------------------------------------------------------------------------------


def test_public_trade_docs_payload() -> None:
    """The linear publicTrade example is one taker-buy trade with its UUID id and the receive time."""
    (frame,) = payload("ws_public_trade.json")
    events = session(Subscription(PERP, DataType.TRADES)).parse(frame, RECV)
    assert events == [TradesReceived(PERP, [Trade(1672304486865 * MS, "20f43950-d8dd-5b31-9112-a178eb6023af", 16578.5, 0.001, "buy", RECV)])]  # fmt: skip


def test_kline_docs_payload_is_not_closed_until_confirmed() -> None:
    """The kline example (confirm false) emits nothing; the same bar confirmed is one closed candle."""
    (frame,) = payload("ws_kline.json")
    s = session(Subscription(SPOT, DataType.OHLC, Span("5m")))
    assert s.parse(frame, RECV) == []
    closed = frame.replace('"confirm": false', '"confirm": true')
    assert s.parse(closed, RECV) == [
        CandlesClosed(
            SPOT, Span("5m"), [Candle(1672324800000 * MS, 16649.5, 16677.0, 16608.0, 16677.0, 2.081, 34666.4005)]
        )
    ]


def test_control_docs_payloads() -> None:
    """The pong and both subscribe acks are control acks; a refused subscribe names Bybit's reason."""
    s = session(Subscription(SPOT, DataType.TRADES))
    assert [s.parse(f, RECV) for f in payload("ws_control_docs.json")] == [[ControlAck("pong")], [ControlAck("subscribe")], [ControlAck("subscribe")]]  # fmt: skip
    refused = '{"success":false,"ret_msg":"error:handler not found,topic:foo.BTCUSDT","conn_id":"x","req_id":"1","op":"subscribe"}'  # fmt: skip
    assert s.parse(refused, RECV) == [ControlFailed("subscribe", "error:handler not found,topic:foo.BTCUSDT")]
    assert s.parse('{"op":"pong","args":["1672217536108"],"conn_id":"x"}', RECV) == [ControlAck("pong")]


def test_pre_v5_frames_are_never_read_as_v5_data() -> None:
    """Every legacy (pre-v5) trade push and ack is Unrecognised, never a trade."""
    s = session(Subscription(PERP, DataType.TRADES))
    events = [ev for f in payload("legacy_v2_ws_trade_NOT_V5.json") for ev in s.parse(f, RECV)]
    assert len(events) == 30 and all(isinstance(ev, Unrecognised) for ev in events)
    assert {ev.key for ev in events if isinstance(ev, Unrecognised)} >= {"trade.BCHUSDT", "<unknown object>"}


def test_legacy_recording_replays_without_errors() -> None:
    """A real pre-v5 session (383 frames) replays as unknown frames only: nothing is mis-parsed."""
    s = session(Subscription(PERP, DataType.TRADES), Subscription(PERP, DataType.BOOK))
    counts: dict[type, int] = {}
    for line in RECORDING.read_text().splitlines():
        m = re.match(r"^\d+\.\d+: (.*)$", line)
        if m:
            for ev in s.parse(m.group(1), RECV):
                counts[type(ev)] = counts.get(type(ev), 0) + 1
    assert set(counts) == {Unrecognised} and counts[Unrecognised] == 383


def test_book_snapshot_and_delta() -> None:
    """orderbook frames carry Bybit's ts and update id; a delta keeps amount 0 as a removal."""
    s = session(Subscription(PERP, DataType.BOOK))
    snap = '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1672304484978,"data":{"s":"BTCUSDT","b":[["16493.50","0.006"]],"a":[["16611.00","0.029"]],"u":18521288,"seq":7961638724},"cts":1672304484976}'  # fmt: skip
    delta = snap.replace('"snapshot"', '"delta"').replace('"0.006"', '"0"').replace("18521288", "18521289")
    assert s.parse(snap, RECV) == [BookReceived(PERP, BookSnapshot(1672304484978 * MS, [(16493.5, 0.006)], [(16611.0, 0.029)], 18521288), True, 18521288, 18521288)]  # fmt: skip
    (ev,) = s.parse(delta, RECV)
    assert isinstance(ev, BookReceived) and (ev.snapshot, ev.book.bids, ev.first_seq) == (False, [(16493.5, 0.0)], 18521289)  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("[1,2]", [Unrecognised("<not an object>")]),
        ('{"hello":1}', [Unrecognised("<unknown object>")]),
        ('{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{}}', [Unrecognised("tickers")]),
        ('{"topic":"publicTrade.ETHUSDT","ts":1,"data":[]}', [Unrecognised("publicTrade.ETHUSDT")]),
    ],
)
def test_unknown_frames_are_unrecognised(frame: str, expected: list[StreamEvent]) -> None:
    """Non-objects, unknown shapes, unknown topics and symbols not on this connection are counted, not parsed."""
    assert session(Subscription(SPOT, DataType.TRADES)).parse(frame, RECV) == expected


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("{not json", "invalid JSON"),
        (
            '{"topic":"publicTrade.BTCUSDT","data":[{"T":"x","S":"Buy","v":"1","p":"1","i":"1"}]}',
            r"Expected `int`, got `str` - at `\$\[0\].T`",
        ),
        ('{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"S":"Buy","v":"1","p":"one","i":"1"}]}', "bad value"),
        ('{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"S":"Up","v":"1","p":"1","i":"1"}]}', "side 'Up'"),
    ],
)
def test_malformed_frames_raise_protocol_drift(frame: str, message: str) -> None:
    """Invalid JSON and known topics failing validation raise ProtocolDrift naming the problem."""
    with pytest.raises(ProtocolDrift, match=message):
        session(Subscription(SPOT, DataType.TRADES)).parse(frame, RECV)


# --- the fake over loopback --------------------------------------------------------------------


async def test_fake_stream_round_trip_over_loopback() -> None:
    """Plan, subscribe and ping against the fake: trades follow the tape, the closed bar and the book arrive."""
    subs = [Subscription(SPOT, DataType.TRADES), Subscription(SPOT, DataType.OHLC, Span("1m")), Subscription(SPOT, DataType.BOOK)]  # fmt: skip
    async with running(FakeBybitWs(steps=700)) as fake:
        adapter = get_adapter("bybit")
        assert isinstance(adapter, StreamAdapter)
        (plan,) = adapter.plan_streams(subs, fake.url)
        s = adapter.open_session(plan)
        events: list[StreamEvent] = []
        async with trio_websocket.open_websocket_url(plan.url) as ws:
            for out in plan.on_open:
                await ws.send_message(out.text)
            assert plan.heartbeat_message is not None
            await ws.send_message(plan.heartbeat_message)
            with trio.move_on_after(5):
                while sum(len(e.trades) for e in events if isinstance(e, TradesReceived)) < 700:
                    events.extend(s.parse(await ws.get_message(), RECV))
    trades = [t for e in events if isinstance(e, TradesReceived) for t in e.trades]
    t0 = tape.trade_at("BTCUSDT", 0)
    assert trades[0] == Trade(t0.time_ms * MS, "2100000000000000000", float(t0.price), float(t0.qty), "sell" if t0.is_buyer_maker else "buy", RECV)  # fmt: skip
    assert [t.id for t in trades] == [str(2_100_000_000_000_000_000 + i) for i in range(700)]
    (closed,) = [e for e in events if isinstance(e, CandlesClosed)]  # 600 trades per minute: bar 0 closes at step 600
    b = bar("ws:BTCUSDT:1m", tape.TAPE_EPOCH_MS)
    assert closed.candles == [Candle(tape.TAPE_EPOCH_MS * MS, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume), float(b.quote))]  # fmt: skip
    books = [e for e in events if isinstance(e, BookReceived)]
    assert books[0].snapshot and not books[1].snapshot and [b.first_seq for b in books[:3]] == [1, 2, 3]
    assert ControlAck("pong") in events and ControlAck("subscribe") in events
