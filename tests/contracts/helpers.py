"""Builders shared by the contract tests: a lake with planted rows, foreign parts written by pyarrow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dccd.domain import Candle, DatasetId, DataType, Span, Symbol, Trade
from dccd.domain.timeutil import NS_PER_MIN, NS_PER_S, parse_iso_ns
from dccd.storage import Provenance
from dccd.storage.layout import dataset_dir, partition_kind, partition_name
from dccd.storage.schema import SCHEMAS

BTC = Symbol.parse("BTC/USDT")
BARS = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))
TRADES = DatasetId("binance", BTC, DataType.TRADES)
PROV = Provenance("binance", "rest", "run-1")
T0 = parse_iso_ns("2024-01-01")
NOW = parse_iso_ns("2025-01-01")


def walk_trades(n: int, *, ts0: int = T0, step_ns: int = NS_PER_S, first_id: int = 0) -> list[Trade]:
    """``n`` trades one ``step_ns`` apart, ids consecutive, prices a calm walk 100.00 .. 100.02."""
    return [Trade(ts0 + i * step_ns, str(first_id + i), 100.0 + (i % 3) * 0.01, 0.5, "buy") for i in range(n)]


def bars_of(trades: list[Trade], span_ns: int = NS_PER_MIN) -> list[Candle]:
    """The bars these trades make (open time on the grid, trade count native)."""
    buckets: dict[int, list[Trade]] = {}
    for t in trades:
        buckets.setdefault(t.ts - t.ts % span_ns, []).append(t)
    return [
        Candle(ts, g[0].price, max(x.price for x in g), min(x.price for x in g), g[-1].price,
               sum(x.amount for x in g), None, len(g))
        for ts, g in sorted(buckets.items())
    ]  # fmt: skip


def calm_bars(n: int, *, ts0: int = T0, close: float = 100.0) -> list[Candle]:
    """``n`` valid 1m bars closing at ``close``."""
    return [Candle(ts0 + i * NS_PER_MIN, close, close + 0.5, close - 0.5, close, 1.0) for i in range(n)]


def write_foreign(root: Path, ds: DatasetId, rows: dict[str, list[Any]], name: str = "part-foreign.parquet") -> Path:
    """A part written by another tool (no gate): ``rows`` by column, in the lake's column types."""
    schema = pa.schema([f.with_nullable(True) for f in SCHEMAS[ds.data_type]])
    table = pa.table({f.name: pa.array(rows.get(f.name, [None] * len(rows["ts"])), f.type) for f in schema})
    directory = dataset_dir(root, ds) / partition_name(partition_kind(ds.data_type), rows["ts"][0])
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / name)
    return directory / name
