"""BitMEX REST adapter: parsers on the recorded payloads (exact values), edge cases, fake round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dccd.domain import Candle, DataType, Funding, OpenInterest, Span, Symbol, Trade, Transport
from dccd.domain.capability import History
from dccd.domain.records import BookSnapshot
from dccd.domain.timeutil import parse_iso_ns
from dccd.errors import ExchangeRejected, NoCapability, ProtocolDrift, RateLimited, UnsupportedSymbol
from dccd.sources import Adapter, Market, OhlcPage, TradesPage, get_adapter
from dccd.sources.base import DerivativesAdapter, FundingPage, OiPage
from dccd.sources.bitmex import common as bitmex_common
from dccd.sources.bitmex import rest as bm
from dccd.sources.stream import StreamAdapter
from dccd.transport.http import open_exchange_client
from tests.fake.bitmex import LISTED, PER_MS, FakeBitmex, bin_row, trade_ms
from tests.fake.venue import Faults, rate, serving
from tests.sources.walk import check_listed, walk_funding, walk_ohlc, walk_trades

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bitmex"
MS = 1_000_000
MIN = 60_000
XBTUSD, ETHUSDT, SPOT = Symbol("BTC", "USD", "perp"), Symbol("ETH", "USDT", "perp"), Symbol("BTC", "USDT")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def iso_ns(text: str) -> int:
    return parse_iso_ns(text)


# --- protocol, capabilities, symbols -----------------------------------------------------------


def test_registered_adapter_implements_all_three_protocols() -> None:
    """The registered bitmex adapter is a REST, derivatives and stream adapter with the unauthenticated budget."""
    adapter = get_adapter("bitmex")
    assert isinstance(adapter, Adapter) and isinstance(adapter, DerivativesAdapter) and isinstance(adapter, StreamAdapter)  # fmt: skip
    assert (adapter.rest_url, adapter.ws_url, adapter.sequential_trade_ids) == ("https://www.bitmex.com", "wss://ws.bitmex.com", False)  # fmt: skip
    assert (adapter.rate_limits.weight_per_window, adapter.rate_limits.window_s) == (30, 60.0)


def test_capabilities_are_honest() -> None:
    """Four bucket sizes, full trade and funding history, and open interest only as a current snapshot."""
    caps = bitmex_common.CAPABILITIES
    assert caps.require(DataType.OHLC, Transport.REST, Span("1h"), "perp").spans == ("1m", "5m", "1h", "1d")
    assert caps.require(DataType.TRADES, Transport.REST).history is History.FULL
    assert caps.require(DataType.FUNDING, Transport.REST, market="perp").history is History.FULL
    assert caps.require(DataType.OI, Transport.REST, market="perp").history is History.SNAPSHOT


def test_symbol_mapping_uses_xbt() -> None:
    """BTC is XBT; perps concatenate, spot pairs use an underscore; indices and futures are refused."""
    assert [bm.symbol_to_native(s) for s in (XBTUSD, ETHUSDT, SPOT)] == ["XBTUSD", "ETHUSDT", "XBT_USDT"]
    assert bitmex_common.symbol_from_native("XBTUSD") == XBTUSD and bitmex_common.symbol_from_native("XBT_USDT") == SPOT
    for native in (".BXBT", "XBTZ24"):
        with pytest.raises(UnsupportedSymbol):
            bitmex_common.symbol_from_native(native)


def test_real_instrument_table_lists_perpetuals() -> None:
    """The recorded 2021 instrument table: 23 perpetuals (XBTUSD is BTC/USD:perp), the 11 futures left out."""
    listing = bm.parse_symbols(bm.build_symbols(), load("rest_instrument_active_2021.json"))
    assert len(listing.markets) == 23 and listing.require(XBTUSD) == Market(XBTUSD, "XBTUSD", "Open", True)
    assert listing.require(Symbol("ALTMEX", "USD", "perp")).native == "ALTMEXUSD"  # baskets keep their underlying
    assert bm.build_perp_symbols() == bm.build_symbols()


# --- OHLC ------------------------------------------------------------------------------------------


def test_real_buckets_are_stored_at_their_open_time() -> None:
    """The recorded 2015 buckets (stamped with their end) become bars opening one minute earlier, nulls kept out."""
    req = bm.build_ohlc(XBTUSD, Span("1m"), iso_ns("2015-09-25T13:37:00Z"), iso_ns("2015-09-25T13:39:00Z"))
    assert req.params == (
        ("symbol", "XBTUSD"), ("binSize", "1m"), ("partial", "false"), ("startTime", "2015-09-25T13:38:00.000Z"),
        ("endTime", "2015-09-25T13:40:00.000Z"), ("count", "1000"), ("reverse", "false"),
    )  # fmt: skip
    page = bm.parse_ohlc(req, load("rest_trade_bucketed.json"))
    assert page == OhlcPage(
        [Candle(iso_ns(f"2015-09-25T13:{m}:00Z"), 237.45, 237.45, 237.45, 237.45, 0.0, 0.0, 0) for m in (37, 38, 39)],
        None,
    )


def test_null_buckets_are_missing_bars_never_zero() -> None:
    """A bucket without prices is skipped (the predecessor stored 0.0); a null trade count stays None."""
    req = bm.build_ohlc(XBTUSD, Span("1m"), 0, 2 * MIN * MS, limit=3)
    rows = [bin_row("XBTUSD", "1m", 0, null=True), bin_row("XBTUSD", "1m", MIN) | {"trades": None, "foreignNotional": None}]  # fmt: skip
    rows.append(bin_row("XBTUSD", "1m", 2 * MIN))
    page = bm.parse_ohlc(req, json.dumps(rows).encode())
    assert [c.ts // MS for c in page.candles] == [MIN, 2 * MIN]
    assert (page.candles[0].trades, page.candles[0].quote_volume) == (None, None)
    assert page.next_start_ns is None  # a full page that reached the end


def test_a_full_page_continues_after_its_last_bucket() -> None:
    """A full page continues at the open following its last bar (= that bucket's end)."""
    req = bm.build_ohlc(XBTUSD, Span("5m"), 0, 10**6 * MIN * MS, limit=2)
    body = json.dumps([bin_row("XBTUSD", "5m", 0), bin_row("XBTUSD", "5m", 5 * MIN)]).encode()
    assert bm.parse_ohlc(req, body).next_start_ns == 10 * MIN * MS
    with pytest.raises(NoCapability, match="ohlc span 15m"):
        bm.build_ohlc(XBTUSD, Span("15m"), 0, 1)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"timestamp": "1970-01-01T00:01:30.000Z", "open": 1}],
            "bucket 1970-01-01T00:01:30.000Z is out of order, unaligned",
        ),
        (
            [{"timestamp": "1970-01-01T00:02:00.000Z"}, {"timestamp": "1970-01-01T00:01:00.000Z"}],
            r"out of order.* - at `\$\[1\].timestamp`",
        ),
        ([{"timestamp": "yesterday"}], r"'yesterday' is not an ISO-8601 time - at `\$\[0\].timestamp`"),
        (
            [{"timestamp": "1970-01-01T00:01:00.000Z", "open": "1"}],
            r"Expected `float \| null`, got `str` - at `\$\[0\].open`",
        ),
    ],
)
def test_malformed_bucket_pages_raise_protocol_drift(rows: list[dict[str, object]], message: str) -> None:
    """Unaligned or unordered buckets, bad times and string prices are drift naming the path."""
    req = bm.build_ohlc(XBTUSD, Span("1m"), 0, 5 * MIN * MS)
    with pytest.raises(ProtocolDrift, match=message):
        bm.parse_ohlc(req, json.dumps(rows).encode())


