"""Domain records: what the lake stores, one Struct per data type.

All timestamps are int64 ns UTC. Prices and amounts are float64 (the lake's
column type). Fields an exchange does not give are ``None``, never invented.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import msgspec


class DataType(StrEnum):
    """A dataset kind, as named in the lake and on the CLI."""

    TRADES = "trades"
    OHLC = "ohlc"
    BOOK = "book"
    FUNDING = "funding"
    OI = "oi"

    @classmethod
    def parse(cls, text: str) -> DataType:
        """Parse a type name.

        Raises:
            ValueError: ``'x' is not a data type (trades ohlc book funding oi)``.
        """
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a data type ({' '.join(t.value for t in cls)})") from None

    def __str__(self) -> str:
        return self.value


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One trade. ``side`` is the taker's side (``buy``/``sell``) or None."""

    ts: int
    id: str | None
    price: float
    amount: float
    side: str | None = None
    recv_ts: int | None = None


class Candle(msgspec.Struct, frozen=True, gc=False):
    """One closed OHLC bar; ``ts`` is the bar's open time."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float | None = None
    trades: int | None = None


class BookLevel(msgspec.Struct, frozen=True, gc=False):
    """One price level of a book snapshot (long format)."""

    ts: int
    side: str
    price: float
    amount: float
    seq: int | None = None


class BookSnapshot(msgspec.Struct, frozen=True, gc=False):
    """A whole order-book snapshot at ``ts`` (exchange time when given)."""

    ts: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    seq: int | None = None

    def levels(self) -> list[BookLevel]:
        """Flatten to lake rows: bids then asks."""
        out = [BookLevel(self.ts, "bid", p, a, self.seq) for p, a in self.bids]
        out.extend(BookLevel(self.ts, "ask", p, a, self.seq) for p, a in self.asks)
        return out


class Funding(msgspec.Struct, frozen=True, gc=False):
    """One funding rate print of a perpetual."""

    ts: int
    rate: float
    mark_price: float | None = None


class OpenInterest(msgspec.Struct, frozen=True, gc=False):
    """Open interest of a derivative at ``ts``."""

    ts: int
    open_interest: float
    open_interest_value: float | None = None


Record = Trade | Candle | BookLevel | Funding | OpenInterest

RECORD_TYPES: Final[dict[DataType, type[msgspec.Struct]]] = {
    DataType.TRADES: Trade,
    DataType.OHLC: Candle,
    DataType.BOOK: BookLevel,
    DataType.FUNDING: Funding,
    DataType.OI: OpenInterest,
}

NATURAL_KEYS: Final[dict[DataType, tuple[str, ...]]] = {
    DataType.TRADES: ("id",),  # composite (ts, price, amount, side) when id is null
    DataType.OHLC: ("ts",),
    DataType.BOOK: ("ts", "side", "price"),
    DataType.FUNDING: ("ts",),
    DataType.OI: ("ts",),
}
TRADE_COMPOSITE_KEY: Final[tuple[str, ...]] = ("ts", "price", "amount", "side")
