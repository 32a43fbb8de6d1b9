"""OKX v5 WebSocket: plans, the session parser on recorded payloads and a real session, the fake over loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
import trio_websocket

from dccd.domain import Candle, DataType, Span, Symbol, Trade
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources import get_adapter
from dccd.sources.okx import ws as ows
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    ReconnectRequested,
    StreamAdapter,
    Subscription,
    TradesReceived,
    Unrecognised,
)
from tests.fake import tape
from tests.fake.okx import TRADE_ID0, FakeOkxWs
from tests.fake.venue import bar, running

FIXTURES = Path(__file__).parent.parent / "fixtures" / "okx"
MS = 1_000_000
RECV = 1_700_000_000_123_456_789
SPOT, SWAP = Symbol("BTC", "USDT"), Symbol("BTC", "USDT", "perp")
UNI = Symbol("UNI", "USD", "perp")


def payload(name: str) -> list[str]:
    return [json.dumps(item) for item in json.loads((FIXTURES / name).read_text())]


def session(*subs: Subscription) -> ows.OkxSession:
    return ows.open_session(ows.plan_streams(subs)[0])


def recorded(name: str) -> list[str]:
    return [m.group(1) for line in (FIXTURES / name).read_text().splitlines() if (m := re.match(r"^\d+\.\d+: (.*)$", line))]  # fmt: skip


# --- plans -----------------------------------------------------------------------------------


def test_candles_and_trades_go_to_business_books_to_public() -> None:
    """Candle and trades-all channels are planned on /ws/v5/business, books on /ws/v5/public, with a text ping."""
    adapter = get_adapter("okx")
    assert isinstance(adapter, StreamAdapter)
    subs = [Subscription(SPOT, DataType.TRADES), Subscription(SWAP, DataType.OHLC, Span("1d")), Subscription(SPOT, DataType.BOOK)]  # fmt: skip
    business, public = adapter.plan_streams(subs, "ws://127.0.0.1:9")
    assert (business.url, public.url) == ("ws://127.0.0.1:9/ws/v5/business", "ws://127.0.0.1:9/ws/v5/public")
    assert json.loads(business.on_open[0].text) == {"op": "subscribe", "args": [{"channel": "trades-all", "instId": "BTC-USDT"}, {"channel": "candle1Dutc", "instId": "BTC-USDT-SWAP"}]}  # fmt: skip
    assert json.loads(public.on_open[0].text)["args"] == [{"channel": "books", "instId": "BTC-USDT"}]
    assert (public.heartbeat_s, public.heartbeat_message, public.watchdog_s) == (20.0, "ping", 45.0)


def test_plan_chunks_subscribes_and_refuses_what_okx_does_not_stream() -> None:
    """250 channels go out as subscribes of 100, 0.2 s apart; 1s candles and funding over WS are refused."""
    subs = [Subscription(Symbol(f"C{i}", "USDT"), DataType.TRADES) for i in range(250)]
    (plan,) = ows.plan_streams(subs)
    assert [len(json.loads(m.text)["args"]) for m in plan.on_open] == [100, 100, 50]
    assert [m.delay_s for m in plan.on_open] == [0.0, 0.2, 0.4]
    with pytest.raises(NoCapability, match="live ohlc span 1s"):
        ows.plan_streams([Subscription(SPOT, DataType.OHLC, Span("1s"))])
    with pytest.raises(NoCapability, match="oi over ws"):
        ows.plan_streams([Subscription(SWAP, DataType.OI)])


# --- payloads ----------------------------------------------------------------------------------


def test_recorded_trades_payload() -> None:
    """The recorded trades frames: six subscribe acks, then 24 consecutive BTC-USDT trades with exact values."""
    s = session(Subscription(SPOT, DataType.TRADES))
    events = [ev for f in payload("ws_trades.json") for ev in s.parse(f, RECV)]
    acks = [ev for ev in events if isinstance(ev, ControlAck)]
    assert acks[:3] == [ControlAck("subscribe trades:BTC-USD-220527"), ControlAck("subscribe trades:UNI-USD-SWAP"), ControlAck("subscribe trades:BTC-USDT")]  # fmt: skip
    trades = [t for ev in events if isinstance(ev, TradesReceived) for t in ev.trades]
    assert [int(t.id or 0) for t in trades] == list(range(338476307, 338476331))
    assert trades[0] == Trade(1652459224818 * MS, "338476307", 30236.0, 0.0002, "buy", RECV)


def test_candle_payloads_emit_only_confirmed_utc_bars() -> None:
    """A 7-column 2021 candle cannot say it is closed; HK-aligned candle1D is not a dccd span; confirmed 1Dutc is."""
    s = session(Subscription(Symbol("ETH", "USDT"), DataType.OHLC, Span("1d")), Subscription(SPOT, DataType.OHLC, Span("1m")))  # fmt: skip
    assert s.parse(payload("ws_candle_2021.json")[0], RECV) == []
    request, ack, push = payload("ws_candle_docs.json")
    assert s.parse(request, RECV) == [Unrecognised("<unknown object>")]  # our own subscribe, echoed
    assert s.parse(ack, RECV) == [ControlAck("subscribe candle1D:ETH-USDT")]
    assert s.parse(push, RECV) == [Unrecognised("candle1D")]
    utc = push.replace("candle1D", "candle1Dutc").replace('"0"\n', '"1"').replace(', "0"]', ', "1"]')
    assert s.parse(utc, RECV) == [
        CandlesClosed(
            Symbol("ETH", "USDT"),
            Span("1d"),
            [Candle(1597026383085 * MS, 8533.02, 8553.74, 8527.17, 8548.26, 45247.0, 5529.5858061)],
        )
    ]


def test_error_and_notice_events() -> None:
    """An error event is a refused control message with OKX's code; a notice asks for a reconnect."""
    s = session(Subscription(SPOT, DataType.TRADES))
    (error,) = payload("ws_error.json")
    (ev,) = s.parse(error, RECV)
    assert isinstance(ev, ControlFailed) and ev.code == "60012" and ev.message.startswith('Illegal request: {"id":"17321173472466905"')  # fmt: skip
    notice = '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade.","connId":"a4d3ae55"}'  # fmt: skip
    assert s.parse(notice, RECV) == [ReconnectRequested("okx notice 64008: The connection will soon be closed for a service upgrade.")]  # fmt: skip
    assert s.parse("pong", RECV) == [ControlAck("pong")]


