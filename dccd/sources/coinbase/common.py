"""Coinbase names shared by the REST and WebSocket halves: hosts, capabilities, taker side, symbol mapping."""

from __future__ import annotations

import re
from typing import Final

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.records import DataType
from dccd.domain.symbols import Symbol
from dccd.errors import UnsupportedSymbol
from dccd.sources.base import RateLimits

NAME: Final = "coinbase"
REST_URL: Final = "https://api.exchange.coinbase.com"
WS_URL: Final = "wss://ws-feed.exchange.coinbase.com"


GRANULARITIES: Final[dict[str, int]] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
OHLC_LIMIT: Final = 300
TRADES_LIMIT: Final = 1000
MAX_DEPTH: Final = 10_000  # level 2 is the whole book; this bounds what a caller may keep
ASSET: Final = re.compile(r"^[A-Z0-9]{1,20}$")  # a plausible asset code


CAPABILITIES: Final = Capabilities(
    NAME,
    (
        Capability(DataType.OHLC, Transport.REST, History.FULL, Direction.FORWARD, tuple(GRANULARITIES), OHLC_LIMIT),
        Capability(DataType.TRADES, Transport.REST, History.FULL, Direction.FORWARD, (), TRADES_LIMIT),
        Capability(DataType.BOOK, Transport.REST, History.SNAPSHOT, Direction.NONE, (), MAX_DEPTH),
        Capability(DataType.TRADES, Transport.WS, History.LIVE),
        Capability(DataType.BOOK, Transport.WS, History.LIVE),
    ),
)
# 10 requests/s per IP on public endpoints; 429 beyond (SPEC §2a). No ban status.
RATE_LIMITS: Final = RateLimits(10, 1.0, None, default_retry_after_s=1.0, default_ban_s=60.0, ban_statuses=())


TAKER_SIDE: Final = {"buy": "sell", "sell": "buy"}  # Coinbase's `side` is the maker's


def symbol_to_native(symbol: Symbol) -> str:
    """``BTC/USD`` -> ``BTC-USD``.

    Raises:
        UnsupportedSymbol: a perpetual (Coinbase Exchange lists spot only).
    """
    if symbol.market is not None:
        raise UnsupportedSymbol(NAME, str(symbol), f"is a {symbol.market} market; coinbase exchange lists spot only")
    return f"{symbol.base}-{symbol.quote}"


def symbol_from_native(native: str) -> Symbol:
    """``BTC-USD`` -> ``BTC/USD``.

    Raises:
        UnsupportedSymbol: not a ``BASE-QUOTE`` product id.
    """
    base, sep, quote = native.upper().partition("-")
    if not sep or not ASSET.match(base) or not ASSET.match(quote):
        raise UnsupportedSymbol(NAME, native, "is not a BASE-QUOTE product id")
    return Symbol(base, quote)
