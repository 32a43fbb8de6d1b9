"""Bybit v5 REST adapter: parsers on the recorded payloads (exact values), edge cases, fake round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dccd.domain import Candle, DataType, Funding, OpenInterest, Span, Symbol, Trade, Transport
from dccd.domain.capability import History
from dccd.domain.records import BookSnapshot
from dccd.errors import (
    Banned,
    ExchangeRejected,
    NoCapability,
    ProtocolDrift,
    RateLimited,
    ServerError,
    UnsupportedSymbol,
)
from dccd.sources import Adapter, Listing, Market, OhlcPage, get_adapter
from dccd.sources.base import DerivativesAdapter, FundingPage, OiPage, listing_for
from dccd.sources.bybit import common as bybit_common
from dccd.sources.bybit import rest as by
from dccd.sources.stream import StreamAdapter
from dccd.transport.http import open_exchange_client
from tests.fake import tape
from tests.fake.bybit import LISTED, FakeBybit
from tests.fake.venue import Faults, bar, open_interest, rate, serving
from tests.sources.walk import check_listed, walk_funding, walk_ohlc, walk_oi

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bybit"
MS = 1_000_000
H = 3_600_000
SPOT, PERP, USDC_PERP = Symbol("BTC", "USDT"), Symbol("BTC", "USDT", "perp"), Symbol("BTC", "USDC", "perp")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def kline_body(rows: list[list[str]], time_ms: int | None = None, code: int = 0) -> bytes:
    doc: dict[str, object] = {"retCode": code, "retMsg": "OK", "result": {"list": rows}}
    if time_ms is not None:
        doc["time"] = time_ms
    return json.dumps(doc).encode()


# --- protocol, capabilities, symbols -----------------------------------------------------------


def test_registered_adapter_implements_all_three_protocols() -> None:
    """The registered bybit adapter is a REST, derivatives and stream adapter with Bybit's hosts and budget."""
    adapter = get_adapter("bybit")
    assert (
        isinstance(adapter, Adapter) and isinstance(adapter, DerivativesAdapter) and isinstance(adapter, StreamAdapter)
    )
    assert (adapter.rest_url, adapter.ws_url, adapter.sequential_trade_ids) == ("https://api.bybit.com", "wss://stream.bybit.com", False)  # fmt: skip
    assert (adapter.rate_limits.weight_per_window, adapter.rate_limits.window_s) == (600, 5.0)
    assert (adapter.rate_limits.ban_statuses, adapter.rate_limits.default_ban_s) == ((403,), 600.0)


def test_capabilities_are_honest() -> None:
    """Bybit offers 13 kline spans, recent-only trades, and funding/OI for perps only."""
    caps = bybit_common.CAPABILITIES
    ohlc = caps.require(DataType.OHLC, Transport.REST, Span("1M"), market="perp")
    assert ohlc.spans == ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "1w", "1M")
    assert ohlc.page_limit == 1000 and ohlc.direction.value == "backward"
    with pytest.raises(NoCapability, match="ohlc span 1s"):
        caps.require(DataType.OHLC, Transport.REST, Span("1s"))
    trades = caps.require(DataType.TRADES, Transport.REST)
    assert (trades.history, trades.recent_rows) == (History.RECENT, 60)
    with pytest.raises(NoCapability, match="funding for spot markets"):
        caps.require(DataType.FUNDING, Transport.REST)
    assert caps.require(DataType.OI, Transport.REST, Span("4h"), market="perp").spans == ("5m", "15m", "30m", "1h", "4h", "1d")  # fmt: skip


