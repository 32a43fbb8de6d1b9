"""Every fake exchange in one process, for running ``dccd serve`` against them by hand or from a test.

Serves the fake REST and WebSocket fronts of the seven exchanges on
127.0.0.1 (ephemeral ports) and prints one JSON line on stdout with their
origins, then runs until killed. Being a separate process is the point: a
test (or a user) can freeze it with ``kill -STOP`` to play an exchange that
stops answering while its sockets stay open, and resume it with
``kill -CONT``::

    python -m tests.fake.serve --rate 20 --config-out /tmp/fake.yaml --data /tmp/lake
    dccd serve --config /tmp/fake.yaml

The WebSocket fakes push the shared deterministic tape
(:mod:`tests.fake.tape`) live; the REST fakes answer from the same tape with
their clock fixed a day into it (``--rest-day``), so every trade id a stream
misses can be refilled over REST, id for id. Binance also gets its fake
archive (``archive_url``: daily/monthly zips + ``.CHECKSUM`` of the same
tape, :mod:`tests.fake.binance_archive`), so ``dccd backfill --source
archive`` works offline; Bybit, BitMEX and OKX get their trade files
(:mod:`tests.fake.archive_venues`, a day file is built on first request: seconds). Binance's WS ids are time based (``rate_per_s``): a frozen or disconnected client misses exactly the
trades in between, like on the real exchange.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import trio

from tests.fake import bitfinex as fbf
from tests.fake import bitmex as fbm
from tests.fake import bybit as fby
from tests.fake import coinbase as fcb
from tests.fake import kraken as fkr
from tests.fake import okx as fok
from tests.fake import tape
from tests.fake.archive_venues import FakeVenueArchive
from tests.fake.binance import FakeBinance, Faults
from tests.fake.binance_archive import FakeBinanceArchive
from tests.fake.binance_ws import FakeBinanceWs
from tests.fake.exchange import FakeRest as ExchangeRest
from tests.fake.exchange import FakeWs as ExchangeWs
from tests.fake.exchange import open_rest, open_ws
from tests.fake.venue import FakeRest as VenueRest
from tests.fake.venue import FakeWs as VenueWs
from tests.fake.venue import running, serving

EXCHANGES = ("binance", "coinbase", "kraken", "bitfinex", "bybit", "okx", "bitmex")
SYMBOLS = {
    "binance": "BTC/USDT",
    "coinbase": "BTC/USD",
    "kraken": "BTC/USD",
    "bitfinex": "BTC/USDT",
    "bybit": "BTC/USDT",
    "okx": "BTC/USDT",
    "bitmex": "BTC/USDT",
}
"""The symbol each fake lists and streams (the default config's stream jobs)."""


def _rest(name: str, clock: Callable[[], float]) -> Any:
    factories: dict[str, Callable[[], Any]] = {
        "coinbase": lambda: fcb.FakeCoinbase(clock=clock),
        "kraken": lambda: fkr.FakeKraken(clock=clock),
        "bitfinex": lambda: fbf.FakeBitfinex(clock=clock),
        "bybit": lambda: fby.FakeBybit(clock=clock),
        "okx": lambda: fok.FakeOkx(clock=clock),
        "bitmex": lambda: fbm.FakeBitmex(clock=clock),
    }
    return factories[name]()


def _ws(name: str, rate: float) -> Any:
    factories: dict[str, Callable[[], Any]] = {
        "coinbase": lambda: fcb.FakeCoinbaseWs(rate_per_s=rate),
        "kraken": lambda: fkr.FakeKrakenWs(rate_per_s=rate),
        "bitfinex": lambda: fbf.FakeBitfinexWs(rate_per_s=rate),
        "bybit": lambda: fby.FakeBybitWs(rate_per_s=rate),
        "okx": lambda: fok.FakeOkxWs(rate_per_s=rate),
        "bitmex": lambda: fbm.FakeBitmexWs(rate_per_s=rate),
    }
    return factories[name]()


async def open_all(stack: AsyncExitStack, exchanges: tuple[str, ...], rate: float, rest_day: float) -> dict[str, Any]:
    """Start the fakes of ``exchanges`` inside ``stack``; ``{name: {"rest_url", "ws_url"}}``."""
    now_s = tape.TAPE_EPOCH_MS / 1000 + rest_day * 86_400

    def clock() -> float:
        return now_s

    urls: dict[str, Any] = {}
    venue_archive = FakeVenueArchive(clock=clock)  # Bybit/BitMEX/OKX trade files of the same tape: archive_url
    if {"bybit", "bitmex", "okx"} & set(exchanges):
        venue_nursery = await stack.enter_async_context(trio.open_nursery())
        await venue_nursery.start(venue_archive.serve)
        stack.callback(venue_nursery.cancel_scope.cancel)
    for name in exchanges:
        if name == "binance":
            rest: Any = FakeBinance(source="shared", clock=clock, faults=Faults())
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(rest.serve)
            stack.callback(nursery.cancel_scope.cancel)
            archive = FakeBinanceArchive(rest)  # data.binance.vision of the same tape: archive_url
            archive_nursery = await stack.enter_async_context(trio.open_nursery())
            await archive_nursery.start(archive.serve)
            stack.callback(archive_nursery.cancel_scope.cancel)
            ws: Any = FakeBinanceWs(rate_per_s=rate)
            ws_nursery = await stack.enter_async_context(trio.open_nursery())
            await ws._start(ws_nursery)
            stack.callback(ws_nursery.cancel_scope.cancel)
        else:
            rest = _rest(name, clock)
            ws = _ws(name, rate)
            await stack.enter_async_context(open_rest(rest) if isinstance(rest, ExchangeRest) else serving(rest))
            assert isinstance(ws, ExchangeWs | VenueWs) and isinstance(rest, ExchangeRest | VenueRest)
            await stack.enter_async_context(open_ws(ws) if isinstance(ws, ExchangeWs) else running(ws))
        urls[name] = {"rest_url": rest.url, "ws_url": ws.url, "symbol": SYMBOLS[name]}
        if name == "binance":
            urls[name]["archive_url"] = archive.url
        elif name in ("bybit", "bitmex", "okx"):
            urls[name]["archive_url"] = venue_archive.url
    return urls


def config_yaml(urls: dict[str, Any], data: str, port: int) -> str:
    """A ``dccd serve`` config: the fakes as exchanges (unthrottled) and one trade stream per exchange."""
    lines = ["storage: {path: " + json.dumps(data) + "}", f"server: {{host: 127.0.0.1, port: {port}}}", "exchanges:"]
    for name, u in urls.items():
        archive = f", archive_url: {json.dumps(u['archive_url'])}" if u.get("archive_url") else ""
        lines.append(
            f"  {name}: {{rest_url: {json.dumps(u['rest_url'])}, ws_url: {json.dumps(u['ws_url'])}, rate_limit: 0{archive}}}"
        )
    lines.append("jobs:")
    for name, u in urls.items():
        lines.append(f"  - {{exchange: {name}, symbols: [{json.dumps(u['symbol'])}], type: trades, operation: stream}}")
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> None:
    exchanges = tuple(args.exchanges.split(",")) if args.exchanges else EXCHANGES
    unknown = set(exchanges) - set(EXCHANGES)
    if unknown:
        raise SystemExit(f"unknown exchange(s): {', '.join(sorted(unknown))}")
    async with AsyncExitStack() as stack:
        urls = await open_all(stack, exchanges, args.rate, args.rest_day)
        if args.config_out:
            await trio.Path(args.config_out).write_text(config_yaml(urls, args.data, args.port))
        print(json.dumps(urls), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=20.0, help="trades (steps) per second per stream")
    parser.add_argument("--exchanges", default="", help="comma-separated subset (default: all seven)")
    parser.add_argument("--rest-day", type=float, default=1.0, help="REST clock: days into the tape")
    parser.add_argument("--config-out", default="", help="also write a dccd config streaming from every fake")
    parser.add_argument("--data", default="./data", help="storage.path of the written config")
    parser.add_argument("--port", type=int, default=8080, help="server.port of the written config")
    args = parser.parse_args(argv)
    try:
        trio.run(main_async, args)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
