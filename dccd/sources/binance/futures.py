"""Binance USD-M futures: perpetual listing, funding rates and open interest (sans-IO).

These are served by ``binance`` (the spot adapter) for ``BASE/QUOTE:perp``
symbols, from Binance's futures host ``https://fapi.binance.com``: the
requests carry that host as ``Request.origin``. A configured ``rest_url``
override (a fake exchange, a proxy) replaces both hosts, so the override must
serve ``/fapi/...`` and ``/futures/data/...`` too; a separate futures
override is not offered.

- Listing: ``/fapi/v1/exchangeInfo``, contracts of type ``PERPETUAL``
  (``BTCUSDT`` is ``BTC/USDT:perp``). Its weight budget (2400/min) is not
  reported as the exchange's budget: spot's is the one the limiter follows.
- Funding: ``/fapi/v1/fundingRate``, ascending from ``startTime``
  (inclusive), 1000 a page, the full history, with the mark price of each
  print (old prints have an empty one -> None). Prints are hours apart, so
  the next page starts 1 ms after a full page's last print.
- Open interest: ``/futures/data/openInterestHist`` keeps 30 days, one sample
  per ``period`` (5m .. 1d), 500 a page; a wider window returns only its
  newest samples, so windows are cut to 500 periods. ``sumOpenInterest`` is
  in the base asset, ``sumOpenInterestValue`` in the quote.

Rate limits: the futures host limits these endpoints by request count
(fundingRate 500 per 5 min, openInterestHist 1000 per 5 min), not by spot
weight. The one limiter of the ``binance`` adapter counts spot weight, so the
requests are charged 60 and 30 units: 6000 units a minute then allow at most
100 and 200 of them, exactly those limits.
"""

from __future__ import annotations

from typing import Final

import msgspec

from dccd.domain.records import Funding, OpenInterest
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.base import FundingPage, Listing, Market, OiPage, Request, decode, number
from dccd.sources.binance.common import FUNDING_LIMIT, NAME, OI_LIMIT, OI_PERIODS
from dccd.sources.paging import bar_window, check_limit, check_range, int_param, ms_ceil, ms_floor

FAPI_URL: Final = "https://fapi.binance.com"
EXCHANGE_INFO: Final = "/fapi/v1/exchangeInfo"
FUNDING_RATE: Final = "/fapi/v1/fundingRate"
OI_HIST: Final = "/futures/data/openInterestHist"

# In spot weight units (see the module docstring): 6000/min / 60 = 100/min = 500/5 min.
WEIGHTS: Final[dict[str, int]] = {EXCHANGE_INFO: 3, FUNDING_RATE: 60, OI_HIST: 30}


class _Contract(msgspec.Struct, frozen=True):
    symbol: str
    baseAsset: str
    quoteAsset: str
    contractType: str = ""
    status: str = ""


class _Info(msgspec.Struct, frozen=True):
    symbols: list[_Contract]


class _Funding(msgspec.Struct, frozen=True):
    fundingTime: int
    fundingRate: str
    markPrice: str = ""


class _Oi(msgspec.Struct, frozen=True):
    sumOpenInterest: str
    sumOpenInterestValue: str
    timestamp: int | str


_INFO = msgspec.json.Decoder(_Info)
_FUNDING = msgspec.json.Decoder(list[_Funding])
_OI = msgspec.json.Decoder(list[_Oi])


def perp_to_native(symbol: Symbol) -> str:
    """``BTC/USDT:perp`` -> ``BTCUSDT``.

    Raises:
        UnsupportedSymbol: not a perpetual.
    """
    if not symbol.is_perp:
        raise UnsupportedSymbol(NAME, str(symbol), "is not a perpetual (funding and open interest are perp data)")
    return f"{symbol.base}{symbol.quote}"


def build_perp_symbols() -> Request:
    """The USD-M contract table (``/fapi/v1/exchangeInfo`` on the futures host)."""
    return Request("GET", EXCHANGE_INFO, (), WEIGHTS[EXCHANGE_INFO], "fapi/exchangeInfo", FAPI_URL)


def parse_perp_symbols(request: Request, body: bytes) -> Listing:
    """Perpetual contracts as ``BASE/QUOTE:perp`` markets (``TRADING`` ones active).

    Raises:
        ProtocolDrift: malformed payload.
    """
    info = decode(_INFO, body, NAME, request.endpoint)
    markets = tuple(
        Market(Symbol(c.baseAsset, c.quoteAsset, "perp"), c.symbol, c.status, c.status == "TRADING")
        for c in info.symbols
        if c.contractType == "PERPETUAL" and c.baseAsset.isalnum() and c.quoteAsset.isalnum()
    )
    return Listing(NAME, markets)


