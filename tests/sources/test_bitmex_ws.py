"""BitMEX realtime WebSocket: plans, the session parser on recorded payloads and a real session, the fake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
import trio_websocket

from dccd.domain import Candle, DataType, Span, Symbol, Trade
from dccd.domain.records import BookSnapshot
from dccd.domain.timeutil import parse_iso_ns
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources import get_adapter
from dccd.sources.bitmex import ws as mws
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    ReconnectRequested,
    StreamAdapter,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
)
from tests.fake import tape
from tests.fake.bitmex import FakeBitmexWs, bin_row, trade_row
from tests.fake.venue import running

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bitmex"
MS = 1_000_000
RECV = 1_700_000_000_123_456_789
XBTUSD, UNI = Symbol("BTC", "USD", "perp"), Symbol("UNI", "USDT", "perp")


def payload(name: str) -> list[str]:
    return [json.dumps(item) for item in json.loads((FIXTURES / name).read_text())]


def session(*subs: Subscription) -> mws.BitmexSession:
    return mws.open_session(mws.plan_streams(subs or (Subscription(XBTUSD, DataType.TRADES),))[0])


def level(action: str, *rows: dict[str, object], symbol: str = "XBTUSD") -> str:
    data = [{"symbol": symbol} | r for r in rows]
    return json.dumps({"table": "orderBookL2_25", "action": action, "data": data} | ({"filter": {"symbol": symbol}} if action == "partial" else {}))  # fmt: skip


# --- plans -----------------------------------------------------------------------------------


def test_plan_is_one_realtime_connection_with_text_pings() -> None:
    """Topics go to /realtime in subscribes of 20, with a text ping every 15 s."""
    adapter = get_adapter("bitmex")
    assert isinstance(adapter, StreamAdapter)
    subs = [Subscription(Symbol(f"C{i}", "USDT", "perp"), DataType.TRADES) for i in range(21)]
    subs += [Subscription(XBTUSD, DataType.OHLC, Span("1h")), Subscription(XBTUSD, DataType.BOOK)]
    (plan,) = adapter.plan_streams(subs, "ws://127.0.0.1:9")
    assert plan.url == "ws://127.0.0.1:9/realtime" and (plan.heartbeat_s, plan.heartbeat_message) == (15.0, "ping")
    assert [len(json.loads(m.text)["args"]) for m in plan.on_open] == [20, 3]
    assert json.loads(plan.on_open[1].text)["args"] == ["trade:C20USDT", "tradeBin1h:XBTUSD", "orderBookL2_25:XBTUSD"]
    with pytest.raises(NoCapability, match="live ohlc span 15m"):
        mws.plan_streams([Subscription(XBTUSD, DataType.OHLC, Span("15m"))])


# --- payloads ----------------------------------------------------------------------------------


def test_real_trade_payload() -> None:
    """The recorded trade session: welcome and acks, one partial (snapshot) per symbol, then inserts, exact values."""
    events = [ev for f in payload("ws_trade.json") for ev in session().parse(f, RECV)]
    assert events[0] == ControlAck("Welcome to the BitMEX Realtime API.") and ControlAck("trade:XBTUSD") in events
    received = [ev for ev in events if isinstance(ev, TradesReceived)]
    assert received[0].snapshot and not received[-1].snapshot
    uni = next(ev for ev in received if ev.symbol == UNI and not ev.snapshot)
    assert uni.trades == [Trade(parse_iso_ns("2021-07-22T22:36:10.014Z"), "39744121-c20e-44ba-8cc8-a6b8cdf72885", 17.297, 16.73101673101673, "buy", RECV)]  # fmt: skip
    assert {str(ev.key) for ev in events if isinstance(ev, Unrecognised)} == {
        "symbol:XRPU21",
        "symbol:TRXU21",
    }  # futures


def test_real_trade_bins_are_closed_bars_at_open_time() -> None:
    """The recorded tradeBin1m partial and insert are closed bars, stamped one minute before BitMEX's end time."""
    s = session(Subscription(XBTUSD, DataType.OHLC, Span("1m")))
    partial, insert = (s.parse(f, RECV) for f in payload("ws_tradebin1m.json"))
    assert partial == [CandlesClosed(XBTUSD, Span("1m"), [Candle(parse_iso_ns("2020-02-03T01:12:00Z"), 9395.0, 9395.5, 9394.5, 9395.0, 89.32641534999999, 839204.0, 221)])]  # fmt: skip
    assert insert == [CandlesClosed(XBTUSD, Span("1m"), [Candle(parse_iso_ns("2020-02-03T18:27:00Z"), 9256.0, 9256.5, 9256.0, 9256.0, 8.540770820000002, 79057.0, 29)])]  # fmt: skip


