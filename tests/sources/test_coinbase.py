"""Coinbase Exchange REST adapter: request specs, cursors and parsers on the recorded payloads, exact values."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.domain import DataType, Span, Symbol, Trade, Transport
from dccd.domain.records import Candle
from dccd.errors import ExchangeRejected, NoCapability, ProtocolDrift, RateLimited, UnsupportedSymbol
from dccd.sources import Adapter, Market, get_adapter
from dccd.sources.coinbase import common as coinbase_common
from dccd.sources.coinbase import rest as cb
from dccd.sources.stream import StreamAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "coinbase"
S = 1_000_000_000
ETHBTC = Symbol("ETH", "BTC")
BTCUSD = Symbol("BTC", "USD")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def rest_body(name: str) -> bytes:
    """The body of the first ``URL -> EPOCH: BODY`` line of a recording's ``.0`` file."""
    line = (FIXTURES / name).read_text().splitlines()[0]
    return line.split(" -> ", 1)[1].split(": ", 1)[1].encode()


def trade(tid: int, side: str = "buy", time: str = "2023-09-10T13:47:41.447577Z") -> bytes:
    return f'{{"trade_id":{tid},"side":"{side}","size":"1.5","price":"100.25","time":"{time}"}}'.encode()


def page(*rows: bytes) -> bytes:
    return b"[" + b",".join(rows) + b"]"


# --- protocol, capabilities, symbols -----------------------------------------------------------


def test_registered_adapter_implements_both_protocols() -> None:
    """The registry's coinbase adapter is an Adapter and a StreamAdapter on the Exchange hosts."""
    adapter = get_adapter("coinbase")
    assert isinstance(adapter, Adapter) and isinstance(adapter, StreamAdapter)
    assert (adapter.rest_url, adapter.ws_url) == (
        "https://api.exchange.coinbase.com",
        "wss://ws-feed.exchange.coinbase.com",
    )
    assert adapter.sequential_trade_ids is True
    assert (adapter.rate_limits.weight_per_window, adapter.rate_limits.window_s) == (10, 1.0)


def test_capabilities_are_honest() -> None:
    """Six granularities, 300 bars and 1000 trades a page, forward; no WS candles, no funding, no perps."""
    cap = cb.CAPABILITIES.require(DataType.OHLC, Transport.REST, Span("6h"))
    assert (cap.spans, cap.page_limit, cap.history.value, cap.direction.value) == (
        ("1m", "5m", "15m", "1h", "6h", "1d"),
        300,
        "full",
        "forward",
    )
    assert cb.CAPABILITIES.require(DataType.TRADES, Transport.REST).page_limit == 1000
    with pytest.raises(NoCapability, match="ohlc span 30m over rest"):
        cb.CAPABILITIES.require(DataType.OHLC, Transport.REST, Span("30m"))
    with pytest.raises(NoCapability, match="ohlc over ws"):
        cb.CAPABILITIES.require(DataType.OHLC, Transport.WS, Span("1m"))
    with pytest.raises(NoCapability, match="for perp markets"):
        cb.CAPABILITIES.require(DataType.TRADES, Transport.REST, market="perp")


def test_undeclared_span_raises_before_a_request_exists() -> None:
    """build_ohlc refuses a span Coinbase lacks with NoCapability, so nothing is ever sent."""
    with pytest.raises(NoCapability, match="spans: 1m 5m 15m 1h 6h 1d"):
        cb.build_ohlc(BTCUSD, Span("3m"), 0, S * 600)


def test_symbol_mapping_both_ways() -> None:
    """BTC/USD <-> BTC-USD; perps and malformed ids are UnsupportedSymbol naming the value."""
    assert cb.symbol_to_native(BTCUSD) == "BTC-USD"
    assert coinbase_common.symbol_from_native("skl-gbp") == Symbol("SKL", "GBP")
    with pytest.raises(UnsupportedSymbol, match="BTC/USD:perp is a perp market"):
        cb.symbol_to_native(Symbol("BTC", "USD", "perp"))
    with pytest.raises(UnsupportedSymbol, match="symbol BTCUSD is not a BASE-QUOTE product id"):
        coinbase_common.symbol_from_native("BTCUSD")


def test_recorded_products_build_the_listing() -> None:
    """The 2021 /products answer lists 162 online products; an unknown symbol fails before paging."""
    req = cb.build_symbols()
    assert (req.method, req.path, req.params) == ("GET", "/products", ())
    listing = cb.parse_symbols(req, rest_body("COINBASE.0"))
    assert len(listing.markets) == 162 and all(m.active for m in listing.markets)
    assert listing.require(Symbol("BAND", "GBP")) == Market(Symbol("BAND", "GBP"), "BAND-GBP", "online", True)
    with pytest.raises(UnsupportedSymbol, match="coinbase: symbol XYZ/USD is not listed"):
        listing.require(Symbol("XYZ", "USD"))


