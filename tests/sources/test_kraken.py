"""Kraken REST adapter: request specs, seam-safe cursors and parsers on the recorded payloads, exact values."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.domain import DataType, Span, Symbol, Trade, Transport
from dccd.domain.records import BookSnapshot, Candle
from dccd.errors import ExchangeRejected, NoCapability, ProtocolDrift, RateLimited, ServerError, UnsupportedSymbol
from dccd.sources import Adapter, Market, get_adapter
from dccd.sources.kraken import common as kraken_common
from dccd.sources.kraken import rest as kr
from dccd.sources.stream import StreamAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kraken"
S = 1_000_000_000
US = 1_000
BTCUSD = Symbol("BTC", "USD")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def rest_body(name: str) -> bytes:
    line = (FIXTURES / name).read_text().splitlines()[0]
    return line.split(" -> ", 1)[1].split(": ", 1)[1].encode()


def trades_body(rows: list[str], last: str = "0") -> bytes:
    return f'{{"error":[],"result":{{"XXBTZUSD":[{",".join(rows)}],"last":"{last}"}}}}'.encode()


def row(tid: int | None, time: str, side: str = "b") -> str:
    tail = "" if tid is None else f",{tid}"
    return f'["100.5","0.25",{time},"{side}","l",""{tail}]'


# --- protocol, capabilities, symbols -----------------------------------------------------------


def test_registered_adapter_implements_both_protocols() -> None:
    """The registry's kraken adapter is an Adapter and a StreamAdapter with sequential trade ids."""
    adapter = get_adapter("kraken")
    assert isinstance(adapter, Adapter) and isinstance(adapter, StreamAdapter)
    assert (adapter.rest_url, adapter.ws_url, adapter.sequential_trade_ids) == (
        "https://api.kraken.com",
        "wss://ws.kraken.com",
        True,
    )


def test_ohlc_history_is_declared_recent_720_bars() -> None:
    """REST OHLC is RECENT with recent_rows=720 (the paginator clamps there); trades are FULL."""
    cap = kr.CAPABILITIES.require(DataType.OHLC, Transport.REST, Span("1h"))
    assert (cap.history.value, cap.recent_rows, cap.page_limit) == ("recent", 720, 720)
    assert cap.spans == ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
    assert kr.CAPABILITIES.require(DataType.TRADES, Transport.REST).history.value == "full"
    with pytest.raises(NoCapability, match="ohlc span 1w over rest"):
        kr.build_ohlc(BTCUSD, Span("1w"), 0, S)


def test_symbol_mapping_xbt_and_xdg_both_ways() -> None:
    """BTC and DOGE are XBT and XDG on REST and WS v1; every Kraken spelling maps back."""
    assert kr.symbol_to_native(BTCUSD) == "XBTUSD"
    assert kr.symbol_to_native(Symbol("DOGE", "BTC")) == "XDGXBT"
    for native in ("XBT/USD", "BTC/USD", "XBTUSD", "XXBTZUSD", "xbtusd"):
        assert kraken_common.symbol_from_native(native) == BTCUSD
    assert kraken_common.symbol_from_native("XDG/USDT") == Symbol("DOGE", "USDT")
    with pytest.raises(UnsupportedSymbol, match="symbol FOO cannot be split"):
        kraken_common.symbol_from_native("FOO")
    with pytest.raises(UnsupportedSymbol, match="is a perp market"):
        kr.symbol_to_native(Symbol("BTC", "USD", "perp"))


def test_recorded_asset_pairs_build_the_listing() -> None:
    """The 2021 AssetPairs answer lists 292 markets (dark-pool .d and ETH2.S pairs left out), names round-trip."""
    listing = kr.parse_symbols(kr.build_symbols(), rest_body("KRAKEN.0"))
    assert len(listing.markets) == 292
    assert listing.require(BTCUSD) == Market(BTCUSD, "XBTUSD", "online", True)
    assert listing.require(Symbol("DOGE", "USD")).native == "XDGUSD"
    assert all(kr.symbol_to_native(m.symbol) == m.native for m in listing.markets)
    with pytest.raises(UnsupportedSymbol, match="kraken: symbol XYZ/USD is not listed"):
        listing.require(Symbol("XYZ", "USD"))


# --- OHLC ------------------------------------------------------------------------------------------


def test_ohlc_request_uses_an_exclusive_since() -> None:
    """`since` is one second before the first bar wanted; the requested range rides in state."""
    req = kr.build_ohlc(Symbol("BTC", "USDT"), Span("1h"), 1716523348 * S, 1716548400 * S)
    assert (req.path, req.params) == (
        "/0/public/OHLC",
        (("pair", "XBTUSDT"), ("interval", "60"), ("since", "1716526799")),
    )
    assert req.state == f"{1716523348 * S}:{1716548400 * S}"


