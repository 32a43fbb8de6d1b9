"""Synthetic OHLC series and lakes for the scanner tests and the scan benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.storage.lake import Lake
from dccd.storage.writer import Provenance

HOUR_NS = 3_600_000_000_000
T0_NS = 1_735_689_600_000_000_000  # 2025-01-01T00:00Z (past: the lake's future-ts gate never trips)


def walk(n: int, seed: int, *, drift: float = 0.0, vol_sigma: float = 0.1) -> dict[str, np.ndarray]:
    """A random-walk OHLCV series of ``n`` bars (consistent: low ≤ open, close ≤ high)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = 1000.0 * np.exp(rng.normal(0, vol_sigma, n))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def table(bars: dict[str, np.ndarray], t0_ns: int = T0_NS, span_ns: int = HOUR_NS) -> pa.Table:
    """The lake's OHLC columns for ``bars``."""
    n = len(bars["close"])
    return pa.table(
        {
            "ts": pa.array(t0_ns + np.arange(n, dtype=np.int64) * span_ns, pa.int64()),
            "open": bars["open"],
            "high": bars["high"],
            "low": bars["low"],
            "close": bars["close"],
            "volume": bars["volume"],
            "quote_volume": bars["close"] * bars["volume"],
            "trades": pa.array(np.full(n, 10, dtype=np.int64)),
        }
    )


def cut(bars: dict[str, np.ndarray], end: int) -> dict[str, np.ndarray]:
    """The first ``end`` bars (the series as it stood when bar ``end - 1`` closed)."""
    return {k: v[:end] for k, v in bars.items()}


def write(root: Path, exchange: str, symbol: str, bars: dict[str, np.ndarray], span: str = "1h", **kw: int) -> None:
    """Store ``bars`` as one OHLC series of the lake at ``root``."""
    ds = DatasetId(exchange, Symbol.parse(symbol), DataType.OHLC, Span.parse(span))
    res = Lake(root).write_table(ds, table(bars, **kw), Provenance("synth", "test"))
    assert res.rows_written == len(bars["close"]), res