def test_disabled_products_are_listed_inactive() -> None:
    """A delisted or trading-disabled product stays listed (history is fetchable) but inactive."""
    body = b'[{"id":"OLD-USD","base_currency":"OLD","quote_currency":"USD","status":"delisted"},{"id":"X-Y","base_currency":"X","quote_currency":"Y","status":"online","trading_disabled":true}]'
    assert [m.active for m in cb.parse_symbols(cb.build_symbols(), body).markets] == [False, False]


# --- OHLC ------------------------------------------------------------------------------------------


def test_candle_request_is_a_window_of_at_most_300_bars() -> None:
    """A long range is narrowed to 300 bars with inclusive ISO bounds; the requested end rides in state."""
    req = cb.build_ohlc(ETHBTC, Span("1m"), 1591514160 * S, 1591600000 * S)
    assert req.path == "/products/ETH-BTC/candles"
    assert req.params == (("granularity", "60"), ("start", "2020-06-07T07:16:00Z"), ("end", "2020-06-07T12:15:00Z"))
    assert req.state == str(1591600000 * S)
    assert cb.build_ohlc(ETHBTC, Span("1h"), 30 * S, 7200 * S, limit=2).params[1:] == (
        ("start", "1970-01-01T01:00:00Z"),
        ("end", "1970-01-01T02:00:00Z"),
    )
    with pytest.raises(ValueError, match="no 1h bar opens in"):
        cb.build_ohlc(ETHBTC, Span("1h"), 1 * S, 3599 * S)
    with pytest.raises(ValueError, match=r"limit must be 1\.\.300, got 301"):
        cb.build_ohlc(ETHBTC, Span("1m"), 0, S, limit=301)


def test_recorded_candle_row_is_low_high_open_close_volume() -> None:
    """The real row [time, low, high, open, close, volume] becomes a bar opening at `time`, no quote volume."""
    req = cb.build_ohlc(ETHBTC, Span("1m"), 1591514160 * S, 1591514160 * S)
    page_ = cb.parse_ohlc(req, b"[" + load("exchange_rest_candles_row.json") + b"]")
    assert page_.candles == [Candle(1591514160 * S, 0.02507, 0.02507, 0.02507, 0.02507, 0.02816506, None, None)]
    assert page_.next_start_ns is None


def test_newest_first_rows_come_out_ascending_with_the_next_window() -> None:
    """Rows are reversed, low/high/open/close land in the right fields, and the next window starts after this one."""
    req = cb.build_ohlc(ETHBTC, Span("1m"), 0, 3600 * S, limit=3)
    body = b"[[120,1.0,4.0,2.0,3.0,5.5],[60,1.5,4.5,2.5,3.5,6.5],[0,0.5,9.0,1.0,8.0,7.0]]"
    out = cb.parse_ohlc(req, body)
    assert [(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in out.candles] == [
        (0, 1.0, 9.0, 0.5, 8.0, 7.0),
        (60 * S, 2.5, 4.5, 1.5, 3.5, 6.5),
        (120 * S, 2.0, 4.0, 1.0, 3.0, 5.5),
    ]
    assert out.next_start_ns == 180 * S


def test_missing_bars_do_not_end_the_walk_and_the_last_window_does() -> None:
    """A window with no bars still yields the next start; the window reaching the requested end yields None."""
    req = cb.build_ohlc(ETHBTC, Span("1m"), 0, 600 * S, limit=5)
    assert cb.parse_ohlc(req, b"[]").next_start_ns == 300 * S
    last = cb.build_ohlc(ETHBTC, Span("1m"), 300 * S, 600 * S, limit=300)
    assert cb.parse_ohlc(last, b"[[600,1,1,1,1,1]]").next_start_ns is None


def test_bars_before_start_are_dropped() -> None:
    """Coinbase's documented extra bars before `start` are not part of the window."""
    req = cb.build_ohlc(ETHBTC, Span("1m"), 120 * S, 240 * S)
    out = cb.parse_ohlc(req, b"[[180,1,1,1,1,1],[120,1,1,1,1,2],[60,1,1,1,1,3]]")
    assert [c.ts for c in out.candles] == [120 * S, 180 * S]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[[60,1,1,1,1,1],[120,1,1,1,1,1]]", r"bar time 60 is not newest-first - at `\$\[0\]\[0\]`"),
        (b"[[61,1,1,1,1,1]]", r"bar time 61 is not on the 60s grid - at `\$\[0\]\[0\]`"),
        (b'[[60,"1",1,1,1,1]]', r"Expected `float`, got `str` - at `\$\[0\]\[1\]`"),
        (b"", "empty body"),
        (b"<html>", "invalid JSON"),
    ],
)
def test_malformed_candles_raise_protocol_drift(body: bytes, message: str) -> None:
    """Out-of-order, off-grid, mistyped or non-JSON candle pages are drift naming the path."""
    with pytest.raises(ProtocolDrift, match=message):
        cb.parse_ohlc(cb.build_ohlc(ETHBTC, Span("1m"), 0, 600 * S), body)


