"""The maintenance actor compacts closed partitions on its interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from dccd.actors import open_service

from dccd.config import parse_config
from dccd.domain import Candle, DatasetId, Span, Symbol
from dccd.domain.records import DataType
from dccd.storage.writer import Provenance

M = 60_000_000_000
T0 = 1_704_067_200_000_000_000  # 2024-01-01


async def test_maintenance_compacts_closed_partitions(tmp_path: Path) -> None:
    """Three appends to a past month become one part after the maintenance actor runs; rows are unchanged."""
    cfg = parse_config(f"storage: {{path: '{tmp_path}'}}", env={})
    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
    async with open_service(cfg) as svc:
        lake = svc.operations.lake
        for k in range(3):
            bars = [Candle(T0 + (k * 10 + i) * M, 1.0, 2.0, 0.5, 1.5, 3.0) for i in range(10)]
            await lake.awrite(ds, bars, Provenance("test", "rest"))
        part_dir = tmp_path / "ohlc/exchange=binance/symbol=BTC-USDT/span=1m/month=2024-01"
        assert len(list(part_dir.glob("part-*.parquet"))) == 3
        await svc.operations.start_maintenance(interval_s=3600)
        with trio.fail_after(10):
            while len(list(part_dir.glob("part-*.parquet"))) != 1:
                await trio.sleep(0.05)
        table: Any = (await lake.aread_table(ds)).table
        assert table.column("ts").to_pylist() == [T0 + i * M for i in range(30)]
