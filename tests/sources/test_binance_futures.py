"""Binance USD-M funding rates and open interest served by the ``binance`` adapter from the futures host."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dccd.domain import DataType, Funding, OpenInterest, Span, Symbol, Transport
from dccd.domain.capability import History
from dccd.errors import ExchangeRejected, NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources import Market, get_adapter
from dccd.sources.base import DerivativesAdapter, FundingPage, OiPage, listing_for
from dccd.sources.binance import common as binance_common
from dccd.sources.binance import futures as fut
from dccd.sources.binance import rest as bn
from dccd.transport.http import open_exchange_client
from tests.fake.binance_futures import LISTED, MARK_PRICE_FROM, FakeBinanceFutures
from tests.fake.venue import open_interest, rate, serving
from tests.sources.walk import check_listed, walk_funding, walk_oi

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance_futures"
MS = 1_000_000
H = 3_600_000
PERP = Symbol("BTC", "USDT", "perp")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_binance_serves_usdm_funding_and_oi_for_perps_only() -> None:
    """The binance adapter is a derivatives adapter: funding (full) and OI (30 days) for perps; spot OHLC only."""
    adapter = get_adapter("binance")
    assert isinstance(adapter, DerivativesAdapter)
    funding = binance_common.CAPABILITIES.require(DataType.FUNDING, Transport.REST, market="perp")
    oi = binance_common.CAPABILITIES.require(DataType.OI, Transport.REST, Span("5m"), market="perp")
    assert (funding.history, funding.page_limit) == (History.FULL, 1000)
    assert (oi.history, oi.recent_s, oi.page_limit, oi.spans) == (History.RECENT, 30 * 86400, 500, fut.OI_PERIODS)
    with pytest.raises(NoCapability, match="for perp markets"):
        binance_common.CAPABILITIES.require(DataType.OHLC, Transport.REST, Span("1m"), market="perp")


def test_requests_carry_the_futures_host_and_request_count_weights() -> None:
    """Futures requests name fapi.binance.com as their origin; weights keep them under their per-5-minute limits."""
    req = fut.build_funding(PERP, LISTED * MS, (LISTED + H) * MS)
    assert (req.origin, req.path, req.weight) == ("https://fapi.binance.com", "/fapi/v1/fundingRate", 60)
    assert req.params == (("symbol", "BTCUSDT"), ("startTime", str(LISTED)), ("endTime", str(LISTED + H)), ("limit", "1000"))  # fmt: skip
    assert fut.build_oi(PERP, 0, H * MS).weight * 200 == bn.RATE_LIMITS.weight_per_window  # 1000 per 5 min
    assert (
        req.target("https://api.binance.com", binance_common.REST_URL) == "https://fapi.binance.com/fapi/v1/fundingRate"
    )
    assert (
        req.target("http://127.0.0.1:8080", binance_common.REST_URL) == "/fapi/v1/fundingRate"
    )  # an override serves every path
    with pytest.raises(UnsupportedSymbol, match="BTC/USDT is not a perpetual"):
        fut.build_funding(Symbol("BTC", "USDT"), 0, 1)


def test_perp_listing_keeps_perpetual_contracts() -> None:
    """The futures exchangeInfo gives BTC/USDT:perp and leaves quarterly contracts out; perps use this table."""
    body = json.dumps({"symbols": [
        {"symbol": "BTCUSDT", "contractType": "PERPETUAL", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
        {"symbol": "BTCUSDT_240329", "contractType": "CURRENT_QUARTER", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
    ]}).encode()  # fmt: skip
    req, parse = listing_for(get_adapter("binance"), PERP)
    assert (req.path, req.origin) == ("/fapi/v1/exchangeInfo", "https://fapi.binance.com")
    assert parse(req, body).markets == (Market(PERP, "BTCUSDT", "TRADING", True),)
    assert listing_for(get_adapter("binance"), Symbol("BTC", "USDT"))[0].path == "/api/v3/exchangeInfo"


def test_funding_docs_payload() -> None:
    """The docs example parses to two prints with their mark price; a short page is the last one."""
    req = fut.build_funding(PERP, 1570608000000 * MS, 1570636800000 * MS)
    assert fut.parse_funding(req, load("rest_funding_rate_docs.json")) == FundingPage(
        [Funding(1570608000000 * MS, -0.0375, 34287.54619963), Funding(1570636800000 * MS, 0.0001, 34287.54619963)],
        None,
    )


def test_funding_full_page_continues_and_empty_mark_price_is_none() -> None:
    """A full page continues 1 ms after its last print; an empty markPrice is None, never 0.0."""
    req = fut.build_funding(PERP, 0, 10**9 * MS, limit=1)
    page = fut.parse_funding(
        req, b'[{"symbol":"BTCUSDT","fundingRate":"0.0001","fundingTime":28800000,"markPrice":""}]'
    )
    assert page == FundingPage([Funding(28800000 * MS, 0.0001, None)], 28800001 * MS)
    with pytest.raises(ProtocolDrift, match=r"funding time 5 is out of order or after 0 - at `\$\[0\].fundingTime`"):
        fut.parse_funding(fut.build_funding(PERP, 0, 0), b'[{"fundingRate":"1","fundingTime":5}]')


def test_open_interest_docs_payload() -> None:
    """The docs example (string timestamps) parses to base-asset OI with its quote value, ascending."""
    req = fut.build_oi(PERP, 1583127900000 * MS, 1583128200000 * MS)
    assert (req.param("period"), req.param("startTime"), req.param("endTime"), req.param("limit")) == ("5m", "1583127900000", "1583128200000", "500")  # fmt: skip
    assert fut.parse_oi(req, load("rest_open_interest_hist_docs.json")) == OiPage(
        [
            OpenInterest(1583127900000 * MS, 20403.637, 150570784.07809979),
            OpenInterest(1583128200000 * MS, 20401.367, 149940752.14464448),
        ],
        1583128500000 * MS,
    )
    wide = fut.build_oi(PERP, 0, 10**9 * H * MS, span=Span("1h"))
    assert wide.param("endTime") == str(499 * H)  # cut to 500 periods: wider windows lose their oldest samples
    with pytest.raises(NoCapability, match="oi span 1m"):
        fut.build_oi(PERP, 0, 1, span=Span("1m"))


NOW_MS = LISTED + 5 * 86_400_000 + 1234


def now() -> float:
    return NOW_MS / 1000


async def test_walks_over_loopback_through_the_rest_url_override() -> None:
    """With rest_url pointing at a fake, futures paths go there too; funding and OI come back complete."""
    adapter = get_adapter("binance")
    async with serving(FakeBinanceFutures(clock=now)) as fake, open_exchange_client(adapter, fake.url, 0) as client:
        assert await check_listed(client, PERP) == "BTCUSDT"
        funding = await walk_funding(client, PERP, LISTED * MS, NOW_MS * MS, limit=4)
        oi = await walk_oi(client, PERP, LISTED * MS, NOW_MS * MS, span=Span("1h"), limit=30)
        with pytest.raises(ExchangeRejected, match=r"code -1121: Invalid symbol\."):
            await client.fetch(fut.build_funding(Symbol("NOPE", "USDT", "perp"), 0, MS))
    times = range(LISTED, NOW_MS, 8 * H)
    assert funding == [Funding(t * MS, float(rate("BTCUSDT", t)), None if t < MARK_PRICE_FROM else float(f"{42000 + (t // (8 * H)) % 1000}.12345678")) for t in times]  # fmt: skip
    assert [o.ts // MS for o in oi] == list(range(LISTED, NOW_MS, H))
    coins, value = open_interest("BTCUSDT", oi[0].ts // MS)
    assert oi[0] == OpenInterest(oi[0].ts, float(coins), float(value))
    assert fake.count("/fapi/v1/fundingRate") == 4 + 1 + 1  # 16 prints: 4 full pages, an empty one, the rejected one
    assert fake.count("/futures/data/openInterestHist") == 5  # 121 samples in windows of 30 periods


async def test_default_rest_url_sends_futures_requests_to_the_futures_host() -> None:
    """Without an override the transport sends futures requests to fapi.binance.com (spot ones to api.binance.com)."""
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}{request.url.path}")
        return httpx.Response(200, content=b"[]")

    async with open_exchange_client(get_adapter("binance"), None, 0, transport=httpx.MockTransport(handler)) as client:
        await client.fetch(fut.build_funding(PERP, 0, MS))
        await client.fetch(bn.build_ohlc(Symbol("BTC", "USDT"), Span("1m"), 0, 60_000 * MS))
    assert seen == ["fapi.binance.com/fapi/v1/fundingRate", "api.binance.com/api/v3/klines"]
