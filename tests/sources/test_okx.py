"""OKX v5 REST adapter: parsers on the recorded payloads (exact values), edge cases, fake round trips."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dccd.domain import Candle, DataType, Funding, OpenInterest, Span, Symbol, Trade, Transport
from dccd.domain.capability import History
from dccd.domain.records import BookSnapshot
from dccd.errors import ExchangeRejected, NoCapability, ProtocolDrift, RateLimited, ServerError, UnsupportedSymbol
from dccd.sources import Adapter, Market, OhlcPage, TradesPage, get_adapter
from dccd.sources.base import DerivativesAdapter, FundingPage, OiPage
from dccd.sources.okx import common as okx_common
from dccd.sources.okx import rest as okx
from dccd.sources.stream import StreamAdapter
from dccd.transport.http import open_exchange_client
from tests.fake import tape
from tests.fake.okx import LISTED, TRADE_ID0, FakeOkx
from tests.fake.venue import Faults, bar, open_interest, rate, serving
from tests.sources.walk import check_listed, walk_funding, walk_ohlc, walk_oi, walk_trades

FIXTURES = Path(__file__).parent.parent / "fixtures" / "okx"
MS = 1_000_000
MIN = 60_000
SPOT, SWAP, INVERSE = Symbol("BTC", "USDT"), Symbol("BTC", "USDT", "perp"), Symbol("BTC", "USD", "perp")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ok(data: object) -> bytes:
    return json.dumps({"code": "0", "msg": "", "data": data}).encode()


# --- protocol, capabilities, symbols -----------------------------------------------------------


def test_registered_adapter_implements_all_three_protocols() -> None:
    """The registered okx adapter is a REST, derivatives and stream adapter with sequential trade ids."""
    adapter = get_adapter("okx")
    assert isinstance(adapter, Adapter) and isinstance(adapter, DerivativesAdapter)
    assert isinstance(adapter, StreamAdapter) and adapter.sequential_trade_ids
    assert (adapter.rest_url, adapter.ws_url) == ("https://www.okx.com", "wss://ws.okx.com:8443")
    assert (adapter.rate_limits.weight_per_window, adapter.rate_limits.window_s, adapter.rate_limits.ban_statuses) == (40, 2.0, ())  # fmt: skip


def test_capabilities_are_honest() -> None:
    """UTC-aligned bars without 1s, 3-month trade and funding history, and the latest 1440 OI samples."""
    caps = okx_common.CAPABILITIES
    assert caps.require(DataType.OHLC, Transport.REST, Span("1d"), "perp").spans == (
        "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "1w", "1M",
    )  # fmt: skip
    with pytest.raises(NoCapability, match="span 1s"):
        caps.require(DataType.OHLC, Transport.REST, Span("1s"))
    trades = caps.require(DataType.TRADES, Transport.REST)
    assert (trades.history, trades.recent_s, trades.page_limit) == (History.RECENT, 90 * 86400, 100)
    funding = caps.require(DataType.FUNDING, Transport.REST, market="perp")
    assert (funding.history, funding.recent_s) == (History.RECENT, 90 * 86400)
    assert caps.require(DataType.OI, Transport.REST, Span("1d"), "perp").recent_rows == 1440


def test_daily_and_longer_bars_use_utc_names() -> None:
    """6h and longer bars are requested as OKX's UTC-aligned bars (plain 1D opens at Hong Kong midnight)."""
    names = {label: okx.build_ohlc(SPOT, Span(label), 0, 10**19).param("bar") for label in ("4h", "6h", "1d", "1w", "1M")}  # fmt: skip
    assert names == {"4h": "4H", "6h": "6Hutc", "1d": "1Dutc", "1w": "1Wutc", "1M": "1Mutc"}


def test_symbol_mapping() -> None:
    """Spot pairs are BASE-QUOTE, perpetuals BASE-QUOTE-SWAP; dated futures are refused."""
    assert [okx.symbol_to_native(s) for s in (SPOT, SWAP, INVERSE)] == ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-SWAP"]
    assert okx_common.symbol_from_native("UNI-USD-SWAP") == Symbol("UNI", "USD", "perp")
    assert okx_common.symbol_from_native("eth-btc") == Symbol("ETH", "BTC")
    with pytest.raises(UnsupportedSymbol, match="BTC-USD-220527 is not a spot pair or a perpetual swap"):
        okx_common.symbol_from_native("BTC-USD-220527")


