"""Bitfinex names shared by the REST and WebSocket halves: hosts, capabilities, timeframes, symbol mapping."""

from __future__ import annotations

import re
from typing import Final

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.records import DataType
from dccd.domain.symbols import Symbol
from dccd.errors import (
    UnsupportedSymbol,
)
from dccd.sources.base import RateLimits

NAME: Final = "bitfinex"
REST_URL: Final = "https://api-pub.bitfinex.com"
WS_URL: Final = "wss://api-pub.bitfinex.com"


TIMEFRAMES: Final[dict[str, str]] = {
    "1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1h",
    "4h": "4h", "6h": "6h", "12h": "12h", "1d": "1D",
}  # fmt: skip
PAGE_LIMIT: Final = 10_000
BOOK_LENGTHS: Final = (1, 25, 100)
# Bitfinex code -> canonical code (from pub:map:currency:sym, stable renamings only).
CODES: Final[dict[str, str]] = {
    "UST": "USDT", "UDC": "USDC", "TSD": "TUSD", "GSD": "GUSD", "EUT": "EURT", "XCH": "XCHF",
    "DSH": "DASH", "IOT": "IOTA", "QTM": "QTUM", "MNA": "MANA", "DAT": "DATA", "ALG": "ALGO",
    "AMP": "AMPL", "ATO": "ATOM", "STJ": "STORJ", "WBT": "WBTC", "YYW": "YOYOW",
}  # fmt: skip
NATIVE_CODES: Final[dict[str, str]] = {v: k for k, v in CODES.items()}
ASSET: Final = re.compile(r"^[A-Z0-9]{1,20}$")  # a plausible asset code


CAPABILITIES: Final = Capabilities(
    NAME,
    (
        Capability(DataType.OHLC, Transport.REST, History.FULL, Direction.FORWARD, tuple(TIMEFRAMES), PAGE_LIMIT),
        Capability(DataType.TRADES, Transport.REST, History.FULL, Direction.FORWARD, (), PAGE_LIMIT),
        Capability(DataType.BOOK, Transport.REST, History.SNAPSHOT, Direction.NONE, (), BOOK_LENGTHS[-1]),
        Capability(DataType.TRADES, Transport.WS, History.LIVE),
        Capability(DataType.OHLC, Transport.WS, History.LIVE, spans=tuple(TIMEFRAMES)),
        Capability(DataType.BOOK, Transport.WS, History.LIVE, page_limit=BOOK_LENGTHS[-1]),
    ),
)
# Per-endpoint limits of 10-90 requests/min, the IP blocked for 60 s beyond (SPEC §6):
# 30 weight/min with trades weighing 2 keeps candles <= 30/min and trades <= 15/min.
RATE_LIMITS: Final = RateLimits(30, 60.0, None, default_retry_after_s=60.0, default_ban_s=60.0, ban_statuses=())


def pair_of(symbol: Symbol) -> str:
    """Bitfinex pair name without the ``t``: ``BTCUST``, ``AAVE:USD``.

    Raises:
        UnsupportedSymbol: a perpetual (spot adapter).
    """
    if symbol.market is not None:
        raise UnsupportedSymbol(NAME, str(symbol), f"is a {symbol.market} market; the bitfinex adapter is spot")
    base, quote = NATIVE_CODES.get(symbol.base, symbol.base), NATIVE_CODES.get(symbol.quote, symbol.quote)
    return f"{base}:{quote}" if len(base) > 3 or len(quote) > 3 else base + quote


def symbol_to_native(symbol: Symbol) -> str:
    """``BTC/USDT`` -> ``tBTCUST``; ``AAVE/USD`` -> ``tAAVE:USD``."""
    return "t" + pair_of(symbol)


def symbol_from_native(native: str) -> Symbol:
    """``tBTCUST`` (or the bare pair ``BTCUST``) -> ``BTC/USDT``.

    Raises:
        UnsupportedSymbol: not a trading pair name.
    """
    pair = native[1:] if native.startswith("t") else native
    if ":" in pair:
        base, _, quote = pair.partition(":")
    elif len(pair) == 6:
        base, quote = pair[:3], pair[3:]
    else:
        base = quote = ""
    if not ASSET.match(base) or not ASSET.match(quote):
        raise UnsupportedSymbol(NAME, native, "is not a Bitfinex trading pair (tBASEQUOTE or tBASE:QUOTE)")
    return Symbol(CODES.get(base, base), CODES.get(quote, quote))
