"""Scan benchmark: the three built-in scanners over 500 symbols × 1000 1h bars, vs pandas + TA-Lib.

Builds a lake of ``--symbols`` (500) random-walk series of ``--bars`` (1000) 1h bars, then runs, each
in a fresh subprocess (so peak RSS is the contender's own):

- dccd: ``relative_volume``, ``breakout`` and ``technical`` with their defaults, through
  :func:`dccd.scan.engine.run_scan` (one DuckDB statement each over the lake);
- peer: a loop per symbol: read the symbol's Parquet parts with pyarrow into pandas, compute the
  same indicators with pandas rolling windows and TA-Lib (RSI, EMA, MACD, BBANDS, ATR), test the
  same conditions.

Each contender repeats the whole run ``--repeat`` times; the figures are the p50 and min wall time
of one run (three scanners), its p50 CPU time (all threads) and the process's peak RSS. Both sides
must find the same hits.

With ``--alerts`` it instead measures that webhooks never slow ingestion: a service stores trades
through its writer as fast as the gate allows for ``--seconds`` while 2,000 signals a second are
published on its bus, with (a) no webhook, (b) a webhook on a closed port (connection refused),
(c) a webhook that accepts connections and never answers (every delivery times out); the stored
rows/s of each run are printed side by side.

Usage: python tests/bench/scan.py [--symbols 500] [--bars 1000] [--repeat 7] | --alerts [--seconds 5]
Needs the bench extra (pandas, ta-lib, numpy, psutil).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def build(root: Path, symbols: int, bars: int) -> None:
    from tests.scan import synth

    for i in range(symbols):
        b = synth.walk(bars, seed=i)
        if i % 50 == 0:
            b["volume"][-1] *= 4  # a few volume spikes
        synth.write(root, "binance", f"S{i:03d}/USDT", b)


def run_dccd(root: Path) -> list[tuple[str, str, str]]:
    from dccd.scan.engine import ScanSpec, run_scans

    hits = []
    for res in run_scans(root, [ScanSpec(n) for n in ("relative_volume", "breakout", "technical")]):
        name = res.scanner
        hits += [(name, h["symbol"], str(h.get("signal") or h.get("direction") or "")) for h in res.hits]
    return sorted(hits)


def run_peer(root: Path) -> list[tuple[str, str, str]]:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    import talib

    hits = []
    base = root / "ohlc" / "exchange=binance"
    for sdir in sorted(base.iterdir()):
        files = sorted(str(p) for p in (sdir / "span=1h").rglob("part-*.parquet"))
        df = pd.concat([pq.read_table(f).to_pandas() for f in files]).drop_duplicates("ts", keep="last")
        df = df.sort_values("ts").reset_index(drop=True)
        sym = sdir.name.removeprefix("symbol=").replace("-", "/")
        c, h, lo, v = (df[k].to_numpy(dtype=float) for k in ("close", "high", "low", "volume"))
        # relative_volume (RVOL-at-time left out: the peer's loop skips it, to its advantage)
        mean_v = pd.Series(v).shift(1).rolling(20).mean().to_numpy()
        if mean_v[-1] > 0 and v[-1] / mean_v[-1] >= 2.0:
            hits.append(("relative_volume", sym, ""))
        # breakout (Donchian 20)
        ch = pd.Series(h).shift(1).rolling(20).max().to_numpy()
        cl = pd.Series(lo).shift(1).rolling(20).min().to_numpy()
        if c[-1] > ch[-1]:
            hits.append(("breakout", sym, "up"))
        elif c[-1] < cl[-1]:
            hits.append(("breakout", sym, "down"))
        # technical
        rsi = talib.RSI(c, 14)
        ef, es = talib.EMA(c, 20), talib.EMA(c, 50)
        _macd, _sig, hist = talib.MACD(c, 12, 26, 9)
        up, mid, dn = talib.BBANDS(c, 20, 2, 2, 0)
        talib.ATR(h, lo, c, 14)
        width = (up - dn) / mid
        low120 = pd.Series(width).shift(1).rolling(120).min().to_numpy()
        conds = {
            "rsi_oversold": rsi[-1] < 30,
            "rsi_overbought": rsi[-1] > 70,
            "ema_cross_up": ef[-2] - es[-2] <= 0 < ef[-1] - es[-1],
            "ema_cross_down": ef[-2] - es[-2] >= 0 > ef[-1] - es[-1],
            "macd_cross_up": hist[-2] <= 0 < hist[-1],
            "macd_cross_down": hist[-2] >= 0 > hist[-1],
            "bb_squeeze": bool(np.isfinite(low120[-1]) and width[-1] < low120[-1]),
        }
        hits += [("technical", sym, k) for k, hit in conds.items() if hit]
    return sorted(hits)


def worker(kind: str, root: Path, repeat: int) -> None:
    fn = run_dccd if kind == "dccd" else run_peer
    walls, cpus, hits = [], [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        hits = fn(root)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)  # all threads: steadier than wall time on a loaded machine
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"walls": walls, "cpus": cpus, "rss_mb": rss_mb, "hits": hits}))


async def ingest(root: Path, alert_url: str | None, seconds: float) -> float:
    """Rows/s stored by a service writer while signals flood the bus (and the webhook, if any)."""
    import trio
    from dccd.actors import PartWritten, open_service
    from dccd.actors.messages import Batch, SignalGenerated

    from dccd.config import parse_config
    from dccd.domain import DatasetId, DataType, Symbol, Trade
    from dccd.storage.lake import Lake
    from dccd.storage.writer import Provenance

    text = f"storage: {{path: '{root}'}}\n"
    if alert_url:
        text += f"alerts:\n  - {{url: '{alert_url}', timeout_s: 2, retries: 3}}\n"
    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
    lake = Lake(root)
    rows = 0

    def count(m: object) -> None:
        nonlocal rows
        if isinstance(m, PartWritten):
            rows += m.rows

    async with open_service(parse_config(text, env={}), on_event=count) as svc:
        writer = await svc.start_writer(
            "bench-writer", lambda d, recs: lake.write(d, recs, Provenance("bench", "ws")), max_rows=50_000
        )
        sig = SignalGenerated("r", "relative_volume", "1", "h", "binance", "A/USDT", 1, {"rvol": 3.0})
        t_end = trio.current_time() + seconds
        base = 1_735_689_600_000_000_000

        async def flood() -> None:
            while trio.current_time() < t_end:
                for _ in range(200):
                    svc.emit(sig)
                await trio.sleep(0.1)

        async def produce() -> None:
            i = 0
            while trio.current_time() < t_end:
                await writer.wait_writable()
                recs = [Trade(base + i + k, str(i + k), 100.0, 1.0, "buy") for k in range(5000)]
                writer.send(Batch(ds, recs, source="bench", transport="ws"))  # type: ignore[arg-type]
                i += 5000
                await trio.lowlevel.checkpoint()

        t0 = trio.current_time()
        async with trio.open_nursery() as n:
            n.start_soon(flood)
            n.start_soon(produce)
        await svc.stop_actor("bench-writer")  # drains
        elapsed = trio.current_time() - t0
        svc.cancel()
    return rows / elapsed


def bench_alerts(seconds: float, repeat: int) -> None:
    import socket
    import threading

    import trio

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    dead.close()  # connection refused
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1000)  # accepts (kernel backlog) and never answers
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(hole.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    hole_url = f"http://127.0.0.1:{hole.getsockname()[1]}/hook"
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    runs: dict[str, list[float]] = {"no webhook": [], "webhook refused": [], "webhook never answers": []}
    urls = {"no webhook": None, "webhook refused": dead_url, "webhook never answers": hole_url}
    for _ in range(repeat):  # interleaved, so load changes hit every variant alike
        for label, url in urls.items():
            with tempfile.TemporaryDirectory(prefix="dccd-bench-alerts-") as tmp:
                runs[label].append(trio.run(ingest, Path(tmp), url, seconds))
    base = statistics.median(runs["no webhook"])
    print(f"{'run (median of ' + str(repeat) + ')':<24} {'stored rows/s':>14} {'vs none':>8}   all runs")
    for label, r in runs.items():
        med = statistics.median(r)
        print(f"{label:<24} {med:>14,.0f} {100 * (med / base - 1):>+7.1f}%   {' '.join(f'{x:,.0f}' for x in r)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--bars", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--worker", choices=("dccd", "peer"))
    ap.add_argument("--root")
    ap.add_argument("--alerts", action="store_true")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    if args.alerts:
        bench_alerts(args.seconds, args.repeat)
        return
    if args.worker:
        worker(args.worker, Path(args.root), args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="dccd-bench-scan-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build(root, args.symbols, args.bars)
        print(f"lake: {args.symbols} symbols x {args.bars} 1h bars built in {time.perf_counter() - t0:.1f} s")
        results = {}
        for kind in ("dccd", "peer"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", kind, "--root", str(root), "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[kind] = json.loads(out.strip().splitlines()[-1])
    print(f"{'contender':<34} {'p50 s':>7} {'min s':>7} {'CPU p50 s':>10} {'peak RSS MB':>12} {'hits':>5}")
    labels = {"dccd": "dccd (3 scanners, DuckDB)", "peer": "pandas + TA-Lib loop per symbol"}
    for kind, r in results.items():
        walls = r["walls"]
        print(
            f"{labels[kind]:<34} {statistics.median(walls):>7.3f} {min(walls):>7.3f}"
            f" {statistics.median(r['cpus']):>10.3f} {r['rss_mb']:>12.0f}"
            f" {len(r['hits']):>5}"
        )
    a, b = ({tuple(h) for h in results[k]["hits"]} for k in ("dccd", "peer"))
    print("same hits" if a == b else f"hits differ: dccd only {sorted(a - b)[:5]}, peer only {sorted(b - a)[:5]}")
    print("goal: p50 <= 1.0 s, peak RSS <= 1024 MB")


if __name__ == "__main__":
    main()
