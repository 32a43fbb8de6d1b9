"""Lake benchmark: dccd's Parquet lake side by side with dccd 3.8.1's ParquetStore.

Measures, on the same generated data:
  1. writing N trade rows (default 10M, in 1M-row batches) end to end from records;
  2. appending 60 one-minute bars to a 1m dataset of 0 .. 525,600 rows (must stay flat);
  3. reading one year (525,600 rows) of 1m bars; plus inventory of that year.

dccd 3.8.1 runs in its own virtual environment (env ``DCCD_OLD_VENV``, default
/work/venv-old; created with ``pip install dccd==3.8.1`` if missing) in a
subprocess. Record creation is excluded from every timing on both sides.

With ``--rolling [N]`` it instead measures small files: one day partition of N
(default 43,200) two-second trade parts as a live stream leaves it, read and
inventory time before and after rolling compaction (one backlog pass, as on the
first ``dccd serve`` start over an old lake), then the same day again with the
compaction interleaved every 5 minutes as serve runs it (total compaction time,
most parts seen).

With ``--snapshots`` it measures a year of 1m bars read plainly, snapshot creation, and reads as of the
snapshot (parts in the data tree, then moved to the retained area by a later compaction).

With ``--small-writes [N]`` it measures stream-sized writes (N writes of 10 trades, one part each):
the per-commit cost of the writer (part file plus its catalog registration).

With ``--contracts`` it measures the write path with the batch data contracts off and on, side by side
in one run (alternating rounds, best of each): 1M-row trade batches, 10-trade stream writes, 1000-bar
backfill pages and 60-bar appends, plus the quality gate alone on a 50,000-row flush.

Usage: python tests/bench/lake.py [--trades N] [--batch N] [--skip-old] [--rolling [N]] [--small-writes [N]] [--snapshots]
                                  [--contracts]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

# Shared by both sides (exec'd here and sent to the old venv): deterministic data.
GEN_SRC = textwrap.dedent(
    """
    import random

    T_TRADES = 1_709_251_200_000_000_000  # 2024-03-01: every trade lands on one day
    Y2024 = 1_704_067_200_000_000_000
    MIN = 60_000_000_000
    YEAR_BARS = 525_600

    def trade_rows(batch, n):
        rnd = random.Random(batch)
        price, out = 60_000.0 + batch, []
        for i in range(n):
            g = batch * n + i
            price = round(price + rnd.choice((-0.01, 0.0, 0.01)), 2)
            side = "buy" if rnd.random() < 0.5 else "sell"
            out.append((T_TRADES + g * 8_000_000 + rnd.randrange(8_000_000), str(3_000_000_000 + g), price,
                        round(rnd.expovariate(20.0), 6), side))
        return out

    def bar_rows(n):
        rnd = random.Random(7)
        price, out = 42_000.0, []
        for i in range(n):
            o = price
            c = round(o * (1 + rnd.gauss(0, 0.0008)), 2)
            h = round(max(o, c) * (1 + abs(rnd.gauss(0, 0.0004))), 2)
            lo = round(min(o, c) * (1 - abs(rnd.gauss(0, 0.0004))), 2)
            out.append((Y2024 + i * MIN, o, h, lo, c, round(rnd.expovariate(0.05), 4)))
            price = c
        return out
    """
)

OLD_SRC = textwrap.dedent(
    """
    import json, statistics, sys, time, tempfile, pathlib
    from dccd.storage.parquet import ParquetStore
    from dccd.domain.dataset import DatasetId
    from dccd.domain.symbol import Symbol
    from dccd.domain.types import DataType
    from dccd.domain.records import OHLCBar, Trade

    cfg = json.loads(sys.argv[1])
    exec(cfg["gen"])
    sym = Symbol(base="BTC", quote="USDT")
    TR = DatasetId(exchange="binance", symbol=sym, data_type=DataType.TRADES)
    OH = DatasetId(exchange="binance", symbol=sym, data_type=DataType.OHLC, span=60)
    out = {}

    def bars(rows):
        return [OHLCBar(ts=t, open=o, high=h, low=lo, close=c, volume=v) for t, o, h, lo, c, v in rows]

    with tempfile.TemporaryDirectory(dir=cfg["tmp"]) as d:
        store = ParquetStore(d)
        spent = 0.0
        for b in range(cfg["trades"] // cfg["batch"]):
            recs = [Trade(ts=t, price=p, amount=a, side=s, tid=i) for t, i, p, a, s in trade_rows(b, cfg["batch"])]
            t0 = time.perf_counter(); store.save(TR, recs); spent += time.perf_counter() - t0
        out["write_s"] = spent

    year = bar_rows(YEAR_BARS + 60 * cfg["appends"])
    out["append"] = {}
    for size in cfg["sizes"]:
        with tempfile.TemporaryDirectory(dir=cfg["tmp"]) as d:
            store = ParquetStore(d)
            if size:
                store.save(OH, bars(year[:size]))
            times = []
            for j in range(cfg["appends"]):
                recs = bars(year[size + 60 * j: size + 60 * (j + 1)])
                t0 = time.perf_counter(); store.save(OH, recs); times.append(time.perf_counter() - t0)
            out["append"][str(size)] = times
            if size == YEAR_BARS:
                reads = []
                for _ in range(cfg["reads"]):
                    t0 = time.perf_counter()
                    df = store.load(OH, Y2024, Y2024 + YEAR_BARS * MIN - 1)  # 3.8.1's end bound is inclusive
                    reads.append(time.perf_counter() - t0)
                out["read"] = reads
                out["read_rows"] = len(df)
                t0 = time.perf_counter(); store.inventory(); out["inventory_s"] = time.perf_counter() - t0
    print(json.dumps(out))
    """
)


def ensure_old_venv(path: Path) -> Path:
    """The 3.8.1 venv's python, creating the venv if missing."""
    py = path / "bin" / "python"
    if not py.exists():
        print(f"creating {path} with dccd==3.8.1 ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", "dccd==3.8.1"], check=True)
    return py