def test_real_instrument_tables_list_spot_and_swaps() -> None:
    """The recorded 2022 instrument tables give 513 spot pairs and 166 swaps named by their underlying."""
    spot = okx.parse_symbols(okx.build_symbols(), load("rest_instruments_spot_2022.json"))
    swaps = okx.parse_perp_symbols(okx.build_perp_symbols(), load("rest_instruments_swap_2022.json"))
    assert (len(spot.markets), len(swaps.markets)) == (513, 166)
    assert spot.markets[0] == Market(SPOT, "BTC-USDT", "live", True)
    assert swaps.markets[0] == Market(INVERSE, "BTC-USD-SWAP", "live", True)
    assert swaps.require(SWAP).native == "BTC-USDT-SWAP"
    with pytest.raises(UnsupportedSymbol):
        spot.require(SWAP)


# --- OHLC ------------------------------------------------------------------------------------------


def test_real_candles_drop_the_open_bar_and_read_contract_volumes() -> None:
    """The recorded contract candles: the unconfirmed bar is dropped; volume is volCcy, quote volCcyQuote."""
    req = okx.build_ohlc(INVERSE, Span("1m"), 1678928640000 * MS, 1678928760000 * MS, now_ns=1678928770000 * MS)
    assert (req.path, req.weight) == ("/api/v5/market/candles", 1)
    assert req.params == (
        ("instId", "BTC-USD-SWAP"), ("bar", "1m"), ("before", "1678928639999"), ("after", "1678928760001"), ("limit", "100"),
    )  # fmt: skip
    assert okx.parse_ohlc(req, load("rest_candles.json")) == OhlcPage(
        [
            Candle(1678928640000 * MS, 24300.2, 24324.1, 24288.0, 24324.1, 13.5937, 330400.0),
            Candle(1678928700000 * MS, 24324.1, 24347.6, 24321.7, 24341.4, 10.5401, 256500.0),
        ],
        1678928820000 * MS,
    )


def test_build_ohlc_is_pure_without_now() -> None:
    """Without the caller's now_ns the builder reads no clock: any window, even today's, goes to history-candles."""
    now_ns = time.time_ns()
    start = Span("1m").align(now_ns) - 10 * MIN * MS
    req = okx.build_ohlc(SPOT, Span("1m"), start, start + 5 * MIN * MS)
    assert (req.path, req.weight) == ("/api/v5/market/history-candles", 2)
    recent = okx.build_ohlc(SPOT, Span("1m"), start, start + 5 * MIN * MS, now_ns=now_ns)
    assert (recent.path, recent.weight, recent.params[2:]) == ("/api/v5/market/candles", 1, req.params[2:])


def test_old_windows_use_history_candles() -> None:
    """A window older than the latest 1400 bars goes to history-candles (half the rate, weight 2)."""
    req = okx.build_ohlc(SPOT, Span("1m"), 0, 10 * MIN * MS, now_ns=10**9 * MIN * MS)
    assert (req.path, req.weight, req.endpoint) == ("/api/v5/market/history-candles", 2, "history-candles")


def test_docs_history_candles_rows_and_their_drift() -> None:
    """The docs rows parse exactly as rows; as a page they are drift (unaligned, repeated timestamps)."""
    rows = json.loads(load("rest_history_candles_docs.json"))["data"]
    candle, closed = okx.candle_row(rows[0], False, "history-candles", "$.data[0]")
    assert candle == Candle(1597026383085 * MS, 3.721, 3.743, 3.677, 3.708, 8422410.0, 12698348.04828491) and not closed
    assert okx.candle_row(rows[0], True, "x", "$")[0].volume == 22698348.04828491  # swaps: volCcy is the base volume
    req = okx.build_ohlc(SPOT, Span("1m"), 1597026360000 * MS, 1597026420000 * MS, now_ns=0)
    with pytest.raises(ProtocolDrift, match=r"bar open 1597026383085 is not a 1m bar of the window - at `\$.data\[0\]\[0\]`"):  # fmt: skip
        okx.parse_ohlc(req, load("rest_history_candles_docs.json"))


