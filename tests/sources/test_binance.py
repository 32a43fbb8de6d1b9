"""Binance spot REST adapter: request specs and parsers on the recorded payloads, exact values."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.domain import Capability, DataType, Direction, History, Span, Symbol, Trade, Transport
from dccd.domain.spans import SPAN_LABELS
from dccd.errors import ExchangeRejected, NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources import Adapter, Listing, Market, RateLimits, Request, get_adapter
from dccd.sources.binance import common as binance_common
from dccd.sources.binance import rest as bn

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance"
MS = 1_000_000
BTC = Symbol("BTC", "USDT")
ETHBTC = Symbol("ETH", "BTC")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def klines_request(start_ms: int, end_ms: int, limit: int, span: str = "1m", symbol: Symbol = ETHBTC) -> Request:
    return bn.build_ohlc(symbol, Span(span), start_ms * MS, end_ms * MS, limit=limit)


# --- protocol, capabilities, symbols -----------------------------------------------------------


def test_adapter_implements_protocol() -> None:
    """The registered binance adapter satisfies the generic Adapter protocol with Binance's budget."""
    adapter = get_adapter("binance")
    assert isinstance(adapter, Adapter)
    assert adapter.name == "binance"
    assert adapter.rest_url == "https://api.binance.com"
    assert adapter.rate_limits == RateLimits(6000, 60.0, "x-mbx-used-weight-1m", 1.0, 120.0, (418,))


@pytest.mark.parametrize("label", SPAN_LABELS)
def test_every_span_is_declared_for_rest_ohlc(label: str) -> None:
    """Every dccd span (1s..1M) is a Binance kline interval, forward paged 1000 at a time."""
    cap = binance_common.CAPABILITIES.require(DataType.OHLC, Transport.REST, Span(label))
    assert cap.page_limit == 1000 and cap.direction.value == "forward" and cap.history.value == "full"
    assert klines_request(0, 1, 1, label).param("interval") == label


def test_undeclared_operations_raise_no_capability() -> None:
    """Spot funding, funding over WS and perp OHLC are not declared, so they fail before any request."""
    with pytest.raises(NoCapability, match="funding for spot markets"):
        binance_common.CAPABILITIES.require(DataType.FUNDING, Transport.REST)
    with pytest.raises(NoCapability, match="funding over ws"):
        binance_common.CAPABILITIES.require(DataType.FUNDING, Transport.WS, market="perp")
    with pytest.raises(NoCapability, match="for perp markets"):
        binance_common.CAPABILITIES.require(DataType.OHLC, Transport.REST, Span("1m"), market="perp")
    assert binance_common.CAPABILITIES.find(DataType.TRADES, Transport.REST) == Capability(
        DataType.TRADES, Transport.REST, History.FULL, Direction.FORWARD, (), 1000
    )


def test_symbol_mapping_round_trip() -> None:
    """BTC/USDT maps to BTCUSDT and back; bare names split on known quote assets."""
    assert bn.symbol_to_native(BTC) == "BTCUSDT"
    assert binance_common.symbol_from_native("BTCUSDT") == BTC
    assert binance_common.symbol_from_native("ETHBTC") == ETHBTC
    assert binance_common.symbol_from_native("btcfdusd") == Symbol("BTC", "FDUSD")


def test_unmappable_symbols_raise_unsupported_symbol() -> None:
    """A perpetual or an unsplittable name fails with UnsupportedSymbol naming it."""
    with pytest.raises(UnsupportedSymbol, match=r"BTC/USDT:perp is a perp market"):
        bn.symbol_to_native(Symbol("BTC", "USDT", "perp"))
    with pytest.raises(UnsupportedSymbol, match="symbol FOO cannot be split"):
        binance_common.symbol_from_native("FOO")


def test_exchange_info_docs_payload_builds_listing() -> None:
    """The official exchangeInfo example yields one ETH/BTC market and no budget (empty rateLimits object)."""
    req = bn.build_symbols()
    assert (req.method, req.path, req.params, req.weight, req.endpoint) == (
        "GET",
        "/api/v3/exchangeInfo",
        (),
        20,
        "exchangeInfo",
    )
    listing = bn.parse_symbols(req, load("rest_exchange_info_docs.json"))
    assert listing == Listing("binance", (Market(ETHBTC, "ETHBTC", "TRADING", True),), None)
    assert listing.require(ETHBTC).native == "ETHBTC"
    assert listing.by_native("ETHBTC") == listing.markets[0]


