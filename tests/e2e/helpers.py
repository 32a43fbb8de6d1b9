"""Shared helpers of the backfill end-to-end tests: configs, requests, raw lake reads, the fake's own values.

Expected values always come from the fake's generator (:class:`tests.fake.binance_data.Tape`),
never from dccd's parsers, and the lake is read raw (every part, no deduplication) with DuckDB,
so a duplicated or missing row shows up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import duckdb

from dccd.config import Config, ExchangeSettings, Storage
from dccd.domain import Span
from dccd.domain.timeutil import NS_PER_MS, parse_iso_ns
from dccd.ops import BackfillRequest, parse_backfill
from tests.fake.binance import FakeBinance

KLINES = "/api/v3/klines"
EXCHANGE_INFO = "/api/v3/exchangeInfo"
HISTORICAL_TRADES = "/api/v3/historicalTrades"
AGG_TRADES = "/api/v3/aggTrades"
LISTED_MS = 1_502_942_400_000  # BTCUSDT listing in the fake (2017-08-17T04:00Z)
MIN_MS = 60_000
DAY_MS = 86_400_000
JAN1_MS = parse_iso_ns("2024-01-01") // NS_PER_MS
OHLC_COLUMNS = "ts, open, high, low, close, volume, quote_volume, trades"
TRADE_COLUMNS = "ts, id, price, amount, side"


def config(root: Path, rest_url: str, rate_limit: float = 0.0, exchanges: tuple[str, ...] = ("binance",)) -> Config:
    """A config with the lake at ``root`` and ``exchanges`` (Binance) at ``rest_url``."""
    return Config(
        storage=Storage(path=str(root)),
        exchanges={name: ExchangeSettings(rest_url=rest_url, rate_limit=rate_limit) for name in exchanges},
    )


def request(
    symbols: list[str],
    data_type: str = "ohlc",
    *,
    span: str | None = "1m",
    start: str | None = None,
    end: str | None = None,
    now_ns: int | None = None,
    exchange: str = "binance",
    source: str | None = None,
) -> BackfillRequest:
    """A validated backfill request, of Binance unless told (span only for ohlc)."""
    return parse_backfill(
        exchange,
        symbols,
        data_type,
        known_exchanges=[exchange],
        span=span if data_type == "ohlc" else None,
        start=start,
        end=end,
        now_ns=time.time_ns() if now_ns is None else now_ns,
        source=source,
    )


def iso_ms(ms: int) -> str:
    """ISO-8601 of a ms timestamp (exact, for --start/--end)."""
    from dccd.domain.timeutil import ns_to_iso

    return ns_to_iso(ms * NS_PER_MS)


def raw_rows(root: Path, data_type: str, columns: str, order: str = "ts") -> list[tuple[Any, ...]]:
    """Every row of every part of ``data_type`` under ``root`` (DuckDB over the hive tree, no dedup)."""
    if not list((root / data_type).rglob("*.parquet")):
        return []
    con = duckdb.connect()
    try:
        glob = str(root / data_type / "**" / "*.parquet")
        sql = f"SELECT {columns} FROM read_parquet('{glob}', hive_partitioning=true) ORDER BY {order}"
        return con.execute(sql).fetchall()
    finally:
        con.close()


def parts(root: Path, data_type: str = "ohlc") -> list[Path]:
    """The part files of ``data_type``, sorted."""
    return sorted((root / data_type).rglob("*.parquet"))


def temp_files(root: Path) -> list[Path]:
    """Writer temp files left in the lake (there must be none)."""
    return [p for p in root.rglob(".*") if p.name.endswith(".tmp")]


def fake_klines(fake: FakeBinance, start_ms: int, end_ms: int, symbol: str = "BTCUSDT") -> list[tuple[Any, ...]]:
    """The fake's own 1m bars opening in ``[start_ms, end_ms)`` (holes skipped), as lake rows."""
    tape = fake.tapes[symbol]
    span = Span("1m")
    now_ms = int(fake.clock() * 1000)
    out = []
    for t in range(start_ms, end_ms, MIN_MS):
        if tape.in_hole(t):
            continue
        r = json.loads(tape.kline_json(span, t, now_ms))
        out.append((t * NS_PER_MS, *(float(x) for x in r[1:6]), float(r[7]), r[8]))
    return out


def fake_trades(fake: FakeBinance, start_ms: int, end_ms: int, symbol: str = "BTCUSDT") -> list[tuple[Any, ...]]:
    """The fake's own trades with time in ``[start_ms, end_ms)``, as lake rows (taker side)."""
    tape = fake.tapes[symbol]
    first = tape.first_group_at(start_ms) * tape.market.trades_per_ms
    last = tape.head_id(end_ms - 1)
    rows = json.loads("[" + ",".join(tape.trades_json(first, last)) + "]")
    return [
        (
            r["time"] * NS_PER_MS,
            str(r["id"]),
            float(r["price"]),
            float(r["qty"]),
            "sell" if r["isBuyerMaker"] else "buy",
        )
        for r in rows
    ]


def klines_params(fake: FakeBinance, since: int = 0) -> list[dict[str, str]]:
    """Query parameters of the klines requests the fake received from request index ``since`` on."""
    return [r.params for r in fake.requests[since:] if r.path == KLINES]
