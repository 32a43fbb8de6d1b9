"""Bitfinex REST adapter: symbols (UST, t/: forms), seam-safe time cursors and parsers on the recorded payloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.domain import DataType, Span, Symbol, Trade, Transport
from dccd.domain.records import BookSnapshot, Candle
from dccd.errors import (
    ExchangeRejected,
    GapUnfillable,
    NoCapability,
    ProtocolDrift,
    RateLimited,
    ServerError,
    UnsupportedSymbol,
)
from dccd.sources import Adapter, Market, get_adapter
from dccd.sources.bitfinex import rest as bf
from dccd.sources.stream import StreamAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bitfinex"
MS = 1_000_000
BTCUSDT = Symbol("BTC", "USDT")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def rest_body(name: str) -> bytes:
    line = (FIXTURES / name).read_text().splitlines()[0]
    return line.split(" -> ", 1)[1].split(": ", 1)[1].encode()


def rows(*trades: tuple[int, int, float]) -> bytes:
    return ("[" + ",".join(f"[{i},{ms},{amount},100.5]" for i, ms, amount in trades) + "]").encode()


# --- protocol, capabilities, symbols -----------------------------------------------------------


def test_registered_adapter_implements_both_protocols() -> None:
    """The registry's bitfinex adapter is an Adapter and a StreamAdapter; its global ids are not sequential."""
    adapter = get_adapter("bitfinex")
    assert isinstance(adapter, Adapter) and isinstance(adapter, StreamAdapter)
    assert (adapter.rest_url, adapter.ws_url, adapter.sequential_trade_ids) == (
        "https://api-pub.bitfinex.com",
        "wss://api-pub.bitfinex.com",
        False,
    )
    assert (adapter.rate_limits.weight_per_window, adapter.rate_limits.window_s) == (30, 60.0)


def test_capabilities_are_honest() -> None:
    """Nine spans with 10000-row forward pages; 3h/14D have no dccd span and 1w/1M are not declared."""
    cap = bf.CAPABILITIES.require(DataType.OHLC, Transport.REST, Span("12h"))
    assert cap.spans == ("1m", "5m", "15m", "30m", "1h", "4h", "6h", "12h", "1d") and cap.page_limit == 10_000
    with pytest.raises(NoCapability, match="ohlc span 1w over rest"):
        bf.build_ohlc(BTCUSDT, Span("1w"), 0, MS)
    assert bf.CAPABILITIES.require(DataType.BOOK, Transport.REST).page_limit == 100


@pytest.mark.parametrize(
    ("symbol", "native"),
    [
        (Symbol("BTC", "USDT"), "tBTCUST"),
        (Symbol("BTC", "USD"), "tBTCUSD"),
        (Symbol("AAVE", "USD"), "tAAVE:USD"),
        (Symbol("AAVE", "USDT"), "tAAVE:UST"),
        (Symbol("DASH", "BTC"), "tDSHBTC"),
        (Symbol("TESTBTC", "TESTUSD"), "tTESTBTC:TESTUSD"),
    ],
)
def test_symbol_mapping_both_ways(symbol: Symbol, native: str) -> None:
    """USDT is UST, other published renamings apply, and a code longer than 3 letters needs the colon form."""
    assert bf.symbol_to_native(symbol) == native
    assert bf.symbol_from_native(native) == symbol
    assert bf.symbol_from_native(native[1:]) == symbol


def test_unmappable_names_are_unsupported() -> None:
    """Funding currencies, odd lengths and perps are UnsupportedSymbol naming the value."""
    for bad in ("fUSD", "tBTCUSDT", "BTC"):
        with pytest.raises(UnsupportedSymbol, match=f"symbol {bad} is not a Bitfinex trading pair"):
            bf.symbol_from_native(bad)
    with pytest.raises(UnsupportedSymbol, match="is a perp market"):
        bf.symbol_to_native(Symbol("BTC", "USDT", "perp"))


def test_recorded_pair_list_builds_the_listing() -> None:
    """The 2021 pub:list:pair:exchange answer: 293 spot pairs, UST pairs named USDT, natives round-trip."""
    req = bf.build_symbols()
    assert (req.path, req.params) == ("/v2/conf/pub:list:pair:exchange", ())
    listing = bf.parse_symbols(req, rest_body("BITFINEX.0"))
    assert len(listing.markets) == 293 and len({m.symbol for m in listing.markets}) == 293
    assert listing.require(BTCUSDT) == Market(BTCUSDT, "tBTCUST", "trading", True)
    assert listing.require(Symbol("AAVE", "USDT")).native == "tAAVE:UST"
    assert all(bf.symbol_to_native(m.symbol) == m.native for m in listing.markets)
    with pytest.raises(UnsupportedSymbol, match="bitfinex: symbol BTC/EURT is not listed"):
        listing.require(Symbol("BTC", "EURT"))


