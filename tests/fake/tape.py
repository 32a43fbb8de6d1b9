"""A deterministic trade tape shared by the fake exchanges (REST and WebSocket).

Trade ``id`` of a symbol happens at ``TAPE_EPOCH_MS + id * TAPE_STEP_MS`` with a
price, quantity and side that are pure functions of ``(symbol, id)``. A fake
WebSocket server pushes these trades live and a fake REST server serves the
same ones as history, so a gap left by a dropped connection can be filled over
REST and compared value for value.

Values are exact decimal strings with 8 decimals, as Binance sends them; the
integer arithmetic below keeps sums (kline volumes) exact too.
"""

from __future__ import annotations

import zlib
from typing import Final

import msgspec

TAPE_EPOCH_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00:00Z: trade id 0
TAPE_STEP_MS: Final = 100  # 10 trades per second of tape time, 600 per minute

_PERIOD: Final = 2000  # ids per triangle-wave period of the price walk
_AMPLITUDE_CENTS: Final = 500
_KNUTH: Final = 2654435761


class TapeTrade(msgspec.Struct, frozen=True, gc=False):
    """One tape trade; prices in quote units, quantities in base units."""

    id: int
    price: str
    qty: str
    quote_qty: str
    time_ms: int
    is_buyer_maker: bool


class TapeCandle(msgspec.Struct, frozen=True, gc=False):
    """The OHLCV bar of the tape trades in ``[open_ms, close_ms]``."""

    open_ms: int
    close_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    first_id: int
    last_id: int


def _base_cents(symbol: str) -> int:
    return 10_000 + zlib.crc32(symbol.encode()) % 5_000_000


def _cents_units(symbol: str, trade_id: int, base: int) -> tuple[int, int, int]:
    """Price in cents, quantity in 1e-5 units and a hash for the side."""
    h = (trade_id * _KNUTH + base) & 0xFFFFFFFF
    phase = trade_id % _PERIOD
    tri = phase if phase < _PERIOD // 2 else _PERIOD - phase
    cents = base + tri * _AMPLITUDE_CENTS * 2 // _PERIOD - _AMPLITUDE_CENTS // 2 + (h % 41) - 20
    units = 1 + (h >> 8) % 200_000
    return cents, units, h


def _dec(value: int, scale: int) -> str:
    """``value * 10**-scale`` as a string with 8 decimals (scale <= 8)."""
    q, r = divmod(value, 10**scale)
    return f"{q}.{r:0{scale}d}{'0' * (8 - scale)}"


def trade_time_ms(trade_id: int) -> int:
    """Tape time of a trade id."""
    return TAPE_EPOCH_MS + trade_id * TAPE_STEP_MS


def first_id_at(time_ms: int) -> int:
    """Smallest trade id whose time is at or after ``time_ms`` (never below 0)."""
    return max(0, -((TAPE_EPOCH_MS - time_ms) // TAPE_STEP_MS))


def trade_at(symbol: str, trade_id: int) -> TapeTrade:
    """The tape trade ``trade_id`` of ``symbol`` (e.g. ``'BTCUSDT'``).

    Raises:
        ValueError: negative id.
    """
    if trade_id < 0:
        raise ValueError(f"trade id must be >= 0, got {trade_id}")
    cents, units, h = _cents_units(symbol, trade_id, _base_cents(symbol))
    return TapeTrade(
        id=trade_id,
        price=_dec(cents, 2),
        qty=_dec(units, 5),
        quote_qty=_dec(cents * units, 7),
        time_ms=trade_time_ms(trade_id),
        is_buyer_maker=bool((h >> 4) & 1),
    )


def candle_at(symbol: str, interval_ms: int, open_ms: int, last_id: int | None = None) -> TapeCandle | None:
    """The bar opening at ``open_ms`` built from the tape, or None if it has no trade.

    ``last_id`` cuts the bar at a trade id (an unfinished, live bar).
    """
    first = first_id_at(open_ms)
    stop = first_id_at(open_ms + interval_ms)
    if last_id is not None:
        stop = min(stop, last_id + 1)
    if stop <= first:
        return None
    base = _base_cents(symbol)
    o = h = lo = c = 0
    vol = quote = 0
    for i in range(first, stop):
        cents, units, _ = _cents_units(symbol, i, base)
        if i == first:
            o = h = lo = cents
        h = max(h, cents)
        lo = min(lo, cents)
        c = cents
        vol += units
        quote += cents * units
    return TapeCandle(
        open_ms=open_ms,
        close_ms=open_ms + interval_ms - 1,
        open=_dec(o, 2),
        high=_dec(h, 2),
        low=_dec(lo, 2),
        close=_dec(c, 2),
        volume=_dec(vol, 5),
        quote_volume=_dec(quote, 7),
        trades=stop - first,
        first_id=first,
        last_id=stop - 1,
    )


DEPTH_EVERY: Final = 5  # the fake WebSocket sends a diff-depth event at every 5th trade id (its default)


def depth_ids(trade_id: int, every: int = DEPTH_EVERY) -> tuple[int, int]:
    """``(U, u)`` of the diff-depth event sent with trade ``trade_id`` (a multiple of ``every``)."""
    first = trade_id // every * 3 + 1
    return first, first + 2


def depth_book(symbol: str, head_id: int, every: int = DEPTH_EVERY) -> tuple[int, dict[str, str]]:
    """The book after every diff-depth event up to trade ``head_id``: ``(lastUpdateId, {bid price: qty})``.

    Each event sets the bid at its trade's price to its trade's quantity and
    removes the ask at that price, so the ask side is always empty; the REST
    snapshot (``source="shared"``) and the WebSocket diffs agree exactly.
    """
    bids: dict[str, str] = {}
    for i in range(0, max(head_id, -1) + 1, every):
        t = trade_at(symbol, i)
        bids[t.price] = t.qty
    return (depth_ids(head_id // every * every, every)[1] if head_id >= 0 else 0), bids
