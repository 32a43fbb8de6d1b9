"""Archive backfills: bulk files vs REST, and one day of 2,000,000 trades from a daily archive into the lake.

Run: ``python tests/bench/archive.py [--year 2024] [--no-freqtrade] [--skip-klines] [--repeat 3]``.

The fakes (tests/fake/binance.py REST and tests/fake/binance_archive.py, real
HTTP on 127.0.0.1) run in their own subprocess; every archive file is built
once before timing (a CDN serves static files). Each dccd measurement is the
real ``dccd backfill`` CLI in its own subprocess, reporting the run's time (from
its run record) and the process's peak RSS. Side by side, in one run:

1. A year of 1m BTC/USDT klines: ``--source archive`` (12 monthly files) vs
   ``--source rest`` (527 pages of 1000) from the same fake; both lakes must hold
   the same rows.
2. One day (2024-12-01) of ~2,000,000 ETH/USDT trades from the daily ``trades``
   archive to the lake (download, SHA-256, pyarrow CSV parse, quality gates,
   Parquet): rows/s and peak RSS, ``--repeat`` times (the machine is shared: best and median shown,
   with CPU seconds, which other work does not inflate). Goal: >= 1.5 M rows/s on 2 cores, RSS <= 500 MB.
3. freqtrade (its ``binance_public_data`` archive download + conversion to a
   trades DataFrame and a Parquet file) on the same day's ``aggTrades`` file of
   the same fake (one fill per aggregate: the same 2,000,000 rows), in
   /work/venv-freqtrade with its download URL pointed at the fake; skipped with a
   note when that venv has no freqtrade (``python -m venv /work/venv-freqtrade &&
   /work/venv-freqtrade/bin/pip install freqtrade``: it installs from PyPI with its
   TA-Lib wheel; measured with freqtrade 2026.9).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FREQTRADE_PYTHON = Path("/work/venv-freqtrade/bin/python")
TRADES_DAY = "2024-12-01"
EVERY_MS = 43  # one trade every 43 ms: 2,009,303 trades a day


def serve_fakes(year: int, klines: bool) -> None:
    """Child mode: the fake REST + archive; prints their URLs once every timed file is built; serves until stdin closes."""
    import trio

    from dccd.domain.spans import Span
    from tests.fake.binance import DEFAULT_MARKETS, FakeBinance
    from tests.fake.binance_archive import FakeBinanceArchive
    from tests.fake.binance_data import FakeMarket

    dense = FakeMarket("ETHUSDT", "ETH", "USDT", listed_ms=1_600_000_000_000, trades_per_ms=1, every_ms=EVERY_MS)
    rest = FakeBinance(markets=(*DEFAULT_MARKETS, dense), weight_limit=10**9)
    archive = FakeBinanceArchive(rest)
    t0 = time.perf_counter()
    paths = [f"/data/spot/daily/trades/ETHUSDT/ETHUSDT-trades-{TRADES_DAY}.zip"]
    paths.append(f"/data/spot/daily/aggTrades/ETHUSDT/ETHUSDT-aggTrades-{TRADES_DAY}.zip")
    if klines:
        paths += [f"/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-{year}-{m:02d}.zip" for m in range(1, 13)]
    cache = Path(tempfile.gettempdir()) / "dccd-bench-archive"  # the fake is deterministic: build once per machine
    for p in paths:
        hit = cache / p.lstrip("/")
        if hit.exists():
            archive._cache[p] = hit.read_bytes()
        else:
            hit.parent.mkdir(parents=True, exist_ok=True)
            hit.write_bytes(archive.body(p) or b"")
    sizes = {p: len(archive.body(p) or b"") for p in paths}
    for p in paths:
        archive.checksum(p)
    _ = Span
    built_s = time.perf_counter() - t0

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(rest.serve)
            await nursery.start(archive.serve)
            print(
                json.dumps({"rest": rest.url, "archive": archive.url, "sizes": sizes, "built_s": built_s}), flush=True
            )
            await trio.to_thread.run_sync(sys.stdin.read)
            nursery.cancel_scope.cancel()

    trio.run(main)


def run_cli(argv: list[str]) -> None:
    """Child mode: the dccd CLI in this process; prints ``{"maxrss_mb": ...}`` on stderr's last line."""
    from dccd.cli.main import cli

    code = 0
    try:
        cli.main(argv, standalone_mode=False)
    except SystemExit as exc:
        code = int(exc.code or 0)
    use = resource.getrusage(resource.RUSAGE_SELF)
    cpu = use.ru_utime + use.ru_stime
    print(json.dumps({"maxrss_mb": peak_rss_mb(), "cpu_s": cpu, "code": code}), file=sys.stderr)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): ``ru_maxrss`` would include the parent's peak at fork (Linux keeps
    it across exec), which the bench's own row comparisons inflate."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dccd(urls: dict[str, str], root: Path, args: list[str]) -> dict[str, float]:
    """One ``dccd backfill`` in a subprocess: run seconds (run record), process seconds, rows, peak RSS."""
    cfg = root.with_suffix(".yaml")
    cfg.write_text(
        f"storage: {{path: {json.dumps(str(root))}}}\n"
        f"exchanges:\n  binance: {{rest_url: {json.dumps(urls['rest'])}, archive_url: {json.dumps(urls['archive'])}, rate_limit: 0}}\n"
    )
    cmd = [sys.executable, __file__, "--cli", "--", "--config", str(cfg), "backfill", "binance", *args, "--json", "--no-progress", "-q"]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    tail = json.loads(out.stderr.strip().splitlines()[-1])
    records = json.loads(out.stdout)
    (rec,) = records
    if rec["state"] != "succeeded":
        raise SystemExit(f"dccd run {rec['state']}: {rec.get('error')}\n{out.stderr[-2000:]}")
    return {
        "run_s": (rec["ended_ns"] - rec["started_ns"]) / 1e9,
        "proc_s": wall,
        "rows": rec["rows_written"],
        "rss_mb": tail["maxrss_mb"],
        "cpu_s": tail["cpu_s"],
        "files": (rec.get("progress") or {}).get("archive_files", 0),
        "pages": (rec.get("progress") or {}).get("pages", 0),
    }