def test_unknown_symbol_fails_listing_check() -> None:
    """A symbol absent from exchangeInfo raises UnsupportedSymbol before any paging."""
    listing = bn.parse_symbols(bn.build_symbols(), load("rest_exchange_info_docs.json"))
    with pytest.raises(UnsupportedSymbol, match=r"binance: symbol XYZ/USDT is not listed \(1 markets listed\)"):
        listing.require(Symbol("XYZ", "USDT"))


def test_exchange_info_reads_weight_budget_and_statuses() -> None:
    """REQUEST_WEIGHT from rateLimits becomes the live budget; BREAK markets are listed but inactive."""
    body = (
        b'{"rateLimits":[{"rateLimitType":"RAW_REQUESTS","interval":"MINUTE","intervalNum":5,"limit":61000},'
        b'{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}],'
        b'"symbols":[{"symbol":"LUNAUSDT","status":"BREAK","baseAsset":"LUNA","quoteAsset":"USDT"},'
        b'{"symbol":"X\xe5\xb8\x81USDT","status":"TRADING","baseAsset":"X\xe5\xb8\x81","quoteAsset":"USDT"}]}'
    )
    listing = bn.parse_symbols(bn.build_symbols(), body)
    assert listing.markets == (Market(Symbol("LUNA", "USDT"), "LUNAUSDT", "BREAK", False),)
    assert listing.rate_limits == RateLimits(6000, 60.0, "x-mbx-used-weight-1m", 1.0, 120.0)


def test_malformed_exchange_info_raises_protocol_drift() -> None:
    """An exchangeInfo without a symbols list is drift naming the path."""
    with pytest.raises(ProtocolDrift, match=r"binance exchangeInfo: .*Expected `array`, got `str` - at `\$.symbols`"):
        bn.parse_symbols(bn.build_symbols(), b'{"symbols":"none"}')


# --- OHLC ------------------------------------------------------------------------------------------


def test_build_ohlc_exact_params() -> None:
    """Klines requests carry ms bounds (start rounded up, end down), the interval and limit 1000, weight 2."""
    req = bn.build_ohlc(BTC, Span("1m"), 1_700_000_000_000_000_001, 1_700_000_060_999_999_999)
    assert req == Request(
        "GET",
        "/api/v3/klines",
        (
            ("symbol", "BTCUSDT"),
            ("interval", "1m"),
            ("startTime", "1700000000001"),
            ("endTime", "1700000060999"),
            ("limit", "1000"),
        ),
        2,
        "klines",
    )
    with pytest.raises(ValueError, match=r"limit must be 1\.\.1000, got 1001"):
        bn.build_ohlc(BTC, Span("1m"), 0, 1, limit=1001)
    with pytest.raises(ValueError, match="is after end"):
        bn.build_ohlc(BTC, Span("1m"), 2, 1)


def test_parse_real_klines_page_exact_values() -> None:
    """The recorded 3-row ETHBTC page parses to exact candles with native quote volume and trade count."""
    page = bn.parse_ohlc(klines_request(1591478520000, 1591478640000, 1000), load("rest_klines.json"))
    assert [c.ts for c in page.candles] == [1591478520000 * MS, 1591478580000 * MS, 1591478640000 * MS]
    first = page.candles[0]
    assert (first.open, first.high, first.low, first.close) == (0.025013, 0.025018, 0.025, 0.025)
    assert (first.volume, first.quote_volume, first.trades) == (22.19, 0.55490906, 40)
    last = page.candles[2]
    assert (last.open, last.close, last.volume, last.quote_volume, last.trades) == (
        0.025008,
        0.025008,
        154.142,
        3.85405839,
        97,
    )
    assert page.next_start_ns is None  # short page: nothing more up to endTime


def test_parse_docs_klines_weekly_bar() -> None:
    """The docs example (a 1w bar opening Monday 2017-07-03) parses with all native fields."""
    page = bn.parse_ohlc(klines_request(1499040000000, 1499644799999, 1000, "1w"), load("rest_klines_docs.json"))
    (c,) = page.candles
    assert c.ts == 1499040000000 * MS
    assert (c.open, c.high, c.low, c.close, c.volume) == (0.0163479, 0.8, 0.015758, 0.015771, 148976.11427815)
    assert (c.quote_volume, c.trades) == (2434.19055334, 308)


def test_full_page_points_to_next_bar() -> None:
    """A page holding ``limit`` bars continues one span after its last bar (inclusive bounds, no overlap)."""
    page = bn.parse_ohlc(klines_request(1591478520000, 1591479000000, 3), load("rest_klines.json"))
    assert page.next_start_ns == 1591478700000 * MS
    at_end = bn.parse_ohlc(klines_request(1591478520000, 1591478640000, 3), load("rest_klines.json"))
    assert at_end.next_start_ns is None  # the next bar would open after endTime


