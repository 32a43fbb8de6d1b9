"""Binance WebSocket adapter: builders, planner and parser (generic stream events) on real payloads."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import cast

import msgspec
import pytest

from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import ProtocolDrift, UnsupportedSymbol
from dccd.sources.binance import ws as bws
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    ReconnectRequested,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
)
from tests.fake.binance_ws import recorded_frames

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance_ws"
RECV = 1_700_000_000_123_456_789


def payload(name: str) -> list[str]:
    """The messages of a payload file, one JSON text each."""
    return [json.dumps(item, separators=(",", ":")) for item in json.loads((FIXTURES / name).read_text())]


# --- names, URLs, control messages ------------------------------------------------------------


def test_stream_names_are_lowercase_binance_names() -> None:
    """Builders produce Binance's documented stream names, symbols lowercased."""
    assert bws.trade_stream("BTCUSDT") == "btcusdt@trade"
    assert bws.agg_trade_stream("BTCUSDT") == "btcusdt@aggTrade"
    assert bws.kline_stream("BTCUSDT", "1m") == "btcusdt@kline_1m"
    assert bws.kline_stream("ETHBTC", "1M") == "ethbtc@kline_1M"
    assert bws.depth_stream("BTCUSDT") == "btcusdt@depth"
    assert bws.depth_stream("BTCUSDT", 100) == "btcusdt@depth@100ms"
    assert bws.ws_market(Symbol.parse("btc/usdt")) == "BTCUSDT"


def test_builders_reject_bad_input() -> None:
    """Unknown intervals, speeds, perps and malformed names fail with a message naming the value."""
    with pytest.raises(ValueError, match="'7m' is not a Binance kline interval"):
        bws.kline_stream("BTCUSDT", "7m")
    with pytest.raises(ValueError, match="1000 or 100 ms, got 250"):
        bws.depth_stream("BTCUSDT", 250)
    with pytest.raises(UnsupportedSymbol, match="BTC/USDT:perp"):
        bws.ws_market(Symbol.parse("BTC/USDT:perp"))
    with pytest.raises(ValueError, match="'BTCUSDT@trade' is not a Binance stream name"):
        bws.build_stream_url(["BTCUSDT@trade"])
    with pytest.raises(ValueError, match="unsigned integer"):
        bws.build_subscribe(["btcusdt@trade"], -1)
    with pytest.raises(ValueError, match="at least one stream"):
        bws.build_subscribe([], 1)


def test_urls_follow_the_origin() -> None:
    """Combined and raw URLs append Binance's paths to the configured origin."""
    assert (
        bws.build_stream_url(["btcusdt@trade", "ethusdt@kline_1m", "btcusdt@trade"])
        == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@kline_1m"
    )
    assert bws.build_stream_url([], "ws://127.0.0.1:9/") == "ws://127.0.0.1:9/stream"
    assert bws.build_raw_url("ws://127.0.0.1:9") == "ws://127.0.0.1:9/ws"
    assert bws.build_raw_url("ws://h", "btcusdt@trade") == "ws://h/ws/btcusdt@trade"


def test_subscribe_matches_the_documented_request() -> None:
    """build_subscribe encodes exactly the documented SUBSCRIBE request."""
    request = json.loads(payload("ws_subscribe_docs.json")[0])
    text = bws.build_subscribe(request["params"], request["id"])
    assert json.loads(text) == request
    assert text == '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@depth"],"id":1}'
    assert json.loads(bws.build_unsubscribe(["btcusdt@depth"], 7)) == {
        "method": "UNSUBSCRIBE",
        "params": ["btcusdt@depth"],
        "id": 7,
    }
    assert bws.build_list_subscriptions(3) == '{"method":"LIST_SUBSCRIPTIONS","params":null,"id":3}'


def test_constants_carry_binance_limits() -> None:
    """The exposed limits are Binance's documented ones, and rotation comes before the 24 h cut."""
    assert bws.MAX_STREAMS_PER_CONNECTION == 1024
    assert bws.MAX_INCOMING_MSGS_PER_S == 5
    assert bws.CONNECTION_LIFETIME_S == 86_400
    assert 0 < bws.ROTATE_AFTER_S < bws.CONNECTION_LIFETIME_S
    assert bws.CONTROL_INTERVAL_S >= 1 / bws.MAX_INCOMING_MSGS_PER_S


