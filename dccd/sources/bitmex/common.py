"""BitMEX names shared by the REST and WebSocket halves: hosts, capabilities, bin sizes, symbol mapping."""

from __future__ import annotations

from typing import Final

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.records import DataType
from dccd.domain.symbols import Symbol
from dccd.errors import UnsupportedSymbol
from dccd.sources.base import RateLimits

NAME: Final = "bitmex"
REST_URL: Final = "https://www.bitmex.com"
WS_URL: Final = "wss://ws.bitmex.com"


PAGE_LIMIT: Final = 1000
FUNDING_LIMIT: Final = 500
BIN_SIZES: Final = ("1m", "5m", "1h", "1d")


_BOTH: Final = ("spot", "perp")
_REST, _WS, _PERP = Transport.REST, Transport.WS, ("perp",)
CAPABILITIES: Final = Capabilities(
    NAME,
    (
        Capability(DataType.OHLC, _REST, History.FULL, Direction.FORWARD, BIN_SIZES, PAGE_LIMIT, markets=_BOTH),
        Capability(DataType.TRADES, _REST, History.FULL, Direction.FORWARD, (), PAGE_LIMIT, markets=_BOTH),
        Capability(DataType.BOOK, _REST, History.SNAPSHOT, Direction.NONE, (), 0, markets=_BOTH),
        Capability(DataType.FUNDING, _REST, History.FULL, Direction.FORWARD, (), FUNDING_LIMIT, markets=_PERP),
        Capability(DataType.OI, _REST, History.SNAPSHOT, Direction.NONE, (), 1, markets=_PERP),
        Capability(DataType.TRADES, _WS, History.LIVE, markets=_BOTH),
        Capability(DataType.OHLC, _WS, History.LIVE, spans=BIN_SIZES, markets=_BOTH),
        Capability(DataType.BOOK, _WS, History.LIVE, page_limit=25, markets=_BOTH),
    ),
)
RATE_LIMITS: Final = RateLimits(30, 60.0, None, default_retry_after_s=1.0, default_ban_s=60.0, ban_statuses=())


def _asset_to_native(asset: str) -> str:
    """BitMEX code of a canonical asset (bitcoin is ``XBT``)."""
    return "XBT" if asset == "BTC" else asset


def asset_from_native(asset: str) -> str:
    """Canonical code of a BitMEX asset (``XBT`` -> ``BTC``)."""
    return "BTC" if asset.upper() == "XBT" else asset.upper()


def symbol_to_native(symbol: Symbol) -> str:
    """``BTC/USD:perp`` -> ``XBTUSD``; ``ETH/USDT:perp`` -> ``ETHUSDT``; spot ``BTC/USDT`` -> ``XBT_USDT``."""
    base, quote = _asset_to_native(symbol.base), _asset_to_native(symbol.quote)
    return f"{base}{quote}" if symbol.is_perp else f"{base}_{quote}"


def symbol_from_native(native: str) -> Symbol:
    """``XBT_USDT`` -> ``BTC/USDT``; ``XBTUSD`` -> ``BTC/USD:perp`` (by known quote suffixes).

    Raises:
        UnsupportedSymbol: an index (``.BXBT``), a dated future or an unsplittable name.
    """
    name = native.upper()
    if "_" in name:
        base, _, quote = name.partition("_")
        if base.isalnum() and quote.isalnum():
            return Symbol(asset_from_native(base), asset_from_native(quote))
    for quote in ("USDT", "USDC", "USD", "EUR"):
        base = name[: -len(quote)]
        if name.endswith(quote) and base.isalpha():
            return Symbol(asset_from_native(base), quote, "perp")
    raise UnsupportedSymbol(NAME, native, "is not a perpetual or spot instrument name")