def test_monthly_next_page_follows_the_calendar() -> None:
    """For 1M the next page starts on the first day of the next calendar month."""
    body = b'[[1706745600000,"1","1","1","1","1",1709251199999,"1",1,"1","1","0"]]'  # 2024-02-01
    page = bn.parse_ohlc(klines_request(1706745600000, 1719792000000, 1, "1M"), body)
    assert page.next_start_ns == 1709251200000 * MS  # 2024-03-01 (leap February)


def test_empty_klines_page_is_done() -> None:
    """An empty JSON array is a legitimate empty page: no candles, no next page."""
    page = bn.parse_ohlc(klines_request(0, 1000, 1000), b"[]")
    assert page.candles == [] and page.next_start_ns is None


def test_empty_body_is_drift_not_empty_page() -> None:
    """A zero-length body where a list is expected fails loudly, never as an empty success."""
    with pytest.raises(ProtocolDrift, match="binance klines: unexpected payload: empty body"):
        bn.parse_ohlc(klines_request(0, 1000, 1000), b"")


def test_kline_with_number_price_is_read_exactly() -> None:
    """A price sent as a JSON number instead of a string still yields the exact value (the fast decoder takes both)."""
    body = b'[[1591478520000,1.5,"1","1","1","1",1591478579999,"1",1,"1","1","0"]]'
    page = bn.parse_ohlc(klines_request(1591478520000, 1591478520000, 1000), body)
    assert page.candles[0].open == 1.5


def test_kline_with_object_price_names_the_path() -> None:
    """A price of the wrong JSON type is drift carrying msgspec's $.path."""
    body = b'[[1591478520000,{"p":1},"1","1","1","1",1591478579999,"1",1,"1","1","0"]]'
    with pytest.raises(ProtocolDrift, match=r"binance klines: .*Expected `str`, got `object` - at `\$\[0\]\[1\]`"):
        bn.parse_ohlc(klines_request(1591478520000, 1591478520000, 1000), body)


@pytest.mark.parametrize("bad", ["abc", "1,5", ""])
def test_kline_non_numeric_price_names_the_path(bad: str) -> None:
    """A price string that is not a decimal number is drift at its exact position."""
    body = f'[[1591478520000,"1","{bad}","1","1","1",1591478579999,"1",1,"1","1","0"]]'.encode()
    with pytest.raises(ProtocolDrift, match=r"at `\$\[0\]\[2\]`"):
        bn.parse_ohlc(klines_request(1591478520000, 1591478520000, 1000), body)


def test_short_kline_row_is_drift() -> None:
    """A row missing columns is drift, not a candle with invented fields."""
    with pytest.raises(ProtocolDrift, match=r"Expected `array` of at least length 11, got 3 - at `\$\[0\]`"):
        bn.parse_ohlc(klines_request(0, 10**13, 1000), b'[[1,"1","1"]]')


def test_bars_out_of_order_or_out_of_range_are_drift() -> None:
    """Bars not strictly ascending, or outside [startTime, endTime], fail the page."""
    row = '[{t},"1","1","1","1","1",{c},"1",1,"1","1","0"]'
    two = f"[{row.format(t=120000, c=179999)},{row.format(t=60000, c=119999)}]".encode()
    with pytest.raises(ProtocolDrift, match=r"bar open time 60000 not ascending - at `\$\[1\]\[0\]`"):
        bn.parse_ohlc(klines_request(0, 10**6, 1000), two)
    early = f"[{row.format(t=0, c=59999)}]".encode()
    with pytest.raises(ProtocolDrift, match=r"before startTime 60000"):
        bn.parse_ohlc(klines_request(60000, 10**6, 1000), early)
    late = f"[{row.format(t=120000, c=179999)}]".encode()
    with pytest.raises(ProtocolDrift, match=r"after endTime 60000"):
        bn.parse_ohlc(klines_request(0, 60000, 1000), late)


# --- trades ----------------------------------------------------------------------------------------


