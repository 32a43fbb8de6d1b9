"""WebSocket parse throughput per exchange: dccd's sessions vs cryptofeed 2.4.1's handlers on the same recordings.

Run: ``python tests/bench/parse.py [--min-seconds S]``. Prints one table row per
workload: recorded frames (every received message of the session, control
messages included) per second of single-core CPU through

- dccd: ``adapter.open_session(plan).parse(frame, recv_ns)`` (Binance:
  ``dccd.sources.binance.ws.parse_frame``), a fresh session per pass, best of 3;
- cryptofeed 2.4.1: ``await feed.message_handler(frame, conn, recv_time)``
  with no-op callbacks, run in its own venv by ``tests/bench/cf_parse.py``
  (created on first use: ``DCCD_CF_VENV``, default ``/work/venv-cf``),
  timing only the handler calls (feeds are rebuilt between passes, untimed).

The two do different amounts of work: dccd decodes to domain records and
hands book deltas on; cryptofeed also maintains order books (sorted dicts of
Decimal) and builds its own objects. The recordings are in
``DCCD_RECORDINGS`` (default ``/work/shared/recordings``; dccd's side falls
back to the copies in ``tests/fixtures``).

To add an exchange: write ``bench_<name>(ctx) -> list[Row]`` (use
:func:`time_session`), append it to :data:`BENCHES`, and, if cryptofeed
supports the recording, add the feed to ``FEEDS`` in ``cf_parse.py`` and set
``Row.cf_key`` to its name.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable

from dccd.sources import get_adapter  # noqa: E402
from dccd.sources.binance import ws as binance_ws  # noqa: E402
from dccd.sources.stream import WsPlan  # noqa: E402
from tests.fake.binance_ws import recorded_frames  # noqa: E402
from tests.fake.tape import trade_at  # noqa: E402

RECORDINGS = Path(os.environ.get("DCCD_RECORDINGS", "/work/shared/recordings"))
CF_VENV = Path(os.environ.get("DCCD_CF_VENV", "/work/venv-cf"))
CF_VERSION = "2.4.1"
FIXTURES = ROOT / "tests" / "fixtures"


@dataclass
class Row:
    """One table row: a workload parsed by dccd and, where supported, by cryptofeed."""

    exchange: str
    workload: str
    messages: int
    dccd_per_s: float
    cf_key: str | None = None  # the cf_parse.py feed measuring the same frames
    note: str = ""
    cf_per_s: float | None = None


@dataclass
class Context:
    min_seconds: float
    cf: dict[str, Any]


def recording(name: str, fixture_dir: str) -> Path:
    """The shared recording, else its copy in tests/fixtures."""
    shared = RECORDINGS / name
    return shared if shared.exists() else FIXTURES / fixture_dir / name


def time_session(frames: list[str], new_parser: Callable[[], Callable[[str, int], Any]], min_seconds: float) -> float:
    """Frames per second through a fresh parser per pass: best of 3 runs of >= ``min_seconds`` each."""
    now = time.time_ns
    best = 0.0
    for _ in range(3):
        passes, start = 0, time.perf_counter()
        while True:
            parse = new_parser()
            for f in frames:
                parse(f, now())
            passes += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, passes * len(frames) / elapsed)
    return best


def session_of(exchange: str, url: str) -> Callable[[], Callable[[str, int], Any]]:
    """A factory of fresh ``session.parse`` callables for the registered adapter of ``exchange``."""
    adapter: Any = get_adapter(exchange)
    return lambda: adapter.open_session(WsPlan(url, ())).parse


# --- one function per exchange ---------------------------------------------------------------


def bench_binance(ctx: Context) -> list[Row]:
    """BINANCE.ws.1.0 (depth@100ms, bookTicker, kline_1m, aggTrade) and synthetic @trade frames."""
    frames = recorded_frames(recording("BINANCE.ws.1.0", "binance_ws"))
    rec = time_session(frames, lambda: binance_ws.parse_frame, ctx.min_seconds)
    synthetic = []
    for i in range(1, 1001):
        t = trade_at("BTCUSDT", i)
        data = (
            f'{{"e":"trade","E":{t.time_ms},"s":"BTCUSDT","t":{i},"p":"{t.price}","q":"{t.qty}",'
            f'"T":{t.time_ms},"m":{"true" if t.is_buyer_maker else "false"},"M":true}}'
        )
        synthetic.append(f'{{"stream":"btcusdt@trade","data":{data}}}')
    syn = time_session(synthetic, lambda: binance_ws.parse_frame, ctx.min_seconds)
    return [
        Row("binance", "BINANCE.ws.1.0 (2021 session)", len(frames), rec, "binance"),
        Row("binance", "synthetic @trade frames", len(synthetic), syn, note="cryptofeed streams aggTrade only"),
    ]


def bench_coinbase(ctx: Context) -> list[Row]:
    """COINBASE.ws.28.0: the Exchange feed (level2, ticker, matches) through CoinbaseSession."""
    frames = recorded_frames(recording("COINBASE.ws.28.0", "coinbase"))
    rate = time_session(frames, session_of("coinbase", "wss://ws-feed.exchange.coinbase.com"), ctx.min_seconds)
    note = "cryptofeed 2.4.1's Coinbase speaks Advanced Trade, not this Exchange feed"
    return [Row("coinbase", "COINBASE.ws.28.0 (2021 session)", len(frames), rate, note=note)]


def bench_kraken(ctx: Context) -> list[Row]:
    """KRAKEN.ws.50.0: a WS v1 book-1000 session through the v1 session parser."""
    frames = recorded_frames(recording("KRAKEN.ws.50.0", "kraken"))
    rate = time_session(frames, session_of("kraken", "wss://ws.kraken.com"), ctx.min_seconds)
    return [Row("kraken", "KRAKEN.ws.50.0 (2021 v1 session)", len(frames), rate, "kraken")]


def bench_bitfinex(ctx: Context) -> list[Row]:
    """BITFINEX.ws.11.0: trades/book/ticker with sequence numbers through BitfinexSession."""
    frames = recorded_frames(recording("BITFINEX.ws.11.0", "bitfinex"))
    rate = time_session(frames, session_of("bitfinex", "wss://api-pub.bitfinex.com/ws/2"), ctx.min_seconds)
    return [Row("bitfinex", "BITFINEX.ws.11.0 (2021 session)", len(frames), rate, "bitfinex")]


def plan_for(exchange: str, origin: str, subs: list[Any]) -> Callable[[], Callable[[str, int], Any]]:
    """A factory of fresh ``session.parse`` callables for the first planned connection of ``subs``."""
    adapter: Any = get_adapter(exchange)
    plan = adapter.plan_streams(subs, origin)[0]
    return lambda: adapter.open_session(plan).parse


def bench_bybit(ctx: Context) -> list[Row]:
    """A synthetic v5 linear session (the fake's trade/orderbook/kline frames) on both sides; BYBIT.ws.25.0 is pre-v5."""
    import tempfile

    from dccd.domain import DataType, Span, Symbol
    from dccd.sources.stream import Subscription
    from tests.fake.bybit import FakeBybitWs
    from tests.fake.venue import WsConnection

    fake, conn = FakeBybitWs(), WsConnection(None, None, 0, "/v5/public/linear")  # type: ignore[arg-type]
    topics = ("publicTrade.BTCUSDT", "orderbook.50.BTCUSDT", "kline.1.BTCUSDT")
    frames = [f for step in range(3000) for topic in topics for f in fake.frames(conn, topic, step)]
    perp = Symbol("BTC", "USDT", "perp")
    subs = [Subscription(perp, DataType.TRADES), Subscription(perp, DataType.BOOK), Subscription(perp, DataType.OHLC, Span("1m"))]  # fmt: skip
    rate = time_session(frames, plan_for("bybit", "wss://stream.bybit.com", subs), ctx.min_seconds)
    rows = [Row("bybit", "synthetic v5 linear session (tests/fake/bybit.py)", len(frames), rate)]
    with tempfile.TemporaryDirectory() as tmp:  # the same frames, in cryptofeed's recording format
        instruments = {"retCode": 0, "result": {"category": "linear", "list": [{"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "baseCoin": "BTC", "quoteCoin": "USDT", "priceFilter": {"tickSize": "0.10"}}]}}  # fmt: skip
        spot = {"retCode": 0, "result": {"category": "spot", "list": []}}
        base = "https://api.bybit.com/v5/market/instruments-info?&category="
        Path(tmp, "BYBIT5.0").write_text(
            f"{base}linear&status=Trading&limit=1000 -> 0.0: {json.dumps(instruments)}\n"
            f"{base}spot&status=Trading&limit=1000 -> 0.0: {json.dumps(spot)}\n"
            'configuration: {"trades":["BTC-USDT-PERP"],"l2_book":["BTC-USDT-PERP"],"candles":["BTC-USDT-PERP"]}\n'
        )
        lines = ["wss://stream.bybit.com/v5/public/linear <-> 0.0"] + [
            f"{k / 1000:.3f}: {f}" for k, f in enumerate(frames)
        ]
        Path(tmp, "BYBIT5.ws.0.0").write_text("\n".join(lines) + "\n")
        result = run_cryptofeed(("bybit",), ctx.min_seconds, Path(tmp)).get("bybit", {})
    if "per_s" in result:
        rows[0].cf_per_s = result["per_s"]
    elif "error" in result:
        rows[0].note = f"cryptofeed failed: {result['error']}"
    legacy = recorded_frames(recording("BYBIT.ws.25.0", "bybit"))
    rate = time_session(legacy, plan_for("bybit", "wss://stream.bybit.com", subs), ctx.min_seconds)
    rows.append(Row("bybit", "BYBIT.ws.25.0 (2021, pre-v5: all Unrecognised)", len(legacy), rate, note="load only"))
    return rows


def bench_okx(ctx: Context) -> list[Row]:
    """OKX.ws.1.0: tickers, trades and 400-level books whose checksums dccd verifies on every update."""
    frames = recorded_frames(recording("OKX.ws.1.0", "okx"))
    rate = time_session(frames, session_of("okx", "wss://ws.okx.com:8443/ws/v5/public"), ctx.min_seconds)
    return [Row("okx", "OKX.ws.1.0 (2022 session)", len(frames), rate, "okx")]


def bench_bitmex(ctx: Context) -> list[Row]:
    """BITMEX.ws.1.0: trade, quote and full orderBookL2 for 10 instruments (level ids tracked)."""
    frames = recorded_frames(recording("BITMEX.ws.1.0", "bitmex"))
    rate = time_session(frames, session_of("bitmex", "wss://ws.bitmex.com/realtime"), ctx.min_seconds)
    note = "cryptofeed needs its BitMEX futures expiries rewritten (cf_parse.py)"
    return [Row("bitmex", "BITMEX.ws.1.0 (2021 session)", len(frames), rate, "bitmex", note)]


BENCHES: list[Callable[[Context], list[Row]]] = [
    bench_binance,
    bench_coinbase,
    bench_kraken,
    bench_bitfinex,
    bench_bybit,
    bench_okx,
    bench_bitmex,
]
CF_FEEDS: tuple[str, ...] = ("binance", "kraken", "bitfinex", "okx", "bitmex")  # names of FEEDS in cf_parse.py


# --- cryptofeed in its own venv --------------------------------------------------------------


def ensure_cf_venv() -> Path | None:
    """The venv's python with cryptofeed installed (created if missing), or None if that fails."""
    python = CF_VENV / "bin" / "python"
    probe = [
        str(python),
        "-c",
        f"import cryptofeed, importlib.metadata as m; assert m.version('cryptofeed') == '{CF_VERSION}'",
    ]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {CF_VENV} with cryptofeed=={CF_VERSION} ...", file=sys.stderr)
    steps = [
        [sys.executable, "-m", "venv", str(CF_VENV)],
        [str(python), "-m", "pip", "install", "-q", f"cryptofeed=={CF_VERSION}"],
    ]
    for step in steps:
        if subprocess.run(step).returncode != 0:
            print(f"could not run {' '.join(step)}; cryptofeed column left empty", file=sys.stderr)
            return None
    return python


def run_cryptofeed(feeds: tuple[str, ...], min_seconds: float, folder: Path = RECORDINGS) -> dict[str, Any]:
    """cf_parse.py's results per feed ({} when the venv or the recordings in ``folder`` are unavailable)."""
    python = ensure_cf_venv()
    if python is None or not folder.exists():
        return {}
    script = Path(__file__).with_name("cf_parse.py")
    done = subprocess.run(
        [str(python), str(script), str(folder), str(min_seconds), *feeds], capture_output=True, text=True
    )
    if done.returncode != 0:
        print(f"cf_parse.py failed: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return {}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- table -----------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def print_table(rows: list[Row]) -> None:
    """One line per row, dccd and cryptofeed side by side."""
    head = ("exchange", "workload", "frames", "dccd msg/s", "cryptofeed msg/s", "dccd/cf", "note")
    lines = [head]
    for r in rows:
        ratio = f"{r.dccd_per_s / r.cf_per_s:.1f}x" if r.cf_per_s else "-"
        lines.append((r.exchange, r.workload, str(r.messages), _rate(r.dccd_per_s), _rate(r.cf_per_s), ratio, r.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for k, line in enumerate(lines):
        print(
            "  ".join(
                cell.rjust(w) if 2 <= i <= 5 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--min-seconds", type=float, default=0.3, help="minimum duration of one timed run (each of 3, both sides)"
    )
    args = parser.parse_args()
    cf = run_cryptofeed(CF_FEEDS, args.min_seconds)
    ctx = Context(args.min_seconds, cf)
    rows = [row for bench in BENCHES for row in bench(ctx)]
    for row in rows:
        result = cf.get(row.cf_key or "")
        if isinstance(result, dict) and "per_s" in result:
            row.cf_per_s = result["per_s"]
            if result["messages"] != row.messages:
                row.note = f"cryptofeed saw {result['messages']} frames".strip()
        elif isinstance(result, dict) and "error" in result:
            row.note = f"cryptofeed failed: {result['error']}"
    print(f"python {sys.version.split()[0]}, cryptofeed {CF_VERSION} in {CF_VENV}, recordings {RECORDINGS}")
    print_table(rows)


if __name__ == "__main__":
    main()