# --- trades ------------------------------------------------------------------------------------


def test_real_trades_payload() -> None:
    """The recorded trades: UUID ids, taker sides, amounts in base currency (homeNotional), and a seam cursor."""
    req = bm.build_trades(XBTUSD, start_ns=iso_ns("2018-08-28T00:00:00Z"), limit=2)
    assert req.params == (("symbol", "XBTUSD"), ("count", "2"), ("reverse", "false"), ("startTime", "2018-08-28T00:00:00.000Z"), ("start", "0"))  # fmt: skip
    assert bm.parse_trades(req, load("rest_trade.json")) == TradesPage(
        [
            Trade(iso_ns("2018-08-28T00:00:02.735Z"), "b9a42432-0a46-6a2f-5ecc-c32e9ca4baf8", 6906.5, 0.28958, "buy"),
            Trade(iso_ns("2018-08-28T00:00:03.778Z"), "0d4f1682-5270-a800-569b-4a0eb92db97c", 6906.0, 0.1448, "sell"),
        ],
        "1535414403778:1",  # one trade of that millisecond is already returned
    )


def _trade(ms: int, k: int) -> dict[str, object]:
    return {"timestamp": bm._iso_ms(ms), "side": "Buy", "price": 1.0, "trdMatchID": f"id{k}", "homeNotional": 1.0}


