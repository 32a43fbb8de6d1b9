"""Throughput of the fake Binance (Litestar on hypercorn-trio) with an in-process httpx client.

Run: ``python tests/bench/bench_fake_binance.py``. Prints requests/s per endpoint
and page size, sequential and with 4 concurrent callers (one process, one core
shared by server and client, so these are lower bounds).
"""

from __future__ import annotations

import time

import httpx
import trio

from tests.fake.binance import open_fake_binance

CASES = [
    ("klines limit=10", "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "10"}),
    ("klines limit=1000", "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "1000"}),
    ("historicalTrades limit=1000", "/api/v3/historicalTrades", {"symbol": "BTCUSDT", "fromId": "0", "limit": "1000"}),
    ("exchangeInfo", "/api/v3/exchangeInfo", {}),
]


async def _rate(client: httpx.AsyncClient, path: str, params: dict[str, str], n: int, callers: int) -> float:
    async def worker(k: int) -> None:
        for _ in range(k):
            r = await client.get(path, params=params)
            assert r.status_code == 200, r.text

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(worker, n // callers)
    return n / (time.perf_counter() - t0)


async def main() -> None:
    async with open_fake_binance(weight_limit=10**9) as fake, httpx.AsyncClient(base_url=fake.url) as client:
        await client.get("/api/v3/exchangeInfo")  # warm up the connection
        print(f"{'case':32} {'sequential':>12} {'4 callers':>12}")
        for name, path, params in CASES:
            seq = await _rate(client, path, params, 300, 1)
            par = await _rate(client, path, params, 300, 4)
            print(f"{name:32} {seq:9.0f} r/s {par:9.0f} r/s")


if __name__ == "__main__":
    trio.run(main)