def run_new(cfg: dict[str, Any]) -> dict[str, Any]:
    """The same measurements on this checkout's Lake."""
    from dccd.domain import Candle, DatasetId, DataType, Span, Symbol, Trade
    from dccd.storage import Lake, Provenance

    gen: dict[str, Any] = {}
    exec(GEN_SRC, gen)
    sym = Symbol.parse("BTC/USDT")
    tr = DatasetId("binance", sym, DataType.TRADES)
    oh = DatasetId("binance", sym, DataType.OHLC, Span.parse("1m"))
    prov = Provenance("bench", "rest")
    now = 1_767_225_600_000_000_000  # 2026-01-01
    year_bars, minute, y2024 = gen["YEAR_BARS"], gen["MIN"], gen["Y2024"]
    out: dict[str, Any] = {}

    with tempfile.TemporaryDirectory(dir=cfg["tmp"]) as d:
        lake, spent = Lake(d), 0.0
        for b in range(cfg["trades"] // cfg["batch"]):
            recs = [Trade(t, i, p, a, s, None) for t, i, p, a, s in gen["trade_rows"](b, cfg["batch"])]
            t0 = time.perf_counter()
            lake.write(tr, recs, prov, now_ns=now)
            spent += time.perf_counter() - t0
        out["write_s"] = spent

    year = [Candle(t, o, h, lo, c, v) for t, o, h, lo, c, v in gen["bar_rows"](year_bars + 60 * cfg["appends"])]
    out["append"] = {}
    for size in cfg["sizes"]:
        with tempfile.TemporaryDirectory(dir=cfg["tmp"]) as d:
            lake = Lake(d)
            if size:
                lake.write(oh, year[:size], prov, now_ns=now)
            times = []
            for j in range(cfg["appends"]):
                chunk = year[size + 60 * j : size + 60 * (j + 1)]
                t0 = time.perf_counter()
                lake.write(oh, chunk, prov, now_ns=now)
                times.append(time.perf_counter() - t0)
            out["append"][str(size)] = times
            if size == year_bars:
                out["read"], out["read_rows"] = _reads(lake, oh, y2024, y2024 + year_bars * minute, cfg["reads"])
                t0 = time.perf_counter()
                (inv,) = lake.inventory(oh)
                out["inventory_s"] = time.perf_counter() - t0
                out["inventory_rows"] = inv.rows

    # Same year written as a REST backfill would: 1000-bar pages, i.e. 526 parts before compaction.
    with tempfile.TemporaryDirectory(dir=cfg["tmp"]) as d:
        lake = Lake(d)
        for k in range(0, year_bars, 1000):
            lake.write(oh, year[k : min(k + 1000, year_bars)], prov, now_ns=now)
        out["read_pages"], _ = _reads(lake, oh, y2024, y2024 + year_bars * minute, cfg["reads"])
        t0 = time.perf_counter()
        lake.compact(oh)
        out["compact_s"] = time.perf_counter() - t0
        out["read_compacted"], _ = _reads(lake, oh, y2024, y2024 + year_bars * minute, cfg["reads"])
    return out


def _reads(lake: Any, ds: Any, start: int, end: int, n: int) -> tuple[list[float], int]:
    times, rows = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        rows = lake.read_table(ds, start, end).table.num_rows
        times.append(time.perf_counter() - t0)
    return times, rows


def _ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e3:7.1f} ms  max {max(xs) * 1e3:7.1f} ms"


