"""SQL endpoint benchmark: the lake views (plan, pin, lock down, dedup) vs bare DuckDB over the same files.

Lake: S symbols x B 1h bars (one dataset and one part per symbol: 500 x 1,000 = 500,000 rows by
default) and T trades of one symbol in two parts that overlap by half (so the trades view deduplicates).
Each query runs N times through :func:`dccd.storage.query.run_query` (what ``dccd sql`` and the API run:
planning, hard-link pins, a fresh locked-down database, the views) and, side by side, as the same SQL
on a plain DuckDB connection over ``read_parquet('{root}/ohlc/**/*.parquet', hive_partitioning=true)``
(no dedup, no pins: the floor); the trades count against the lake's own deduplicated read
(``Lake.read_table``). Then the first query over HTTP (``POST /api/v1/query``). Prints p50/p90.

Usage: python tests/bench/sql.py [--symbols S] [--bars B] [--trades T] [--runs N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Y2024 = 1_704_067_200_000_000_000
HOUR = 3_600_000_000_000

QUERIES = {
    "aggregate": "SELECT symbol, count(*) AS n, avg(close) AS c, max(high) AS h FROM ohlc GROUP BY symbol",
    "last bar": "SELECT symbol, max(ts) AS ts, arg_max(close, ts) AS close FROM ohlc GROUP BY symbol",
    "filter": "SELECT * FROM ohlc WHERE symbol = 'S7-USDT' AND ts >= {mid}",
}


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def fill(root: Path, symbols: int, bars: int, trades: int) -> None:
    """Write the lake through Lake.write_table (real parts, real names)."""
    import math
    import random

    import pyarrow as pa

    from dccd.domain import DatasetId, DataType, Span, Symbol
    from dccd.storage.lake import Lake
    from dccd.storage.writer import Provenance

    lake = Lake(root)
    prov = Provenance("binance", "rest")
    rnd = random.Random(7)
    ts = pa.array([Y2024 + i * HOUR for i in range(bars)], pa.int64())
    now = Y2024 + (bars + 24) * HOUR
    for s in range(symbols):
        close, x = [], 0.0
        for _ in range(bars):  # a random walk
            x += rnd.gauss(0, 0.01)
            close.append(100 * math.exp(x))
        table = pa.table(
            {
                "ts": ts,
                "open": close,
                "high": [c * 1.01 for c in close],
                "low": [c * 0.99 for c in close],
                "close": close,
                "volume": [rnd.uniform(1, 100) for _ in range(bars)],
                "quote_volume": pa.nulls(bars, pa.float64()),
                "trades": pa.nulls(bars, pa.int64()),
            }
        )
        ds = DatasetId("binance", Symbol.parse(f"S{s}/USDT"), DataType.OHLC, Span.parse("1h"))
        lake.write_table(ds, table, prov, now_ns=now)
    tds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
    half = trades // 2
    for lo in (0, half // 2):
        ids = range(lo, lo + half)
        table = pa.table(
            {
                "ts": pa.array([Y2024 + i * 1_000_000 for i in ids], pa.int64()),
                "id": pa.array([str(i) for i in ids]),
                "price": [rnd.uniform(1, 2) for _ in ids],
                "amount": [rnd.uniform(0, 1) for _ in ids],
                "side": pa.array(["buy"] * half),
                "recv_ts": pa.nulls(half, pa.int64()),
            }
        )
        lake.write_table(tds, table, prov, now_ns=Y2024 + 10 * 86_400 * 10**9)


def time_runs(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--bars", type=int, default=1000)
    ap.add_argument("--trades", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()

    import duckdb

    from dccd.storage.query import run_query

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        t0 = time.perf_counter()
        fill(root, args.symbols, args.bars, args.trades)
        rows = args.symbols * args.bars
        parts = len(list(root.glob("ohlc/**/*.parquet")))
        print(f"lake: {args.symbols} symbols x {args.bars} 1h bars = {rows:,} rows ({parts} parts), "
              f"{args.trades:,} trades in 2 parts overlapping by half; written in {time.perf_counter() - t0:.1f}s")  # fmt: skip
        planned = time_runs(lambda: _open_only(root), args.runs)
        print(f"open_views('ohlc') alone (list, footers, pins, locked-down database, view): "
              f"p50 {pct(planned, .5) * 1e3:.1f} ms, p90 {pct(planned, .9) * 1e3:.1f} ms")  # fmt: skip
        mid = Y2024 + args.bars // 2 * HOUR
        glob = f"read_parquet('{root}/ohlc/**/*.parquet', hive_partitioning=true)"
        print(f"{'query':<12} {'dccd run_query p50/p90 (ms)':>28} {'bare DuckDB p50/p90 (ms)':>26} {'rows':>8}")
        for name, sql in QUERIES.items():
            sql = sql.format(mid=mid)
            got = run_query(root, sql)
            ours = time_runs(lambda sql=sql: run_query(root, sql), args.runs)
            con = duckdb.connect()
            bare_sql = sql.replace("FROM ohlc", f"FROM {glob}")
            bare = time_runs(lambda con=con, q=bare_sql: con.sql(q).to_arrow_table(), args.runs)
            con.close()
            print(f"{name:<12} {pct(ours, .5) * 1e3:>17.1f} / {pct(ours, .9) * 1e3:<8.1f}"
                  f" {pct(bare, .5) * 1e3:>15.1f} / {pct(bare, .9) * 1e3:<8.1f} {got.table.num_rows:>8}")  # fmt: skip
        tsql = "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM trades"
        got = run_query(root, tsql)
        ours = time_runs(lambda: run_query(root, tsql), max(3, args.runs // 3))
        peer = time_runs(lambda: _lake_read_trades(root), max(3, args.runs // 3))
        print(f"{'trades dedup':<12} {pct(ours, .5) * 1e3:>17.1f} / {pct(ours, .9) * 1e3:<8.1f}"
              f" {pct(peer, .5) * 1e3:>15.1f} / {pct(peer, .9) * 1e3:<8.1f} {got.table.to_pylist()}"
              "  (peer: Lake.read_table, the lake's own deduplicated read, + pyarrow count)")  # fmt: skip
        http_p50, http_p90 = _http(root, QUERIES["aggregate"], args.runs)
        print(f"HTTP POST /api/v1/query aggregate (json): p50 {http_p50 * 1e3:.1f} ms, p90 {http_p90 * 1e3:.1f} ms")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _open_only(root: Path) -> None:
    from dccd.storage.views import open_views

    with open_views(root, {"ohlc"}):
        pass


def _lake_read_trades(root: Path) -> int:
    import pyarrow.compute as pc

    from dccd.domain import DatasetId, DataType, Symbol
    from dccd.storage.lake import Lake

    table = Lake(root).read_table(DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)).table
    return int(pc.count_distinct(table.column("id")).as_py())


def _http(root: Path, sql: str, runs: int) -> tuple[float, float]:
    import functools

    import httpx
    import trio
    from dccd.actors import open_service
    from dccd.web import create_app, serve_http

    from dccd.config import parse_config

    samples: list[float] = []

    async def go() -> None:
        cfg = parse_config(f"storage: {{path: '{root}'}}\n", env={})
        async with open_service(cfg) as svc, trio.open_nursery() as nursery:
            app = create_app(svc, cfg)
            urls = await nursery.start(functools.partial(serve_http, svc, cfg, host="127.0.0.1", port=0, app=app))
            async with httpx.AsyncClient(base_url=urls[0], timeout=60) as client:
                for _ in range(runs + 1):
                    t0 = time.perf_counter()
                    r = await client.post("/api/v1/query", json={"sql": sql})
                    assert r.status_code == 200, r.text
                    samples.append(time.perf_counter() - t0)
            nursery.cancel_scope.cancel()

    trio.run(go)
    return pct(samples[1:], 0.5), pct(samples[1:], 0.9)


if __name__ == "__main__":
    main()
