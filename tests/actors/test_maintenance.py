"""The maintenance actor compacts closed partitions, and today's partition of a live stream, on its interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import trio
from dccd.actors import open_service
from dccd.actors.streams import StreamOptions

from dccd.config import Config, ExchangeSettings, Storage, parse_config
from dccd.domain import Candle, DatasetId, Span, Symbol
from dccd.domain.records import DataType
from dccd.ops import StreamRequest
from dccd.storage import layout
from dccd.storage.compaction import CompactPolicy
from dccd.storage.writer import Provenance
from tests.fake.binance import FakeBinance
from tests.fake.binance_ws import open_fake_binance_ws
from tests.fake.tape import TAPE_EPOCH_MS

from .test_streams import tape_clock

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


async def test_maintenance_compacts_today_of_a_live_stream(tmp_path: Path) -> None:
    """A live trade stream writing a part every ~50 ms into "today" (the service's clock sits inside the
    tape's day): the maintenance actor merges them while the stream runs; every id is stored once."""
    day_ns = TAPE_EPOCH_MS * 1_000_000
    cfg = Config(
        storage=Storage(path=str(tmp_path)),
        exchanges={"binance": ExchangeSettings(rest_url="http://rest.invalid", ws_url="ws://ws.invalid")},
    )
    writer = {"max_rows": 100_000, "max_age_s": 0.05, "high": 8}
    options = {"options": StreamOptions(settle_s=0.2, writer=writer)}
    async with open_fake_binance_ws(rate_per_s=400) as ws:
        rest = FakeBinance(source="shared", clock=tape_clock(ws))
        async with open_service(
            cfg,
            client_options={"transport": rest.mock_transport()},
            stream_options={**options, "connect": ws.connect},
            ops_options={"now_ns": lambda: day_ns + 3_600_000_000_000},  # 01:00 on the tape's day: open
        ) as svc:
            ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
            sid = await svc.start_stream(StreamRequest("binance", (ds.symbol,), DataType.TRADES))
            today = layout.dataset_dir(tmp_path, ds) / layout.partition_name("date", day_ns)
            policy = CompactPolicy(fan_in=4, min_age_s=0.3)
            with trio.fail_after(30):
                while len(list(today.glob("part-*.parquet"))) < 30:
                    await trio.sleep(0.05)
                most = len(list(today.glob("part-*.parquet")))  # its first pass may run before the loop looks
                await svc.operations.start_maintenance(interval_s=0.2, policy=policy)
                while True:  # merges happen while the stream keeps writing
                    await trio.sleep(0.1)
                    n = len(list(today.glob("part-*.parquet")))
                    most = max(most, n)
                    if most >= 30 and n <= 12:
                        break
            assert await svc.stop_stream(sid)
            await svc.operations.compact_pass(CompactPolicy(fan_in=4, min_age_s=0))
            parts = sorted(today.glob("part-*.parquet"))
            ids = [int(i) for i in (await svc.operations.lake.aread_table(ds)).table["id"].to_pylist()]
    assert len(parts) <= 4 and len(ids) > 400
    assert ids == list(range(ids[0], ids[-1] + 1))
    raw = [int(i) for p in parts for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]
    assert sorted(raw) == ids  # each id once on disk: no input outlived its merge