def test_advanced_trade_payloads_are_not_exchange_pages() -> None:
    """Advanced Trade's candle and ticker answers (the API dccd does not use) fail loudly, never as empty pages."""
    with pytest.raises(ProtocolDrift, match="Expected `array`, got `object`"):
        cb.parse_ohlc(cb.build_ohlc(BTCUSD, Span("1m"), 0, S * 60), load("advanced_rest_candles.json"))
    with pytest.raises(ProtocolDrift, match="Expected `array`, got `object`"):
        cb.parse_trades(cb.build_trades(BTCUSD, cursor="1"), load("advanced_rest_trades.json"))


# --- trades ----------------------------------------------------------------------------------------


def test_recorded_trade_side_is_the_makers_so_taker_side_is_inverted() -> None:
    """The real row (maker side 'sell', quoted trade_id) is a taker BUY at exact µs time."""
    req = cb.build_trades(BTCUSD, cursor="15035219", limit=1)
    assert (req.path, req.params, req.state) == (
        "/products/BTC-USD/trades",
        (("after", "15035220"), ("limit", "1")),
        "15035219",
    )
    out = cb.parse_trades(req, load("exchange_rest_trades.json"))
    assert out.records == [Trade(1694353661447577000, "15035219", 25820.42, 0.27426731, "buy")]
    assert out.next_cursor == "15035220" and out.id_gaps == ()


def test_a_full_window_continues_after_its_top_id() -> None:
    """Cursor N asks after=N+limit; a page holding the window top continues at top+1, ascending."""
    req = cb.build_trades(BTCUSD, cursor="10", limit=3)
    out = cb.parse_trades(req, page(trade(12, "sell"), trade(11), trade(10)))
    assert [(t.id, t.side) for t in out.records] == [("10", "sell"), ("11", "sell"), ("12", "buy")]
    assert out.next_cursor == "13"


def test_window_below_its_top_is_the_head_of_the_tape() -> None:
    """When the window's top id does not exist yet, the page ends the walk."""
    out = cb.parse_trades(cb.build_trades(BTCUSD, cursor="10", limit=5), page(trade(11), trade(10)))
    assert [t.id for t in out.records] == ["10", "11"] and out.next_cursor is None
    assert cb.parse_trades(cb.build_trades(BTCUSD, cursor="10"), b"[]").next_cursor is None


def test_missing_ids_are_reported_and_filler_rows_dropped() -> None:
    """Ids Coinbase skipped are id_gaps; the older rows it adds to fill the page are not emitted."""
    req = cb.build_trades(BTCUSD, cursor="10", limit=5)
    out = cb.parse_trades(req, page(trade(14), trade(12), trade(11), trade(8), trade(7)))
    assert [t.id for t in out.records] == ["11", "12", "14"]
    assert out.id_gaps == ((10, 10), (13, 13)) and out.next_cursor == "15"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((trade(16),), r"trade id 16 above the window top 14 - at `\$\[0\].trade_id`"),
        ((trade(12), trade(13)), r"trade id 13 not newest-first - at `\$\[1\].trade_id`"),
        ((b'{"trade_id":12,"side":"up","size":"1","price":"1","time":"2023-01-01T00:00:00Z"}',), r"side 'up'"),
        ((trade(12, time="yesterday"),), r"'yesterday' is not an ISO-8601 .* at `\$\[0\].time`"),
        (
            (b'{"trade_id":12,"side":"buy","size":"x","price":"1","time":"2023-01-01T00:00:00Z"}',),
            r"'x' is not a number - at `\$\[0\].size`",
        ),
    ],
)
def test_malformed_trade_pages_raise_protocol_drift(rows: tuple[bytes, ...], message: str) -> None:
    """Ids outside the window or out of order, unknown sides, bad times and prices are drift naming the path."""
    with pytest.raises(ProtocolDrift, match=message):
        cb.parse_trades(cb.build_trades(BTCUSD, cursor="10", limit=5), page(*rows))