def test_build_trades_from_cursor_origin_and_time() -> None:
    """A cursor pages historicalTrades by fromId; a start time first looks up the first id via aggTrades."""
    by_id = bn.build_trades(BTC, cursor="28457")
    assert (by_id.path, by_id.params, by_id.weight, by_id.endpoint) == (
        "/api/v3/historicalTrades",
        (("symbol", "BTCUSDT"), ("fromId", "28457"), ("limit", "1000")),
        25,
        "historicalTrades",
    )
    assert bn.build_trades(BTC).param("fromId") == "0"  # origin: the first trade ever
    locate = bn.build_trades(BTC, start_ns=1498793709153 * MS + 1)
    assert (locate.path, locate.params, locate.weight) == (
        "/api/v3/aggTrades",
        (("symbol", "BTCUSDT"), ("startTime", "1498793709154"), ("limit", "1")),
        4,
    )
    with pytest.raises(ValueError, match="must be a trade id"):
        bn.build_trades(BTC, cursor="abc")


def test_parse_historical_trades_docs_payload() -> None:
    """The docs historicalTrades row maps to an exact Trade; buyer-is-maker means the taker sold."""
    page = bn.parse_trades(bn.build_trades(ETHBTC, cursor="28457"), load("rest_historical_trades_docs.json"))
    assert page.records == [Trade(1499865549590 * MS, "28457", 4.000001, 12.0, "sell", None)]
    assert page.next_cursor is None and page.done and page.id_gaps == ()


def test_parse_recent_trades_docs_payload() -> None:
    """The docs /api/v3/trades row parses the same way and is never paged further."""
    req = bn.build_recent_trades(ETHBTC)
    assert (req.path, req.params, req.weight) == ("/api/v3/trades", (("symbol", "ETHBTC"), ("limit", "500")), 25)
    page = bn.parse_trades(req, load("rest_trades_docs.json"))
    assert page.records == [Trade(1499865549590 * MS, "28457", 4.000001, 12.0, "sell", None)]
    assert page.next_cursor is None


def test_agg_trades_docs_payload_locates_first_trade_id() -> None:
    """The aggTrades lookup yields no records and the cursor of its first trade id (f)."""
    req = bn.build_trades(ETHBTC, start_ns=1498793709153 * MS)
    page = bn.parse_trades(req, load("rest_aggtrades_docs.json"))
    assert page.records == [] and page.next_cursor == "27781" and not page.done
    assert bn.parse_trades(req, b"[]").done  # no trade at or after the start yet


def _trade_rows(ids: list[int], maker: bool = False) -> bytes:
    row = '{{"id":{i},"price":"10.5","qty":"0.25","quoteQty":"2.625","time":{t},"isBuyerMaker":{m},"isBestMatch":true}}'
    m = "true" if maker else "false"
    return ("[" + ",".join(row.format(i=i, t=1000 + i, m=m) for i in ids) + "]").encode()


def test_full_trades_page_continues_after_last_id() -> None:
    """A full page's cursor is last id + 1: consecutive pages neither overlap nor skip."""
    page = bn.parse_trades(bn.build_trades(BTC, cursor="7", limit=3), _trade_rows([7, 8, 9]))
    assert [t.id for t in page.records] == ["7", "8", "9"]
    assert page.records[0] == Trade(1007 * MS, "7", 10.5, 0.25, "buy", None)
    assert page.next_cursor == "10" and page.id_gaps == ()


def test_missing_trade_ids_are_reported_as_gaps() -> None:
    """Ids skipped after fromId or inside the page come back as inclusive gap ranges."""
    page = bn.parse_trades(bn.build_trades(BTC, cursor="5", limit=3), _trade_rows([7, 8, 11]))
    assert page.id_gaps == ((5, 6), (9, 10))
    assert page.next_cursor == "12"


def test_trade_ids_before_cursor_or_descending_are_drift() -> None:
    """An id below fromId or going backwards means the cursor contract broke: fail the page."""
    with pytest.raises(ProtocolDrift, match=r"trade id 4 before fromId 5 - at `\$\[0\].id`"):
        bn.parse_trades(bn.build_trades(BTC, cursor="5"), _trade_rows([4]))
    with pytest.raises(ProtocolDrift, match=r"trade id 6 not after 7 - at `\$\[2\].id`"):
        bn.parse_trades(bn.build_trades(BTC, cursor="5"), _trade_rows([6, 7, 6]))


def test_malformed_trade_names_the_path() -> None:
    """A trade with a price of the wrong JSON type or a missing field is drift with its $.path."""
    with pytest.raises(ProtocolDrift, match=r"Expected `str`, got `array` - at `\$\[0\].price`"):
        bn.parse_trades(
            bn.build_trades(BTC, cursor="1"), b'[{"id":1,"price":[1],"qty":"1","time":1,"isBuyerMaker":true}]'
        )
    with pytest.raises(ProtocolDrift, match=r"Object missing required field `isBuyerMaker` - at `\$\[0\]`"):
        bn.parse_trades(bn.build_trades(BTC, cursor="1"), b'[{"id":1,"price":"1","qty":"1","time":1}]')
    with pytest.raises(ProtocolDrift, match="historicalTrades: unexpected payload: invalid JSON"):
        bn.parse_trades(bn.build_trades(BTC, cursor="1"), b'[{"id":1,"pri')