def test_seven_column_rows_are_closed_and_quote_falls_back_to_vol_ccy() -> None:
    """Older 7-column spot rows have no confirm flag; their quote volume is volCcy."""
    req = okx.build_ohlc(SPOT, Span("1m"), 0, MIN * MS, now_ns=0)
    page = okx.parse_ohlc(req, ok([["60000", "1", "2", "0.5", "1.5", "3", "4.5"]]))
    assert page.candles == [Candle(MIN * MS, 1.0, 2.0, 0.5, 1.5, 3.0, 4.5)]


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (
            b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}',
            ExchangeRejected,
            "code 51001: Instrument ID does not exist",
        ),
        (b'{"msg":"Too Many Requests","code":"50011"}', RateLimited, "code 50011"),
        (b'{"code":"50013","msg":"Systems are busy","data":[]}', ServerError, "code 50013"),
        (
            ok([["60000", "x", "2", "0.5", "1.5", "3", "4.5"]]),
            ProtocolDrift,
            r"'x' is not a number - at `\$.data\[0\]\[1\]`",
        ),
        (ok([["60000", "1", "2"]]), ProtocolDrift, r"candle row has 3 columns, expected 7 or more - at `\$.data\[0\]`"),
        (b'{"code":"0","data":{"x":1}}', ProtocolDrift, r"Expected `array`, got `object` - at `\$.data`"),
    ],
)
def test_candle_error_bodies_and_drift_raise(body: bytes, kind: type[Exception], message: str) -> None:
    """An OKX error ``code`` raises (never an empty page; the predecessor ignored it); bad rows are drift."""
    req = okx.build_ohlc(SPOT, Span("1m"), 0, MIN * MS, now_ns=0)
    with pytest.raises(kind, match=message):
        okx.parse_ohlc(req, body)


def test_parse_error_reads_codes_in_any_status() -> None:
    """The 429 body is a rate limit; a code in HTTP 200 is an error; code 0 is success."""
    err = okx.parse_error(429, load("error_429_too_many_requests.json"))
    assert isinstance(err, RateLimited) and err.retry_after_s == 2.0
    rejected = okx.parse_error(200, b'{"code":"51000","msg":"Parameter bar error","data":[]}')
    assert isinstance(rejected, ExchangeRejected) and (rejected.code, rejected.status) == (51000, 200)
    assert okx.parse_error(200, ok([])) is None and okx.parse_error(502, b"<html>") is None


# --- trades ------------------------------------------------------------------------------------


def test_trade_pages_are_id_windows() -> None:
    """A cursor asks exactly ids c..c+99 (both bounds, since ``before`` alone returns the newest trades)."""
    req = okx.build_trades(SPOT, cursor="242720719")
    assert req.params == (("instId", "BTC-USDT"), ("type", "1"), ("before", "242720718"), ("after", "242720819"), ("limit", "100"))  # fmt: skip
    page = okx.parse_trades(req, load("rest_history_trades_docs.json"))
    assert page == TradesPage(
        [
            Trade(1654161641568 * MS, "242720719", 29964.1, 0.00001, "sell"),
            Trade(1654161646974 * MS, "242720720", 29963.2, 0.00001, "sell"),
        ],
        "242720819",
    )
    assert okx.trades_cursor_after(page.records[-1]) == "242720721"


def test_recorded_trades_page_reports_its_holes() -> None:
    """The recorded ETH-BTC trades, read as a window from 15826750, report ids 15826750..15826754 missing."""
    page = okx.parse_trades(
        okx.build_trades(Symbol("ETH", "BTC"), cursor="15826750", limit=10), load("rest_trades.json")
    )
    assert [t.id for t in page.records] == ["15826755", "15826756", "15826757"]
    assert page.records[0] == Trade(1621446175085 * MS, "15826755", 0.07069, 0.507, "buy")
    assert (page.id_gaps, page.next_cursor) == (((15826750, 15826754),), "15826760")
    empty = okx.parse_trades(okx.build_trades(SPOT, cursor="5"), ok([]))
    assert empty == TradesPage([], None)  # an empty window is the head of the tape


