"""Backfill throughput: one year of 1m BTC/USDT klines from the same local fake Binance, three ways.

Run: ``python tests/bench/backfill.py [--repeat N] [--fake live|memo] [--concurrency 4] [--year 2023]
[--profile OUT.prof] [--skip-old]``.

The fake Binance (tests/fake/binance.py, real HTTP, real wire format) runs in
its own subprocess with a weight budget that never binds; every client has its
proactive rate limiting off. Side by side, in one run:

- ``bare httpx``: an httpx loop over the same 526 pages, 4 in flight, that only
  reads the bodies (no parsing, no storage): the transport limit.
- ``dccd``: the real ``dccd backfill`` CLI in a subprocess (its run time is the
  run record's started/ended; the process time adds interpreter start-up).
- ``dccd 3.8.1``: the predecessor from /work/venv-old, in a subprocess, pointed at
  the fake through its module constant ``_BASE_REST`` with its end pinned
  (``operations.ns_now``) and its token bucket opened up.

Goals: dccd >= 10x dccd 3.8.1's rows/s, and dccd's run wall time <= 1.3x the bare loop's.
``--profile`` writes a cProfile of the dccd CLI process.

``--fake live`` (default) is the fake as the tests use it: it builds every page
in Python (~5.5 ms of CPU per 1000 bars, ~3 s per year), which caps every
client (the bare loop is fake-bound). ``--fake memo`` replays each page after
computing it once, so the clients' own costs show; run ``--repeat 2`` or more,
the first round fills the memo. CPU columns separate client from fake work,
which helps on a shared (noisy) machine.
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
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OLD_PYTHON = Path("/work/venv-old/bin/python")
DCCD = str(Path(sys.executable).with_name("dccd"))
CONCURRENCY = 4
MIN_MS = 60_000


def serve_fake(memo: bool) -> None:
    """Child mode: serve the fake Binance until stdin closes; print its URL first.

    With ``memo`` every answer is computed once by the fake and then replayed from memory, so
    that generating 1000 synthetic bars per page (~5 ms of Python) does not cap the clients.
    """
    import trio

    from tests.fake.binance import FakeBinance, FakeResponse, Faults

    class MemoFake(FakeBinance):
        def __init__(self) -> None:
            super().__init__(weight_limit=10**12, faults=Faults())
            self._memo: dict[tuple[str, str, tuple[tuple[str, str], ...]], FakeResponse] = {}

        def handle(self, method: str, path: str, query: Sequence[tuple[str, str]]) -> FakeResponse:
            key = (method, path, tuple(query))
            hit = self._memo.get(key)
            if hit is None:
                hit = self._memo[key] = super().handle(method, path, query)
            return hit

    async def main() -> None:
        fake = MemoFake() if memo else FakeBinance(weight_limit=10**12)
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            print(fake.url, flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)  # the parent closes stdin to stop us
            nursery.cancel_scope.cancel()

    trio.run(main)


def year_ms(year: int) -> tuple[int, int]:
    """[Jan 1 of year, Jan 1 of year + 1) in ms."""
    from dccd.domain.timeutil import parse_iso_ns

    return parse_iso_ns(f"{year}-01-01") // 1_000_000, parse_iso_ns(f"{year + 1}-01-01") // 1_000_000


def bare_loop(url: str, start_ms: int, end_ms: int) -> tuple[float, int, int]:
    """Fetch the same 1000-bar windows with httpx, CONCURRENCY in flight; return (wall s, pages, body bytes)."""
    import httpx
    import trio

    windows = [(t, min(t + 1000 * MIN_MS, end_ms) - MIN_MS) for t in range(start_ms, end_ms, 1000 * MIN_MS)]
    stats = {"bytes": 0, "pages": 0}

    async def main() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            await client.get("/api/v3/exchangeInfo")  # warm the pool like dccd's listing check
            t0 = time.perf_counter()
            send, recv = trio.open_memory_channel[tuple[int, int]](len(windows))
            for w in windows:
                send.send_nowait(w)
            send.close()

            async def worker() -> None:
                async for lo, hi in recv:
                    params: dict[str, str | int] = {"symbol": "BTCUSDT", "interval": "1m", "startTime": lo}
                    params |= {"endTime": hi, "limit": 1000}
                    r = await client.get("/api/v3/klines", params=params)
                    r.raise_for_status()
                    stats["bytes"] += len(r.content)
                    stats["pages"] += 1

            async with trio.open_nursery() as nursery:
                for _ in range(CONCURRENCY):
                    nursery.start_soon(worker)
            return time.perf_counter() - t0

    wall = trio.run(main)
    return wall, stats["pages"], stats["bytes"]


def run_dccd(url: str, year: int, work: Path, profile: str | None) -> dict[str, float]:
    """The dccd CLI in a subprocess; returns run/process wall times and rows."""
    data = work / "dccd-data"
    cfg = work / "dccd.yaml"
    cfg.write_text(f"storage: {{path: {data}}}\nexchanges:\n  binance: {{rest_url: '{url}', rate_limit: 0}}\n")
    cmd = [DCCD, "--config", str(cfg), "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m"]
    cmd += ["--start", f"{year}-01-01", "--end", f"{year + 1}-01-01", "--concurrency", str(CONCURRENCY), "--json"]
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", profile, *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    process_s = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"dccd failed ({res.returncode}): {res.stdout}\n{res.stderr[-2000:]}")
    (rec,) = json.loads(res.stdout)
    stored = _count_rows(data)
    if stored != rec["rows_written"]:
        raise SystemExit(f"dccd reported {rec['rows_written']} rows but the lake holds {stored}")
    return {
        "run_s": (rec["ended_ns"] - rec["started_ns"]) / 1e9,
        "process_s": process_s,
        "rows": rec["rows_written"],
        "pages": rec["progress"]["pages"],
    }


def _count_rows(data: Path) -> int:
    import duckdb

    glob = data / "ohlc" / "**" / "*.parquet"
    row = duckdb.connect().execute(f"SELECT count(*), count(DISTINCT ts) FROM read_parquet('{glob}')").fetchone()
    assert row is not None and row[0] == row[1], f"duplicates in the lake: {row}"
    return int(row[0])


OLD_WRAPPER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    url, start, end_ns, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    import dccd.sources.binance as binance
    binance._BASE_REST = url + "/api/v3"            # read at call time by fetch_ohlc_page
    import dccd.application.operations as ops
    ops.ns_now = lambda: end_ns                     # the backfill end is always "now" in 3.8.1
    import dccd.transport.ratelimit as rl
    rl._shared_limiter._rates["binance"] = 1e9      # open the 10 req/s token bucket (buckets are lazy)
    from dccd.application.jobs import JobParams, JobSpec, JobTarget, Trigger
    from dccd.application.service_factory import build_coverage_store, build_registry, build_runs_store, build_store
    from dccd.domain.symbol import Symbol
    from dccd.domain.types import DataType
    target = JobTarget(exchange="binance", symbol=Symbol.parse("BTC/USDT"), data_type=DataType("ohlc"), span=60)
    spec = JobSpec(id=JobSpec.make_id("backfill", target), operation="backfill", target=target,
                   trigger=Trigger(kind="once"), params=JobParams(start=start), origin="runtime")
    kw = dict(registry=build_registry(), store=build_store(data), runs_store=build_runs_store(data),
              coverage_store=build_coverage_store(data))
    t0 = time.perf_counter()
    result = asyncio.run(ops.backfill(spec, **kw))
    wall = time.perf_counter() - t0
    if result.get("error"):
        raise SystemExit("3.8.1 backfill failed: " + str(result["error"]))
    print(json.dumps({"run_s": wall, "rows": result["rows_written"]}))
    """
)


