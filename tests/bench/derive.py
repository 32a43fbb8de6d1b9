"""Derived bars and dccd 3.x imports: throughput, side by side with what exists to compare.

1. derive: N trades (default 1,000,000 over one day) stored in a lake, then
   ``--derive-from trades`` runs through the real service (``svc.backfill``: writer
   actor, quality gates) for 1m and 1s bars; trades/s = N / wall time of the run.
   Peer: dccd 3.8.1's ``domain.transforms.aggregate_ohlc`` (a pure-Python
   aggregation it ships but never calls) on the same trades, in its own venv,
   record construction excluded.
2. import: a dccd 3.8.1 data directory (written in its exact layout, see
   tests/storage/dccd3_layout.py) of N Coinbase trades in daily files and a year of
   BitMEX 1m bars in one annual file; ``import_v3`` rows/s, then a second import
   (everything already present). Baseline: reading and rewriting the same files with
   pyarrow alone (no fixes, no dedup, no gates).

dccd 3.8.1: ``DCCD3_PYTHON`` (default /work/venv-dccd3/bin/python; skipped when missing).

Usage: python tests/bench/derive.py [--trades N] [--skip-old]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dccd.actors import open_service

from dccd.config import Config, Storage
from dccd.domain import DatasetId, DataType, Symbol
from dccd.ops import parse_backfill
from dccd.storage import Lake, Provenance
from dccd.storage.importer import import_v3
from tests.storage.dccd3_layout import V3Dataset, write_v3_dir

T0 = 1_704_067_200_000_000_000  # 2024-01-01
DAY = 86_400 * 10**9
OLD_PYTHON = os.environ.get("DCCD3_PYTHON", "/work/venv-dccd3/bin/python")


def trades_table(n: int, seed: int = 1) -> pa.Table:
    rnd = random.Random(seed)
    step = DAY // n
    price, prices, amounts, sides = 42_000.0, [], [], []
    for _ in range(n):
        price = round(price + rnd.choice((-0.5, 0.0, 0.5)), 2)
        prices.append(price)
        amounts.append(round(rnd.expovariate(20.0), 6) + 0.000001)
        sides.append("buy" if rnd.random() < 0.5 else "sell")
    return pa.table({
        "ts": pa.array([T0 + i * step for i in range(n)], pa.int64()),
        "id": pa.array([str(i) for i in range(n)]),
        "price": prices, "amount": amounts, "side": sides,
        "recv_ts": pa.nulls(n, pa.int64()),
    })  # fmt: skip


async def derive_run(root: Path, span: str) -> tuple[float, int]:
    cfg = Config(storage=Storage(path=str(root)))
    req = parse_backfill(
        "binance", ["BTC/USDT"], "ohlc", known_exchanges=["binance"], span=span,
        start="2024-01-01", end="2024-01-03", derive_from="trades",
    )  # fmt: skip
    async with open_service(cfg) as svc:
        t = time.perf_counter()
        (rec,) = await svc.backfill(req)
        wall = time.perf_counter() - t
    assert rec.state == "succeeded", rec.error
    return wall, rec.rows_written


OLD_AGG = """
import json, sys, time, pyarrow.parquet as pq
from dccd.domain.records import Trade
from dccd.domain.transforms import aggregate_ohlc
t = pq.read_table(sys.argv[1])
cols = [t[c].to_pylist() for c in ("ts", "price", "amount", "side", "id")]
trades = [Trade(ts=a, price=b, amount=c, side=d, tid=e) for a, b, c, d, e in zip(*cols)]
out = {}
for span in (60, 1):
    s = time.perf_counter(); bars = aggregate_ohlc(trades, span); out[span] = (time.perf_counter() - s, len(bars))