def test_start_time_lookup_finds_the_first_id() -> None:
    """A walk from a time asks for the last trade before it; its id + 1 is the first cursor."""
    req = okx.build_trades(SPOT, start_ns=1654161646974 * MS + 1)
    assert req.params == (("instId", "BTC-USDT"), ("type", "2"), ("after", "1654161646975"), ("limit", "1"))
    assert okx.parse_trades(req, load("rest_history_trades_docs.json")) == TradesPage([], "242720721")
    assert okx.parse_trades(req, ok([])) == TradesPage([], None)
    with pytest.raises(ValueError, match="needs a cursor or a start time"):
        okx.build_trades(SPOT)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"tradeId": "5", "px": "1", "sz": "1", "side": "buy", "ts": "1"}] * 2, "trade id 5 repeated"),
        ([{"tradeId": "500", "px": "1", "sz": "1", "side": "buy", "ts": "1"}], r"trade id 500 outside \[5, 104\]"),
        ([{"tradeId": "x5", "px": "1", "sz": "1", "side": "buy", "ts": "1"}], "trade id 'x5' is not a number"),
        ([{"tradeId": "5", "px": "1", "sz": "1", "side": "long", "ts": "1"}], "side 'long' is not buy/sell"),
    ],
)
def test_malformed_trade_pages_raise_protocol_drift(rows: list[dict[str, str]], message: str) -> None:
    """Repeated or out-of-window ids, non-numeric ids and unknown sides are drift."""
    with pytest.raises(ProtocolDrift, match=message):
        okx.parse_trades(okx.build_trades(SPOT, cursor="5"), ok(rows))


# --- book, funding, open interest --------------------------------------------------------------------


def test_book_uses_exchange_time() -> None:
    """A books answer is stamped with OKX's ts; levels keep price and size (extra columns ignored)."""
    req = okx.build_book(SWAP, 2)
    assert req.params == (("instId", "BTC-USDT-SWAP"), ("sz", "2"))
    body = ok([{"asks": [["41006.8", "0.6", "0", "1"]], "bids": [["41006.3", "0.3", "0", "2"]], "ts": "1629966436396"}])
    assert okx.parse_book(req, body, 7) == BookSnapshot(1629966436396 * MS, [(41006.3, 0.3)], [(41006.8, 0.6)])
    with pytest.raises(ProtocolDrift, match="expected one book, got 0"):
        okx.parse_book(req, ok([]), 7)


def test_funding_windows_read_realized_rate() -> None:
    """Funding windows are exclusive cursors around at most 100 hours; the stored rate is realizedRate."""
    req = okx.build_funding(SWAP, 1703059200000 * MS, 10**13 * MS)
    assert req.params == (("instId", "BTC-USDT-SWAP"), ("before", "1703059199999"), ("after", str(1703059200000 + 100 * 3600_000)), ("limit", "100"))  # fmt: skip
    body = ok([{"formulaType": "noRate", "fundingRate": "0.0000746604960499", "fundingTime": "1703059200000", "instId": "BTC-USDT-SWAP", "instType": "SWAP", "method": "next_period", "realizedRate": "0.0000746572360545"}])  # fmt: skip
    assert okx.parse_funding(req, body) == FundingPage([Funding(1703059200000 * MS, 0.0000746572360545)], (1703059200000 + 100 * 3600_000) * MS)  # fmt: skip
    with pytest.raises(UnsupportedSymbol, match="BTC/USDT is not a perpetual"):
        okx.build_funding(SPOT, 0, 1)


def test_open_interest_rows() -> None:
    """OI rows ``[ts, oi, oiCcy, oiUsd]`` give base-currency open interest and its USD value, ascending."""
    req = okx.build_oi(SWAP, 0, 10 * MIN * MS, span=Span("5m"))
    assert (req.param("period"), req.param("begin"), req.param("end")) == ("5m", "-1", "600001")
    body = ok([["600000", "200", "2", "60000"], ["300000", "100", "1", "30000"]])
    assert okx.parse_oi(req, body) == OiPage([OpenInterest(300000 * MS, 1.0, 30000.0), OpenInterest(600000 * MS, 2.0, 60000.0)], 900000 * MS)  # fmt: skip
    with pytest.raises(NoCapability, match="oi span 3m"):
        okx.build_oi(SWAP, 0, 1, span=Span("3m"))


