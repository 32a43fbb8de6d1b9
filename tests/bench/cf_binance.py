"""cryptofeed's Binance feed against a local server; run by tests/bench/stream.py under cryptofeed's venv.

Not a dccd module: it imports only cryptofeed (2.4.1, Python 3.11, venv /work/venv-cf).

    python cf_binance.py feed ws://127.0.0.1:PORT SECONDS   # trades/s through FeedHandler, JSON on stdout
    python cf_binance.py handler N                           # Binance.message_handler calls/s on N frames

The websocket address is overridden the way cryptofeed builds it: a Binance
subclass whose ``websocket_endpoints`` name the local origin; the symbol table
is set directly, so no REST call leaves the machine. cryptofeed accepts only
``wss://`` addresses; the check is bypassed so both clients read the same
plain ``ws://`` socket (TLS would tax cryptofeed alone).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import cryptofeed.connection
from cryptofeed import FeedHandler
from cryptofeed.connection import WebsocketEndpoint
from cryptofeed.defines import BINANCE, TRADES
from cryptofeed.exchanges import Binance
from cryptofeed.symbols import Symbols

_ws_init = cryptofeed.connection.WSAsyncConn.__init__


def _plain_ws_init(self, address, conn_id, **kwargs):  # type: ignore[no-untyped-def]
    _ws_init(self, address.replace("ws://", "wss://", 1), conn_id, **kwargs)
    self.address = address


cryptofeed.connection.WSAsyncConn.__init__ = _plain_ws_init


def local_binance(origin: str) -> type[Binance]:
    Symbols.set(
        BINANCE, {"BTC-USDT": "BTCUSDT"}, {"tick_size": {"BTC-USDT": "0.01"}, "instrument_type": {"BTC-USDT": "spot"}}
    )

    class LocalBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(origin)]  # noqa: RUF012 (cryptofeed's own class attribute)

    return LocalBinance


def agg_frames(n: int) -> list[str]:
    out = []
    for i in range(1, n + 1):
        p, q = 30000 + (i * 7919) % 5000 / 100, ((i * 104729) % 200000 + 1) / 100000
        out.append(
            f'{{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","E":{1704067200000 + i},"s":"BTCUSDT","a":{i},'
            f'"p":"{p:.8f}","q":"{q:.8f}","f":{i},"l":{i},"T":{1704067200000 + i},"m":{"true" if i % 3 else "false"},"M":true}}}}'
        )
    return out


def run_feed(origin: str, seconds: float) -> dict[str, float]:
    count = 0
    first = 0.0
    cpu0 = 0.0

    async def on_trade(trade: object, receipt: float) -> None:
        nonlocal count, first, cpu0
        if count == 0:
            first, cpu0 = time.perf_counter(), time.process_time()
        count += 1

    fh = FeedHandler(config={"log": {"disabled": True}})
    fh.add_feed(local_binance(origin)(symbols=["BTC-USDT"], channels=[TRADES], callbacks={TRADES: on_trade}))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fh.run(start_loop=False, install_signal_handlers=False)
    loop.call_later(seconds, loop.stop)
    loop.run_forever()
    elapsed = time.perf_counter() - first
    return {
        "trades": count,
        "trades_s": count / elapsed if elapsed > 0 else 0.0,
        "cpu_us_per_msg": (time.process_time() - cpu0) / max(count, 1) * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_handler(n: int) -> dict[str, float]:
    frames = agg_frames(n)
    seen = 0

    async def on_trade(trade: object, receipt: float) -> None:
        nonlocal seen
        seen += 1

    feed = local_binance("ws://127.0.0.1:1")(symbols=["BTC-USDT"], channels=[TRADES], callbacks={TRADES: on_trade})

    async def loop() -> float:
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            for f in frames:
                await feed.message_handler(f, None, time.time())
            best = max(best, len(frames) / (time.perf_counter() - t))
        return best

    rate = asyncio.run(loop())
    assert seen == 3 * n, seen
    return {"handler_msgs_s": rate}


if __name__ == "__main__":
    if sys.argv[1] == "feed":
        print(json.dumps(run_feed(sys.argv[2], float(sys.argv[3]))))
    else:
        print(json.dumps(run_handler(int(sys.argv[2]))))