def test_still_open_last_bar_is_dropped() -> None:
    """The 2024 capture: `last` is the last committed bar, so the final (open) row is not a candle."""
    req = kr.build_ohlc(Symbol("BTC", "USDT"), Span("1h"), 1716523348 * S, 1716548400 * S)
    out = kr.parse_ohlc(req, load("rest_ohlc_2024.json"))
    assert [c.ts // S for c in out.candles] == [1716526800, 1716530400, 1716534000, 1716537600, 1716541200, 1716544800]
    assert out.candles[0] == Candle(1716526800 * S, 67692.8, 67692.8, 67132.0, 67307.3, 20.92610534, None, 399)
    assert out.candles[-1] == Candle(1716544800 * S, 67363.6, 67484.7, 67316.4, 67341.9, 10.62040474, None, 304)
    assert out.next_start_ns is None


def test_ohlc_payloads_keep_trade_counts_and_zero_volume_bars() -> None:
    """Both other captures parse exactly: count is native, vwap is not stored, a 0-volume bar keeps 0 trades."""
    eth = kr.parse_ohlc(
        kr.build_ohlc(Symbol("ETH", "BTC"), Span("1m"), 1591475580 * S, 1591475760 * S), load("rest_ohlc.json")
    )
    assert eth.candles == [
        Candle(1591475580 * S, 0.02499, 0.02499, 0.02499, 0.02499, 0.0, None, 0),
        Candle(1591475640 * S, 0.025, 0.025, 0.025, 0.025, 9.12201, None, 5),
        Candle(1591475700 * S, 0.02499, 0.02499, 0.02499, 0.02499, 1.28681415, None, 2),
        Candle(1591475760 * S, 0.02499, 0.02499, 0.02499, 0.02499, 0.088, None, 1),
    ]
    docs = kr.parse_ohlc(kr.build_ohlc(BTCUSD, Span("1m"), 1688671200 * S, 1688671260 * S), load("rest_ohlc_docs.json"))
    assert docs.candles == [
        Candle(1688671200 * S, 30306.1, 30306.2, 30305.7, 30305.7, 3.39243896, None, 23),
        Candle(1688671260 * S, 30304.5, 30304.5, 30300.0, 30300.0, 4.42996871, None, 18),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (load("error_invalid_asset_pair.json"), ExchangeRejected),
        (load("error_too_many_requests.json"), RateLimited),
        (b'{"error":["EService:Unavailable"]}', ServerError),
    ],
)
def test_errors_in_http_200_bodies_are_raised_not_empty_pages(body: bytes, error: type[Exception]) -> None:
    """A 200 answer with an error list raises (rejection, rate limit, or retryable outage) from parse_error and the parsers."""
    assert isinstance(kr.parse_error(200, body), error)
    with pytest.raises(error):
        kr.parse_ohlc(kr.build_ohlc(BTCUSD, Span("1m"), 0, S), body)
    with pytest.raises(error):
        kr.parse_trades(kr.build_trades(BTCUSD), body)


def test_error_details_and_clean_bodies() -> None:
    """Kraken's "Category:Message" becomes code and message; warnings and clean bodies are no error."""
    err = kr.parse_error(200, load("error_invalid_asset_pair.json"))
    assert isinstance(err, ExchangeRejected) and (err.code, err.message) == ("EQuery", "Invalid asset pair")
    limited = kr.parse_error(200, load("error_too_many_requests.json"))
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 5.0
    assert kr.parse_error(200, b'{"error":["WGeneral:Deprecated"],"result":{}}') is None
    assert kr.parse_error(200, load("rest_trades.json")) is None
    assert kr.parse_error(520, b"<html>cloudflare</html>") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error":[],"result":{"XXBTZUSD":[[60,"1","1","1","1","1","1",1]]}}', "no `\\$.result.last`"),
        (b'{"error":[],"result":{"A":[],"B":[],"last":1}}', "expected one pair key"),
        (
            b'{"error":[],"result":{"A":[[61,"1","1","1","1","1","1",1]],"last":999}}',
            "bar time 61 off the interval grid",
        ),
        (
            b'{"error":[],"result":{"A":[[60,"x","1","1","1","1","1",1]],"last":999}}',
            r"'x' is not a number - at `\$.result\[pair\]\[0\]\[1\]`",
        ),
    ],
)
def test_malformed_ohlc_raises_protocol_drift(body: bytes, message: str) -> None:
    """Missing `last`, ambiguous results, off-grid bars and bad numbers are drift naming the path."""
    with pytest.raises(ProtocolDrift, match=message):
        kr.parse_ohlc(kr.build_ohlc(BTCUSD, Span("1m"), 0, 600 * S), body)


# --- trades ----------------------------------------------------------------------------------------


def test_recorded_trades_have_exact_times_ids_and_taker_sides() -> None:
    """Float-second times are read from the JSON text (no float noise), trade ids kept, id holes reported."""
    req = kr.build_trades(BTCUSD)
    assert req.params == (("pair", "XBTUSD"), ("since", "0"), ("count", "1000"))
    out = kr.parse_trades(req, load("rest_trades.json"))
    assert out.records == [
        Trade(1688669597827736900, "61044952", 30243.4, 0.34507674, "buy"),
        Trade(1688669598280411200, "61044953", 30243.3, 0.0037696, "sell"),
        Trade(1688669602698379000, "61044956", 30243.3, 0.01235716, "sell"),
    ]
    assert int(1688669597.8277369 * S) == 1688669597827736832  # what float parsing would have stored
    assert out.id_gaps == ((61044954, 61044955),) and out.next_cursor is None


