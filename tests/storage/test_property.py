"""Property: any interleaving of overlapping appends and compactions reads back as the deduplicated union.

The model is a dict from natural key to row: a later write replaces a key's
row (within a batch the last row wins), exactly the lake's newest-write-wins rule.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dccd.domain import Candle, DataType, Trade
from dccd.domain.timeutil import NS_PER_MIN, parse_iso_ns
from dccd.storage import Lake
from dccd.storage.schema import to_records

from .helpers import NOW, OHLC_1M, PROV, TRADES

BASE = parse_iso_ns("2024-02-01") - 20 * NS_PER_MIN  # keys straddle a month boundary
DAY_BASE = parse_iso_ns("2024-01-02") - 20 * NS_PER_MIN  # and trades a day boundary

bar_batches = st.lists(st.tuples(st.integers(0, 40), st.sampled_from([0.6, 1.0, 1.4, 1.9])), min_size=1, max_size=25)
# (n, has_id): trade n always has the same content; id-less copies dedup on the composite key.
trade_batches = st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=25)
ops = st.lists(st.one_of(st.just(None), bar_batches), min_size=1, max_size=7)
trade_ops = st.lists(st.one_of(st.just(None), trade_batches), min_size=1, max_size=7)


@settings(max_examples=30, deadline=None)
@given(ops)
def test_bars_read_back_as_the_deduplicated_sorted_union(steps: list[list[tuple[int, float]] | None]) -> None:
    """OHLC: after appends (None = compaction) in any order, reads equal the model, sorted by ts."""
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp))
        model: dict[int, float] = {}
        for step in steps:
            if step is None:
                lake.compact(OHLC_1M)
                continue
            batch = [Candle(BASE + m * NS_PER_MIN, 1.0, 2.0, 0.5, close, 1.0) for m, close in step]
            lake.write(OHLC_1M, batch, PROV, now_ns=NOW)
            model.update((c.ts, c.close) for c in batch)
        got = lake.read_table(OHLC_1M).table
        assert list(zip(got["ts"].to_pylist(), got["close"].to_pylist(), strict=True)) == sorted(model.items())
        lake.compact(OHLC_1M)
        assert lake.read_table(OHLC_1M).table.equals(got)


def _trade(n: int, has_id: bool) -> Trade:
    # Trades cross midnight; amounts repeat so id-less trades share ts and price but not always amount.
    return Trade(DAY_BASE + n * NS_PER_MIN // 3, str(n) if has_id else None, 100.0 + n % 5, 1.0 + n % 2, "buy")


@settings(max_examples=30, deadline=None)
@given(trade_ops)
def test_trades_read_back_as_the_deduplicated_sorted_union(steps: list[list[tuple[int, bool]] | None]) -> None:
    """Trades re-sent in overlapping batches across a day boundary read back once each (by id, else composite)."""
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp))
        model: set[Trade] = set()
        for step in steps:
            if step is None:
                lake.compact(TRADES)
                continue
            batch = [_trade(n, has_id) for n, has_id in step]
            lake.write(TRADES, batch, PROV, now_ns=NOW)
            model.update(batch)
        got = to_records(DataType.TRADES, lake.read_table(TRADES).table)
        assert got == sorted(model, key=lambda t: (t.ts, t.id is None, t.id or "", t.price, t.amount))