def run_old(url: str, year: int, work: Path) -> dict[str, float] | None:
    """dccd 3.8.1 in its own venv; None when that venv is missing."""
    if not OLD_PYTHON.exists():
        print(f"(skipping dccd 3.8.1: {OLD_PYTHON} not found)")
        return None
    end_ms = year_ms(year)[1]
    data = work / "old-data"
    # 3.8.1's paginator asks for [start, end] inclusive; end 1 ms before Jan 1 keeps the same bars.
    args = [str(OLD_PYTHON), "-c", OLD_WRAPPER, url, f"{year}-01-01", str((end_ms - 1) * 1_000_000), str(data)]
    t0 = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, timeout=1800, cwd=work)
    process_s = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"dccd 3.8.1 failed ({res.returncode}): {res.stdout}\n{res.stderr[-2000:]}")
    out: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_s"] = process_s
    return out


def _fake_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """CPU seconds used by finished child processes (and their threads)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    """Start the fake, run the three clients (interleaved, best of --repeat), print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--year", type=int, default=2023)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the three clients; the best run of each counts")
    ap.add_argument("--profile", default=None, help="write a cProfile of the (first) dccd process here")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight (dccd and the bare loop)")
    ap.add_argument("--skip-old", action="store_true")
    ap.add_argument(
        "--fake",
        choices=("live", "memo"),
        default="live",
        help="live: the fake computes every page (its CPU caps every client); memo: it replays computed pages",
    )
    ap.add_argument("--serve-fake", choices=("live", "memo"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake == "memo")
        return
    global CONCURRENCY
    CONCURRENCY = args.concurrency
    start_ms, end_ms = year_ms(args.year)
    bars = (end_ms - start_ms) // MIN_MS
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fake = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake", args.fake],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    results: dict[str, dict[str, float]] = {}

    def keep(name: str, r: dict[str, float]) -> None:
        if name not in results or r["run_s"] < results[name]["run_s"]:
            results[name] = r

    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()
        print(f"fake Binance ({args.fake}) at {url} in its own process; {bars:,} 1m bars of {args.year}")
        print(f"{os.cpu_count()} CPUs; dccd and the bare loop keep {CONCURRENCY} requests in flight, 3.8.1 one")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for round_no in range(1, args.repeat + 1):
            f0, c0 = _fake_cpu_s(fake.pid), time.process_time()
            wall, pages, size = bare_loop(url, start_ms, end_ms)
            bare = {"run_s": wall, "process_s": float("nan"), "rows": bars, "pages": pages}
            bare |= {"cpu_s": time.process_time() - c0, "fake_cpu_s": _fake_cpu_s(fake.pid) - f0}
            keep("bare httpx", bare)
            print(f"  round {round_no}: bare httpx {wall:.2f} s ({pages} pages, {size / 1e6:.0f} MB)", end="")
            with tempfile.TemporaryDirectory() as tmp:
                f0, c0 = _fake_cpu_s(fake.pid), _children_cpu_s()
                r = run_dccd(url, args.year, Path(tmp), args.profile if round_no == 1 else None)
                r |= {"cpu_s": _children_cpu_s() - c0, "fake_cpu_s": _fake_cpu_s(fake.pid) - f0}
            if r["rows"] != bars:
                raise SystemExit(f"dccd stored {r['rows']} rows, expected {bars}")
            keep("dccd", r)
            print(f", dccd {r['run_s']:.2f} s", end="")
            if not args.skip_old:
                with tempfile.TemporaryDirectory() as tmp:
                    f0, c0 = _fake_cpu_s(fake.pid), _children_cpu_s()
                    old = run_old(url, args.year, Path(tmp))
                    if old is not None:
                        old |= {"cpu_s": _children_cpu_s() - c0, "fake_cpu_s": _fake_cpu_s(fake.pid) - f0}
                if old is not None:
                    keep("dccd 3.8.1", old)
                    print(f", dccd 3.8.1 {old['run_s']:.2f} s ({int(old['rows']):,} rows)", end="")
            print(flush=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        fake.wait(10)
    print()
    print("best run of each client (wall: the backfill itself; process: + interpreter start-up; CPU: the client's")
    print("process incl. threads, and the fake's while serving it)")
    head = f"{'client':<12} {'wall s':>7} {'process s':>9} {'rows':>9} {'rows/s':>9} {'client CPU s':>12} {'fake CPU s':>10}"
    print(head)
    for name, r in results.items():
        print(
            f"{name:<12} {r['run_s']:>7.2f} {r['process_s']:>9.2f} {int(r['rows']):>9,} {r['rows'] / r['run_s']:>9,.0f}"
            f" {r['cpu_s']:>12.2f} {r['fake_cpu_s']:>10.2f}"
        )
    ours, bare = results["dccd"], results["bare httpx"]
    print()
    ratio = ours["run_s"] / bare["run_s"]
    print(f"dccd wall / bare httpx wall: {ratio:.2f}x (goal <= 1.3x) -> {'met' if ratio <= 1.3 else 'MISSED'}")
    old = results.get("dccd 3.8.1")
    if old is not None:
        speedup = (ours["rows"] / ours["run_s"]) / (old["rows"] / old["run_s"])
        print(
            f"dccd rows/s / dccd 3.8.1 rows/s: {speedup:.1f}x (goal >= 10x) -> {'met' if speedup >= 10 else 'MISSED'}"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
