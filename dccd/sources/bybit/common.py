"""Bybit names shared by the REST and WebSocket halves: hosts, capabilities, intervals, symbol mapping."""

from __future__ import annotations

from typing import Final

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.records import DataType
from dccd.domain.symbols import Symbol
from dccd.errors import (
    UnsupportedSymbol,
)
from dccd.sources.base import (
    RateLimits,
)

NAME: Final = "bybit"
REST_URL: Final = "https://api.bybit.com"
WS_URL: Final = "wss://stream.bybit.com"


PAGE_LIMIT: Final = 1000
MAX_DEPTH: Final = 1000
FUNDING_LIMIT: Final = 200
OI_LIMIT: Final = 200


# dccd span -> Bybit kline interval (D/W/M open at UTC midnight, Monday, the 1st).
INTERVALS: Final[dict[str, str]] = {
    "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120",
    "4h": "240", "6h": "360", "12h": "720", "1d": "D", "1w": "W", "1M": "M",
}  # fmt: skip
OI_INTERVALS: Final[dict[str, str]] = {"5m": "5min", "15m": "15min", "30m": "30min", "1h": "1h", "4h": "4h", "1d": "1d"}


_PERP_QUOTES: Final = ("USDT", "USDC")


_BOTH: Final = ("spot", "perp")
_REST, _WS, _PERP = Transport.REST, Transport.WS, ("perp",)
CAPABILITIES: Final = Capabilities(
    NAME,
    (
        Capability(DataType.OHLC, _REST, History.FULL, Direction.BACKWARD, tuple(INTERVALS), PAGE_LIMIT, markets=_BOTH),
        Capability(DataType.TRADES, _REST, History.RECENT, Direction.NONE, (), 60, recent_rows=60, markets=_BOTH),
        Capability(DataType.BOOK, _REST, History.SNAPSHOT, Direction.NONE, (), MAX_DEPTH, markets=_BOTH),
        Capability(DataType.FUNDING, _REST, History.FULL, Direction.BACKWARD, (), FUNDING_LIMIT, markets=_PERP),
        Capability(DataType.OI, _REST, History.FULL, Direction.BACKWARD, tuple(OI_INTERVALS), OI_LIMIT, markets=_PERP),
        Capability(DataType.TRADES, _WS, History.LIVE, markets=_BOTH),
        Capability(DataType.OHLC, _WS, History.LIVE, spans=tuple(INTERVALS), markets=_BOTH),
        Capability(DataType.BOOK, _WS, History.LIVE, page_limit=50, markets=_BOTH),
    ),
)
# 600 requests per 5 s per IP; over it Bybit answers 403 and bans the IP for 10 minutes.
RATE_LIMITS: Final = RateLimits(600, 5.0, None, default_retry_after_s=1.0, default_ban_s=600.0, ban_statuses=(403,))


def category(symbol: Symbol) -> str:
    """``spot`` for spot pairs, ``linear`` for USDT/USDC perpetuals.

    Raises:
        UnsupportedSymbol: an inverse perpetual (quote other than USDT/USDC).
    """
    if symbol.market is None:
        return "spot"
    if symbol.quote not in _PERP_QUOTES:
        raise UnsupportedSymbol(NAME, str(symbol), "is not a linear perpetual (inverse contracts are not supported)")
    return "linear"


def symbol_to_native(symbol: Symbol) -> str:
    """``BTC/USDT`` and ``BTC/USDT:perp`` -> ``BTCUSDT``; ``BTC/USDC:perp`` -> ``BTCPERP``.

    Raises:
        UnsupportedSymbol: an inverse perpetual.
    """
    if category(symbol) == "linear" and symbol.quote == "USDC":
        return f"{symbol.base}PERP"
    return f"{symbol.base}{symbol.quote}"


def symbol_from_native(native: str) -> Symbol:
    """``BTCUSDT`` -> ``BTC/USDT`` (spot; the category decides perp), ``ETHPERP`` -> ``ETH/USDC:perp``.

    Raises:
        UnsupportedSymbol: no known quote asset ends the name.
    """
    name = native.upper()
    if name.endswith("PERP") and len(name) > 4:
        return Symbol(name[:-4], "USDC", "perp")
    for quote in ("USDT", "USDC", "USDE", "BTC", "ETH", "EUR", "DAI", "BRZ"):
        if name.endswith(quote) and len(name) > len(quote) and name[: -len(quote)].isalnum():
            return Symbol(name[: -len(quote)], quote)
    raise UnsupportedSymbol(NAME, native, "cannot be split into base and quote without instruments-info")
