"""The still-forming bar of a live candles feed, derived from the live trades of the same market.

A candles feed alone only carries closed bars (an exchange's kline stream, or
nothing at all when only trades are recorded), so a live chart would lag by up
to one bar. The candles feed's tap therefore also listens to the market's
trades topic and folds each window of trades into the bar they fall in; after
every window that saw trades it sends ``event: forming`` with that bar::

    {"ts": open ns, "open", "high", "low", "close", "volume", "trades": n,
     "first_trade_ts": ns, "last_trade_ts": ns, "complete": bool}

``complete`` is false for the bar the tap started in (it saw only the trades
after it subscribed, so its open/high/low/volume cover part of the bar): a
client that already holds that bar from the lake merges the two. A bar is
complete once the tap had seen a trade of an earlier bar (exchange time
only, so the server's clock never matters). Closed bars
keep arriving as ``event: candles``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from dccd.actors import Batch

from dccd.domain import Candle, Span, Trade

from .frames import Encoder

_encode = msgspec.json.Encoder().encode


class FormingBar(msgspec.Struct):
    """The bar trades are being folded into (see the module docstring)."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    first_trade_ts: int
    last_trade_ts: int
    complete: bool


class Former:
    """Folds trades into bars of ``span``."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.bar: FormingBar | None = None

    def add(self, trades: list[Trade]) -> list[FormingBar]:
        """Fold ``trades`` (in arrival order); returns each bar they touched, the newest last.

        A trade older than the current bar (a late print) is ignored: that bar is closed for the feed.
        """
        touched: list[FormingBar] = []
        for t in trades:
            open_ns = self.span.align(t.ts)
            bar = self.bar
            if bar is not None and open_ns < bar.ts:
                continue
            if bar is None or open_ns > bar.ts:
                # Complete only when a trade of an earlier bar came first: the tap listened before this bar opened.
                bar = FormingBar(open_ns, t.price, t.price, t.price, t.price, 0.0, 0, t.ts, t.ts, bar is not None)
                self.bar = bar
            bar.high = max(bar.high, t.price)
            bar.low = min(bar.low, t.price)
            bar.close = t.price
            bar.volume += t.amount
            bar.trades += 1
            bar.last_trade_ts = max(bar.last_trade_ts, t.ts)
            if not touched or touched[-1] is not bar:
                touched.append(bar)
        return touched


def candles_encoder(span: Span, max_records: int) -> Encoder:
    """Closed candles as ``candles`` events (lists, at most ``max_records`` each) and, from the trades of the
    same window, one ``forming`` event per bar they touched (the newest last)."""
    former = Former(span)

    def encode(items: list[Any]) -> list[tuple[str, bytes, str | None]]:
        candles: list[Any] = []
        trades: list[Trade] = []
        for item in items:
            if not isinstance(item, Batch):
                continue
            for r in item.records:
                if isinstance(r, Candle):
                    candles.append(r)
                elif isinstance(r, Trade):
                    trades.append(r)
        out: list[tuple[str, bytes, str | None]] = [
            ("candles", _encode(candles[i : i + max_records]), None) for i in range(0, len(candles), max_records)
        ]
        out.extend(("forming", _encode(bar), None) for bar in former.add(trades))
        return out

    return encode
