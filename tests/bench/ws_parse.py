"""Binance WebSocket path: parser throughput and receive rates from the fake server.

Run: ``python tests/bench/ws_parse.py [--seconds S]``. Prints messages/s for

1. ``parse_frame`` on the recording's aggTrade frames and on synthetic
   ``@trade`` frames (str, as trio-websocket delivers text, and bytes);
2. receiving from the fake server at full speed over loopback, with the
   server in the same process and in a separate process:
   bare trio-websocket (its defaults, then dccd's ``open_ws`` settings),
   ``run_ws_connection`` with a counting callback, and with ``parse_frame``
   (client CPU µs per message is the steadier figure on a busy machine);
3. the runner's own per-message cost on a connection that never waits.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio
import trio_websocket

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable

from dccd.sources.binance import ws as bws  # noqa: E402
from dccd.transport.ws import open_ws, run_ws_connection  # noqa: E402
from tests.fake.binance_ws import open_fake_binance_ws, recorded_frames  # noqa: E402
from tests.fake.tape import trade_at  # noqa: E402

RECORDING = ROOT / "tests" / "fixtures" / "binance_ws" / "BINANCE.ws.1.0"


def bench_parse(frames: list[str] | list[bytes], repeat: int) -> float:
    """Frames parsed per second (best of 3)."""
    best = 0.0
    parse, now = bws.parse_frame, time.time_ns
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            for f in frames:
                parse(f, now())
        best = max(best, repeat * len(frames) / (time.perf_counter() - t))
    return best


def synthetic_trades(n: int) -> list[str]:
    out = []
    for i in range(1, n + 1):
        t = trade_at("BTCUSDT", i)
        data = (
            f'{{"e":"trade","E":{t.time_ms},"s":"BTCUSDT","t":{i},"p":"{t.price}","q":"{t.qty}",'
            f'"T":{t.time_ms},"m":{"true" if t.is_buyer_maker else "false"},"M":true}}'
        )
        out.append(f'{{"stream":"btcusdt@trade","data":{data}}}')
    return out


async def receive_rate(url: str, seconds: float, mode: str) -> tuple[float, float]:
    """(messages/s, client CPU µs per message) over ``seconds`` after the first message."""
    count = 0
    t_first = cpu_first = 0.0

    def on_frame(frame: str | bytes, recv_ns: int) -> None:
        nonlocal count, t_first, cpu_first
        if count == 0:
            t_first, cpu_first = time.perf_counter(), time.process_time()
        count += 1

    def on_frame_parse(frame: str | bytes, recv_ns: int) -> None:
        on_frame(frame, recv_ns)
        bws.parse_frame(frame, recv_ns)

    if mode.startswith("bare"):
        opener: Callable[[], object] = (
            partial(trio_websocket.open_websocket_url, url) if mode == "bare-default" else partial(open_ws, url)
        )
        async with opener() as ws:  # type: ignore[attr-defined]
            await ws.get_message()
            t_first, cpu_first = time.perf_counter(), time.process_time()
            with trio.move_on_after(seconds):
                while True:
                    await ws.get_message()
                    count += 1
    else:
        callback = on_frame_parse if mode == "runner+parse" else on_frame
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_ws_connection, url, on_frame=callback))
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()
    return count / (time.perf_counter() - t_first), (time.process_time() - cpu_first) / count * 1e6


MODES = ("bare-default", "bare-open_ws", "runner", "runner+parse")


async def bench_receive(seconds: float, origin: str | None) -> dict[str, tuple[float, float]]:
    """Each client mode against a fake in this process (origin None) or at ``origin``."""
    out = {}
    for mode in MODES:
        if origin is None:
            async with open_fake_binance_ws(rate_per_s=None, max_control_per_s=None) as fake:
                out[mode] = await receive_rate(bws.build_stream_url(["btcusdt@trade"], fake.url), seconds, mode)
        else:
            out[mode] = await receive_rate(bws.build_stream_url(["btcusdt@trade"], origin), seconds, mode)
    return out


class _InstantConn:
    """A connection whose messages are always ready: isolates the runner's own per-message cost."""

    def __init__(self, frame: str) -> None:
        self.frame, self.n = frame, 0

    async def get_message(self) -> str:
        self.n += 1
        if self.n % 64 == 0:
            await trio.lowlevel.checkpoint()
        return self.frame

    async def send_message(self, message: str | bytes) -> None:
        pass

    async def ping(self, payload: bytes | None = None) -> None:
        pass


async def runner_overhead_us(n: int, frame: str) -> tuple[float, float]:
    """(bare loop, run_ws_connection with watchdog) µs per message on an instant connection."""
    conn = _InstantConn(frame)
    count, done = 0, trio.Event()

    def on_frame(f: str | bytes, recv_ns: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    t = time.perf_counter()
    for _ in range(n):
        on_frame(await conn.get_message(), time.time_ns())
    bare = (time.perf_counter() - t) / n * 1e6

    @asynccontextmanager
    async def connect(url: str) -> AsyncIterator[_InstantConn]:
        yield _InstantConn(frame)

    count, done = 0, trio.Event()
    t = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_ws_connection, "ws://x", on_frame=on_frame, connect=connect, watchdog_s=60))
        await done.wait()
        nursery.cancel_scope.cancel()
    return bare, (time.perf_counter() - t) / n * 1e6


async def serve_forever() -> None:
    async with open_fake_binance_ws(rate_per_s=None, max_control_per_s=None) as fake:
        print(fake.url, flush=True)
        await trio.sleep_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        trio.run(serve_forever)
        return

    agg = [f for f in recorded_frames(RECORDING) if '"e":"aggTrade"' in f]
    synth = synthetic_trades(20_000)
    print(
        f"parse_frame, recording aggTrade frames ({len(agg)} distinct, str):  {bench_parse(agg, 100_000):>10,.0f} msg/s"
    )
    print(
        f"parse_frame, recording aggTrade frames (bytes):                 {bench_parse([f.encode() for f in agg], 100_000):>10,.0f} msg/s"
    )
    print(f"parse_frame, synthetic @trade frames ({len(synth)} distinct, str): {bench_parse(synth, 10):>10,.0f} msg/s")
    print(
        f"parse_frame, synthetic @trade frames (bytes):                   {bench_parse([f.encode() for f in synth], 10):>10,.0f} msg/s"
    )
    bare_us, runner_us = trio.run(runner_overhead_us, 300_000, synth[0])
    print(f"per-message loop cost without I/O: bare {bare_us:.2f} µs, run_ws_connection {runner_us:.2f} µs")
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        origin = server.stdout.readline().strip()
        for title, where in (("server in this process", None), ("server in another process", origin)):
            for mode, (rate, cpu_us) in trio.run(bench_receive, args.seconds, where).items():
                print(
                    f"receive from fake, full speed, {title:<26} {mode:<13} {rate:>8,.0f} msg/s  client CPU {cpu_us:5.1f} µs/msg"
                )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