def test_rate_limit_errors_are_refused_controls() -> None:
    """Both recorded rate-limit errors become ControlFailed with BitMEX's status (or 'error')."""
    assert [session().parse(f, RECV) for f in payload("ws_error_ratelimit.json")] == [
        [ControlFailed("429", "Rate limit exceeded, retry in 1 seconds.")],
        [ControlFailed("error", "Rate limit exceeded, retry in 29 seconds.")],
    ]
    assert session().parse("pong", RECV) == [ControlAck("pong")]


def test_real_session_replays_every_book_update() -> None:
    """The recorded session (2,000+ frames) keeps every L2 level id: no reconnect, exact XBTUSD top of book."""
    s = session(Subscription(XBTUSD, DataType.BOOK))
    lines = (FIXTURES / "BITMEX.ws.1.0").read_text().splitlines()
    events = [ev for line in lines if (m := re.match(r"^\d+\.\d+: (.*)$", line)) for ev in s.parse(m.group(1), RECV)]
    assert not [ev for ev in events if isinstance(ev, ReconnectRequested)]
    books = [ev for ev in events if isinstance(ev, BookReceived)]
    assert (len(books), sum(b.snapshot for b in books)) == (1970, 8)
    xbt = [b for b in books if b.symbol == XBTUSD]
    assert len(xbt) == 1300 and (len(xbt[0].book.bids), len(xbt[0].book.asks)) == (5542, 3804)
    assert (max(xbt[0].book.bids), min(xbt[0].book.asks)) == ((32180.0, 1046200.0), (32180.5, 161000.0))
    assert xbt[1].book == BookSnapshot(RECV, [(32072.0, 20500.0), (31975.5, 3000.0), (31963.0, 21300.0)], [(32335.0, 100.0)])  # fmt: skip


def test_level_ids_resolve_updates_and_deletes() -> None:
    """Updates and deletes name levels by id: the session supplies the price; unknown ids ask for a reconnect."""
    s = session(Subscription(XBTUSD, DataType.BOOK))
    assert s.parse(level("update", {"id": 1, "side": "Buy", "size": 5}), RECV) == []  # before the partial: dropped
    (snap,) = s.parse(level("partial", {"id": 1, "side": "Buy", "size": 10, "price": 99.5}, {"id": 2, "side": "Sell", "size": 3, "price": 100.0}), RECV)  # fmt: skip
    assert snap == BookReceived(XBTUSD, BookSnapshot(RECV, [(99.5, 10.0)], [(100.0, 3.0)]), True)
    (upd,) = s.parse(level("update", {"id": 1, "side": "Buy", "size": 7, "timestamp": "2024-01-01T00:00:00.250Z"}), RECV)  # fmt: skip
    assert upd == BookReceived(XBTUSD, BookSnapshot(parse_iso_ns("2024-01-01T00:00:00.250Z"), [(99.5, 7.0)], []), False)
    (gone,) = s.parse(level("delete", {"id": 2, "side": "Sell"}), RECV)
    assert isinstance(gone, BookReceived) and gone.book.asks == [(100.0, 0.0)]
    assert s.parse(level("update", {"id": 2, "side": "Sell", "size": 1}), RECV) == [ReconnectRequested("bitmex XBTUSD: update of unknown level id 2")]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"table":"quote","action":"insert","data":[]}', [Unrecognised("quote")]),
        ("[1]", [Unrecognised("<not an object>")]),
        ('{"weird":true}', [Unrecognised("<unknown object>")]),
        ('{"success":true,"unsubscribe":"trade:XBTUSD"}', [ControlAck("trade:XBTUSD")]),
        (
            '{"status":400,"error":"Unknown table: foo","meta":{},"request":{}}',
            [ControlFailed("400", "Unknown table: foo")],
        ),
    ],
)
def test_control_and_unknown_frames(frame: str, expected: list[StreamEvent]) -> None:
    """Tables dccd does not use and unknown shapes are counted; acks and refusals are control events."""
    assert session().parse(frame, RECV) == expected


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("{oops", "invalid JSON"),
        (
            '{"table":"trade","action":"insert","data":[{"timestamp":"x","symbol":"XBTUSD","side":"Buy","price":1,"trdMatchID":"a","homeNotional":1}]}',
            "bad value",
        ),
        (
            '{"table":"trade","action":"insert","data":[{"timestamp":"2024-01-01T00:00:00Z","symbol":"XBTUSD","side":"Buy","price":"1","trdMatchID":"a"}]}',
            r"Expected `float`, got `str` - at `\$\[0\].price`",
        ),
        (
            '{"table":"orderBookL2_25","action":"partial","data":[{"symbol":"XBTUSD","id":1,"side":"Buy"}]}',
            "without price or size",
        ),
    ],
)
def test_malformed_frames_raise_protocol_drift(frame: str, message: str) -> None:
    """Invalid JSON and known tables that fail validation are drift naming the problem."""
    with pytest.raises(ProtocolDrift, match=message):
        session().parse(frame, RECV)