def test_trades_cursor_after_stored_trade() -> None:
    """Resuming after a stored trade starts at its id + 1; a trade without a numeric id cannot resume."""
    assert bn.trades_cursor_after(Trade(0, "41", 1.0, 1.0)) == "42"
    assert bn.trades_cursor_after(Trade(0, None, 1.0, 1.0)) is None


# --- book ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "weight"), [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)]
)
def test_book_weight_tiers(depth: int, weight: int) -> None:
    """Depth requests are charged Binance's tiered weight for their level count."""
    req = bn.build_book(BTC, depth)
    assert (req.path, req.params, req.weight) == (
        "/api/v3/depth",
        (("symbol", "BTCUSDT"), ("limit", str(depth))),
        weight,
    )


def test_book_depth_out_of_range() -> None:
    """Depths outside 1..5000 are refused with a message naming the bound."""
    with pytest.raises(ValueError, match=r"depth must be 1..5000, got 5001"):
        bn.build_book(BTC, 5001)


def test_parse_real_depth_snapshot() -> None:
    """The recorded NKNUSDT depth keeps every level exactly, seq = lastUpdateId, ts = receive time."""
    recv_ns = 1_633_998_512_000_000_123
    book = bn.parse_book(bn.build_book(Symbol("NKN", "USDT"), 1000), load("rest_depth.json"), recv_ns)
    assert (book.ts, book.seq, len(book.bids), len(book.asks)) == (recv_ns, 499869752, 609, 1000)
    assert (book.bids[0], book.bids[-1]) == ((0.3521, 672.0), (0.00212, 117924.5))
    assert (book.asks[0], book.asks[-1]) == ((0.3525, 3959.0), (0.5506, 14418.0))
    levels = book.levels()
    assert len(levels) == 1609 and levels[0].side == "bid" and levels[609].side == "ask"


def test_parse_docs_depth_snapshot() -> None:
    """The docs depth example parses to one level per side."""
    book = bn.parse_book(bn.build_book(BTC, 5), load("rest_depth_docs.json"), 7)
    assert (book.ts, book.bids, book.asks, book.seq) == (7, [(4.0, 431.0)], [(4.000002, 12.0)], 1027024)


def test_malformed_depth_is_drift() -> None:
    """A depth level with a non-numeric quantity names its path."""
    with pytest.raises(ProtocolDrift, match=r"binance depth: .* - at `\$.asks\[0\]\[1\]`"):
        bn.parse_book(bn.build_book(BTC, 5), b'{"lastUpdateId":1,"bids":[],"asks":[["1","x"]]}', 0)


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code", "message"),
    [
        ("error_invalid_symbol.json", 400, -1121, "Invalid symbol."),
        ("error_invalid_interval.json", 400, -1120, "Invalid interval."),
        ("error_429_too_many_requests.json", 429, -1003, "Too many requests; current request has limited."),
        (
            "error_429_weight.json",
            429,
            -1003,
            "Too much request weight used, current limit is 1200 request weight per 1 MINUTE. "
            "Please use the websocket for live updates to avoid polling the API.",
        ),
        (
            "error_418_ip_banned.json",
            418,
            -1003,
            "Way too much request weight used; IP banned until 1660090423228. "
            "Please use the websocket for live updates to avoid bans.",
        ),
    ],
)
def test_error_payloads_become_exchange_rejected(name: str, status: int, code: int, message: str) -> None:
    """Every recorded error body maps to ExchangeRejected with Binance's code, message and status."""
    err = bn.parse_error(status, load(name))
    assert isinstance(err, ExchangeRejected)
    assert (err.exchange, err.code, err.message, err.status) == ("binance", code, message, status)
    assert str(err).startswith(f"binance rejected the request (HTTP {status}): code {code}: ")


def test_success_and_unknown_bodies_are_not_errors() -> None:
    """2xx answers are never errors, and a non-Binance error body is left to the transport."""
    assert bn.parse_error(200, load("error_invalid_symbol.json")) is None
    assert bn.parse_error(502, b"<html>bad gateway</html>") is None
    assert bn.parse_error(404, b"") is None
