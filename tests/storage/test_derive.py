"""Bars from stored trades (dccd.storage.derive) against a plain-Python reference, for every span."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dccd.domain import DatasetId, DataType, Span, Symbol, Trade
from dccd.domain.spans import SPAN_LABELS
from dccd.storage import Lake, Provenance
from dccd.storage.derive import chunks, derive_bars, final_end

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z (a Monday)
S = 1_000_000_000
TRADES = DatasetId("okx", Symbol.parse("BTC/USDT"), DataType.TRADES)


def _reference(trades: list[Trade], span: Span) -> list[dict[str, Any]]:
    """Bars by Span.align, match order (ts, integer id), decimal sums of the printed values."""
    out: dict[int, list[Trade]] = {}
    for t in sorted(trades, key=lambda t: (t.ts, int(t.id or 0))):
        out.setdefault(span.align(t.ts), []).append(t)
    bars = []
    for ts, ts_trades in sorted(out.items()):
        prices = [t.price for t in ts_trades]
        vol = sum(Decimal(repr(t.amount)) for t in ts_trades)
        quote = sum(Decimal(repr(t.price)) * Decimal(repr(t.amount)) for t in ts_trades)
        bars.append({"ts": ts, "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
                     "volume": float(vol), "quote_volume": float(quote), "trades": len(ts_trades)})  # fmt: skip
    return bars


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Trade]]:
    """3,000 trades over ~100 days (gaps of up to ~2 months inside), written in shuffled batches (several parts)."""
    rnd = random.Random(5)
    trades, ts = [], T0 - 3 * 86_400 * S
    for i in range(3000):
        ts += rnd.choice((0, 1, 137 * S // 1000, 5 * S, 3600 * S)) if i != 1500 else 61 * 86_400 * S
        trades.append(Trade(ts, str(i), round(100 + rnd.random() * 10, 2), round(rnd.random() + 0.00001, 5), "buy"))
    root = tmp_path_factory.mktemp("derive")
    shuffled = trades[:]
    rnd.shuffle(shuffled)
    for k in range(0, 3000, 700):
        Lake(root).write(TRADES, shuffled[k : k + 700], Provenance("okx", "rest"), now_ns=T0 + 400 * 86_400 * S)
    return root, trades


@pytest.mark.parametrize("label", SPAN_LABELS)
def test_bars_of_every_span_equal_the_reference(lake: tuple[Path, list[Trade]], label: str) -> None:
    root, trades = lake
    span = Span.parse(label)
    lo, hi = span.align(trades[0].ts), span.next(span.align(trades[-1].ts))
    got = derive_bars(root, TRADES, span, lo, hi).to_pylist()
    assert got == _reference(trades, span)


def test_chunks_are_days_up_to_1d_and_bars_beyond() -> None:
    day = 86_400 * S
    assert list(chunks(Span.parse("1m"), T0 + 60 * S, T0 + day + 120 * S)) == [
        (T0 + 60 * S, T0 + day),
        (T0 + day, T0 + day + 120 * S),
    ]
    feb1 = T0 + 31 * day
    assert list(chunks(Span.parse("1M"), T0, feb1 + 29 * day)) == [(T0, feb1), (feb1, feb1 + 29 * day)]


def test_final_end_excludes_the_bar_of_the_newest_trade_and_the_open_bar() -> None:
    m = Span.parse("1m")
    assert final_end(m, T0 + 3600 * S, now_ns=T0 + 3600 * S, coverage_ns=T0 + 605 * S) == T0 + 600 * S
    assert final_end(m, T0 + 3600 * S, now_ns=T0 + 90 * S, coverage_ns=T0 + 3000 * S) == T0 + 60 * S
    assert final_end(m, T0 + 120 * S, now_ns=T0 + 3600 * S, coverage_ns=T0 + 3000 * S) == T0 + 120 * S