# --- the fake over loopback --------------------------------------------------------------------


async def test_fake_stream_round_trip_over_loopback() -> None:
    """Against the fake: a trade partial then inserts, the finished bin at its open time, a consistent L2 book."""
    adapter = get_adapter("bitmex")
    assert isinstance(adapter, StreamAdapter)
    subs = [Subscription(XBTUSD, DataType.TRADES), Subscription(XBTUSD, DataType.OHLC, Span("1m")), Subscription(XBTUSD, DataType.BOOK)]  # fmt: skip
    async with running(FakeBitmexWs(steps=61)) as fake:
        (plan,) = adapter.plan_streams(subs, fake.url)
        s = adapter.open_session(plan)
        events: list[StreamEvent] = []
        async with trio_websocket.open_websocket_url(plan.url) as ws:
            for out in plan.on_open:
                await ws.send_message(out.text)
            await ws.send_message('{"op":"subscribe","args":["liquidation:XBTUSD"]}')
            await ws.send_message("ping")
            with trio.move_on_after(5):
                while not any(isinstance(e, CandlesClosed) for e in events):  # sent after step 60's trades
                    events.extend(s.parse(await ws.get_message(), RECV))
    received = [e for e in events if isinstance(e, TradesReceived)]
    assert received[0].snapshot and not any(e.snapshot for e in received[1:])
    row = trade_row("XBTUSD", 0)
    assert received[0].trades[0] == Trade(parse_iso_ns(row["timestamp"]), row["trdMatchID"], row["price"], row["homeNotional"], row["side"].lower(), RECV)  # fmt: skip
    ids = [t.id for e in received for t in e.trades]
    assert ids == [f"00000000-0000-4000-8000-{k:012d}" for k in range(61 * 30)]
    (closed,) = [e for e in events if isinstance(e, CandlesClosed)]  # step 60 (second 60 of tape) opens minute 2
    b = bin_row("XBTUSD", "1m", tape.TAPE_EPOCH_MS)
    assert closed.candles == [Candle(tape.TAPE_EPOCH_MS * MS, b["open"], b["high"], b["low"], b["close"], b["homeNotional"], b["foreignNotional"], b["trades"])]  # fmt: skip
    books = [e for e in events if isinstance(e, BookReceived)]
    assert books[0].snapshot and not [e for e in events if isinstance(e, ReconnectRequested)]
    assert ControlFailed("400", "Unknown table: liquidation") in events and ControlAck("pong") in events