def test_cursor_offsets_count_trades_of_the_seam_millisecond() -> None:
    """The cursor skips exactly the same-millisecond trades already returned, also across whole-page milliseconds."""
    req = bm.build_trades(XBTUSD, cursor="1000:3", limit=2)
    assert (req.param("startTime"), req.param("start")) == ("1970-01-01T00:00:01.000Z", "3")
    assert bm.parse_trades(req, json.dumps([_trade(1000, 3), _trade(1000, 4)]).encode()).next_cursor == "1000:5"
    assert bm.parse_trades(req, json.dumps([_trade(1000, 3), _trade(1001, 4)]).encode()).next_cursor == "1001:1"
    assert bm.parse_trades(req, json.dumps([_trade(1000, 3)]).encode()).next_cursor is None  # head of the tape
    assert bm.trades_cursor_after(Trade(1001 * MS + 5, "x", 1.0, 1.0)) == "1001:0"
    with pytest.raises(ValueError, match="'<ms>:<offset>'"):
        bm.build_trades(XBTUSD, cursor="1001")


def test_trades_going_backwards_are_drift() -> None:
    """A trade earlier than the one before it (or than startTime) is drift."""
    req = bm.build_trades(XBTUSD, cursor="2000:0", limit=5)
    with pytest.raises(ProtocolDrift, match=r"goes backwards - at `\$\[0\].timestamp`"):
        bm.parse_trades(req, json.dumps([_trade(1999, 0)]).encode())


# --- book, funding, open interest, errors --------------------------------------------------------


def test_book_is_sorted_and_stamped_with_the_newest_level() -> None:
    """L2 rows become bids best first and asks best first, stamped with the newest level time (else receive time)."""
    rows = [
        {"symbol": "XBTUSD", "id": 1, "side": "Sell", "size": 10, "price": 101.0, "timestamp": "2024-01-01T00:00:00.005Z"},
        {"symbol": "XBTUSD", "id": 2, "side": "Sell", "size": 20, "price": 100.5, "timestamp": "2024-01-01T00:00:00.009Z"},
        {"symbol": "XBTUSD", "id": 3, "side": "Buy", "size": 30, "price": 100.0},
    ]  # fmt: skip
    req = bm.build_book(XBTUSD, 25)
    assert req.params == (("symbol", "XBTUSD"), ("depth", "25"))
    assert bm.parse_book(req, json.dumps(rows).encode(), 7) == BookSnapshot(iso_ns("2024-01-01T00:00:00.009Z"), [(100.0, 30.0)], [(100.5, 20.0), (101.0, 10.0)])  # fmt: skip
    assert bm.parse_book(req, json.dumps(rows[2:]).encode(), 7).ts == 7


def test_funding_rows_and_next_page() -> None:
    """Funding rows parse exactly; a null rate is skipped; a full page continues 1 ms after its last print."""
    req = bm.build_funding(XBTUSD, 0, 10**15 * MS, limit=2)
    rows = [
        {"timestamp": "2016-05-14T12:00:00.000Z", "symbol": "XBTUSD", "fundingInterval": "2000-01-01T08:00:00.000Z", "fundingRate": 0.000375, "fundingRateDaily": 0.001125},
        {"timestamp": "2016-05-14T20:00:00.000Z", "symbol": "XBTUSD", "fundingInterval": "2000-01-01T08:00:00.000Z", "fundingRate": None, "fundingRateDaily": None},
    ]  # fmt: skip
    page = bm.parse_funding(req, json.dumps(rows).encode())
    assert page == FundingPage([Funding(iso_ns("2016-05-14T12:00:00Z"), 0.000375)], iso_ns("2016-05-14T20:00:00Z") + MS)
    with pytest.raises(UnsupportedSymbol):
        bm.build_funding(SPOT, 0, 1)


def test_open_interest_is_a_current_snapshot() -> None:
    """The instrument's open interest is one sample; openValue (satoshi) is converted to XBT."""
    req = bm.build_oi(XBTUSD, 0, 1)
    assert req.params == (("symbol", "XBTUSD"), ("columns", '["openInterest","openValue","settlCurrency","timestamp"]'))
    body = b'[{"symbol":"XBTUSD","timestamp":"2021-07-22T22:36:05.000Z","openInterest":574264600,"openValue":1784268825430,"settlCurrency":"XBt"}]'  # fmt: skip
    assert bm.parse_oi(req, body) == OiPage([OpenInterest(iso_ns("2021-07-22T22:36:05Z"), 574264600.0, 17842.6882543)], None)  # fmt: skip
    with pytest.raises(NoCapability, match=r"oi span 1h \(only the current open interest"):
        bm.build_oi(XBTUSD, 0, 1, span=Span("1h"))


