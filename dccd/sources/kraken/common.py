"""Kraken names shared by the REST and WebSocket halves: hosts, capabilities, intervals, sides, symbol mapping."""

from __future__ import annotations

import re
from typing import Final

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import UnsupportedSymbol
from dccd.sources.base import RateLimits

NAME: Final = "kraken"
REST_URL: Final = "https://api.kraken.com"
WS_URL: Final = "wss://ws.kraken.com"


INTERVALS: Final[dict[str, int]] = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "1d": 1440}
RECENT_BARS: Final = 720
TRADES_LIMIT: Final = 1000
MAX_DEPTH: Final = 500


# Canonical -> Kraken asset codes (REST altnames and WS v1 names); WS v2 uses the canonical ones.
ALIASES: Final[dict[str, str]] = {"BTC": "XBT", "DOGE": "XDG"}
CANONICAL: Final[dict[str, str]] = {v: k for k, v in ALIASES.items()}
QUOTES: Final = ("USDT", "USDC", "USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "DAI", "XBT", "ETH", "DOT")
ASSET: Final = re.compile(r"^[A-Z0-9]{1,20}$")  # a plausible asset code


CAPABILITIES: Final = Capabilities(
    NAME,
    (
        Capability(
            DataType.OHLC, Transport.REST, History.RECENT, Direction.FORWARD, tuple(INTERVALS), RECENT_BARS, RECENT_BARS
        ),
        Capability(DataType.TRADES, Transport.REST, History.FULL, Direction.FORWARD, (), TRADES_LIMIT),
        Capability(DataType.BOOK, Transport.REST, History.SNAPSHOT, Direction.NONE, (), MAX_DEPTH),
        Capability(DataType.TRADES, Transport.WS, History.LIVE),
        Capability(DataType.OHLC, Transport.WS, History.LIVE, spans=tuple(INTERVALS)),
        Capability(DataType.BOOK, Transport.WS, History.LIVE, page_limit=100),  # ws.BOOK_DEPTH
    ),
)
# About one public call a second per IP (SPEC §3): 4 per 5 s at the default 80 % share.
RATE_LIMITS: Final = RateLimits(5, 5.0, None, default_retry_after_s=5.0, default_ban_s=60.0, ban_statuses=())


SIDES: Final = {"b": "buy", "s": "sell"}  # the taker's side


def _code(asset: str) -> str:
    return ALIASES.get(asset, asset)


def canonical_asset(code: str) -> str:
    """Canonical code of a Kraken asset code (``XXBT`` -> ``BTC``; unknown codes pass through)."""
    return CANONICAL.get(code, code)


def symbol_to_native(symbol: Symbol) -> str:
    """``BTC/USD`` -> ``XBTUSD`` (the REST altname; DOGE is XDG).

    Raises:
        UnsupportedSymbol: a perpetual (Kraken spot).
    """
    if symbol.market is not None:
        raise UnsupportedSymbol(NAME, str(symbol), f"is a {symbol.market} market; kraken spot lists spot pairs only")
    return _code(symbol.base) + _code(symbol.quote)


def symbol_from_native(native: str) -> Symbol:
    """Canonical symbol of ``XBT/USD`` (WS v1), ``BTC/USD`` (WS v2), ``XBTUSD`` or ``XXBTZUSD`` (REST).

    Raises:
        UnsupportedSymbol: the name cannot be split into base and quote.
    """
    name = native.upper()
    base, sep, quote = name.partition("/")
    if not sep:
        base = quote = ""
        if len(name) == 8 and name[0] in "XZ" and name[4] in "XZ":  # legacy XXBTZUSD
            base, quote = name[1:4], name[5:]
        else:
            for q in QUOTES:
                if name.endswith(q) and len(name) > len(q):
                    base, quote = name[: -len(q)], q
                    break
    if not ASSET.match(base) or not ASSET.match(quote):
        raise UnsupportedSymbol(NAME, native, "cannot be split into base and quote without AssetPairs")
    return Symbol(canonical_asset(base), canonical_asset(quote))


SPANS_BY_MINUTES: Final[dict[int, Span]] = {m: Span(label) for label, m in INTERVALS.items()}