def test_planner_splits_streams_across_connections() -> None:
    """2500 streams need 3 connections of at most 1024; every stream is carried exactly once."""
    streams = [f"s{i:04d}usdt@trade" for i in range(2500)]
    plans = bws.plan_connections(streams, origin="ws://127.0.0.1:1")
    assert [len(p.streams) for p in plans] == [1024, 1024, 452]
    assert [s for p in plans for s in p.streams] == streams
    for plan in plans:
        assert len(plan.url) <= bws.MAX_URL_LEN
        in_url = plan.url.partition("?streams=")[2].split("/")
        subscribed = [s for m in plan.subscribes for s in m.streams]
        assert in_url + subscribed == list(plan.streams)
        assert all(len(m.streams) <= bws.MAX_PARAMS_PER_MESSAGE for m in plan.subscribes)
    ids = [m.id for p in plans for m in p.subscribes]
    assert ids == list(range(1, len(ids) + 1))


def test_planner_paces_subscribes_under_the_message_limit() -> None:
    """SUBSCRIBEs of one connection are CONTROL_INTERVAL_S apart, so no second carries more than 4."""
    streams = [f"m{i:03d}btc@aggTrade" for i in range(1000)]
    (plan,) = bws.plan_connections(streams, max_url_len=70, max_params=100)
    assert plan.url == "wss://stream.binance.com:9443/stream?streams=m000btc@aggTrade"
    assert [m.delay_s for m in plan.subscribes] == [k * 0.25 for k in range(10)]
    assert json.loads(plan.subscribes[0].text)["params"][0] == "m001btc@aggTrade"
    with pytest.raises(ValueError, match=r"interval_s >= 0\.2"):
        bws.plan_connections(streams, interval_s=0.1)
    with pytest.raises(ValueError, match=r"max_streams must be 1\.\.1024"):
        bws.plan_connections(streams, max_streams=2000)


# --- parser on the payloads (generic stream events) ---------------------------------------------

ETHBTC, BNBBTC, NKNUSDT, LRCBTC = (Symbol.parse(n) for n in ("ETH/BTC", "BNB/BTC", "NKN/USDT", "LRC/BTC"))


def one(frame: str | bytes) -> StreamEvent:
    """The single event of a frame."""
    (event,) = bws.parse_frame(frame, RECV)
    return event


def test_trade_payloads() -> None:
    """@trade: id as string, T in ns, m=false -> taker buy, m=true -> taker sell, recv_ts kept; raw frames parse too."""
    (raw,) = payload("ws_trade.json")
    assert one(raw) == TradesReceived(ETHBTC, [Trade(1579481530910_000000, "158410082", 0.019141, 0.007, "buy", RECV)])
    (docs,) = payload("ws_trade_docs.json")
    assert one(docs.encode()) == TradesReceived(
        BNBBTC, [Trade(1672515782136_000000, "12345", 0.001, 100.0, "sell", RECV)]
    )


def test_aggtrade_payloads() -> None:
    """@aggTrade (real combined capture and docs): one trade whose id is the aggregate id."""
    nkn, lrc = (one(f) for f in payload("ws_aggtrade.json"))
    assert nkn == TradesReceived(NKNUSDT, [Trade(1633998523963_000000, "15683430", 0.3528, 58.0, "buy", RECV)])
    assert lrc == TradesReceived(LRCBTC, [Trade(1633998534486_000000, "9213679", 0.00000638, 177.0, "buy", RECV)])
    (docs,) = payload("ws_aggtrade_docs.json")
    assert one(docs) == TradesReceived(BNBBTC, [Trade(1672515782136_000000, "12345", 0.001, 100.0, "sell", RECV)])


def test_open_klines_are_not_candles() -> None:
    """Every kline payload is an unfinished bar (x=false): no event at all, never a Candle."""
    frames = [*payload("ws_kline.json"), *payload("ws_kline_docs.json"), *payload("ws_kline_raw.json")]
    assert len(frames) == 4
    assert [bws.parse_frame(f, RECV) for f in frames] == [[], [], [], []]


def test_closed_kline_is_a_candle() -> None:
    """x=true gives the Candle: ts = open time t, OHLCV, native quote volume q and trade count n."""
    (docs,) = payload("ws_kline_docs.json")
    msg = json.loads(docs)
    msg["k"]["x"] = True
    frame = json.dumps({"stream": "bnbbtc@kline_1m", "data": msg})
    assert one(frame) == CandlesClosed(
        BNBBTC, Span("1m"), [Candle(1672515780000_000000, 0.001, 0.0025, 0.0015, 0.002, 1000.0, 1.0, 100)]
    )