def build_funding(symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None) -> Request:
    """Funding prints from ``start_ns`` to ``end_ns`` (both inclusive), oldest first.

    Raises:
        UnsupportedSymbol: not a perpetual.
        ValueError: an empty range or a limit outside 1..1000.
    """
    check_range(start_ns, end_ns)
    params = (
        ("symbol", perp_to_native(symbol)),
        ("startTime", str(ms_ceil(start_ns))),
        ("endTime", str(ms_floor(end_ns))),
        ("limit", str(check_limit(limit, FUNDING_LIMIT, FUNDING_LIMIT))),
    )
    return Request("GET", FUNDING_RATE, params, WEIGHTS[FUNDING_RATE], "fundingRate", FAPI_URL)


def parse_funding(request: Request, body: bytes) -> FundingPage:
    """Funding prints with their mark price, ascending; a full page continues 1 ms after its last print.

    Raises:
        ProtocolDrift: malformed rows, prints out of order or outside the request.
    """
    ep = request.endpoint
    rows = decode(_FUNDING, body, NAME, ep)
    lo, hi = int_param(request, "startTime"), int_param(request, "endTime")
    records, prev = [], lo - 1
    for i, r in enumerate(rows):
        if not prev < r.fundingTime <= hi:
            raise ProtocolDrift(NAME, ep, f"funding time {r.fundingTime} is out of order or after {hi} - at `$[{i}].fundingTime`")  # fmt: skip
        prev = r.fundingTime
        mark = number(r.markPrice, NAME, ep, f"$[{i}].markPrice") if r.markPrice else None
        records.append(Funding(r.fundingTime * NS_PER_MS, number(r.fundingRate, NAME, ep, f"$[{i}].fundingRate"), mark))
    full = len(rows) >= int_param(request, "limit")
    return FundingPage(records, (prev + 1) * NS_PER_MS if full and prev < hi else None)


def build_oi(
    symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None, span: Span | None = None
) -> Request:
    """Open-interest samples every ``span`` (default 5m) in ``[start_ns, end_ns]``, cut to ``limit`` periods.

    Raises:
        UnsupportedSymbol: not a perpetual.
        NoCapability: a period Binance does not sample.
        ValueError: an empty range or a bad limit.
    """
    native = perp_to_native(symbol)
    span = span or Span("5m")
    if span.label not in OI_PERIODS:
        raise NoCapability(NAME, f"oi span {span.label} (spans: {' '.join(OI_PERIODS)})")
    count = check_limit(limit, OI_LIMIT, OI_LIMIT)
    first, last = bar_window(span, start_ns, end_ns, count)
    params = (
        ("symbol", native),
        ("period", span.label),
        ("startTime", str(first // NS_PER_MS)),
        ("endTime", str(last // NS_PER_MS)),
        ("limit", str(count)),
    )
    return Request("GET", OI_HIST, params, WEIGHTS[OI_HIST], "openInterestHist", FAPI_URL)


def parse_oi(request: Request, body: bytes) -> OiPage:
    """Open interest (base asset) and its value (quote asset) of the window, ascending.

    Raises:
        ProtocolDrift: malformed rows or samples outside the window.
    """
    ep = request.endpoint
    rows = decode(_OI, body, NAME, ep)
    span = Span(request.param("period") or "")
    lo, hi = int_param(request, "startTime"), int_param(request, "endTime")
    records = []
    for i, r in enumerate(rows):
        ts = r.timestamp if isinstance(r.timestamp, int) else int(r.timestamp) if r.timestamp.isdigit() else -1
        if not lo <= ts <= hi:
            raise ProtocolDrift(NAME, ep, f"sample time {r.timestamp!r} is not in [{lo}, {hi}] - at `$[{i}].timestamp`")
        oi = number(r.sumOpenInterest, NAME, ep, f"$[{i}].sumOpenInterest")
        records.append(OpenInterest(ts * NS_PER_MS, oi, number(r.sumOpenInterestValue, NAME, ep, f"$[{i}].sumOpenInterestValue")))  # fmt: skip
    records.sort(key=lambda o: o.ts)
    return OiPage(records, span.next(hi * NS_PER_MS))
