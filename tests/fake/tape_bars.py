"""Bars of a fake exchange built from its own trade tape, exactly (integer arithmetic on the decimal strings).

A real exchange's bar is the aggregate of its trades in the period: open/close
= first/last trade in match order, high/low = extreme prices, volume = sum of
amounts, quote volume = sum of price x amount, count = number of trades; a
period without trades has no bar. The fakes whose synthetic bars are not tied
to their trades offer this definition with ``tape_bars=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

SCALE = 8  # tape values carry 8 decimals


def units(text: str, scale: int = SCALE) -> int:
    """A plain decimal string as an integer of ``10**-scale`` units (``'1.5'`` -> 150000000)."""
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    value = int(whole or "0") * 10**scale + int((frac + "0" * scale)[:scale] or "0")
    return -value if neg else value


def text(value: int, scale: int = SCALE) -> str:
    """``value * 10**-scale`` as a plain decimal string."""
    q, r = divmod(value, 10**scale)
    return f"{q}.{r:0{scale}d}"


class TapeBar(NamedTuple):
    """One bar: prices as the trades' own strings, volume (8 decimals) and quote volume (16 decimals) exact."""

    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    vwap: str  # quote / volume, 8 decimals (Kraken's column)


def bar_of(trades: Sequence[tuple[str, str]]) -> TapeBar | None:
    """The bar of ``(price, amount)`` trades in match order, or None for a period without trades."""
    if not trades:
        return None
    prices = [units(p) for p, _ in trades]
    vol = sum(units(q) for _, q in trades)
    quote = sum(units(p) * units(q) for p, q in trades)  # 16 decimals
    hi, lo = max(prices), min(prices)
    by = {units(p): p for p, _ in trades}
    vwap = quote // vol if vol else 0
    return TapeBar(trades[0][0], by[hi], by[lo], trades[-1][0], text(vol), text(quote, 16), len(trades), text(vwap))