def report(cfg: dict[str, Any], new: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Print both sides in one table."""
    rows: list[tuple[str, str, str]] = []
    n = cfg["trades"] // cfg["batch"] * cfg["batch"]

    def side(res: dict[str, Any] | None, fn: Any) -> str:
        try:
            return fn(res) if res is not None else "skipped"
        except KeyError:
            return "n/a"

    rows.append(
        (
            f"write {n:,} trades ({cfg['batch']:,}-row batches)",
            side(new, lambda r: f"{n / r['write_s'] / 1e6:5.2f} M rows/s ({r['write_s']:.1f} s)"),
            side(old, lambda r: f"{n / r['write_s'] / 1e6:5.2f} M rows/s ({r['write_s']:.1f} s)"),
        )
    )
    for size in cfg["sizes"]:
        rows.append(
            (
                f"append 60 bars to {size:,} rows (x{cfg['appends']})",
                side(new, lambda r, s=size: _ms(r["append"][str(s)])),
                side(old, lambda r, s=size: _ms(r["append"][str(s)])),
            )
        )
    rows.append(
        (
            "read 1 year of 1m bars (cold = 1st)",
            side(
                new,
                lambda r: (
                    f"cold {r['read'][0] * 1e3:6.1f} ms  warm " + _ms(r["read"][1:]) + f"  {r['read_rows']:,} rows"
                ),
            ),
            side(
                old,
                lambda r: (
                    f"cold {r['read'][0] * 1e3:6.1f} ms  warm " + _ms(r["read"][1:]) + f"  {r['read_rows']:,} rows"
                ),
            ),
        )
    )
    rows.append(("  same year as 526 backfill pages", side(new, lambda r: "warm " + _ms(r["read_pages"][1:])), "-"))
    rows.append(("  compact those 526 parts", side(new, lambda r: f"{r['compact_s'] * 1e3:.0f} ms"), "-"))
    rows.append(("  read after compaction", side(new, lambda r: "warm " + _ms(r["read_compacted"][1:])), "-"))
    rows.append(
        (
            "inventory of the year",
            side(new, lambda r: f"{r['inventory_s'] * 1e3:.1f} ms (exact gaps)"),
            side(old, lambda r: f"{r['inventory_s'] * 1e3:.1f} ms"),
        )
    )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{'operation':<{w0}}  {'dccd (this checkout)':<{w1}}  dccd 3.8.1 ParquetStore")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


def _stream_parts(root: Path, first: int, n: int, rows: int = 10) -> None:
    """``n`` parts of ``rows`` trades each, 2 s apart, named and stamped as the writer does at that time."""
    import pyarrow.parquet as pq

    from dccd.domain import DatasetId, DataType, Symbol, Trade
    from dccd.storage import layout, writer
    from dccd.storage.schema import records_to_table

    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
    day = 1_709_251_200_000_000_000  # 2024-03-01
    pdir = layout.dataset_dir(root, ds) / layout.partition_name("date", day)
    pdir.mkdir(parents=True, exist_ok=True)
    meta = writer.provenance_metadata(ds, writer.Provenance("binance", "ws"))
    for k in range(first, first + n):
        t0 = day + k * 2_000_000_000
        recs = [Trade(t0 + j * 1_000_000, str(k * rows + j), 60_000.0 + j, 0.01, "buy", t0) for j in range(rows)]
        table = records_to_table(ds.data_type, recs).replace_schema_metadata(meta)
        name = layout.part_name(t0, t0 + (rows - 1) * 1_000_000, layout.new_stamp(t0 + 2_000_000_000))
        pq.write_table(table, pdir / name, **writer.parquet_options(table.column_names))


def run_small_writes(n: int, tmp: str, rounds: int = 5) -> None:
    """Stream-sized writes: ``n`` writes of 10 trades each through ``Lake.write`` (one part per write, as a
    live stream commits every flush); writes/s and latency percentiles, best of ``rounds`` fresh lakes.

    Where the checkout has a catalog, rounds alternate with its registration switched off (a no-op in
    its place), so both sides run under the same machine load and the difference is the catalog's cost.
    """
    from dccd.domain import DatasetId, DataType, Symbol, Trade
    from dccd.storage import Lake, Provenance

    try:
        from dccd.storage import catalog
    except ImportError:
        catalog = None  # type: ignore[assignment]
    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
    day = 1_709_251_200_000_000_000
    prov = Provenance("binance", "ws")
    batches = [
        [Trade(day + (k * 10 + j) * 1_000_000, str(k * 10 + j), 60_000.0 + j, 0.01, "buy", None) for j in range(10)]
        for k in range(n)
    ]
    sides = ["catalog", "no catalog"] if catalog is not None else ["this checkout"]
    real = catalog.register if catalog is not None else None
    best: dict[str, list[float]] = {}
    for r in range(rounds):
        for side in sides:
            if catalog is not None:
                catalog.register = real if side == "catalog" else (lambda *a, **k: None)  # type: ignore[assignment]
            root = Path(tmp) / f"small-{r}"
            lake, times = Lake(root), []
            for recs in batches:
                t0 = time.perf_counter()
                lake.write(ds, recs, prov, now_ns=day + 86_400_000_000_000)
                times.append(time.perf_counter() - t0)
            if catalog is not None:
                catalog.forget(root)
            shutil.rmtree(root)
            if side not in best or statistics.median(times) < statistics.median(best[side]):
                best[side] = times
    if catalog is not None:
        catalog.register = real  # type: ignore[assignment]
    for side, times in best.items():
        q = statistics.quantiles(times, n=100)
        print(
            f"{side:<14} {n:,} stream-sized writes (10 trades, 1 part each): {n / sum(times):7.0f} writes/s"
            f"  p50 {q[49] * 1e3:.3f} ms  p99 {q[98] * 1e3:.2f} ms  (best median of {rounds})",
            flush=True,
        )
    if len(best) == 2:
        on, off = (statistics.median(best[s]) for s in sides)
        print(
            f"catalog registration adds {(on - off) * 1e6:.0f} us per write at the median ({(on / off - 1) * 100:+.1f} %)"
        )


def run_snapshots(tmp: str, reads: int) -> None:
    """A year of 1m bars (526 backfill pages, compacted): plain read vs snapshot create vs as-of read, then the
    as-of read again once newer writes and a compaction moved the snapshot's parts to the retained area."""
    from dccd.domain import Candle, DatasetId, DataType, Span, Symbol
    from dccd.storage import Lake, Provenance

    gen: dict[str, Any] = {}
    exec(GEN_SRC, gen)
    oh = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
    prov, now = Provenance("bench", "rest"), 1_767_225_600_000_000_000
    year_bars = gen["YEAR_BARS"]
    year = [Candle(t, o, h, lo, c, v) for t, o, h, lo, c, v in gen["bar_rows"](year_bars)]
    root = Path(tmp) / "snapshots"
    lake = Lake(root)
    for k in range(0, year_bars, 1000):
        lake.write(oh, year[k : min(k + 1000, year_bars)], prov, now_ns=now)
    lake.compact(oh)
    parts = len(list(root.glob("ohlc/**/part-*.parquet")))

    def timed(*fns: Any) -> list[list[float]]:
        """Each of ``fns`` ``reads`` times, interleaved a b b a a b ... so machine load and the order (the second
        read of a pair pays for freeing the first one's result) hit both alike."""
        out: list[list[float]] = [[] for _ in fns]
        for i in range(reads):
            pairs = list(zip(fns, out, strict=True))
            for fn, acc in pairs if i % 2 == 0 else reversed(pairs):
                t0 = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t0)
        return out

    def plain_read() -> None:
        lake.read_table(oh)

    creates = []
    for i in range(reads):
        t0 = time.perf_counter()
        lake.create_snapshot(tag=f"bench{i}")
        creates.append(time.perf_counter() - t0)
    plain, as_of = timed(plain_read, lambda: lake.read_table(oh, as_of="bench0"))
    assert lake.read_table(oh, as_of="bench0").table.equals(lake.read_table(oh).table)
    fixes = [Candle(c.ts, c.open, c.high, c.low, c.close * 1.0001, c.volume) for c in year[:: 60 * 24]]
    lake.write(oh, fixes, prov, now_ns=now)  # one correction a day, then everything compacted again
    lake.compact(oh)
    plain2, retained = timed(plain_read, lambda: lake.read_table(oh, as_of="bench0"))

    def line(label: str, xs: list[float], ref: list[float] | None) -> None:
        over = f"  ({(statistics.median(xs) / statistics.median(ref) - 1) * 100:+5.1f} % vs plain read)" if ref else ""
        print(f"{label:<44} {_ms(xs)}{over}", flush=True)

    print(f"a year of 1m bars ({year_bars:,} rows), compacted to {parts} parts; reads interleaved")
    line("plain read", plain, None)
    line("snapshot create (repair pass + commit)", creates, None)
    line("as-of read, parts still in the data tree", as_of, plain)
    line("plain read after corrections + compaction", plain2, None)
    line("as-of read, parts in the retained area", retained, plain2)
    total = (statistics.median(creates) + statistics.median(as_of)) / statistics.median(plain) * 100 - 100
    print(f"snapshot create + as-of read vs plain read: {total:+.1f} %")
    shutil.rmtree(root)