def test_old_trades_without_ids_keep_a_null_id() -> None:
    """The 2018 capture has 6-field rows: id is None, never invented."""
    out = kr.parse_trades(kr.build_trades(Symbol("ETH", "BTC")), load("rest_trades_2018.json"))
    assert out.records == [Trade(1541390792763000000, None, 0.03231, 4.28169434, "sell")]


def test_page_seam_inside_a_same_time_group_is_exactly_once() -> None:
    """A full page re-requests 1 µs before its last trade and the next page skips the ids already emitted."""
    req = kr.build_trades(BTCUSD, start_ns=1_700_000_000 * S, limit=3)
    assert req.param("since") == str(1_700_000_000 * S - 1)
    first = kr.parse_trades(
        req, trades_body([row(10, "1700000000.000001"), row(11, "1700000000.000002"), row(12, "1700000000.000002")])
    )
    assert [t.id for t in first.records] == ["10", "11", "12"]
    assert first.next_cursor == f"{1_700_000_000 * S + 2 * US - US}:12"
    nxt = kr.build_trades(BTCUSD, cursor=first.next_cursor, limit=3)
    assert (nxt.param("since"), nxt.state) == (str(1_700_000_000 * S + US), "12")
    second = kr.parse_trades(
        nxt, trades_body([row(11, "1700000000.000002"), row(12, "1700000000.000002"), row(13, "1700000000.000002")])
    )
    assert [t.id for t in second.records] == ["13"] and second.id_gaps == ()


def test_a_page_inside_one_microsecond_falls_back_to_the_exchange_cursor() -> None:
    """When the seam cursor would not advance, Kraken's own `last` is followed instead of looping."""
    t = "1700000000.000001"
    req = kr.build_trades(BTCUSD, cursor=f"{1_700_000_000 * S}:9", limit=2)
    out = kr.parse_trades(req, trades_body([row(10, t), row(11, t)], last="1700000000000001999"))
    assert out.next_cursor == "1700000000000001999:11"


def test_seam_skipping_reports_holes_after_the_cursor_id() -> None:
    """Ids missing between the cursor's id and the page are gaps; ids below it are skipped silently."""
    req = kr.build_trades(BTCUSD, cursor="5:10", limit=5)
    out = kr.parse_trades(req, trades_body([row(9, "1.5"), row(10, "1.5"), row(13, "1.6")]))
    assert [t.id for t in out.records] == ["13"] and out.id_gaps == ((11, 12),) and out.next_cursor is None


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row(1, "1.5", side="x")], r"side 'x' is not b/s - at `\$.result\[pair\]\[0\]\[3\]`"),
        ([row(1, "1e9")], r"'1e9' is not a decimal number of seconds - at `\$.result\[pair\]\[0\]\[2\]`"),
        ([row(2, "1.5"), row(1, "1.6")], r"trade id 1 not ascending"),
        (['["1","1"]'], r"Expected `array` of at least length 6"),
    ],
)
def test_malformed_trades_raise_protocol_drift(rows: list[str], message: str) -> None:
    """Unknown sides, exponent times, descending ids and short rows are drift naming the path."""
    with pytest.raises(ProtocolDrift, match=message):
        kr.parse_trades(kr.build_trades(BTCUSD), trades_body(rows))


def test_cursor_after_a_stored_trade_and_bad_cursors() -> None:
    """Resuming re-requests 1 µs before the stored trade and skips its id; malformed cursors fail clearly."""
    assert kr.trades_cursor_after(Trade(5 * S, "77", 1.0, 1.0)) == f"{5 * S - US}:77"
    assert kr.trades_cursor_after(Trade(5 * S, None, 1.0, 1.0)) == str(5 * S - US)
    with pytest.raises(ValueError, match="SINCE_NS or SINCE_NS:TRADE_ID"):
        kr.build_trades(BTCUSD, cursor="soon")
    with pytest.raises(ValueError, match=r"limit must be 1\.\.1000"):
        kr.build_trades(BTCUSD, limit=0)


# --- book ------------------------------------------------------------------------------------------


def test_depth_payload_is_a_receive_time_snapshot() -> None:
    """The docs Depth answer gives three levels a side, stamped with the receive time (levels carry their own)."""
    req = kr.build_book(BTCUSD, 3)
    assert (req.path, req.params) == ("/0/public/Depth", (("pair", "XBTUSD"), ("count", "3")))
    assert kr.parse_book(req, load("rest_depth_docs.json"), recv_ns=42) == BookSnapshot(
        42, [(30297.0, 1.115), (30296.7, 2.002), (30289.8, 5.001)], [(30384.1, 2.059), (30387.9, 1.5), (30393.7, 9.871)]
    )
    with pytest.raises(ValueError, match=r"1\.\.500, got 501"):
        kr.build_book(BTCUSD, 501)
