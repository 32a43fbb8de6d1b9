"""A dccd 3.8.1 data directory, written two ways from one spec: by this module (pyarrow, 3.8.1's exact layout,
columns and types) and by dccd 3.8.1 itself (``ParquetStore.save`` run in its own venv, see :data:`V3_SCRIPT`).

``tests/storage/test_import_v3.py`` imports the first in the default suite and,
when a dccd 3.8.1 interpreter is available, checks once that 3.8.1 writes the
very same files from the same records, then imports what 3.8.1 wrote.

The data carries each of 3.8.1's fidelity bugs as 3.8.1 stored them: Coinbase
maker sides, BitMEX close-time bars and a 0.0 "empty bin", Kraken times that
went through float seconds, a forming 1h bar stored before it closed, plus one
damaged row (a negative amount) for the quality gates. One legacy
v2 file (TS in ms, ``quoteVolume``/``weightedAverage``) is written by this module
only (3.8.1 reads such files but no longer writes them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z
S = 1_000_000_000
DAY = 86_400 * S
LATER = T0 + 40 * DAY  # the files' modification time: every bar is closed by then ...
BINANCE_1H_WRITTEN = T0 + DAY + 23 * 3600 * S + 30 * 60 * S  # ... except Binance's 1h file: saved at 23:30 of Jan 2

_F, _I, _S, _B = pa.float64(), pa.int64(), pa.large_string(), pa.bool_()
V3_SCHEMAS = {
    "ohlc": pa.schema([("TS", _I), ("open", _F), ("high", _F), ("low", _F), ("close", _F), ("volume", _F),
                       ("quote_volume", _F), ("trades", _I)]),
    "trades": pa.schema([("TS", _I), ("price", _F), ("amount", _F), ("side", _S), ("tid", _S)]),
    "orderbook": pa.schema([("TS", _I), ("side", _S), ("price", _F), ("amount", _F), ("count", _I),
                            ("is_snapshot", _B)]),
    "funding": pa.schema([("TS", _I), ("rate", _F), ("mark_price", _F)]),
    "open_interest": pa.schema([("TS", _I), ("open_interest", _F), ("open_interest_value", _F)]),
}  # fmt: skip
_LABELS = {60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}


@dataclass(frozen=True)
class V3Dataset:
    """One 3.8.1 dataset and its records (as 3.8.1's record models take them)."""

    exchange: str
    base: str
    quote: str
    market: str  # spot | perp
    kind: str  # 3.8.1 DataType value
    span: int | None
    records: list[dict[str, Any]]
    mtime_ns: int = LATER

    @property
    def slug(self) -> str:
        return f"{self.base}-{self.quote}" + ("" if self.market == "spot" else f"_{self.market.upper()}")

    def directory(self, root: Path) -> Path:
        d = root / self.exchange / self.kind / self.slug
        return d / _LABELS.get(self.span, f"{self.span}s") if self.span is not None else d


def _iso_day(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts // S, tz=dt.UTC).strftime("%Y-%m-%d")


def _kraken_ns(i: int) -> int:
    """A Kraken trade time as 3.8.1 stored it: float seconds x 1e9 (sub-µs noise)."""
    sec, us = 1_704_067_200 + i * 60, (i * 123_457) % 1_000_000
    return int(float(f"{sec}.{us:06d}") * 1e9)


def spec() -> list[V3Dataset]:
    """The datasets of the fixture directory (deterministic)."""
    coinbase = [
        {"ts": T0 + i * 30 * S, "price": 42_000 + (i % 97) * 0.5, "amount": 0.001 * (1 + i % 13),
         "side": None if i % 10 == 9 else ("buy" if i % 2 else "sell"), "tid": str(1_000 + i)}
        for i in range(2 * 2880)
    ]  # fmt: skip
    kraken = [
        {"ts": _kraken_ns(i), "price": 42_100.1 + i % 7, "amount": 0.25, "side": "buy" if i % 3 else "sell",
         "tid": None}
        for i in range(1000)
    ]  # fmt: skip
    kraken[500]["amount"] = -0.25  # a damaged row (the quality gates quarantine it)
    bitmex = []
    for i in range(1440):
        close_ts = T0 + (i + 1) * 60 * S  # 3.8.1 stored BitMEX's close-time label
        if i == 100:  # an empty bin, its nulls stored as 0.0
            bitmex.append({"ts": close_ts, "open": 0.0, "high": 0.0, "low": 0.0, "close": 0.0, "volume": 0.0,
                           "quote_volume": None, "trades": 0})  # fmt: skip
            continue
        o = 42_000.0 + i % 50
        bitmex.append({"ts": close_ts, "open": o, "high": o + 5, "low": o - 5, "close": o + 1, "volume": 10.0 + i,
                       "quote_volume": (10.0 + i) * o, "trades": 7 + i % 5})  # fmt: skip
    binance_1h = [
        {"ts": T0 + i * 3600 * S, "open": 100.0 + i, "high": 102.0 + i, "low": 99.0 + i, "close": 101.0 + i,
         "volume": 5.5, "quote_volume": 550.0 + i, "trades": 40 + i}
        for i in range(48)
    ]  # fmt: skip
    funding = [
        {"ts": T0 + i * 8 * 3600 * S, "rate": 0.0001 * (1 + i % 3), "mark_price": 42_000.0 + i}
        for i in range(30)
    ]  # fmt: skip
    oi = [
        {"ts": T0 + i * 300 * S, "open_interest": 1_000.0 + i, "open_interest_value": (1_000.0 + i) * 42_000}
        for i in range(288)
    ]  # fmt: skip
    book = [
        {"ts": T0 + i * 60 * S, "is_snapshot": True,
         "bids": [{"price": 41_999.0 - k, "amount": 1.0 + k, "count": k + 1} for k in range(5)],
         "asks": [{"price": 42_001.0 + k, "amount": 2.0 + k, "count": None} for k in range(5)]}
        for i in range(10)
    ]  # fmt: skip
    return [
        V3Dataset("coinbase", "BTC", "USD", "spot", "trades", None, coinbase),
        V3Dataset("kraken", "BTC", "USD", "spot", "trades", None, kraken),
        V3Dataset("bitmex", "BTC", "USD", "perp", "ohlc", 60, bitmex),
        V3Dataset("binance", "BTC", "USDT", "spot", "ohlc", 3600, binance_1h, BINANCE_1H_WRITTEN),
        V3Dataset("binance", "BTC", "USDT", "perp", "funding", None, funding),
        V3Dataset("okx", "BTC", "USDT", "perp", "open_interest", 300, oi),
        V3Dataset("binance", "BTC", "USDT", "spot", "orderbook", None, book),
    ]


def _rows(ds: V3Dataset) -> list[dict[str, Any]]:
    if ds.kind != "orderbook":
        return [{("TS" if k == "ts" else k): v for k, v in r.items()} for r in ds.records]
    out = []
    for snap in ds.records:
        for side, levels in (("bid", snap["bids"]), ("ask", snap["asks"])):
            out += [{"TS": snap["ts"], "side": side, **lvl, "is_snapshot": snap["is_snapshot"]} for lvl in levels]
    return out


def _period(ds: V3Dataset, ts: int) -> str:
    day = _iso_day(ts)
    return day[:4] if ds.kind in ("ohlc", "funding", "open_interest") else day


def write_v3_dir(root: Path, datasets: list[V3Dataset] | None = None, *, legacy: bool = True) -> Path:
    """Write ``datasets`` (default :func:`spec`) in 3.8.1's layout under ``root``; return ``root``."""
    for ds in datasets if datasets is not None else spec():
        by_period: dict[str, list[dict[str, Any]]] = {}
        for r in _rows(ds):
            by_period.setdefault(_period(ds, r["TS"]), []).append(r)
        for period, rows in by_period.items():
            d = ds.directory(root)
            d.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["TS"]), schema=V3_SCHEMAS[ds.kind])
            meta = {b"dccd.provenance": json.dumps({"source": f"{ds.exchange}:rest", "derived_from": None}).encode()}
            pq.write_table(table.replace_schema_metadata(meta), d / f"{period}.parquet", compression="snappy")
            os.utime(d / f"{period}.parquet", ns=(ds.mtime_ns, ds.mtime_ns))
    (root / ".dccd").mkdir(exist_ok=True)
    (root / ".dccd" / "runs.db").write_bytes(b"")  # 3.8.1's run history: not data
    if legacy:
        write_legacy_v2(root)
    return root