def test_parse_error_maps_bitmex_answers() -> None:
    """429 waits the seconds BitMEX names; 4xx error bodies are rejections with BitMEX's error name; 5xx is retried."""
    limited = bm.parse_error(429, b'{"error":{"message":"Rate limit exceeded, retry in 29 seconds.","name":"RateLimitError"}}')  # fmt: skip
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 29.0
    rejected = bm.parse_error(400, b'{"error":{"message":"Invalid symbol.","name":"HTTPError"}}')
    assert isinstance(rejected, ExchangeRejected) and (rejected.code, rejected.message) == (
        "HTTPError",
        "Invalid symbol.",
    )
    assert bm.parse_error(503, b'{"error":{"message":"The system is currently overloaded."}}') is None
    assert bm.parse_error(200, b"[]") is None


# --- against the fake exchange, over loopback HTTP -------------------------------------------------

NOW_MS = LISTED + 86_400_000 + 45_000


def now() -> float:
    return NOW_MS / 1000


async def test_ohlc_walk_over_loopback_stores_open_times_and_skips_null_bins() -> None:
    """A day of 1m buckets comes back once each at bar open times; null buckets stay missing."""
    nulls = frozenset({LISTED + 10 * MIN, LISTED + 1000 * MIN})
    async with serving(FakeBitmex(clock=now, null_bins=nulls)) as fake, open_exchange_client(get_adapter("bitmex"), fake.url, 0) as client:  # fmt: skip
        assert await check_listed(client, XBTUSD) == "XBTUSD"
        candles = await walk_ohlc(client, XBTUSD, Span("1m"), LISTED * MS, NOW_MS * MS)
    expected = [t for t in range(LISTED, NOW_MS - MIN + 1, MIN) if t not in nulls]
    assert [c.ts // MS for c in candles] == expected
    row = bin_row("XBTUSD", "1m", LISTED + 7 * MIN)
    assert candles[7] == Candle((LISTED + 7 * MIN) * MS, row["open"], row["high"], row["low"], row["close"], row["homeNotional"], row["foreignNotional"], row["trades"])  # fmt: skip
    assert fake.count("/api/v1/trade/bucketed") == 2


async def test_trades_walk_over_loopback_keeps_same_millisecond_trades_at_seams() -> None:
    """Pages of 200 end inside a millisecond (3 trades each): every trade still comes back exactly once."""
    start_ms = NOW_MS - 30_000
    async with serving(FakeBitmex(clock=now)) as fake, open_exchange_client(get_adapter("bitmex"), fake.url, 0) as client:  # fmt: skip
        trades, gaps = await walk_trades(client, XBTUSD, start_ms * MS, NOW_MS * MS, limit=200)
    first = (start_ms - LISTED) // 100 * PER_MS
    last = (NOW_MS - LISTED) // 100 * PER_MS + PER_MS - 1
    assert [t.id for t in trades] == [f"00000000-0000-4000-8000-{k:012d}" for k in range(first, last + 1)]
    assert [t.ts // MS for t in trades[:4]] == [trade_ms(first)] * 3 + [trade_ms(first + 3)] and gaps == []
    assert [r.params.get("start") for r in fake.requests] == ["0", "2", "1", "3", "2"]  # 903 trades, 200 a page


async def test_funding_walk_and_oi_over_loopback() -> None:
    """Funding prints at 04/12/20 UTC come back complete; open interest is the instrument's current value."""
    async with serving(FakeBitmex(clock=now)) as fake, open_exchange_client(get_adapter("bitmex"), fake.url, 0) as client:  # fmt: skip
        funding = await walk_funding(client, XBTUSD, LISTED * MS, NOW_MS * MS, limit=2)
        req = bm.build_oi(ETHUSDT, 0, NOW_MS * MS)
        oi = bm.parse_oi(req, await client.fetch(req))
    times = [LISTED + h * 3_600_000 for h in (4, 12, 20)]
    assert funding == [Funding(t * MS, float(rate("XBTUSD", t))) for t in times]
    assert fake.count("/api/v1/funding") == 2  # a full page of 2, then a short one
    assert oi.records[0].ts == NOW_MS * MS and oi.records[0].open_interest_value == 123456.789  # USDt -> USDT


async def test_error_answers_over_loopback() -> None:
    """A 429 is waited out with Retry-After and retried; an invalid symbol is a rejection."""
    async with serving(FakeBitmex(clock=now, faults=Faults(too_many={1: "0"}))) as fake, open_exchange_client(get_adapter("bitmex"), fake.url, 0) as client:  # fmt: skip
        listing = bm.parse_symbols(req := bm.build_symbols(), await client.fetch(req))
        with pytest.raises(ExchangeRejected, match=r"HTTP 400\): code HTTPError: Invalid symbol."):
            await client.fetch(bm.build_trades(Symbol("NOPE", "USD", "perp")))
    assert len(listing.markets) == 3 and [r.status for r in fake.requests] == [429, 200, 400]
