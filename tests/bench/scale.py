"""Scale-out on one machine: 1, 2 and 4 ``dccd serve --shard k/N`` collectors against one full-speed replay.

Run: ``python tests/bench/scale.py [--seconds 10] [--symbols 8] [--shards 1,2,4] [--rate 0]``.

Every process is real and separate: nats-server (JetStream), a replay server speaking Binance's
combined-stream format (each connection gets consecutive-id ``@trade`` frames as fast as its socket takes
them, or ``--rate`` trades/s per stream; each frame's trade time ``T`` is the wall clock, in ms, when the
server framed it), N collectors sharing ``--symbols`` stream jobs (one symbol each) by the stable shard
hash, publishing to NATS, and a NATS consumer process (a core subscription on ``dccd.trades.>``).

Measured over ``--seconds`` once every stream is connected, side by side per N:

- stored trades/s: the rows the collectors' writers stored (``dccd_rows_written``, summed);
- published/s: messages JetStream stored and acked (``dccd_bus_published``, summed);
- consumer msgs/s and the latency from the replay server framing a trade to the consumer receiving it
  (``now - T``, p50/p99; 1 ms resolution, the frame's time is in ms).

The machine has 2 cores (shared): collectors beyond 2 cannot add CPU, so stored trades/s is expected flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable


def _balanced_symbols(n: int, ways: int = 4) -> list[str]:
    """``n`` symbols whose jobs the stable shard hash spreads evenly over 1, 2 and 4 collectors
    (round-robin over the hash classes mod ``ways``; plain ``S00..S07`` would put all 8 on one of 2)."""
    from dccd.bus.shard import shard_of
    from dccd.domain.symbols import Symbol

    classes: dict[int, list[str]] = {k: [] for k in range(ways)}
    i = 0
    while sum(len(v) for v in classes.values()) < ways * n:
        name = f"S{i:03d}/USDT"
        classes[shard_of("binance", [Symbol.parse(name)], ways)].append(name)
        i += 1
    return [classes[k % ways][k // ways] for k in range(n)]


SYMBOLS = _balanced_symbols(32)


# --- the replay server (its own process) ---------------------------------------------------------


def _exchange_info(n: int) -> bytes:
    syms = [
        {"symbol": s.replace("/", ""), "status": "TRADING", "baseAsset": s.split("/")[0], "quoteAsset": "USDT"}
        for s in SYMBOLS[:n]
    ]
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}]
    return json.dumps({"timezone": "UTC", "rateLimits": limits, "symbols": syms}).encode()


def _chunk(stream: str, first: int, count: int) -> bytes:
    """``count`` consecutive ``@trade`` frames from id ``first``, stamped with the wall clock now (ms)."""
    from tests.bench.stream import _TABLE, frame_bytes

    market = stream.split("@")[0].upper()
    ms = time.time_ns() // 1_000_000
    out = []
    for i in range(first, first + count):
        p, q = _TABLE[i % 997]
        m = "true" if i % 3 else "false"
        data = f'{{"e":"trade","E":{ms},"s":"{market}","t":{i},"p":"{p}","q":"{q}","T":{ms},"m":{m},"M":true}}'
        out.append(frame_bytes(f'{{"stream":"{stream}","data":{data}}}'.encode()))
    return b"".join(out)


async def _serve_client(stream: trio.SocketStream, info: bytes, rate: float) -> None:
    import base64
    import hashlib

    from tests.bench.stream import GUID, _read_client_frames

    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "sec-websocket-key" not in headers:  # plain HTTP: dccd's listing check
        ok = path.startswith("/api/v3/exchangeInfo")
        body = info if ok else b'{"code":-1,"msg":"not served"}'
        status = "200 OK" if ok else "404 Not Found"
        await stream.send_all(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n".encode()
            + body
        )
        return
    accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()).decode()
    await stream.send_all(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    streams = path.split("streams=", 1)[1].split("/") if "streams=" in path else []
    lock = trio.Lock()
    per_tick = max(1, round(rate / 100)) if rate else 100  # paced: 100 chunks a second
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_client_frames, stream, bytearray(rest), lock)
        next_id, t0 = 1, trio.current_time()
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                if rate:
                    await trio.sleep_until(t0 + (next_id - 1) / rate)
                for name in streams:
                    chunk = _chunk(name, next_id, per_tick)
                    async with lock:
                        await stream.send_all(chunk)
                next_id += per_tick
        nursery.cancel_scope.cancel()


async def serve_replay(symbols: int, rate: float) -> None:
    info = _exchange_info(symbols)

    async def handler(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await _serve_client(stream, info, rate)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(handler, listeners)


# --- the NATS consumer (its own process) ---------------------------------------------------------


async def consume(url: str, seconds: float) -> dict[str, Any]:
    """Core subscription on ``dccd.trades.>`` for ``seconds``: count, and ``now - ts`` of every message."""
    import msgspec
    import nats

    class Ts(msgspec.Struct):
        ts: int

    dec = msgspec.json.Decoder(Ts)
    lat_ms: list[float] = []
    nc = await nats.connect(url, connect_timeout=5, pending_size=256 * 1024 * 1024)

    async def on_msg(msg: Any) -> None:
        lat_ms.append((time.time_ns() - dec.decode(msg.data).ts) / 1e6)

    await nc.subscribe("dccd.trades.>", cb=on_msg, pending_msgs_limit=10_000_000, pending_bytes_limit=2**31)
    print("ready", flush=True)
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    await nc.close()
    lat_ms.sort()

    def pct(p: float) -> float | None:
        return round(lat_ms[min(len(lat_ms) - 1, int(p * len(lat_ms)))], 1) if lat_ms else None

    return {"msgs_s": len(lat_ms) / elapsed, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


# --- the orchestration ---------------------------------------------------------------------------


def metric_sum(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far (``/proc/<pid>/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wait_until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if cond():
                return
        time.sleep(0.25)
    raise SystemExit(f"timed out after {timeout_s:g}s waiting for {what}")


def run_shards(n: int, args: argparse.Namespace, origin: str, tmp: Path) -> dict[str, Any]:
    import httpx

    from dccd.bus.shard import shard_of
    from dccd.domain.symbols import Symbol
    from tests.bus.natsserver import NatsServer, free_port

    work = tmp / f"n{n}"
    work.mkdir()
    nats = NatsServer(work / "js")
    nats.start()
    http = origin.replace("ws://", "http://")
    jobs = "".join(
        f"  - {{exchange: binance, symbols: ['{s}'], type: trades, operation: stream}}\n"
        for s in SYMBOLS[: args.symbols]
    )
    cfg = work / "c.yaml"
    cfg.write_text(
        f"storage: {{path: '{work / 'lake'}', compact_every: null}}\n"
        f"exchanges: {{binance: {{rest_url: '{http}', ws_url: '{origin}', rate_limit: 0}}}}\n"
        f"bus: {{url: '{nats.url}', lease_ttl: 30s}}\njobs:\n{jobs}"
    )
    dccd = str(Path(sys.executable).parent / "dccd")
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port() for _ in range(n)]
    consumer: subprocess.Popen[str] | None = None
    try:
        for k, port in enumerate(ports):
            log = (work / f"shard{k}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [dccd, "serve", "--config", str(cfg), "--port", str(port), "--shard", f"{k}/{n}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        client = httpx.Client(timeout=10)

        def connected() -> int:
            total = 0
            for port in ports:
                rows = client.get(f"http://127.0.0.1:{port}/api/v1/streams").json()
                total += sum(r["state"] == "connected" for r in rows)
            return total

        wait_until(lambda: connected() == args.symbols, 90, f"{args.symbols} streams connected over {n} shard(s)")
        time.sleep(args.warmup)
        out = work / "consumer.json"
        consumer = subprocess.Popen(
            [sys.executable, __file__, "--consume", nats.url, str(args.seconds), str(out)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert consumer.stdout is not None
        consumer.stdout.readline()  # "ready"

        def scrape() -> tuple[float, float]:
            rows = pub = 0.0
            for port in ports:
                text = client.get(f"http://127.0.0.1:{port}/metrics").text
                rows += metric_sum(text, "dccd_rows_written_total")
                pub += metric_sum(text, "dccd_bus_published_total")
            return rows, pub

        r0, p0 = scrape()
        t0 = time.perf_counter()
        pids = [p.pid for p in procs]
        cpu0 = cpu_s(pids)
        time.sleep(args.seconds)
        r1, p1 = scrape()
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_s(pids)
        consumer.wait(60)
        got = json.loads(out.read_text())
        per_shard = [0] * n
        for s in SYMBOLS[: args.symbols]:
            per_shard[shard_of("binance", [Symbol.parse(s)], n)] += 1
        return {
            "shards": n,
            "jobs_per_shard": per_shard,
            "stored_s": (r1 - r0) / elapsed,
            "published_s": (p1 - p0) / elapsed,
            "consumed_s": got["msgs_s"],
            "p50_ms": got["p50_ms"],
            "p99_ms": got["p99_ms"],
            "collectors_cpu": (cpu1 - cpu0) / elapsed,
        }
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        nats.kill()
        shutil.rmtree(work / "lake", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring window per N (default 10)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after every stream connected (default 3)")
    ap.add_argument("--symbols", type=int, default=8, help="stream jobs, one symbol each (default 8, max 32)")
    ap.add_argument("--shards", default="1,2,4", help="collector counts to run (default 1,2,4)")
    ap.add_argument("--rate", type=float, default=0.0, help="trades/s per stream (default 0: full speed)")
    ap.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--consume", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        trio.run(serve_replay, int(args.serve[0]), float(args.serve[1]))
        return
    if args.consume:
        got = asyncio.run(consume(args.consume[0], float(args.consume[1])))
        Path(args.consume[2]).write_text(json.dumps(got))
        return
    if not 1 <= args.symbols <= len(SYMBOLS):
        ap.error(f"--symbols must be 1..{len(SYMBOLS)}")
    tmp = Path(tempfile.mkdtemp(prefix="dccd-scale-"))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.symbols), str(args.rate)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        origin = server.stdout.readline().strip()
        results = [run_shards(int(n), args, origin, tmp) for n in args.shards.split(",")]
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    speed = "full speed" if not args.rate else f"{args.rate:g} trades/s per stream"
    print(f"\n{args.symbols} trade streams ({speed}), {args.seconds:g}s window, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    head = f"{'collectors':>10} | {'jobs/shard':>12} | {'stored trades/s':>15} | {'published/s (acked)':>19} | "
    head += f"{'consumer msgs/s':>15} | {'latency p50':>11} | {'p99':>9} | {'collector CPU':>13}"
    print(head)
    print("-" * len(head))
    for r in results:
        p50 = f"{r['p50_ms']:.1f} ms" if r["p50_ms"] is not None else "-"
        p99 = f"{r['p99_ms']:.1f} ms" if r["p99_ms"] is not None else "-"
        print(
            f"{r['shards']:>10} | {','.join(map(str, r['jobs_per_shard'])):>12} | {r['stored_s']:>15,.0f} | "
            f"{r['published_s']:>19,.0f} | {r['consumed_s']:>15,.0f} | {p50:>11} | {p99:>9} | {r['collectors_cpu']:>12.2f}c"
        )


if __name__ == "__main__":
    main()
