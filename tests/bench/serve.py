"""HTTP/SSE benchmark of `dccd serve`'s web layer, measured against its peers in the same run.

1. Reading one year of 1m bars (525,600 rows, written with the lake directly)
   through ``GET /api/v1/data/ohlc/...`` in each format: p50/p99 over N reads,
   side by side with DuckDB reading the same files directly (the lake's own
   read, and a bare ``read_parquet``). Goal: p50 <= 100 ms and <= 2x DuckDB.
2. SSE fan-out: a paced publisher (the ingest) publishes trade batches on the
   hub for D seconds with 0 and then with 200 SSE subscribers attached; the
   subscribers run in a separate (spawned) process so their parsing does not
   share the server's core. Reports the publish rate in both phases (goal:
   unchanged within 5 %), and the events and trades per second delivered.

Usage: python tests/bench/serve.py [--reads N] [--subscribers N] [--rate BATCHES_PER_S] [--seconds D]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.` importable
    sys.path.insert(0, str(ROOT))

Y2024 = 1_704_067_200_000_000_000
MIN = 60_000_000_000
YEAR_BARS = 525_600
TRADES_PER_BATCH = 20


def pct(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of samples, nearest rank."""
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def write_year(root: Path) -> Any:
    """A year of 1m bars written through the lake (12 monthly parts); returns the dataset."""
    import pyarrow as pa

    from dccd.domain import DatasetId, DataType, Span, Symbol
    from dccd.storage.lake import Lake
    from dccd.storage.schema import LOOSE_SCHEMAS
    from dccd.storage.writer import Provenance

    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
    rnd = random.Random(7)
    cols: dict[str, list[Any]] = {
        k: [] for k in ("ts", "open", "high", "low", "close", "volume", "quote_volume", "trades")
    }
    price = 42_000.0
    for i in range(YEAR_BARS):  # a random walk: realistic entropy for the Parquet encoders
        o, c = price, round(price * (1 + rnd.gauss(0, 0.0008)), 2)
        cols["ts"].append(Y2024 + i * MIN)
        cols["open"].append(o)
        cols["high"].append(round(max(o, c) * (1 + abs(rnd.gauss(0, 0.0004))), 2))
        cols["low"].append(round(min(o, c) * (1 - abs(rnd.gauss(0, 0.0004))), 2))
        cols["close"].append(c)
        vol = round(rnd.expovariate(0.05), 4)
        cols["volume"].append(vol)
        cols["quote_volume"].append(round(vol * c, 4))
        cols["trades"].append(rnd.randrange(50, 5000))
        price = c
    table = pa.table(cols, schema=LOOSE_SCHEMAS[DataType.OHLC])
    Lake(root).write_table(ds, table, Provenance("binance", "rest", "bench"), now_ns=Y2024 + 400 * 86400 * 10**9)
    return ds