def test_start_time_seeks_the_first_id_by_binary_search() -> None:
    """From a time: probe the newest trade, then halve [LO, HI) with one-row probes until the first id >= T."""
    t = 1_700_000_000 * S
    first = cb.build_trades(BTCUSD, start_ns=t)
    assert (first.params, first.state, first.endpoint) == ((("limit", "1"),), f"seek:1:0:{t}", "trades.seek")
    after_t, before_t = "2023-11-14T22:13:20.000001Z", "2023-11-14T22:13:19.999999Z"
    step = cb.parse_trades(first, page(trade(100, time=after_t)))
    assert step.records == [] and step.next_cursor == f"seek:1:100:{t}"
    probe = cb.build_trades(BTCUSD, cursor=step.next_cursor)
    assert probe.params == (("after", "51"), ("limit", "1"))
    assert cb.parse_trades(probe, page(trade(50, time=before_t))).next_cursor == f"seek:51:100:{t}"
    assert cb.parse_trades(probe, page(trade(50, time=after_t))).next_cursor == f"seek:1:50:{t}"
    last = cb.build_trades(BTCUSD, cursor=f"seek:60:61:{t}")
    assert cb.parse_trades(last, page(trade(60, time=before_t))).next_cursor == "61"
    assert cb.parse_trades(last, page(trade(60, time=after_t))).next_cursor == "60"


def test_seek_edge_cases() -> None:
    """An empty tape ends at once; a start after the newest trade resumes after it; no start means the first trade."""
    t = 1_700_000_000 * S
    assert cb.parse_trades(cb.build_trades(BTCUSD, start_ns=t), b"[]").next_cursor is None
    old = trade(100, time="2020-01-01T00:00:00Z")
    assert cb.parse_trades(cb.build_trades(BTCUSD, start_ns=t), page(old)).next_cursor == "101"
    assert cb.build_trades(BTCUSD).state == "seek:1:0:0"
    with pytest.raises(ValueError, match="trade id or seek:LO:HI:T"):
        cb.build_trades(BTCUSD, cursor="abc")
    with pytest.raises(ValueError, match="malformed coinbase seek cursor"):
        cb.build_trades(BTCUSD, cursor="seek:1:2")


def test_cursor_after_a_stored_trade() -> None:
    """Resuming continues at the next trade id; a trade without a numeric id cannot resume."""
    assert cb.trades_cursor_after(Trade(0, "41", 1.0, 1.0)) == "42"
    assert cb.trades_cursor_after(Trade(0, None, 1.0, 1.0)) is None


# --- book and errors -------------------------------------------------------------------------------


def test_book_keeps_the_requested_depth_sequence_and_time() -> None:
    """Level 2 is the whole book: parse_book keeps `depth` levels, `sequence` as seq and the book time."""
    req = cb.build_book(BTCUSD, 1)
    assert (req.path, req.params, req.state) == ("/products/BTC-USD/book", (("level", "2"),), "1")
    body = b'{"bids":[["10.5","2",3],["10.4","1",1]],"asks":[["10.6","4",1]],"sequence":77,"time":"2021-04-17T16:43:30.244075Z"}'
    book = cb.parse_book(req, body, recv_ns=5)
    assert (book.ts, book.bids, book.asks, book.seq) == (1618677810244075000, [(10.5, 2.0)], [(10.6, 4.0)], 77)
    assert cb.parse_book(req, b'{"bids":[],"asks":[]}', recv_ns=5).ts == 5
    with pytest.raises(ValueError, match=r"1\.\.10000, got 0"):
        cb.build_book(BTCUSD, 0)


def test_error_bodies_become_errors_never_empty_pages() -> None:
    """{"message"} bodies are ExchangeRejected (4xx, or a 2xx carrying only a message) and RateLimited on 429."""
    err = cb.parse_error(404, b'{"message":"NotFound"}')
    assert isinstance(err, ExchangeRejected) and (err.code, err.message, err.status) == (None, "NotFound", 404)
    assert isinstance(cb.parse_error(200, b'{"message":"Unsupported granularity"}'), ExchangeRejected)
    limited = cb.parse_error(429, b'{"message":"Slow rate limit exceeded"}')
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 1.0
    assert cb.parse_error(200, load("exchange_rest_trades.json")) is None
    assert cb.parse_error(502, b"<html>bad gateway</html>") is None