def test_symbol_mapping_follows_categories() -> None:
    """Spot and linear share BTCUSDT (the category tells them apart); USDC perps are BTCPERP; inverse is refused."""
    assert (by.symbol_to_native(SPOT), by.category(SPOT)) == ("BTCUSDT", "spot")
    assert (by.symbol_to_native(PERP), by.category(PERP)) == ("BTCUSDT", "linear")
    assert by.symbol_to_native(USDC_PERP) == "BTCPERP"
    assert bybit_common.symbol_from_native("ETHPERP") == Symbol("ETH", "USDC", "perp")
    assert bybit_common.symbol_from_native("btcusdt") == SPOT
    with pytest.raises(UnsupportedSymbol, match="BTC/USD:perp is not a linear perpetual"):
        by.symbol_to_native(Symbol("BTC", "USD", "perp"))
    with pytest.raises(UnsupportedSymbol, match="cannot be split"):
        bybit_common.symbol_from_native("FOO")


def test_spot_instruments_docs_payload() -> None:
    """The official spot instruments example lists BTC/USDT as an active market."""
    req = by.build_symbols()
    assert (req.path, req.params) == ("/v5/market/instruments-info", (("category", "spot"),))
    listing = by.parse_symbols(req, load("rest_instruments_spot_docs.json"))
    assert listing == Listing("bybit", (Market(SPOT, "BTCUSDT", "Trading", True),))


def test_linear_instruments_docs_payload_lists_perpetuals() -> None:
    """The pre-market perpetual example becomes BIO/USDT:perp, listed but not active; perp symbols use this table."""
    req, parse = listing_for(get_adapter("bybit"), PERP)
    assert req == by.build_perp_symbols() and req.params == (("category", "linear"), ("limit", "1000"))
    listing = parse(req, load("rest_instruments_linear_prelisting_docs.json"))
    assert listing.markets == (Market(Symbol("BIO", "USDT", "perp"), "BIOUSDT", "PreLaunch", False),)


# --- OHLC ------------------------------------------------------------------------------------------


def test_kline_docs_payload_is_ascending_with_exact_values() -> None:
    """The newest-first docs example (BTCUSD 60) parses to three ascending bars, turnover as quote volume."""
    req = by.build_ohlc(PERP, Span("1h"), 1670601600000 * MS, 1670608800000 * MS)
    assert req.params == (
        ("category", "linear"), ("symbol", "BTCUSDT"), ("interval", "60"),
        ("start", "1670601600000"), ("end", "1670608800000"), ("limit", "1000"),
    )  # fmt: skip
    page = by.parse_ohlc(req, load("rest_kline.json"))
    assert page == OhlcPage(
        [
            Candle(1670601600000 * MS, 17086.5, 17088.0, 16978.0, 17071.5, 6356.0, 0.37288112),
            Candle(1670605200000 * MS, 17071.5, 17071.5, 17061.0, 17071.0, 4177.0, 0.24469757),
            Candle(1670608800000 * MS, 17071.0, 17073.0, 17027.0, 17055.5, 268611.0, 15.74462667),
        ],
        1670612400000 * MS,
    )


def test_window_is_cut_to_the_limit_and_next_start_follows_it() -> None:
    """A range wider than the limit asks for exactly ``limit`` bars; the next window starts after them."""
    req = by.build_ohlc(SPOT, Span("1m"), 10 * 60_000 * MS + 1, 10**9 * MS, limit=3)
    assert (req.param("start"), req.param("end"), req.param("limit")) == ("660000", "780000", "3")
    assert by.parse_ohlc(req, kline_body([])).next_start_ns == 840000 * MS  # an empty window is not the end
    with pytest.raises(ValueError, match="no 1h bar opens"):
        by.build_ohlc(SPOT, Span("1h"), 1, 2)