def test_real_session_replays_with_every_book_checksum_verified() -> None:
    """The recorded public session: 70 trades, 2 book snapshots and 189 updates whose CRC32 checksums all match."""
    s = session(Subscription(SPOT, DataType.TRADES), Subscription(SPOT, DataType.BOOK), Subscription(UNI, DataType.BOOK))  # fmt: skip
    events = [ev for frame in recorded("OKX.ws.1.0") for ev in s.parse(frame, RECV)]
    books = [ev for ev in events if isinstance(ev, BookReceived)]
    assert not [ev for ev in events if isinstance(ev, ReconnectRequested)]
    assert (sum(b.snapshot for b in books), sum(not b.snapshot for b in books)) == (2, 189)
    assert sum(len(ev.trades) for ev in events if isinstance(ev, TradesReceived)) == 70
    first = next(b for b in books if b.symbol == SPOT)
    assert (
        first.snapshot
        and first.book.ts == 1652459225381 * MS
        and (len(first.book.bids), len(first.book.asks)) == (400, 400)
    )
    assert (first.book.bids[0], first.book.asks[0]) == ((30243.4, 0.0012029), (30243.5, 1.44679))
    assert {ev.key for ev in events if isinstance(ev, Unrecognised)} == {"tickers", "tickers:BTC-USD-220527", "books:BTC-USD-220527", "trades:BTC-USD-220527"}  # fmt: skip


def _book(action: str, bids: list[list[str]], checksum: int, seq: int | None = None, prev: int | None = None) -> str:
    data: dict[str, object] = {"asks": [["10", "1", "0", "1"]], "bids": bids, "ts": "1000", "checksum": checksum}
    if seq is not None:
        data |= {"seqId": seq, "prevSeqId": prev}
    return json.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [data]})