# --- against the fake exchange, over loopback HTTP -------------------------------------------------

NOW_MS = LISTED + 2 * 86_400_000 + 30_000


def now() -> float:
    return NOW_MS / 1000


async def test_ohlc_walk_over_loopback_crosses_both_endpoints() -> None:
    """Two days of 1m bars come back complete and once, from history-candles then candles; the open bar is left out."""
    async with serving(FakeOkx(clock=now)) as fake, open_exchange_client(get_adapter("okx"), fake.url, 0) as client:
        assert await check_listed(client, SWAP) == "BTC-USDT-SWAP"
        candles = await walk_ohlc(client, SWAP, Span("1m"), LISTED * MS, NOW_MS * MS, now_ns=NOW_MS * MS)
    assert [c.ts // MS for c in candles] == list(range(LISTED, NOW_MS - MIN, MIN))
    b = bar("BTC-USDT-SWAP:1m", LISTED + 5 * MIN)
    assert candles[5] == Candle((LISTED + 5 * MIN) * MS, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume), float(b.quote))  # fmt: skip
    assert (fake.count("/api/v5/market/history-candles"), fake.count("/api/v5/market/candles")) == (15, 14)


async def test_trades_walk_by_id_over_loopback_reports_holes() -> None:
    """A walk from a time finds its first id, pages by id windows, and reports the ids the fake never sent."""
    start_ms = NOW_MS - 60_000
    async with serving(FakeOkx(clock=now, skip_ids=frozenset({1_728_200, 1_728_201}))) as fake, open_exchange_client(get_adapter("okx"), fake.url, 0) as client:  # fmt: skip
        trades, gaps = await walk_trades(client, SPOT, start_ms * MS, NOW_MS * MS)
    first, head = tape.first_id_at(start_ms), (NOW_MS - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS
    expected = [i for i in range(first, head + 1) if i not in (1_728_200, 1_728_201)]
    assert [int(t.id or 0) - TRADE_ID0 for t in trades] == expected
    assert gaps == [(TRADE_ID0 + 1_728_200, TRADE_ID0 + 1_728_201)]
    t = tape.trade_at("BTC-USDT", first)
    assert trades[0] == Trade(t.time_ms * MS, str(TRADE_ID0 + first), float(t.price), float(t.qty), "sell" if t.is_buyer_maker else "buy")  # fmt: skip
    assert fake.count("/api/v5/market/history-trades") == 1 + 7 + 1  # the lookup, 7 windows of 601 ids, the empty head


async def test_funding_and_oi_walks_over_loopback() -> None:
    """Funding (8-hourly, realized rates) and 1h open interest come back complete through the derivatives loop."""
    async with serving(FakeOkx(clock=now)) as fake, open_exchange_client(get_adapter("okx"), fake.url, 0) as client:
        funding = await walk_funding(client, SWAP, LISTED * MS, NOW_MS * MS, limit=10)
        oi = await walk_oi(client, SWAP, LISTED * MS, NOW_MS * MS, span=Span("1h"), limit=20)
    assert funding == [Funding(t * MS, float(rate("BTC-USDT-SWAP", t))) for t in range(LISTED, NOW_MS, 8 * 3600_000)]
    assert [o.ts // MS for o in oi] == list(range(LISTED, NOW_MS, 3600_000))
    coins, usd = open_interest("BTC-USDT-SWAP", oi[3].ts // MS)
    assert oi[3] == OpenInterest(oi[3].ts, float(coins), float(usd))


async def test_error_answers_over_loopback_raise() -> None:
    """An unknown instrument (code 51001 in HTTP 200) raises from the client; a 429 body is retried then served."""
    faults = Faults(too_many={2: "0"})
    async with serving(FakeOkx(clock=now, faults=faults)) as fake, open_exchange_client(get_adapter("okx"), fake.url, 0) as client:  # fmt: skip
        with pytest.raises(ExchangeRejected, match="code 51001: Instrument ID does not exist"):
            await client.fetch(okx.build_book(Symbol("NOPE", "USDT"), 1))
        book = okx.parse_book(req := okx.build_book(SPOT, 1), await client.fetch(req), 0)
    assert book.bids == [(30000.5, 2.5)] and [r.status for r in fake.requests] == [200, 429, 200]
