"""Data-contract benchmark: ``dccd check`` over a year of 1m bars plus a day of 2 M trades (target: <= 5 s).

The bars are a random walk for 2024; the trades fill 2024-03-01 (one every ~43 ms, consecutive ids) and
that day's bars are rebuilt from them, so ``bars_vs_trades`` compares 1,440 bars and the data is clean
except for planted rows (a bad tick, a silence, two missing bars): the figure is the cost of a real
check, not of a failure path. Data generation and writing are excluded from the timing; each part is
compacted first (a serve-maintained lake), and the check runs ``--runs`` times (cold = first). The CPU
time of all threads is printed too, with the load average: on a shared machine the wall time is
mostly waiting for a core.

Usage: python tests/bench/check.py [--trades N] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

DAY = 1_709_251_200_000_000_000  # 2024-03-01
Y2024 = 1_704_067_200_000_000_000
MIN = 60_000_000_000
YEAR_BARS = 525_600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trades", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from dccd.contracts.check import check
    from dccd.contracts.rules import DEFAULT_RULES
    from dccd.domain import Candle, DatasetId, DataType, Span, Symbol, Trade
    from dccd.storage import Lake, Provenance

    sym = Symbol.parse("BTC/USDT")
    bars_ds = DatasetId("binance", sym, DataType.OHLC, Span.parse("1m"))
    trades_ds = DatasetId("binance", sym, DataType.TRADES)
    prov, now = Provenance("bench", "rest"), 1_767_225_600_000_000_000
    tmp = tempfile.mkdtemp(prefix="dccd-bench-check-", dir=os.environ.get("DCCD_BENCH_TMP", "/work"))
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; data under {tmp}", flush=True)
    try:
        t0 = time.perf_counter()
        rnd = random.Random(1)
        step = 86_400_000_000_000 // args.trades
        price, trades = 60_000.0, []
        for i in range(args.trades):
            price = round(price + rnd.choice((-0.01, 0.0, 0.01)), 2)
            trades.append(Trade(DAY + i * step, str(10_000_000 + i), price, 0.001, "buy" if i % 2 else "sell", None))
        trades[1000] = Trade(trades[1000].ts, trades[1000].id, price * 3, 0.001, "buy", None)  # a bad tick
        del trades[500_000:510_000]  # ~7 min without a trade
        day_bars: dict[int, list[Trade]] = {}
        for t in trades:
            day_bars.setdefault(t.ts - t.ts % MIN, []).append(t)
        price, bars = 42_000.0, []
        for i in range(YEAR_BARS):
            ts = Y2024 + i * MIN
            if ts in day_bars:
                g = day_bars[ts]
                bars.append(Candle(ts, g[0].price, max(x.price for x in g), min(x.price for x in g), g[-1].price,
                                   sum(x.amount for x in g), None, len(g)))  # fmt: skip
                continue
            if DAY <= ts < DAY + 86_400_000_000_000:
                continue  # the silence: no trades, no bar
            o = price
            c = round(o * (1 + rnd.gauss(0, 0.0008)), 2)
            bars.append(Candle(ts, o, round(max(o, c) * 1.0003, 2), round(min(o, c) * 0.9997, 2), c, 1.0))
            price = c
        del bars[1000:1002]  # two missing bars in January
        print(
            f"generated {len(bars):,} bars and {len(trades):,} trades in {time.perf_counter() - t0:.1f} s", flush=True
        )
        lake = Lake(tmp)
        for k in range(0, len(trades), 1_000_000):
            lake.write(trades_ds, trades[k : k + 1_000_000], prov, now_ns=now)
        lake.write(bars_ds, bars, prov, now_ns=now)
        lake.compact()
        times, cpu, report = [], [], None
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            report = check(Path(tmp), DEFAULT_RULES, now_ns=now)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        assert report is not None
        rows = report.rows
        print(f"\ndccd check of {rows:,} rows ({len(bars):,} 1m bars + {len(trades):,} trades, 2 datasets)")
        print(f"  cold {times[0]:.2f} s   warm median {statistics.median(times[1:] or times):.2f} s   target <= 5 s")
        print(f"  CPU (all threads) cold {cpu[0]:.2f} s   warm median {statistics.median(cpu[1:] or cpu):.2f} s"
              f"   load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
        for ds in report.datasets:
            failed = ", ".join(f"{c.contract} {c.violations}" for c in ds.contracts if c.status == "fail")
            print(f"  {ds.dataset}: {ds.rows:,} rows, found: {failed or 'nothing'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