def test_bar_still_in_progress_is_dropped_by_server_time() -> None:
    """The bar containing the answer's server ``time`` is not stored (it would change later)."""
    req = by.build_ohlc(SPOT, Span("1m"), 0, 120_000 * MS)
    rows = [[str(t), "1", "2", "0.5", "1.5", "10", "15"] for t in (120_000, 60_000, 0)]
    page = by.parse_ohlc(req, kline_body(rows, time_ms=130_000))
    assert [c.ts for c in page.candles] == [0, 60_000 * MS]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["0", "x", "2", "0.5", "1.5", "10", "15"]], r"'x' is not a number - at `\$.result.list\[0\]\[1\]`"),
        (
            [["60000", "1", "2", "0.5", "1.5", "10"]],
            r"Expected `array` of at least length 7, got 6 - at `\$.result.list\[0\]`",
        ),
        ([["180000", "1", "2", "0.5", "1.5", "10", "15"]], r"bar open 180000 is not a 1m bar in \[0, 120000\]"),
        ([["30000", "1", "2", "0.5", "1.5", "10", "15"]], r"bar open 30000 is not a 1m bar"),
        ([["0", "1", "2", "0.5", "1.5", "10", "15"]] * 2, r"bar 0 appears twice"),
        ([["1e3", "1", "2", "0.5", "1.5", "10", "15"]], r"'1e3' is not a millisecond timestamp"),
    ],
)
def test_malformed_kline_pages_raise_protocol_drift(rows: list[list[str]], message: str) -> None:
    """Bad numbers, short rows, bars outside the window, unaligned or repeated bars are drift naming the path."""
    req = by.build_ohlc(SPOT, Span("1m"), 0, 120_000 * MS)
    with pytest.raises(ProtocolDrift, match=message):
        by.parse_ohlc(req, kline_body(rows))


def test_error_bodies_raise_instead_of_empty_pages() -> None:
    """A retCode error inside HTTP 200 raises from every parser (the predecessor turned it into an empty page)."""
    req = by.build_ohlc(SPOT, Span("1m"), 0, 60_000 * MS)
    with pytest.raises(ExchangeRejected, match="code 10001: params error: symbol invalid") as info:
        by.parse_ohlc(req, kline_body([], code=10001).replace(b'"OK"', b'"params error: symbol invalid"'))
    assert info.value.code == 10001
    with pytest.raises(RateLimited, match="retCode 10006: Too many visits!"):
        by.parse_trades(by.build_trades(SPOT), load("error_rate_limit_fragment.json"))
    with pytest.raises(RateLimited):
        by.parse_funding(by.build_funding(PERP, 0, H * MS), load("error_rate_limit_fragment.json"))


@pytest.mark.parametrize(
    ("status", "body", "kind", "detail"),
    [
        (200, b'{"retCode":0,"retMsg":"OK","result":{}}', None, None),
        (200, b'{"retCode":10001,"retMsg":"params error"}', ExchangeRejected, "code 10001: params error"),
        (200, b'{"retCode": 10006, "retMsg": "Too many visits!"}', RateLimited, "retCode 10006"),
        (200, b'{"retCode":10016,"retMsg":"Internal error"}', ServerError, "retCode 10016"),
        (403, b"access too frequent", Banned, "banned this IP for 600s access too frequent"),
        (429, b"", RateLimited, "system frequency protection"),
        (200, b"<html>", None, None),
    ],
)
def test_parse_error_maps_bybit_answers(status: int, body: bytes, kind: type | None, detail: str | None) -> None:
    """retCode errors (also in HTTP 200), the 403 IP ban and 429 map to the error tree; success is None."""
    err = by.parse_error(status, body)
    if kind is None:
        assert err is None
    else:
        assert isinstance(err, kind) and detail is not None and detail in str(err)


# --- trades and book -----------------------------------------------------------------------------


def test_recent_trade_docs_payload() -> None:
    """The spot recent-trade example parses to one taker-buy trade with execId as id; no cursor."""
    req = by.build_trades(SPOT)
    assert req.params == (("category", "spot"), ("symbol", "BTCUSDT"), ("limit", "60"))
    page = by.parse_trades(req, load("rest_recent_trade.json"))
    assert page.records == [Trade(1672052955758 * MS, "2100000000007764263", 16618.49, 0.00012, "buy")]
    assert page.next_cursor is None and by.trades_cursor_after(page.records[0]) is None
    assert by.build_trades(PERP).param("limit") == "1000"


