"""Binance names shared by the spot REST, USD-M futures and WebSocket halves: hosts, capabilities, symbol mapping."""

from __future__ import annotations

import re
from typing import Final

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.records import DataType
from dccd.domain.spans import SPAN_LABELS
from dccd.domain.symbols import Symbol
from dccd.errors import UnsupportedSymbol
from dccd.sources.base import RateLimits

NAME: Final = "binance"
WS_URL: Final = "wss://stream.binance.com:9443"
REST_URL: Final = "https://api.binance.com"


PAGE_LIMIT: Final = 1000
MAX_DEPTH: Final = 5000


# Quote assets tried, longest first, to split a bare name like "ETHBTC" without a listing.
QUOTES: Final = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USDP", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "DAI")  # fmt: skip
ASSET: Final = re.compile(r"^[A-Z0-9]{1,20}$")  # a plausible asset code


# USD-M perpetuals, served from the futures host (dccd.sources.binance.futures).
FUNDING_LIMIT: Final = 1000
OI_LIMIT: Final = 500
OI_HISTORY_S: Final = 30 * 86400
OI_PERIODS: Final = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")

FUNDING_CAPABILITY: Final = Capability(
    DataType.FUNDING, Transport.REST, History.FULL, Direction.FORWARD, (), FUNDING_LIMIT, markets=("perp",)
)
OI_CAPABILITY: Final = Capability(
    DataType.OI, Transport.REST, History.RECENT, Direction.FORWARD, OI_PERIODS, OI_LIMIT, recent_s=OI_HISTORY_S,
    markets=("perp",),
)  # fmt: skip


CAPABILITIES: Final = Capabilities(
    NAME,
    (
        Capability(DataType.OHLC, Transport.REST, History.FULL, Direction.FORWARD, SPAN_LABELS, PAGE_LIMIT),
        Capability(DataType.TRADES, Transport.REST, History.FULL, Direction.FORWARD, (), PAGE_LIMIT),
        Capability(DataType.BOOK, Transport.REST, History.SNAPSHOT, Direction.NONE, (), MAX_DEPTH),
        FUNDING_CAPABILITY,  # USD-M perpetuals, from the futures host
        OI_CAPABILITY,
        Capability(DataType.TRADES, Transport.WS, History.LIVE),
        Capability(DataType.OHLC, Transport.WS, History.LIVE, Direction.NONE, SPAN_LABELS),
        Capability(DataType.BOOK, Transport.WS, History.LIVE),
    ),
)
RATE_LIMITS: Final = RateLimits(6000, 60.0, "x-mbx-used-weight-1m", default_retry_after_s=1.0, default_ban_s=120.0)


def symbol_to_native(symbol: Symbol) -> str:
    """``BTC/USDT`` -> ``BTCUSDT``.

    Raises:
        UnsupportedSymbol: a derivative (this adapter is Binance spot).
    """
    if symbol.market is not None:
        raise UnsupportedSymbol(NAME, str(symbol), f"is a {symbol.market} market; binance spot lists spot pairs only")
    return f"{symbol.base}{symbol.quote}"


def symbol_from_native(native: str) -> Symbol:
    """``BTCUSDT`` -> ``BTC/USDT`` by known quote suffixes (use a Listing for exact answers).

    Raises:
        UnsupportedSymbol: no known quote asset ends the name.
    """
    name = native.upper()
    for quote in QUOTES:
        base = name[: -len(quote)]
        if name.endswith(quote) and base and ASSET.match(base):
            return Symbol(base, quote)
    raise UnsupportedSymbol(NAME, native, "cannot be split into base and quote without exchangeInfo")
