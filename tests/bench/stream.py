"""Live trades from socket to lake: dccd vs a bare trio-websocket client vs cryptofeed, on one local server.

Run: ``python tests/bench/stream.py [--seconds 8] [--profile]``.

A replay server (its own process) speaks Binance's combined-stream format at
full speed: pre-framed ``@trade`` / ``@aggTrade`` frames with consecutive ids,
as fast as the client's socket takes them (it answers pings and serves a
static ``exchangeInfo`` for dccd's listing check). Each client runs in its own
process, one after the other, on a fresh connection:

- bare trio-websocket: receives only (the transport's ceiling on this machine);
- dccd: ``dccd.actors`` service + ``start_stream`` (trades, one connection):
  parse, dedupe, batch, bounded ingress, writer, Parquet parts; trades stored/s,
  RSS sampled every second, and a lake check (every id once, no hole);
- cryptofeed 2.4.1 (``/work/venv-cf``): its Binance feed with a counting
  trade callback (see cf_binance.py).

Then the per-message parse+normalise step in isolation: dccd's session.parse +
Recording.on_trades vs cryptofeed's Binance.message_handler. ``--profile``
adds a cProfile of dccd's process, summarised per package.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable
CF_PYTHON = Path("/work/venv-cf/bin/python")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
EPOCH_MS = 1_704_067_200_000
WS_QUEUE = 1024  # dccd.actors.streams.WS_QUEUE_MESSAGES (not imported: the bare client stays bare)

# --- the replay server ---------------------------------------------------------------------------


def _price_qty(i: int) -> tuple[str, str]:
    return f"{30000 + (i * 7919) % 5000 / 100:.8f}", f"{((i * 104729) % 200000 + 1) / 100000:.8f}"


_TABLE = [_price_qty(i) for i in range(997)]


def frame_bytes(payload: bytes) -> bytes:
    """One unmasked server text frame."""
    n = len(payload)
    head = bytes((0x81, n)) if n < 126 else bytes((0x81, 126)) + n.to_bytes(2, "big")
    return head + payload


def trade_chunk(stream: str, market: str, first: int, count: int) -> bytes:
    """``count`` consecutive frames of ``stream`` (``<market>@trade`` or ``@aggTrade``) from id ``first``."""
    agg = stream.endswith("@aggTrade")
    out = []
    for i in range(first, first + count):
        p, q = _TABLE[i % 997]
        ms = EPOCH_MS + i
        m = "true" if i % 3 else "false"
        if agg:
            data = f'{{"e":"aggTrade","E":{ms},"s":"{market}","a":{i},"p":"{p}","q":"{q}","f":{i},"l":{i},"T":{ms},"m":{m},"M":true}}'
        else:
            data = f'{{"e":"trade","E":{ms},"s":"{market}","t":{i},"p":"{p}","q":"{q}","T":{ms},"m":{m},"M":true}}'
        out.append(frame_bytes(f'{{"stream":"{stream}","data":{data}}}'.encode()))
    return b"".join(out)


EXCHANGE_INFO = json.dumps(
    {
        "timezone": "UTC",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"}],
    }
).encode()


async def _read_client_frames(stream: trio.SocketStream, buf: bytearray, send_lock: trio.Lock) -> None:
    """Answer pings (opcode 9) with pongs and a close with a close; ignore text (SUBSCRIBE) frames."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # the client went away
        await _answer_client(stream, buf, send_lock)


async def _answer_client(stream: trio.SocketStream, buf: bytearray, send_lock: trio.Lock) -> None:
    while True:
        while len(buf) < 2 or len(buf) < _frame_len(buf):
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
        size = _frame_len(buf)
        opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
        start = 2 + (2 if n == 126 else 8 if n == 127 else 0)
        mask, payload = buf[start : start + 4], bytearray(buf[start + 4 : size])
        for k in range(len(payload)):
            payload[k] ^= mask[k % 4]
        del buf[:size]
        if opcode in (8, 9):
            async with send_lock:
                await stream.send_all(bytes((0x80 | (8 if opcode == 8 else 10), len(payload))) + payload)
            if opcode == 8:
                return


def _frame_len(buf: bytearray) -> int:
    n = buf[1] & 0x7F
    if n == 126:
        return 4 + 4 + int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else 1 << 30
    if n == 127:
        return 10 + 4 + int.from_bytes(buf[2:10], "big") if len(buf) >= 10 else 1 << 30
    return 2 + 4 + n