def test_trade_history_cannot_resume_and_bad_sides_are_drift() -> None:
    """A cursor asks for history Bybit does not have; a side other than Buy/Sell is drift."""
    with pytest.raises(NoCapability, match="trade history by cursor"):
        by.build_trades(SPOT, cursor="5")
    body = (
        b'{"retCode":0,"retMsg":"OK","result":{"list":[{"execId":"1","price":"1","size":"1","side":"Up","time":"1"}]}}'
    )
    with pytest.raises(ProtocolDrift, match=r"side 'Up' is not Buy/Sell - at `\$.result.list\[0\].side`"):
        by.parse_trades(by.build_trades(SPOT), body)


def test_orderbook_docs_payload_uses_exchange_time_and_update_id() -> None:
    """The orderbook example is stamped with Bybit's ts (not the receive time) and u as seq."""
    req = by.build_book(SPOT, 1)
    assert req.params == (("category", "spot"), ("symbol", "BTCUSDT"), ("limit", "1"))
    book = by.parse_book(req, load("rest_orderbook.json"), recv_ns=5)
    assert book == BookSnapshot(1716863719031 * MS, [(65485.47, 47.081829)], [(65557.7, 16.606555)], 230704)
    with pytest.raises(ValueError, match=r"1\.\.1000, got 1001"):
        by.build_book(SPOT, 1001)


# --- funding and open interest ---------------------------------------------------------------------


def test_funding_docs_payload() -> None:
    """The funding-history example (ETHPERP) parses to one print without a mark price."""
    req = by.build_funding(Symbol("ETH", "USDC", "perp"), 1672041600000 * MS, 1672041600000 * MS)
    assert req.params == (
        ("category", "linear"), ("symbol", "ETHPERP"), ("startTime", "1672041600000"),
        ("endTime", "1672041600000"), ("limit", "200"),
    )  # fmt: skip
    assert by.parse_funding(req, load("rest_funding_history_docs.json")) == FundingPage(
        [Funding(1672041600000 * MS, 0.0001)], 1672041600001 * MS
    )


def test_funding_window_is_cut_to_limit_hours_and_full_pages_are_checked() -> None:
    """Windows span at most ``limit`` hours; a full page starting after the window start may hide prints."""
    req = by.build_funding(PERP, 0, 10**7 * H * MS, limit=2)
    assert (req.param("startTime"), req.param("endTime")) == ("0", str(2 * H - 1))
    body = b'{"retCode":0,"retMsg":"OK","result":{"list":[{"fundingRate":"0.1","fundingRateTimestamp":"7000000"},{"fundingRate":"0.2","fundingRateTimestamp":"5000"}]}}'  # fmt: skip
    with pytest.raises(ProtocolDrift, match="a full page of 2 prints may have cut the window"):
        by.parse_funding(req, body)
    with pytest.raises(UnsupportedSymbol, match="BTC/USDT is not a perpetual"):
        by.build_funding(SPOT, 0, 1)


def test_open_interest_docs_payload() -> None:
    """The open-interest example parses to two ascending samples; the next window follows the span."""
    req = by.build_oi(PERP, 1669571100000 * MS, 1669571400000 * MS)
    assert (req.param("intervalTime"), req.param("startTime"), req.param("endTime")) == ("5min", "1669571100000", "1669571400000")  # fmt: skip
    assert by.parse_oi(req, load("rest_open_interest_docs.json")) == OiPage(
        [OpenInterest(1669571100000 * MS, 461134292.0), OpenInterest(1669571400000 * MS, 461134384.0)],
        1669571700000 * MS,
    )
    with pytest.raises(NoCapability, match="oi span 2h"):
        by.build_oi(PERP, 0, H * MS, span=Span("2h"))


# --- against the fake exchange, over loopback HTTP -------------------------------------------------

NOW_MS = LISTED + 3 * 86_400_000 + 90_000  # three days after the listing, 1.5 minutes into a bar