def baselines(root: Path, reads: int) -> float:
    """Write the year, time DuckDB reading it directly and the lake's export per format; returns DuckDB's p50."""
    import duckdb

    from dccd.storage.lake import Lake

    ds = write_year(root)
    lake = Lake(root)
    files = sorted(str(p) for p in root.glob("ohlc/**/*.parquet"))
    print(
        f"data: {YEAR_BARS:,} 1m bars in {len(files)} parts, {sum(Path(f).stat().st_size for f in files) / 1e6:.1f} MB"
    )

    def time_it(fn: Any, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    def show(label: str, samples: list[float], extra: str = "") -> None:
        print(f"{label:<40} p50 {pct(samples, 0.5) * 1e3:7.1f} ms  p99 {pct(samples, 0.99) * 1e3:7.1f} ms{extra}")

    con = duckdb.connect()
    show(
        "DuckDB read_parquet (bare, ordered)",
        time_it(lambda: con.sql(f"SELECT * FROM read_parquet({files!r}) ORDER BY ts").to_arrow_table(), reads),
    )
    via_lake = time_it(lambda: lake.read_table(ds), reads)
    assert lake.read_table(ds).table.num_rows == YEAR_BARS
    show("DuckDB via Lake.read_table (the plan)", via_lake)
    for fmt in ("arrow", "parquet", "csv", "jsonl"):
        show(
            f"lake export only, {fmt} (no HTTP)",
            time_it(lambda fmt=fmt: sum(len(c) for c in lake.export(ds, fmt)), max(3, reads // 2)),
        )
    return pct(via_lake, 0.5)


async def bench_api(root: Path, reads: int, duck_p50: float) -> None:
    import httpx
    import trio
    from dccd.actors import open_service
    from dccd.web import serve_http

    from dccd.config import parse_config

    cfg = parse_config(f"storage: {{path: '{root}'}}\n", env={})
    plan = [("arrow", reads), ("parquet", reads), ("csv", max(3, reads // 4)), ("json", max(3, reads // 4))]
    async with open_service(cfg) as svc, trio.open_nursery() as nursery:
        [url] = await nursery.start(functools.partial(serve_http, svc, cfg, host="127.0.0.1", port=0))
        for where in (
            "httpx client in this process",
            "httpx client in another process",
            "raw socket client in another process",
        ):
            print(f"-- API, {where} --")
            if where.endswith("this process"):
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    results = [await _timed_reads(client, fmt, n) for fmt, n in plan]
            else:
                target = raw_read_client if where.startswith("raw") else read_client
                parent, child = multiprocessing.get_context("spawn").Pipe()
                proc = multiprocessing.get_context("spawn").Process(target=target, args=(url, plan, child))
                proc.start()
                results = await trio.to_thread.run_sync(parent.recv)
                await trio.to_thread.run_sync(proc.join)
            for (fmt, _), (samples, size) in zip(plan, results, strict=True):
                p50 = pct(samples, 0.5)
                verdict = "ok" if p50 <= 0.100 and p50 <= 2 * duck_p50 else "over goal"
                print(
                    f"{'API format=' + fmt:<40} p50 {p50 * 1e3:7.1f} ms  p99 {pct(samples, 0.99) * 1e3:7.1f} ms"
                    f"  {size / 1e6:6.1f} MB  {p50 / duck_p50:4.2f}x DuckDB  [{verdict}]"
                )
        nursery.cancel_scope.cancel()


async def _timed_reads(client: Any, fmt: str, n: int) -> tuple[list[float], int]:
    samples, size = [], 0
    for _ in range(n + 1):  # the first read warms the connection
        t0 = time.perf_counter()
        r = await client.get("/api/v1/data/ohlc/binance/BTC-USDT", params={"span": "1m", "format": fmt})
        samples.append(time.perf_counter() - t0)
        size = len(r.content)
        assert r.status_code == 200, r.text
    return samples[1:], size


def read_client(url: str, plan: list[tuple[str, int]], conn: Any) -> None:
    """Child process: the timed reads, so the client does not share the server's core."""
    import httpx
    import trio

    async def main() -> list[tuple[list[float], int]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return [await _timed_reads(client, fmt, n) for fmt, n in plan]

    conn.send(trio.run(main))


def raw_read_client(url: str, plan: list[tuple[str, int]], conn: Any) -> None:
    """Child process: the timed reads over one keep-alive socket with 1 MB reads (the server's own pace:
    httpx reads 64 KB at a time and parses every piece, which bounds what it can take in)."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    buf = bytearray()

    def fill() -> None:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf.extend(chunk)

    def read_line() -> bytes:
        while (i := buf.find(b"\r\n")) < 0:
            fill()
        line = bytes(buf[:i])
        del buf[: i + 2]
        return line

    def get(fmt: str) -> int:
        path = f"/api/v1/data/ohlc/binance/BTC-USDT?span=1m&format={fmt}"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())  # the Host check wants the port
        while read_line():  # status line and headers (chunked transfer encoding)
            pass
        size = 0
        while n := int(read_line(), 16):
            while len(buf) < n + 2:
                fill()
            del buf[: n + 2]
            size += n
        read_line()
        return size

    results = []
    for fmt, n in plan:
        samples, size = [], 0
        for _ in range(n + 1):
            t0 = time.perf_counter()
            size = get(fmt)
            samples.append(time.perf_counter() - t0)
        results.append((samples[1:], size))
    conn.send(results)


def sse_clients(url: str, n: int, conn: Any) -> None:
    """Child process: n SSE clients counting events/trades until told to stop; reports totals."""
    import httpx
    import trio

    async def main() -> None:
        events = [0] * n
        trades = [0] * n
        lagged = [0] * n

        async def one(i: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with client.stream(
                "GET", "/api/v1/live/trades", params={"exchange": "binance", "symbol": "BTC/USDT"}
            ) as r:
                task_status.started()
                tail = b""
                async for chunk in r.aiter_raw():
                    data = tail + chunk
                    events[i] += data.count(b"event: trades") - tail.count(b"event: trades")
                    trades[i] += data.count(b'"side":') - tail.count(b'"side":')
                    lagged[i] += data.count(b"event: lagged") - tail.count(b"event: lagged")
                    tail = data[-16:]

        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client, trio.open_nursery() as nursery:
            for i in range(n):
                await nursery.start(one, i)
            conn.send("connected")
            expected = await trio.to_thread.run_sync(conn.recv)  # trades published while we listened
            t0 = trio.current_time()
            with trio.move_on_after(20):  # let every client read what is still in flight
                while min(trades) < expected and not any(lagged):
                    await trio.sleep(0.02)
            drain_s = trio.current_time() - t0
            nursery.cancel_scope.cancel()
        conn.send(
            {
                "events": sum(events),
                "trades": sum(trades),
                "lagged": sum(lagged),
                "min_trades": min(trades),
                "drain_s": drain_s,
            }
        )

    trio.run(main)


async def bench_fanout(root: Path, subscribers: int, rate: float, seconds: float) -> None:
    import trio
    from dccd.actors import Batch, open_service
    from dccd.web import WebOptions, create_app, serve_http

    from dccd.config import parse_config
    from dccd.domain import DatasetId, DataType, Symbol, Trade

    key = ("trades", "binance", "BTC/USDT")
    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)

    def batch(k: int) -> Batch:
        base = k * TRADES_PER_BATCH
        records: list[Any] = [
            Trade(ts=Y2024 + base + i, id=str(base + i), price=42_000.0 + i, amount=0.01, side="buy", recv_ts=Y2024)
            for i in range(TRADES_PER_BATCH)
        ]
        return Batch(ds, records, source="bench", transport="ws")

    async def publish(svc: Any, duration: float) -> tuple[int, float]:
        t0, k, busy = trio.current_time(), 0, 0.0
        while trio.current_time() - t0 < duration:
            c0 = time.perf_counter()
            svc.hub.publish(key, batch(k))
            busy += time.perf_counter() - c0
            k += 1
            await trio.sleep_until(t0 + k / rate)
        return k, busy / max(k, 1)

    cfg = parse_config(f"storage: {{path: '{root}'}}\n", env={})
    async with open_service(cfg) as svc, trio.open_nursery() as nursery:
        app = create_app(svc, cfg, options=WebOptions(live_window_s=0.1, live_client_buffer=64))
        [url] = await nursery.start(functools.partial(serve_http, svc, cfg, host="127.0.0.1", port=0, app=app))
        alone, cost_alone = await publish(svc, seconds)
        parent, child = multiprocessing.get_context("spawn").Pipe()
        proc = multiprocessing.get_context("spawn").Process(target=sse_clients, args=(url, subscribers, child))
        proc.start()
        assert await trio.to_thread.run_sync(parent.recv) == "connected"
        while app.state.ctx.feeds.subscribers() < subscribers:
            await trio.sleep(0.01)
        crowded, cost_crowded = await publish(svc, seconds)
        parent.send(crowded * TRADES_PER_BATCH)
        got = await trio.to_thread.run_sync(parent.recv)
        await trio.to_thread.run_sync(proc.join)
        nursery.cancel_scope.cancel()
    r0, r1 = alone / seconds, crowded / seconds
    print(f"publisher target {rate:.0f} batches/s x {TRADES_PER_BATCH} trades, {seconds:.0f} s per phase")
    print(f"  publish rate, 0 subscribers:   {r0:8.1f} batches/s  ({cost_alone * 1e6:.1f} us per publish call)")
    print(
        f"  publish rate, {subscribers} subscribers: {r1:8.1f} batches/s  ({cost_crowded * 1e6:.1f} us per publish call)"
    )
    print(f"  change: {100 * (r1 - r0) / r0:+.2f} %  [{'ok' if abs(r1 - r0) <= 0.05 * r0 else 'over 5 %'}]")
    span = seconds + got["drain_s"]  # until the last client had read everything
    print(
        f"  delivered: {got['events']:,} events, {got['trades']:,} trades to {subscribers} clients in {span:.2f} s"
        f" = {got['events'] / span:,.0f} events/s, {got['trades'] / span:,.0f} trades/s"
    )
    print(
        f"  every client got every trade: {got['min_trades'] == crowded * TRADES_PER_BATCH}"
        f" (fewest at one client {got['min_trades']:,} of {crowded * TRADES_PER_BATCH:,}; lagged notices: {got['lagged']})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=20)
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--rate", type=float, default=500.0, help="publisher batches per second")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    import trio

    with tempfile.TemporaryDirectory() as d:
        print("== read one year of 1m bars through the API ==")
        duck_p50 = baselines(Path(d) / "read", args.reads)
        trio.run(bench_api, Path(d) / "read", args.reads, duck_p50)
        print("\n== SSE fan-out ==")
        trio.run(bench_fanout, Path(d) / "fanout", args.subscribers, args.rate, args.seconds)


if __name__ == "__main__":
    main()