async def _serve_client(stream: trio.SocketStream) -> None:
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
        body = EXCHANGE_INFO if path.startswith("/api/v3/exchangeInfo") else b'{"code":-1,"msg":"not served"}'
        status = "200 OK" if body is EXCHANGE_INFO else "404 Not Found"
        await stream.send_all(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n".encode()
            + body
        )
        return
    accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()).decode()
    await stream.send_all(
        f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    streams = path.split("streams=", 1)[1].split("/") if "streams=" in path else []
    lock = trio.Lock()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_client_frames, stream, bytearray(rest), lock)
        next_id = 1
        try:
            while True:
                for name in streams:
                    chunk = trade_chunk(name, name.split("@")[0].upper(), next_id, 500)
                    async with lock:
                        await stream.send_all(chunk)
                next_id += 500
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        nursery.cancel_scope.cancel()


async def serve() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await _serve_client(stream)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(handler, listeners)


# --- clients (each in its own process) -----------------------------------------------------------


async def bare_client(origin: str, seconds: float) -> dict[str, Any]:
    """trio-websocket receiving only, with dccd's connection settings."""

    from dccd.transport.ws import open_ws

    count = 0
    async with open_ws(f"{origin}/stream?streams=btcusdt@trade", message_queue_size=WS_QUEUE) as ws:
        await ws.get_message()
        t0, cpu0 = time.perf_counter(), time.process_time()
        with trio.move_on_after(seconds):
            while True:
                await ws.get_message()
                count += 1
        elapsed = time.perf_counter() - t0
    return {
        "msgs_s": count / elapsed,
        "cpu_us_per_msg": (time.process_time() - cpu0) / count * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def dccd_client(origin: str, seconds: float, *, check: bool = True) -> dict[str, Any]:
    """The dccd service recording BTC/USDT trades for ``seconds``; stored trades/s, RSS samples, lake check."""
    from dccd.actors import open_service

    from dccd.config import Config, ExchangeSettings, Storage
    from dccd.domain import DatasetId, DataType, Symbol
    from dccd.ops import StreamRequest
    from dccd.storage.lake import Lake

    root = Path(tempfile.mkdtemp(prefix="dccd-bench-"))
    http = origin.replace("ws://", "http://")
    cfg = Config(
        storage=Storage(path=str(root)),
        exchanges={"binance": ExchangeSettings(rest_url=http, ws_url=origin, rate_limit=0.0)},
    )
    btc = Symbol("BTC", "USDT")
    rss: list[float] = []
    async with open_service(cfg) as svc:
        sid = await svc.start_stream(StreamRequest("binance", (btc,), DataType.TRADES))
        stream = svc.streams.get(sid) if svc.streams else None
        assert stream is not None
        while stream.messages == 0:
            await trio.sleep(0.005)
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(int(seconds)):
            await trio.sleep(1)
            rss.append(round(_rss_mb(), 1))
        received = stream.messages
        await svc.stop_stream(sid)  # everything received is written before this returns
        elapsed = time.perf_counter() - t0
        info = stream.info()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the check below reads the lake
    ids: list[int] = []
    if check:
        table = Lake(root).read_table(DatasetId("binance", btc, DataType.TRADES)).table
        ids = sorted(int(i) for i in table.column("id").to_pylist())
    shutil.rmtree(root, ignore_errors=True)
    return {
        "stored_trades_s": info.rows / elapsed,
        "received_msgs_s": received / elapsed,
        "rows": info.rows,
        "cpu_us_per_msg": (time.process_time() - cpu0) / max(info.messages, 1) * 1e6,
        "rss_mb_per_s": rss,
        "peak_rss_mb": peak,
        "lake_ok": bool(ids) and ids == list(range(ids[0], ids[0] + len(ids))) and len(ids) == info.rows,
        "gaps": [info.gaps_filled, info.gaps_open],
    }


def profile_summary(prof: cProfile.Profile, top: int = 14) -> str:
    """tottime per package, then the top functions."""
    stats = pstats.Stats(prof)
    groups: dict[str, float] = {}
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        for key in (
            "wsproto",
            "trio_websocket",
            "trio",
            "msgspec",
            "pyarrow",
            "dccd/sources",
            "actors",
            "dccd/storage",
            "dccd/transport",
            "reactivex",
            "structlog",
        ):
            if f"/{key}/" in filename or (key == "actors" and "/main/actors/" in filename):
                groups[key] = groups.get(key, 0.0) + tottime
                break
        else:
            groups["other (builtins, stdlib)"] = groups.get("other (builtins, stdlib)", 0.0) + tottime
    out = io.StringIO()
    out.write("  share of profiled time by package:\n")
    for key, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        out.write(f"    {key:<26} {100 * t / total:5.1f} %\n")
    out.write("  top functions by own time:\n")
    s2 = io.StringIO()
    pstats.Stats(prof, stream=s2).sort_stats("tottime").print_stats(top)
    keep = [ln for ln in s2.getvalue().splitlines() if ln.strip() and ("/" in ln or "{" in ln) and "ncalls" not in ln]
    out.writelines(f"    {ln.strip()[:150]}\n" for ln in keep[:top])
    return out.getvalue()


# --- parse + normalise, in isolation -------------------------------------------------------------


def dccd_parse_rates(frames: list[str]) -> tuple[float, float]:
    """Frames/s (best of 3) of session.parse alone (parse + normalise to Trade records, like for like with
    cryptofeed's handler), and of session.parse + Recording.on_trades (plus id dedupe and hole checks: all
    the work of dccd's on_frame)."""
    from dccd.actors.recording import Recording

    from dccd.domain import DatasetId, DataType, Symbol
    from dccd.sources.binance import BinanceAdapter
    from dccd.sources.stream import Subscription, TradesReceived

    adapter, btc = BinanceAdapter(), Symbol("BTC", "USDT")
    (plan,) = adapter.plan_streams([Subscription(btc, DataType.TRADES)], "ws://x")
    now = time.time_ns

    def parse_only() -> float:
        session = adapter.open_session(plan)
        parse = session.parse
        t = time.perf_counter()
        for f in frames:
            parse(f, now())
        return len(frames) / (time.perf_counter() - t)

    async def with_recording() -> float:
        session = adapter.open_session(plan)
        rec = Recording(
            [DatasetId("binance", btc, DataType.TRADES)],
            source="bench",
            sequential=True,
            on_gap=lambda *a: None,
            batch_rows=10**9,
        )
        handlers: dict[type, Any] = {TradesReceived: rec.on_trades}
        t = time.perf_counter()
        for f in frames:
            for ev in session.parse(f, now()):
                handlers[type(ev)](ev, None)
        rate = len(frames) / (time.perf_counter() - t)
        assert len(rec.symbols[btc].pending) == len(frames)
        return rate

    return max(parse_only() for _ in range(3)), max(trio.run(with_recording) for _ in range(3))


def _frames(stream: str, n: int) -> list[str]:
    blob = trade_chunk(stream, "BTCUSDT", 1, n)
    out, k = [], 0
    while k < len(blob):
        size = blob[k + 1] if blob[k + 1] < 126 else int.from_bytes(blob[k + 2 : k + 4], "big")
        start = k + (2 if blob[k + 1] < 126 else 4)
        out.append(blob[start : start + size].decode())
        k = start + size
    return out


# --- main ----------------------------------------------------------------------------------------


def _child(mode: str, origin: str, seconds: float, profile: bool = False) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", mode, origin, str(seconds)] + (["--profile"] if profile else [])
    res = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if res.returncode:
        raise RuntimeError(f"{mode} child failed:\n{res.stderr[-3000:]}")
    *text, last = res.stdout.strip().splitlines()
    out: dict[str, Any] = json.loads(last)
    if text:
        out["profile"] = "\n".join(text)
    return out


def _rates(results: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"{r[key]:,.0f}" for r in results)


def _cryptofeed(origin: str, seconds: float) -> dict[str, Any]:
    res = subprocess.run(
        [str(CF_PYTHON), str(ROOT / "tests/bench/cf_binance.py"), "feed", origin, str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if res.returncode:
        raise RuntimeError(f"cryptofeed child failed:\n{res.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3, help="alternating client runs (best one reported)")
    ap.add_argument("--profile", action="store_true", help="cProfile dccd's process (slower) and summarise it")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        trio.run(serve)
        return
    if args.child:
        mode, origin, seconds = args.child[0], args.child[1], float(args.child[2])
        if mode == "bare":
            print(json.dumps(trio.run(bare_client, origin, seconds)))
        elif args.profile:
            from dccd.logging import configure_logging

            configure_logging("WARNING", json=True)
            prof = cProfile.Profile()
            result = prof.runcall(trio.run, dccd_client, origin, seconds)
            print(profile_summary(prof))
            print(json.dumps(result))
        else:
            from dccd.logging import configure_logging

            configure_logging("WARNING", json=True)
            print(json.dumps(trio.run(dccd_client, origin, seconds)))
        return

    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        origin = server.stdout.readline().strip()
        s = args.seconds
        print(f"local Binance replay server (separate process) at {origin}")
        print(f"{args.rounds} rounds x {s:g} s per client, each client in its own process; best round reported")
        bares, ours, cfs = [], [], []
        for _ in range(args.rounds):
            bares.append(_child("bare", origin, s))
            ours.append(_child("dccd", origin, s))
            if CF_PYTHON.exists():
                cfs.append(_cryptofeed(origin, s))
        bare = max(bares, key=lambda r: r["msgs_s"])
        best = max(ours, key=lambda r: r["stored_trades_s"])
        print(
            f"(a) bare trio-websocket, receive only : {bare['msgs_s']:>9,.0f} msg/s   client CPU "
            f"{bare['cpu_us_per_msg']:5.1f} µs/msg   peak RSS {bare['peak_rss_mb']:6.1f} MB"
            f"   (rounds: {_rates(bares, 'msgs_s')})"
        )
        print(
            f"dccd stream, socket -> lake           : {best['stored_trades_s']:>9,.0f} trades/s stored   CPU "
            f"{best['cpu_us_per_msg']:5.1f} µs/msg   peak RSS {best['peak_rss_mb']:6.1f} MB"
            f"   (rounds: {_rates(ours, 'stored_trades_s')})"
        )
        print(f"    = {100 * best['stored_trades_s'] / bare['msgs_s']:.0f} % of the best bare trio-websocket rate")
        for r in ours:
            print(
                f"    round: {r['rows']:,} rows, RSS each second (MB) {r['rss_mb_per_s']}, lake check "
                f"(every id once, no hole) {r['lake_ok']}, gaps filled/open {r['gaps']}"
            )
        if cfs:
            cf = max(cfs, key=lambda r: r["trades_s"])
            print(
                f"(b) cryptofeed 2.4.1 Binance feed     : {cf['trades_s']:>9,.0f} trades/s to its callback, nothing stored"
                f"   CPU {cf['cpu_us_per_msg']:5.1f} µs/msg   peak RSS {cf['peak_rss_mb']:6.1f} MB"
                f"   (rounds: {_rates(cfs, 'trades_s')})"
            )
        else:
            print(
                f"(b) cryptofeed: {CF_PYTHON} missing (python3.11 -m venv /work/venv-cf; pip install cryptofeed==2.4.1)"
            )
        if args.profile:
            prof = _child("dccd", origin, s, profile=True)
            print(f"dccd under cProfile ({prof['stored_trades_s']:,.0f} trades/s while profiled):")
            print(prof["profile"])
    finally:
        server.terminate()
        server.wait()

    n = 50_000
    parse_rate, full_rate = dccd_parse_rates(_frames("btcusdt@trade", n))
    print(f"per-message parse + normalise, {n:,} frames in memory (best of 3):")
    print(
        f"    dccd session.parse (frame -> Trade records)              : {parse_rate:>10,.0f} msg/s ({1e6 / parse_rate:.2f} µs)"
    )
    print(
        f"    dccd session.parse + Recording.on_trades (+ dedupe, holes): {full_rate:>10,.0f} msg/s ({1e6 / full_rate:.2f} µs)"
    )
    if CF_PYTHON.exists():
        res = subprocess.run(
            [str(CF_PYTHON), str(ROOT / "tests/bench/cf_binance.py"), "handler", str(n)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        cf_rate = json.loads(res.stdout.strip().splitlines()[-1])["handler_msgs_s"]
        print(
            f"    cryptofeed Binance.message_handler (frame -> Trade + callback): {cf_rate:>10,.0f} msg/s ({1e6 / cf_rate:.2f} µs)"
        )
        print(
            f"    dccd / cryptofeed: {parse_rate / cf_rate:.2f}x (parse + normalise), {full_rate / cf_rate:.2f}x (with dedupe)"
        )


if __name__ == "__main__":
    main()