def test_depth_diff_payload() -> None:
    """Diff-depth events are book deltas keeping U/u and the event time in ns; the capture's ids chain u+1 = next U."""
    events = [one(f) for f in payload("ws_depth_diff.json")]
    book = BookSnapshot(1633998512068_000000, [(0.3513, 6195.0), (0.3475, 5548.0), (0.3464, 6222.0)], [], 499869752)
    assert events[0] == BookReceived(NKNUSDT, book, False, 499869750, 499869752)
    diffs = [e for e in events if isinstance(e, BookReceived)]
    assert len(diffs) == 8
    assert diffs[6].book.asks == [(0.3534, 0.0)]  # amount 0 removes the level
    assert all(b.first_seq == cast(int, a.last_seq) + 1 for a, b in itertools.pairwise(diffs))


def test_server_shutdown_and_subscribe_reply() -> None:
    """serverShutdown asks for a reconnect; the documented reply {"result":null,"id":1} is a ControlAck (with its result)."""
    (shutdown,) = payload("ws_server_shutdown_docs.json")
    assert one(shutdown) == ReconnectRequested("serverShutdown")
    reply = payload("ws_subscribe_docs.json")[1]
    assert one(reply) == ControlAck("id 1")
    assert one(b'{"result":["btcusdt@trade"],"id":3}') == ControlAck('id 3 ["btcusdt@trade"]')


def test_error_replies_become_control_failures() -> None:
    """Both the documented and the live (wrapped) error shapes become ControlFailed(code, message with request id)."""
    wrapped = b'{"error":{"code":2,"msg":"Invalid request: unknown variant `SUB`"},"id":4}'
    assert one(wrapped) == ControlFailed("2", "Invalid request: unknown variant `SUB` (request id 4)")
    flat = b'{"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}'
    assert one(flat) == ControlFailed("2", "Invalid request: request ID must be an unsigned integer (request id None)")


def test_unknown_frames_are_unrecognised() -> None:
    """bookTicker (no e), unknown event types, arrays, unknown objects and unmappable markets are Unrecognised."""
    ticker = b'{"stream":"nknusdt@bookTicker","data":{"u":1,"s":"NKNUSDT","b":"0.35","B":"1","a":"0.36","A":"2"}}'
    assert one(ticker) == Unrecognised("nknusdt@bookTicker")
    assert one(b'{"e":"24hrTicker","s":"X"}') == Unrecognised("24hrTicker")
    assert one(b'{"e":"outboundAccountPosition"}') == Unrecognised("outboundAccountPosition")
    assert one(b"[1,2]") == Unrecognised("<not an object>")
    assert one(b'{"hello":1}') == Unrecognised("<unknown object>")
    assert one(b'{"e":"trade","s":"X","t":1,"p":"1","q":"1","T":5,"m":true}') == Unrecognised("X")


def test_a_session_knows_only_its_markets() -> None:
    """A session maps the markets it subscribed; another market's frame is Unrecognised by its stream name."""
    (frame,) = payload("ws_aggtrade.json")[:1]
    session = bws.BinanceSession([Subscription(LRCBTC, DataType.TRADES)])
    assert session.parse(frame, RECV) == [Unrecognised("nknusdt@aggTrade")]
    assert bws.parse_frame(frame, RECV) != session.parse(frame, RECV)


def test_malformed_known_frames_raise_protocol_drift() -> None:
    """A known event that fails validation raises ProtocolDrift naming the stream and msgspec's $.path."""
    (frame,) = payload("ws_aggtrade.json")[:1]
    bad_type = frame.replace('"p":"0.35280000"', '"p":0.3528')
    with pytest.raises(
        ProtocolDrift, match=r"binance nknusdt@aggTrade: .*Expected `str`, got `float` - at `\$\.data\.p`"
    ):
        bws.parse_frame(bad_type, RECV)
    missing = frame.replace('"m":false,', "")
    with pytest.raises(ProtocolDrift, match=r"missing required field `m` - at `\$\.data`"):
        bws.parse_frame(missing, RECV)
    with pytest.raises(ProtocolDrift, match="bad number"):
        bws.parse_frame(frame.replace('"q":"58.00000000"', '"q":"lots"'), RECV)
    with pytest.raises(ProtocolDrift, match=r"Expected `int`, got `str` - at `\$\.T`"):
        bws.parse_frame(b'{"e":"trade","s":"X","t":1,"p":"1","q":"1","T":"soon","m":true}', RECV)
    with pytest.raises(ProtocolDrift, match="invalid JSON"):
        bws.parse_frame(frame[:40], RECV)


def test_parser_reads_the_fake_tape_exactly() -> None:
    """Frames of the fake server's tape parse back to the tape's values (the fakes and the parser agree)."""
    from tests.fake.tape import trade_at

    t = trade_at("BTCUSDT", 4321)
    frame = (
        f'{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{t.time_ms},"s":"BTCUSDT","t":4321,'
        f'"p":"{t.price}","q":"{t.qty}","T":{t.time_ms},"m":{"true" if t.is_buyer_maker else "false"},"M":true}}}}'
    )
    side = "sell" if t.is_buyer_maker else "buy"
    trade = Trade(t.time_ms * 1_000_000, "4321", float(t.price), float(t.qty), side, RECV)
    assert one(frame) == TradesReceived(Symbol.parse("BTC/USDT"), [trade])