# --- OHLC ------------------------------------------------------------------------------------------


def test_candle_request_is_ascending_with_bounds_widened_off_the_grid() -> None:
    """sort=1 and start/end 1 ms outside the bar grid, so inclusive or exclusive bounds return the same bars."""
    req = bf.build_ohlc(Symbol("ETH", "BTC"), Span("1d"), 86_400_000 * MS, 3 * 86_400_000 * MS, limit=2)
    assert req.path == "/v2/candles/trade:1D:tETHBTC/hist"
    assert req.params == (("start", "86399999"), ("end", "259200001"), ("limit", "2"), ("sort", "1"))
    with pytest.raises(ValueError, match="no 1h bar opens"):
        bf.build_ohlc(BTCUSDT, Span("1h"), 1 * MS, 2 * MS)


def test_recorded_candles_are_open_close_high_low() -> None:
    """The real rows [MTS, OPEN, CLOSE, HIGH, LOW, VOLUME] land in the right fields; a short page is the last."""
    req = bf.build_ohlc(Symbol("ETH", "BTC"), Span("1m"), 1591503840000 * MS, 1591504620000 * MS)
    out = bf.parse_ohlc(req, load("rest_candles.json"))
    assert out.candles == [
        Candle(1591503840000 * MS, 0.025069, 0.025069, 0.025068, 0.025068, 1.97828998),
        Candle(1591504500000 * MS, 0.025065, 0.025065, 0.025065, 0.025065, 1.0164),
        Candle(1591504620000 * MS, 0.025062, 0.025062, 0.025062, 0.025062, 0.5),
    ]
    assert out.next_start_ns is None


def test_full_candle_page_continues_after_its_last_bar() -> None:
    """A page of `limit` bars continues one span after the last one, until the requested end."""
    req = bf.build_ohlc(BTCUSDT, Span("1m"), 0, 600_000 * MS, limit=2)
    assert bf.parse_ohlc(req, b"[[0,1,1,1,1,1],[60000,1,1,1,1,1]]").next_start_ns == 120_000 * MS
    end = bf.build_ohlc(BTCUSDT, Span("1m"), 0, 60_000 * MS, limit=2)
    assert bf.parse_ohlc(end, b"[[0,1,1,1,1,1],[60000,1,1,1,1,1]]").next_start_ns is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[[60000,1,1,1,1,1],[0,1,1,1,1,1]]", r"bar time 0 not ascending - at `\$\[1\]\[0\]`"),
        (b"[[60001,1,1,1,1,1]]", r"bar time 60001 off the bar grid"),
        (b"[[660000,1,1,1,1,1]]", r"bar time 660000 after the range"),
        (b'[[0,"1",1,1,1,1]]', r"Expected `float`, got `str` - at `\$\[0\]\[1\]`"),
    ],
)
def test_malformed_candles_raise_protocol_drift(body: bytes, message: str) -> None:
    """Descending, off-grid, out-of-range and mistyped bars are drift naming the path."""
    with pytest.raises(ProtocolDrift, match=message):
        bf.parse_ohlc(bf.build_ohlc(BTCUSDT, Span("1m"), 0, 600_000 * MS), body)


# --- trades ----------------------------------------------------------------------------------------


def test_recorded_trade_sign_is_the_taker_side() -> None:
    """The docs row [ID, MTS, AMOUNT, PRICE] with AMOUNT > 0 is a taker buy; the short page is the head."""
    req = bf.build_trades(BTCUSDT, start_ns=1567526214876 * MS)
    assert (req.path, req.params, req.state) == (
        "/v2/trades/tBTCUST/hist",
        (("start", "1567526214875"), ("limit", "10000"), ("sort", "1")),
        "1567526214876",
    )
    out = bf.parse_trades(req, load("rest_trades_docs.json"))
    assert out.records == [Trade(1567526214876 * MS, "388063448", 10682.0, 1.918524, "buy")]
    assert out.next_cursor is None and out.id_gaps == ()