def startup() -> dict[str, float]:
    """CPU seconds and peak RSS of the CLI doing next to nothing (``dccd validate`` on the embedded config)."""
    out = subprocess.run([sys.executable, __file__, "--cli", "--", "validate"], capture_output=True, text=True, cwd=ROOT, check=False)  # fmt: skip
    tail = json.loads(out.stderr.strip().splitlines()[-1])
    return {"cpu_s": tail["cpu_s"], "rss_mb": tail["maxrss_mb"]}


FREQTRADE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, resource, sys, time
    from datetime import date
    import aiohttp
    from freqtrade.enums import CandleType
    from freqtrade.exchange import binance_public_data as bpd
    from freqtrade.data.converter import trades_list_to_df

    origin, day, out = sys.argv[1], date.fromisoformat(sys.argv[2]), sys.argv[3]
    real = bpd.binance_vision_trades_zip_url
    bpd.binance_vision_trades_zip_url = lambda *a: real(*a).replace("https://data.binance.vision", origin)

    async def main():
        async with aiohttp.ClientSession() as session:
            return await bpd.get_daily_trades("ETHUSDT", CandleType.SPOT, day, session)

    t0 = time.perf_counter()
    trades = asyncio.run(main())
    t1 = time.perf_counter()
    df = trades_list_to_df(trades)
    df.to_parquet(out)
    t2 = time.perf_counter()
    use = resource.getrusage(resource.RUSAGE_SELF)
    hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0] / 1024
    print(json.dumps({"rows": len(df), "download_parse_s": t1 - t0, "total_s": t2 - t0,
                      "rss_mb": hwm, "cpu_s": use.ru_utime + use.ru_stime}))
    """
)


def freqtrade(urls: dict[str, str], out: Path) -> dict[str, float] | str:
    """freqtrade's archive trades download + conversion of the same day, or why it could not run."""
    if not FREQTRADE_PYTHON.exists():
        return "no /work/venv-freqtrade (make it: python -m venv /work/venv-freqtrade && /work/venv-freqtrade/bin/pip install freqtrade)"
    probe = subprocess.run([str(FREQTRADE_PYTHON), "-c", "import freqtrade, sys; print(freqtrade.__version__)"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        return "freqtrade does not import in /work/venv-freqtrade: " + probe.stderr.strip().splitlines()[-1]
    res = subprocess.run(
        [str(FREQTRADE_PYTHON), "-c", FREQTRADE_SCRIPT, urls["archive"], TRADES_DAY, str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        return "freqtrade failed: " + (res.stderr.strip().splitlines() or ["?"])[-1]
    result: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    result["version"] = probe.stdout.strip()  # type: ignore[assignment]
    return result


def same_rows(a: Path, b: Path, data_type: str) -> bool:
    """Both lakes hold the same rows (DuckDB, every part, sorted)."""
    import duckdb

    con = duckdb.connect()
    q = "SELECT * EXCLUDE (exchange, symbol, span, month) FROM read_parquet('{}/{}/**/*.parquet', hive_partitioning=true) ORDER BY ts"  # fmt: skip
    return bool(con.execute(q.format(a, data_type)).fetchall() == con.execute(q.format(b, data_type)).fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--no-freqtrade", action="store_true")
    parser.add_argument("--skip-klines", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the trades day (best and median shown)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cli", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve:
        serve_fakes(args.year, not args.skip_klines)
        return
    if args.cli:
        run_cli(rest[1:] if rest[:1] == ["--"] else rest)
        return
    cmd = [sys.executable, __file__, "--serve", "--year", str(args.year)] + (
        ["--skip-klines"] if args.skip_klines else []
    )
    fakes = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert fakes.stdout is not None
        urls = json.loads(fakes.stdout.readline())
        mb = sum(urls["sizes"].values()) / 1e6
        print(
            f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores; other work slows every figure)"
        )
        print(f"fakes up: {len(urls['sizes'])} archive files built ({mb:,.1f} MB) in {urls['built_s']:.1f}s")
        with tempfile.TemporaryDirectory(prefix="dccd-bench-archive-") as tmp:
            t = Path(tmp)
            if not args.skip_klines:
                y = args.year
                span = [
                    "BTC/USDT",
                    "--type",
                    "ohlc",
                    "--span",
                    "1m",
                    "--start",
                    f"{y}-01-01",
                    "--end",
                    f"{y + 1}-01-01",
                ]
                arch = dccd(urls, t / "k-archive", [*span, "--source", "archive"])
                rest_r = dccd(urls, t / "k-rest", [*span, "--source", "rest"])
                same = same_rows(t / "k-archive", t / "k-rest", "ohlc")
                print(f"\n1. a year ({y}) of 1m klines, same fake, same rows in both lakes: {same}")
                print(
                    f"   {'source':<10} {'rows':>9} {'requests':>9} {'run s':>7} {'proc s':>7} {'rows/s':>10} {'RSS MB':>7}"
                )
                for name, r, n in (("archive", arch, f"{r_files(arch)} files"), ("rest", rest_r, f"{rest_r['pages']:.0f} pages")):  # fmt: skip
                    print(f"   {name:<10} {r['rows']:>9,.0f} {n:>9} {r['run_s']:>7.2f} {r['proc_s']:>7.2f} {r['rows'] / r['run_s']:>10,.0f} {r['rss_mb']:>7.0f}")  # fmt: skip
                print(f"   archive is {rest_r['run_s'] / arch['run_s']:.1f}x faster than REST")
            day = TRADES_DAY
            nxt = f"{day[:8]}{int(day[8:]) + 1:02d}"
            trade_args = ["ETH/USDT", "--type", "trades", "--start", day, "--end", nxt, "--source", "archive"]
            runs = [dccd(urls, t / f"t-archive-{i}", trade_args) for i in range(max(1, args.repeat))]
            base = startup()
            print(f"\n2. one day of trades ({day}) from the daily archive to the lake ({len(runs)} runs, each into an empty lake)")  # fmt: skip
            for tr in runs:
                work_cpu = max(tr["cpu_s"] - base["cpu_s"], 1e-9)
                print(f"   dccd:      {tr['rows']:,.0f} rows in {tr['run_s']:.2f}s = {tr['rows'] / tr['run_s'] / 1e6:.2f} M rows/s, peak RSS {tr['rss_mb']:.0f} MB; process {tr['proc_s']:.2f}s, {tr['cpu_s']:.2f} CPU-s = {work_cpu:.2f} beyond start-up = {tr['rows'] / work_cpu / 1e6:.2f} M rows per CPU-s")  # fmt: skip
            walls = sorted(r["run_s"] for r in runs)
            tr = min(runs, key=lambda r: r["run_s"])
            med = walls[len(walls) // 2]
            print(f"   dccd best: {tr['rows'] / walls[0] / 1e6:.2f} M rows/s, median {tr['rows'] / med / 1e6:.2f} M rows/s (goal >= 1.5); peak RSS at most {max(r['rss_mb'] for r in runs):.0f} MB (goal <= 500); CLI start-up {base['cpu_s']:.2f} CPU-s, {base['rss_mb']:.0f} MB (`dccd validate`)")  # fmt: skip
            if not args.no_freqtrade:
                ft = freqtrade(urls, t / "freqtrade.parquet")
                if isinstance(ft, str):
                    print(f"   freqtrade: not run: {ft}")
                else:
                    print(f"   freqtrade {ft['version']}: {ft['rows']:,.0f} rows (aggTrades file) in {ft['total_s']:.2f}s = {ft['rows'] / ft['total_s'] / 1e6:.2f} M rows/s (download+parse {ft['download_parse_s']:.2f}s), peak RSS {ft['rss_mb']:.0f} MB, {ft['cpu_s']:.2f} CPU-s")  # fmt: skip
                    print(f"   dccd is {ft['total_s'] / med:.1f}x faster than freqtrade (median run)")
    finally:
        if fakes.stdin:
            fakes.stdin.close()
        fakes.wait(timeout=30)


def r_files(r: dict[str, float]) -> int:
    return int(r["files"])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the fakes live in tests/
    main()