def test_checksum_and_sequence_breaks_ask_for_a_reconnect() -> None:
    """A wrong checksum, a broken prevSeqId chain or an update before the snapshot asks for a reconnect."""
    from tests.fake.okx import okx_checksum

    s = session(Subscription(SPOT, DataType.BOOK))
    good = okx_checksum({"9": "2"}, {"10": "1"})
    assert [ev.snapshot for ev in s.parse(_book("snapshot", [["9", "2", "0", "1"]], good, 5, -1), RECV) if isinstance(ev, BookReceived)] == [True]  # fmt: skip
    removed = okx_checksum({}, {"10": "1"})
    (delta,) = s.parse(_book("update", [["9", "0", "0", "0"]], removed, 8, 5), RECV)
    assert isinstance(delta, BookReceived) and delta.book.bids == [(9.0, 0.0)] and delta.book.seq == 8
    assert s.parse(_book("update", [["9", "3", "0", "1"]], 12345, 9, 8), RECV) == [ReconnectRequested("okx books BTC-USDT: checksum mismatch")]  # fmt: skip
    assert s.parse(_book("update", [], removed, 10, 9), RECV) == [ReconnectRequested("okx books BTC-USDT: update before snapshot")]  # fmt: skip
    s.parse(_book("snapshot", [["9", "2", "0", "1"]], good, 20, -1), RECV)
    assert s.parse(_book("update", [], good, 30, 25), RECV) == [ReconnectRequested("okx books BTC-USDT: prevSeqId 25 != seqId 20")]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("{nope", "invalid JSON"),
        (
            '{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"tradeId":"1","px":"x","sz":"1","side":"buy","ts":"1"}]}',
            "bad value",
        ),
        (
            '{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"tradeId":1}]}',
            r"Expected `str`, got `int` - at `\$\[0\].tradeId`",
        ),
        ('{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","2"]]}', "candle row has 2 columns"),
    ],
)
def test_malformed_frames_raise_protocol_drift(frame: str, message: str) -> None:
    """Invalid JSON and known channels that fail validation are drift naming the problem."""
    with pytest.raises(ProtocolDrift, match=message):
        session(Subscription(SPOT, DataType.TRADES)).parse(frame, RECV)


# --- the fake over loopback --------------------------------------------------------------------


async def _collect(url: str, texts: list[str], until: int) -> list[str]:
    out: list[str] = []
    async with trio_websocket.open_websocket_url(url) as ws:
        for text in texts:
            await ws.send_message(text)
        with trio.move_on_after(5):
            while len(out) < until:
                message = await ws.get_message()
                out.append(message if isinstance(message, str) else message.decode())
    return out


async def test_fake_stream_round_trip_over_loopback() -> None:
    """Both planned connections against the fake: consecutive trade ids, the closed bar, checksummed book updates."""
    adapter = get_adapter("okx")
    assert isinstance(adapter, StreamAdapter)
    subs = [Subscription(SPOT, DataType.TRADES), Subscription(SPOT, DataType.OHLC, Span("1m")), Subscription(SPOT, DataType.BOOK)]  # fmt: skip
    async with running(FakeOkxWs(steps=650)) as fake:
        business, public = adapter.plan_streams(subs, fake.url)
        frames = await _collect(
            business.url, [m.text for m in business.on_open] + ["ping"], 650 + 131 + 3
        )  # trades, candle updates and the closed bar, 2 acks and a pong
        s = adapter.open_session(business)
        events = [ev for f in frames for ev in s.parse(f, RECV)]
        book_frames = await _collect(public.url, [m.text for m in public.on_open], 40)
        p = adapter.open_session(public)
        book_events = [ev for f in book_frames for ev in p.parse(f, RECV)]
        refused = await _collect(
            public.url, ['{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]}'], 1
        )
    trades = [t for e in events if isinstance(e, TradesReceived) for t in e.trades]
    assert [int(t.id or 0) - TRADE_ID0 for t in trades] == list(range(650))
    t0 = tape.trade_at("BTC-USDT", 0)
    assert trades[0] == Trade(t0.time_ms * MS, str(TRADE_ID0), float(t0.price), float(t0.qty), "sell" if t0.is_buyer_maker else "buy", RECV)  # fmt: skip
    (closed,) = [e for e in events if isinstance(e, CandlesClosed)]
    b = bar("BTC-USDT:1m", tape.TAPE_EPOCH_MS)
    assert closed.candles == [Candle(tape.TAPE_EPOCH_MS * MS, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume), float(b.quote))]  # fmt: skip
    assert ControlAck("pong") in events and ControlAck("subscribe trades-all:BTC-USDT") in events
    books = [e for e in book_events if isinstance(e, BookReceived)]
    assert not [e for e in book_events if isinstance(e, ReconnectRequested)] and len(books) == 39 and books[0].snapshot
    assert json.loads(refused[0])["code"] == "60018"  # candles on /public are refused, as on OKX