print(json.dumps(out))
"""


def bench_derive(n: int, skip_old: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        table = trades_table(n)
        ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
        Lake(root).write_table(ds, table, Provenance("binance", "rest"))
        print(f"derive: {n:,} trades over one day")
        for span in ("1m", "1s"):
            wall, bars = trio.run(derive_run, root, span)
            print(
                f"  dccd --derive-from trades {span:>2}: {bars:>7,} bars in {wall:6.2f} s = {n / wall:>12,.0f} trades/s"
            )
        if skip_old or not Path(OLD_PYTHON).exists():
            print(f"  (dccd 3.8.1 skipped: {OLD_PYTHON} missing or --skip-old)")
            return
        flat = Path(tmp) / "trades.parquet"
        pq.write_table(table, flat)
        res = subprocess.run([OLD_PYTHON, "-I", "-c", OLD_AGG, str(flat)], capture_output=True, text=True, check=True)
        for span, (wall, bars) in json.loads(res.stdout).items():
            label = "1m" if span == "60" else "1s"
            print(
                f"  dccd 3.8.1 aggregate_ohlc {label:>2}: {bars:>7,} bars in {wall:6.2f} s = {n / wall:>12,.0f} trades/s"
            )


def bench_import(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        days = 4
        per_day = n // days
        rnd = random.Random(3)
        trades = [
            {"ts": T0 + d * DAY + i * (DAY // per_day), "price": 42_000.0 + rnd.randrange(1000) / 100,
             "amount": 0.001 + rnd.randrange(1000) / 1e5, "side": "buy" if i % 2 else "sell", "tid": str(d * per_day + i)}
            for d in range(days) for i in range(per_day)
        ]  # fmt: skip
        bars = [
            {"ts": T0 + (i + 1) * 60 * 10**9, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5,
             "volume": 1.0, "quote_volume": 100.0, "trades": 3}
            for i in range(525_600 - 1440)
        ]  # fmt: skip
        write_v3_dir(old, [
            V3Dataset("coinbase", "BTC", "USD", "spot", "trades", None, trades),
            V3Dataset("bitmex", "BTC", "USD", "perp", "ohlc", 60, bars, T0 + 400 * DAY),
        ], legacy=False)  # fmt: skip
        rows = len(trades) + len(bars)
        files = sorted(old.rglob("*.parquet"))
        t = time.perf_counter()
        for i, f in enumerate(files):
            pq.write_table(pq.read_table(f), Path(tmp) / f"copy{i}.parquet", compression="zstd")
        bare = time.perf_counter() - t
        lake = Path(tmp) / "lake"
        t = time.perf_counter()
        report = import_v3(old, lake)
        first = time.perf_counter() - t
        t = time.perf_counter()
        again = import_v3(old, lake)
        second = time.perf_counter() - t
        print(f"import: {rows:,} rows ({len(trades):,} trades in {days} daily files, {len(bars):,} 1m bars in 1 file)")
        print(f"  dccd import                 : {first:6.2f} s = {rows / first:>12,.0f} rows/s"
              f" ({report.rows_imported:,} imported, {sum(report.fixed.values()):,} fixed)")  # fmt: skip
        print(f"  dccd import again (all kept) : {second:6.2f} s = {rows / second:>12,.0f} rows/s"
              f" ({again.rows_imported:,} imported, {again.rows_skipped:,} skipped)")  # fmt: skip
        print(f"  pyarrow read + write only    : {bare:6.2f} s = {rows / bare:>12,.0f} rows/s (baseline)")
        runs = [_timed_run(old, Path(tmp) / "lake-run") for _ in range(2)]
        for label, (secs, rec, rep) in zip(("first", "again"), runs, strict=True):
            print(f"  as one run ({label:5}), writer actor: {secs:6.2f} s = {rows / secs:>12,.0f} rows/s"
                  f" ({rep.rows_imported:,} imported, {rep.rows_skipped:,} skipped; run {rec.state})")  # fmt: skip
        print(
            "  (the 'dccd import' command: a service, one run record, the rows through a writer actor;"
            " import_v3 above: the library call writing directly)"
        )


def _timed_run(old: Path, lake: Path) -> tuple[float, Any, Any]:
    """``dccd import`` as the CLI runs it (a service, one run, a writer actor), timed inside the service."""
    import trio
    from dccd.actors import open_service
    from dccd.actors.imports import run_import

    from dccd.config import Config, Storage

    async def main() -> tuple[float, Any, Any]:
        async with open_service(Config(storage=Storage(path=str(lake)))) as svc:
            t = time.perf_counter()
            rec, rep = await run_import(svc, old)
            return time.perf_counter() - t, rec, rep

    return trio.run(main)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--skip-old", action="store_true")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, pyarrow {pa.__version__}")
    bench_derive(args.trades, args.skip_old)
    bench_import(args.trades)


if __name__ == "__main__":
    main()