def now() -> float:
    return NOW_MS / 1000


async def test_ohlc_walk_over_loopback_is_complete_and_exactly_once() -> None:
    """Walking 2 days of 1m bars through the fake returns every closed bar once, equal to the fake's values."""
    async with serving(FakeBybit(clock=now)) as fake, open_exchange_client(get_adapter("bybit"), fake.url, 0) as client:
        assert await check_listed(client, SPOT) == "BTCUSDT"
        start, end = (LISTED + 86_400_000) * MS, NOW_MS * MS
        candles = await walk_ohlc(client, SPOT, Span("1m"), start, end)
    expected = list(range(LISTED + 86_400_000, NOW_MS - 60_000, 60_000))  # the bar in progress is left out
    assert [c.ts // MS for c in candles] == expected
    b = bar("spot:BTCUSDT:1m", expected[7])
    assert candles[7] == Candle(expected[7] * MS, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume), float(b.quote))  # fmt: skip
    assert fake.count("/v5/market/kline") == 3  # 2881 bars in windows of 1000


async def test_funding_and_oi_walks_over_loopback() -> None:
    """Funding prints (every 8 h) and 1h OI samples of a perp come back complete through the derivatives loop."""
    async with serving(FakeBybit(clock=now)) as fake, open_exchange_client(get_adapter("bybit"), fake.url, 0) as client:
        assert await check_listed(client, USDC_PERP) == "BTCPERP"
        funding = await walk_funding(client, PERP, LISTED * MS, NOW_MS * MS, limit=20)
        oi = await walk_oi(client, PERP, LISTED * MS, NOW_MS * MS, span=Span("1h"), limit=50)
    times = list(range(LISTED, NOW_MS, 8 * H))
    assert funding == [Funding(t * MS, float(rate("BTCUSDT", t))) for t in times]
    assert [o.ts // MS for o in oi] == list(range(LISTED, NOW_MS, H))
    assert oi[5] == OpenInterest(oi[5].ts, float(open_interest("BTCUSDT", oi[5].ts // MS)[0]))


async def test_recent_trades_and_book_over_loopback() -> None:
    """Recent trades come back ascending with the tape's values; the book carries the fake's update id."""
    async with serving(FakeBybit(clock=now)) as fake, open_exchange_client(get_adapter("bybit"), fake.url, 0) as client:
        req = by.build_trades(SPOT)
        trades = by.parse_trades(req, await client.fetch(req)).records
        req = by.build_book(PERP, 3)
        book = by.parse_book(req, await client.fetch(req), 0)
    head = (NOW_MS - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS
    t = tape.trade_at("BTCUSDT", head)
    assert len(trades) == 60 and trades[-1] == Trade(t.time_ms * MS, str(2_100_000_000_000_000_000 + head), float(t.price), float(t.qty), "sell" if t.is_buyer_maker else "buy")  # fmt: skip
    assert [x.ts for x in trades] == sorted(x.ts for x in trades)
    assert book == BookSnapshot(NOW_MS * MS, [(30000.5, 1.25), (29999.5, 2.25), (29998.5, 3.25)], [(30001.5, 2.75), (30002.5, 3.75), (30003.5, 4.75)], 1)  # fmt: skip


async def test_error_answers_over_loopback_raise() -> None:
    """Unknown symbols (retCode in HTTP 200) and the 403 ban surface as errors from the client, not pages."""
    faults = Faults(bodies={2: (403, b"access too frequent")})
    async with serving(FakeBybit(clock=now, faults=faults)) as fake, open_exchange_client(get_adapter("bybit"), fake.url, 0) as client:  # fmt: skip
        with pytest.raises(ExchangeRejected, match="code 10001: params error: symbol invalid"):
            await client.fetch(by.build_ohlc(Symbol("NOPE", "USDT"), Span("1m"), 0, 60_000 * MS))
        with pytest.raises(Banned, match="bybit banned this IP for 600s"):
            await client.fetch(by.build_symbols())