def test_same_millisecond_trades_across_a_seam_are_kept_exactly_once() -> None:
    """The cursor names the seam millisecond and its emitted ids; the next page skips those and the ms before."""
    first = bf.parse_trades(
        bf.build_trades(BTCUSDT, cursor="1000", limit=3), rows((1, 1000, 1.0), (2, 1001, -2.0), (3, 1001, 0.5))
    )
    assert [(t.id, t.side, t.amount) for t in first.records] == [
        ("1", "buy", 1.0),
        ("2", "sell", 2.0),
        ("3", "buy", 0.5),
    ]
    assert first.next_cursor == "1001:2,3"
    req = bf.build_trades(BTCUSDT, cursor=first.next_cursor, limit=4)
    assert req.param("start") == "1000"
    second = bf.parse_trades(req, rows((1, 1000, 1.0), (2, 1001, -2.0), (3, 1001, 0.5), (4, 1001, 1.0)))
    assert [t.id for t in second.records] == ["4"] and second.next_cursor == "1001:2,3,4"
    last = bf.parse_trades(req, rows((3, 1001, 0.5), (4, 1001, 1.0), (5, 1002, 1.0)))
    assert [t.id for t in last.records] == ["4", "5"] and last.next_cursor is None


def test_a_full_page_that_cannot_advance_is_unfillable() -> None:
    """A full page of already-emitted trades in the seam millisecond raises instead of looping forever."""
    req = bf.build_trades(BTCUSDT, cursor="1001:2,3", limit=3)
    with pytest.raises(GapUnfillable, match="more than 3 trades at ms 1001"):
        bf.parse_trades(req, rows((1, 1000, 1.0), (2, 1001, -2.0), (3, 1001, 0.5)))


def test_a_seam_millisecond_larger_than_a_page_keeps_growing_the_skip_list() -> None:
    """If a page ends in the cursor's millisecond, the ids skipped so far carry over into the next cursor."""
    req = bf.build_trades(BTCUSDT, cursor="1001:2,3", limit=2)
    out = bf.parse_trades(req, rows((3, 1001, 0.5), (4, 1001, 1.0)))
    assert [t.id for t in out.records] == ["4"] and out.next_cursor == "1001:2,3,4"


def test_trade_cursor_edge_cases() -> None:
    """No start means the first trade; resuming skips the stored trade's id; bad cursors fail clearly."""
    assert bf.build_trades(BTCUSDT).params[0] == ("start", "0")
    assert bf.trades_cursor_after(Trade(5 * MS + 7, "99", 1.0, 1.0)) == "5:99"
    with pytest.raises(ValueError, match="MS or MS:ID,ID"):
        bf.build_trades(BTCUSDT, cursor="5:x")
    with pytest.raises(ProtocolDrift, match=r"trade time 5 not ascending - at `\$\[1\]\[1\]`"):
        bf.parse_trades(bf.build_trades(BTCUSDT), rows((1, 6, 1.0), (2, 5, 1.0)))


# --- book and errors -------------------------------------------------------------------------------


def test_book_sign_of_amount_is_the_side() -> None:
    """P0 rows [PRICE, COUNT, AMOUNT]: positive amounts are bids, negative asks, `len` the smallest tier."""
    req = bf.build_book(BTCUSDT, 2)
    assert (req.path, req.params) == ("/v2/book/tBTCUST/P0", (("len", "25"),))
    body = b"[[100.5,2,1.5],[100.4,1,0.5],[100.3,1,0.25],[100.6,1,-2.0],[100.7,3,-1.0]]"
    assert bf.parse_book(req, body, recv_ns=9) == BookSnapshot(
        9, [(100.5, 1.5), (100.4, 0.5)], [(100.6, 2.0), (100.7, 1.0)]
    )
    with pytest.raises(ValueError, match=r"1\.\.100, got 101"):
        bf.build_book(BTCUSDT, 101)


def test_array_error_bodies_become_errors() -> None:
    """["error", code, msg] bodies: 11010 is RateLimited (60 s block), 20060 retryable, others rejected."""
    limited = bf.parse_error(429, load("error_ratelimit.json"))
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 60.0
    rejected = bf.parse_error(500, load("error_limit_invalid.json"))
    assert isinstance(rejected, ExchangeRejected) and (rejected.code, rejected.message, rejected.status) == (
        10020,
        "limit: invalid",
        500,
    )
    assert isinstance(bf.parse_error(500, b'["error",20060,"maintenance"]'), ServerError)
    assert isinstance(bf.parse_error(429, b'{"error":"ERR_RATE_LIMIT"}'), RateLimited)
    assert bf.parse_error(200, load("rest_candles.json")) is None