LEGACY_ROWS = 30


def write_legacy_v2(root: Path) -> None:
    """A v2-era annual Bitfinex 1d file: TS in ms, ``quoteVolume``, ``weightedAverage`` (3.8.1 still reads these)."""
    d = root / "bitfinex" / "ohlc" / "BTC-USD" / "1d"
    d.mkdir(parents=True, exist_ok=True)
    t0_ms = parse_day_ms("2023-06-01")
    table = pa.table({
        "TS": pa.array([t0_ms + i * 86_400_000 for i in range(LEGACY_ROWS)], _I),
        "open": [27_000.0 + i for i in range(LEGACY_ROWS)], "high": [27_500.0 + i for i in range(LEGACY_ROWS)],
        "low": [26_500.0 + i for i in range(LEGACY_ROWS)], "close": [27_100.0 + i for i in range(LEGACY_ROWS)],
        "volume": [12.0] * LEGACY_ROWS, "quoteVolume": [324_000.0] * LEGACY_ROWS,
        "weightedAverage": [27_000.0] * LEGACY_ROWS,
    })  # fmt: skip
    pq.write_table(table, d / "2023.parquet")
    os.utime(d / "2023.parquet", ns=(LATER, LATER))


def parse_day_ms(day: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()) * 1000


# Run by a dccd 3.8.1 interpreter: python -c V3_SCRIPT ROOT SPEC_JSON. Records go through 3.8.1's own
# models and ParquetStore.save (its writer), then the files get the spec's modification times.
V3_SCRIPT = """
import json, os, sys, pathlib
from dccd.storage.parquet import ParquetStore
from dccd.domain.dataset import DatasetId, Provenance
from dccd.domain.symbol import Symbol
from dccd.domain.types import DataType
from dccd.domain import records as R
root, spec = pathlib.Path(sys.argv[1]), json.loads(pathlib.Path(sys.argv[2]).read_text())
store = ParquetStore(root)
for d in spec:
    ds = DatasetId(exchange=d["exchange"], symbol=Symbol(base=d["base"], quote=d["quote"], market=d["market"]),
                   data_type=DataType(d["kind"]), span=d["span"])
    if d["kind"] == "orderbook":
        recs = [R.OrderBookSnapshot(ts=s["ts"], bids=[R.OrderBookLevel(**l) for l in s["bids"]],
                asks=[R.OrderBookLevel(**l) for l in s["asks"]], is_snapshot=s["is_snapshot"]) for s in d["records"]]
    else:
        cls = {"ohlc": R.OHLCBar, "trades": R.Trade, "funding": R.FundingRate, "open_interest": R.OpenInterest}
        recs = [cls[d["kind"]](**r) for r in d["records"]]
    store.save(ds, recs, Provenance(source=d["exchange"] + ":rest"))
    for f in store.directory(ds).glob("*.parquet"):
        os.utime(f, ns=(d["mtime_ns"], d["mtime_ns"]))
"""


def spec_json(datasets: list[V3Dataset] | None = None) -> str:
    """The spec as JSON for :data:`V3_SCRIPT`."""
    return json.dumps([ds.__dict__ for ds in (datasets if datasets is not None else spec())])
