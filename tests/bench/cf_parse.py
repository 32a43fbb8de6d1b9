"""cryptofeed's side of tests/bench/parse.py: its message handlers on the recorded sessions.

Runs inside a venv with ``cryptofeed==2.4.1`` (never imports dccd). Usage::

    python cf_parse.py RECORDINGS_DIR MIN_SECONDS EXCHANGE [EXCHANGE ...]

prints one JSON object ``{exchange: {"messages": n, "per_s": x, "callbacks": k} | {"error": "..."}}``
(``callbacks``: how many normalised objects the feed delivered, to show the handlers did their work).

For each exchange the feed is built offline: its symbol table comes from the
REST answers recorded next to the session (``NAME.0``, via the feed's own
``_parse_symbol_data``), its subscription from the recording's
``configuration:`` line, and book snapshots it would fetch over HTTP are
served from ``NAME.http.0.0``. Then every received frame goes through
``await feed.message_handler(text, conn, recv_time)`` with no-op callbacks,
one asyncio loop; only the handler calls are timed (best of 3 runs of at
least MIN_SECONDS each, a fresh feed for every pass over the recording).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from cryptofeed.defines import CANDLES, L2_BOOK, TICKER, TRADES
from cryptofeed.exchanges import OKX, Binance, Bitfinex, Bitmex, Bybit, Kraken
from cryptofeed.symbols import Symbols

logging.disable(logging.CRITICAL)  # cryptofeed logs a warning per unexpected message; not part of the timing

_RECEIVED = re.compile(r"^\d+(?:\.\d+)?: ")
_REST = re.compile(r"^(\S+) -> [\d.]+: (.*)$")
FEEDS = {
    "binance": (Binance, "BINANCE.ws.1.0"),
    "kraken": (Kraken, "KRAKEN.ws.50.0"),
    "bitfinex": (Bitfinex, "BITFINEX.ws.11.0"),
    "okx": (OKX, "OKX.ws.1.0"),
    "bitmex": (Bitmex, "BITMEX.ws.1.0"),
    "bybit": (Bybit, "BYBIT5.ws.0.0"),  # a synthetic v5 session written by parse.py (the recorded one is pre-v5)
}
CHANNELS = {"trades": TRADES, "l2_book": L2_BOOK, "ticker": TICKER, "candles": CANDLES}


def received(path: Path) -> list[tuple[float, str]]:
    """(receive time, text) of every message the client received."""
    out = []
    for line in path.read_text().splitlines():
        if _RECEIVED.match(line):
            t, _, text = line.partition(": ")
            out.append((float(t), text))
    return out


def rest_answers(*paths: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The recorded configuration and the REST bodies by URL."""
    config: dict[str, Any] = {}
    bodies: dict[str, str] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.startswith("configuration: "):
                config = json.loads(line[len("configuration: ") :])
            elif m := _REST.match(line):
                bodies[m.group(1)] = m.group(2)
    return config, bodies


class Conn:
    """The bits of a cryptofeed connection the handlers touch."""

    def __init__(self, subscription: dict[str, Any], address: str = "") -> None:
        self.uuid = "bench"
        self.subscription = subscription
        self.address = address  # Bybit tells spot from linear by the connection's URL

    async def write(self, data: str) -> None:
        pass


class RecordedHttp:
    """Serves the feed's REST snapshot requests from the recording."""

    def __init__(self, bodies: dict[str, str]) -> None:
        self.bodies = bodies

    async def read(self, url: str, **_: Any) -> str:
        return self.bodies[url]


CALLBACKS = [0]


async def noop(*_: Any, **__: Any) -> None:
    CALLBACKS[0] += 1


def build(name: str, folder: Path) -> tuple[Any, Conn, list[tuple[float, str]]]:
    cls, recording = FEEDS[name]
    prefix = recording.split(".")[0]
    config, bodies = rest_answers(folder / f"{prefix}.0", folder / f"{prefix}.http.0.0")
    data = [FIXUPS.get(name, _same)(json.loads(bodies[ep])) for ep in _endpoints(cls) if ep in bodies]
    if not data:
        raise RuntimeError(f"no recorded symbol table for {name}")
    syms, info = cls._parse_symbol_data(data if len(data) > 1 else data[0])
    Symbols.set(cls.id, syms, info)
    subscription = {CHANNELS[k]: v for k, v in config.items() if k in CHANNELS}
    callbacks = {chan: noop for chan in subscription}
    feed = cls(subscription=subscription, callbacks=callbacks)
    feed.http_conn = RecordedHttp(bodies)
    conn = Conn(dict(feed.subscription), _address(folder / recording))
    return feed, conn, received(folder / recording)


def _address(path: Path) -> str:
    """The URL of the recording's first ``URL <-> time`` line."""
    for line in path.read_text().splitlines():
        if " <-> " in line:
            return line.split(" <-> ")[0]
    return ""


def _same(data: Any) -> Any:
    return data


def _bitmex_expiry(data: Any) -> Any:
    """cryptofeed 2.4.1 cannot parse BitMEX's ISO expiry (``2021-09-24T12:00:00.000Z``); give it ``210924``."""
    for entry in data:
        expiry = entry.get("expiry")
        if isinstance(expiry, str) and "T" in expiry:
            entry["expiry"] = expiry[2:4] + expiry[5:7] + expiry[8:10]
    return data


FIXUPS = {"bitmex": _bitmex_expiry}


def _endpoints(cls: Any) -> list[str]:
    out = []
    for ep in cls.rest_endpoints:
        addr = cls._symbol_endpoint_prepare(ep)
        out.extend(addr if isinstance(addr, list) else [addr])
    # The 2021 Bitfinex recording asked for pub:list:pair:future; cryptofeed 2.4.1 names it ...:futures.
    return [a.replace("pub:list:pair:futures", "pub:list:pair:future") for a in out]


async def run(name: str, folder: Path, min_seconds: float) -> dict[str, Any]:
    """Frames/s: best of 3 runs, each of fresh-feed passes until ``min_seconds`` of handler time."""
    best = 0.0
    count = calls = 0
    for _ in range(3):
        busy = 0.0
        passes = 0
        while busy < min_seconds:
            feed, conn, frames = build(name, folder)  # untimed: symbol table, subscription
            await feed.subscribe(conn)
            handler = feed.message_handler
            CALLBACKS[0] = 0
            start = time.perf_counter()
            for ts, text in frames:
                await handler(text, conn, ts)
            busy += time.perf_counter() - start
            passes += 1
        count, calls = len(frames), CALLBACKS[0]
        best = max(best, passes * count / busy)
    return {"messages": count, "per_s": best, "callbacks": calls}


def main() -> None:
    folder, min_seconds = Path(sys.argv[1]), float(sys.argv[2])
    results: dict[str, Any] = {}
    for name in sys.argv[3:]:
        try:
            results[name] = asyncio.run(run(name, folder, min_seconds))
        except Exception as exc:  # report per exchange; the table shows why a row is missing
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