def run_rolling(n: int, tmp: str) -> None:
    """Small files: read and inventory of a day of ``n`` stream parts before and after rolling compaction."""
    from dccd.domain import DatasetId, DataType, Symbol
    from dccd.storage import Lake, compaction, reader

    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
    day = 1_709_251_200_000_000_000
    policy = compaction.CompactPolicy()  # serve's defaults

    def measure(root: Path, label: str) -> None:
        lake = Lake(root)
        reader._footer_cache.clear()  # a fresh process: every footer unread
        t0 = time.perf_counter()
        rows = lake.read_table(ds).table.num_rows
        cold = time.perf_counter() - t0
        warm, _ = _reads(lake, ds, day, day + 86_400_000_000_000, 3)
        reader._footer_cache.clear()
        t0 = time.perf_counter()
        lake.inventory(ds)
        inv_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        lake.inventory(ds)
        inv_warm = time.perf_counter() - t0
        parts = len(list(root.rglob("part-*.parquet")))
        print(
            f"{label:<26} {parts:>6,} parts  read {rows:,} rows: cold {cold * 1e3:8.0f} ms, warm {_ms(warm)}"
            f"  | inventory cold {inv_cold * 1e3:7.0f} ms, warm {inv_warm * 1e3:7.0f} ms",
            flush=True,
        )

    root = Path(tmp) / "rolling"
    t0 = time.perf_counter()
    _stream_parts(root, 0, n)
    print(f"wrote {n:,} two-second parts in {time.perf_counter() - t0:.0f} s", flush=True)
    measure(root, "before compaction")
    t0 = time.perf_counter()
    res = compaction.compact_rolling(root, ds, day, policy, wall_ns=day + 2 * 86_400_000_000_000)
    print(f"one backlog pass: {len(res)} merges in {time.perf_counter() - t0:.1f} s", flush=True)
    measure(root, "after rolling compaction")

    day_root = Path(tmp) / "day"
    busy, most = 0.0, 0
    for first in range(0, n, 150):  # serve's 5-minute interval
        count = min(150, n - first)
        _stream_parts(day_root, first, count)
        now = day + (first + count) * 2_000_000_000
        t0 = time.perf_counter()
        compaction.compact_rolling(day_root, ds, now, policy, wall_ns=now)
        busy += time.perf_counter() - t0
        most = max(most, len(list(day_root.rglob("part-*.parquet"))))
    print(f"interleaved day: compaction busy {busy:.1f} s in total, at most {most} parts after a pass")
    measure(day_root, "end of the interleaved day")
    shutil.rmtree(root)
    shutil.rmtree(day_root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trades", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=10)
    ap.add_argument("--reads", type=int, default=8)
    ap.add_argument("--skip-old", action="store_true")
    ap.add_argument("--rolling", type=int, nargs="?", const=43_200, default=None, metavar="N")
    ap.add_argument("--small-writes", type=int, nargs="?", const=3000, default=None, metavar="N")
    ap.add_argument("--snapshots", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dccd-bench-", dir=os.environ.get("DCCD_BENCH_TMP", "/work"))
    if args.snapshots:
        print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; data under {tmp}", flush=True)
        run_snapshots(tmp, args.reads)
        os.rmdir(tmp)
        return
    if args.small_writes is not None:
        print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; data under {tmp}", flush=True)
        run_small_writes(args.small_writes, tmp)
        os.rmdir(tmp)
        return
    if args.rolling is not None:
        print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; data under {tmp}", flush=True)
        run_rolling(args.rolling, tmp)
        os.rmdir(tmp)
        return
    cfg = {
        "trades": args.trades,
        "batch": args.batch,
        "appends": args.appends,
        "reads": args.reads,
        "sizes": [0, 131_400, 262_800, 525_600],
        "tmp": tmp,
        "gen": GEN_SRC,
    }
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; data under {tmp}", flush=True)
    t0 = time.perf_counter()
    new = run_new(cfg)
    print(f"dccd (this checkout) done in {time.perf_counter() - t0:.0f} s", flush=True)
    old = None
    if not args.skip_old:
        py = ensure_old_venv(Path(os.environ.get("DCCD_OLD_VENV", "/work/venv-old")))
        t0 = time.perf_counter()
        # -I: isolated, so this checkout (cwd) does not shadow the old package.
        proc = subprocess.run([str(py), "-I", "-c", OLD_SRC, json.dumps(cfg)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit("dccd 3.8.1 run failed")
        old = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"dccd 3.8.1 done in {time.perf_counter() - t0:.0f} s", flush=True)
    os.rmdir(tmp)
    report(cfg, new, old)


if __name__ == "__main__":
    main()
