"""OKX names shared by the REST and WebSocket halves: hosts, capabilities, symbol mapping, the candle row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.records import Candle, DataType
from dccd.domain.symbols import Symbol
from dccd.errors import (
    ProtocolDrift,
    UnsupportedSymbol,
)
from dccd.sources.base import (
    RateLimits,
    number,
)
from dccd.sources.paging import ms_text_to_ns

NAME: Final = "okx"
REST_URL: Final = "https://www.okx.com"
WS_URL: Final = "wss://ws.okx.com:8443"


PAGE_LIMIT: Final = 100


MAX_DEPTH: Final = 400
TRADE_HISTORY_S: Final = 90 * 86400


OI_ROWS: Final = 1440
# dccd span -> OKX bar; 6 h and longer take the UTC-aligned names.
BARS: Final[dict[str, str]] = {
    "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H", "2h": "2H", "4h": "4H",
    "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc", "1w": "1Wutc", "1M": "1Mutc",
}  # fmt: skip
OI_PERIODS: Final[dict[str, str]] = {
    "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H", "2h": "2H", "4h": "4H",
    "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc",
}  # fmt: skip


_BOTH: Final = ("spot", "perp")
_REST, _WS, _PERP = Transport.REST, Transport.WS, ("perp",)
_3M, _OI_SPANS = TRADE_HISTORY_S, tuple(OI_PERIODS)
CAPABILITIES: Final = Capabilities(
    NAME,
    (
        Capability(DataType.OHLC, _REST, History.FULL, Direction.BACKWARD, tuple(BARS), PAGE_LIMIT, markets=_BOTH),
        Capability(
            DataType.TRADES, _REST, History.RECENT, Direction.FORWARD, (), PAGE_LIMIT, recent_s=_3M, markets=_BOTH
        ),
        Capability(DataType.BOOK, _REST, History.SNAPSHOT, Direction.NONE, (), MAX_DEPTH, markets=_BOTH),
        Capability(
            DataType.FUNDING, _REST, History.RECENT, Direction.BACKWARD, (), PAGE_LIMIT, recent_s=_3M, markets=_PERP
        ),
        Capability(
            DataType.OI,
            _REST,
            History.RECENT,
            Direction.BACKWARD,
            _OI_SPANS,
            PAGE_LIMIT,
            recent_rows=OI_ROWS,
            markets=_PERP,
        ),
        Capability(DataType.TRADES, _WS, History.LIVE, markets=_BOTH),
        Capability(DataType.OHLC, _WS, History.LIVE, spans=tuple(BARS), markets=_BOTH),
        Capability(DataType.BOOK, _WS, History.LIVE, page_limit=400, markets=_BOTH),
    ),
)
RATE_LIMITS: Final = RateLimits(40, 2.0, None, default_retry_after_s=2.0, default_ban_s=60.0, ban_statuses=())


def symbol_to_native(symbol: Symbol) -> str:
    """``BTC/USDT`` -> ``BTC-USDT``; ``BTC/USDT:perp`` -> ``BTC-USDT-SWAP``."""
    return f"{symbol.base}-{symbol.quote}-SWAP" if symbol.is_perp else f"{symbol.base}-{symbol.quote}"


def symbol_from_native(native: str) -> Symbol:
    """``BTC-USDT`` -> ``BTC/USDT``; ``BTC-USDT-SWAP`` -> ``BTC/USDT:perp``.

    Raises:
        UnsupportedSymbol: dated futures, options, or not an instrument id.
    """
    parts = native.upper().split("-")
    if len(parts) == 2 and all(p.isalnum() for p in parts):
        return Symbol(parts[0], parts[1])
    if len(parts) == 3 and parts[2] == "SWAP" and parts[0].isalnum() and parts[1].isalnum():
        return Symbol(parts[0], parts[1], "perp")
    raise UnsupportedSymbol(NAME, native, "is not a spot pair or a perpetual swap (BASE-QUOTE[-SWAP])")


def candle_row(row: Sequence[str], swap: bool, ep: str, path: str) -> tuple[Candle, bool]:
    """One candle row (7 or 9 columns) and whether OKX marked it closed (True when it cannot say).

    Raises:
        ProtocolDrift: fewer than 7 columns or a non-numeric value, naming ``path``.
    """
    if len(row) < 7:
        raise ProtocolDrift(NAME, ep, f"candle row has {len(row)} columns, expected 7 or more - at `{path}`")
    ts = ms_text_to_ns(row[0], NAME, ep, f"{path}[0]")
    o, h, lo, c = (number(row[k], NAME, ep, f"{path}[{k}]") for k in range(1, 5))
    vol, vol_ccy = number(row[5], NAME, ep, f"{path}[5]"), number(row[6], NAME, ep, f"{path}[6]")
    quote = number(row[7], NAME, ep, f"{path}[7]") if len(row) > 7 and row[7] != "" else None
    if swap:  # vol counts contracts; volCcy is the base currency
        candle = Candle(ts, o, h, lo, c, vol_ccy, quote)
    else:
        candle = Candle(ts, o, h, lo, c, vol, quote if quote is not None else vol_ccy)
    return candle, len(row) < 9 or row[8] == "1"