# --- the real recording ------------------------------------------------------------------


def _oracle(frames: list[str]) -> dict[str, int]:
    """Counts computed with the json module, independently of the parser."""
    counts = {"aggTrade": 0, "closed": 0, "open": 0, "depth": 0, "other": 0}
    for text in frames:
        data = json.loads(text)["data"]
        e = data.get("e")
        if e == "aggTrade":
            counts["aggTrade"] += 1
        elif e == "kline":
            counts["closed" if data["k"]["x"] else "open"] += 1
        elif e == "depthUpdate":
            counts["depth"] += 1
        else:
            counts["other"] += 1
    return counts


def test_recording_replays_through_the_parser() -> None:
    """All 265 frames of BINANCE.ws.1.0 parse; per-kind counts equal a json oracle's; bookTickers are Unrecognised."""
    frames = recorded_frames(FIXTURES / "BINANCE.ws.1.0")
    assert len(frames) == 265
    events = [bws.parse_frame(f, RECV) for f in frames]
    assert all(len(evs) <= 1 for evs in events)
    flat = [e for evs in events for e in evs]
    got = {
        "aggTrade": sum(isinstance(e, TradesReceived) for e in flat),
        "closed": sum(isinstance(e, CandlesClosed) for e in flat),
        "open": sum(evs == [] for evs in events),
        "depth": sum(isinstance(e, BookReceived) for e in flat),
        "other": sum(isinstance(e, Unrecognised) for e in flat),
    }
    assert got == _oracle(frames)
    assert got == {"aggTrade": 2, "closed": 0, "open": 2, "depth": 177, "other": 84}
    unknown = {e.key for e in flat if isinstance(e, Unrecognised)}
    assert unknown == {json.loads(f)["stream"] for f in frames if "e" not in json.loads(f)["data"]}
    assert unknown == {"nknusdt@bookTicker", "blzeth@bookTicker", "lrcbtc@bookTicker"}


def test_recording_values_match_raw_lines() -> None:
    """Spot checks: each aggTrade and every depth diff carry the raw line's values."""
    frames = recorded_frames(FIXTURES / "BINANCE.ws.1.0")
    for text in frames:
        data = json.loads(text)["data"]
        evs = bws.parse_frame(text, RECV)
        if data.get("e") == "aggTrade":
            (ev,) = evs
            assert isinstance(ev, TradesReceived)
            (trade,) = ev.trades
            assert (bws.ws_market(ev.symbol), trade.id) == (data["s"], str(data["a"]))
            assert (trade.price, trade.amount, trade.ts) == (float(data["p"]), float(data["q"]), data["T"] * 1_000_000)
        if data.get("e") == "depthUpdate":
            (ev,) = evs
            assert isinstance(ev, BookReceived)
            assert (bws.ws_market(ev.symbol), ev.first_seq, ev.last_seq) == (data["s"], data["U"], data["u"])
            assert ev.book.bids == [(float(p), float(q)) for p, q in data["b"]]
            assert ev.book.ts == data["E"] * 1_000_000
    book = BookSnapshot(1633998542082_000000, [], [(0.3536, 16324.0)], 499870179)
    assert bws.parse_frame(frames[-1], RECV) == [BookReceived(NKNUSDT, book, False, 499870179, 499870179)]


def test_recording_depth_ids_chain_per_market() -> None:
    """Within each market of the recording, diff-depth U always follows the previous u (no gap)."""
    last: dict[Symbol, int] = {}
    for text in recorded_frames(FIXTURES / "BINANCE.ws.1.0"):
        for ev in bws.parse_frame(text, RECV):
            if isinstance(ev, BookReceived):
                assert ev.first_seq is not None and ev.last_seq is not None
                if ev.symbol in last:
                    assert ev.first_seq == last[ev.symbol] + 1
                last[ev.symbol] = ev.last_seq
    assert {str(s) for s in last} == {"NKN/USDT", "BLZ/ETH", "LRC/BTC", "RUNE/EUR"}


def test_events_are_frozen_structs() -> None:
    """Events are immutable msgspec Structs (safe to fan out to several consumers)."""
    ev = one(payload("ws_aggtrade.json")[0])
    assert isinstance(ev, TradesReceived)
    with pytest.raises(AttributeError):
        ev.symbol = NKNUSDT  # type: ignore[misc]
    assert isinstance(ev, msgspec.Struct)
