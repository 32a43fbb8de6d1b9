"""Builders shared by the storage tests: datasets, records, corrupting files."""

from __future__ import annotations

from pathlib import Path

from dccd.domain import Candle, DatasetId, DataType, Funding, OpenInterest, Span, Symbol, Trade
from dccd.domain.timeutil import NS_PER_MIN, parse_iso_ns
from dccd.storage import Provenance

BTC = Symbol.parse("BTC/USDT")
OHLC_1M = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))
TRADES = DatasetId("binance", BTC, DataType.TRADES)
BOOK = DatasetId("binance", BTC, DataType.BOOK)
FUNDING = DatasetId("binance", Symbol.parse("BTC/USDT:perp"), DataType.FUNDING)
OI = DatasetId("binance", Symbol.parse("BTC/USDT:perp"), DataType.OI)
PROV = Provenance("binance", "rest", "run-1")
T0 = parse_iso_ns("2024-01-01")
NOW = parse_iso_ns("2025-01-01")


def bars(
    start_ns: int, n: int, *, step_ns: int = NS_PER_MIN, skip: tuple[int, ...] = (), close: float = 1.5
) -> list[Candle]:
    """``n`` 1m candles from ``start_ns`` (valid while 0.5 <= close <= 2), leaving out indexes in ``skip``."""
    return [
        Candle(start_ns + i * step_ns, 1.0, 2.0, 0.5, close, 10.0 + i, None, None) for i in range(n) if i not in skip
    ]


def trades(start_id: int, n: int, *, ts0: int = T0, step_ns: int = 1_000_000) -> list[Trade]:
    """``n`` trades with sequential integer ids; id ``k`` happens at ``ts0 + k * step_ns``."""
    return [
        Trade(ts0 + i * step_ns, str(i), 100.0 + i % 7, 0.5, "buy" if i % 2 else "sell", None)
        for i in range(start_id, start_id + n)
    ]


def funding(start_ns: int, n: int, step_ns: int, skip: tuple[int, ...] = ()) -> list[Funding]:
    """Funding prints every ``step_ns``."""
    return [Funding(start_ns + i * step_ns, 0.0001, 100.0) for i in range(n) if i not in skip]


def oi(start_ns: int, steps: list[int]) -> list[OpenInterest]:
    """Open-interest prints at ``start_ns`` + each offset."""
    return [OpenInterest(start_ns + s, 5.0, None) for s in steps]


def corrupt(path: Path) -> None:
    """Overwrite a file with bytes that are not Parquet."""
    path.write_bytes(b"not a parquet file at all" * 10)


def parts_of(root: Path, ds: DatasetId) -> list[Path]:
    """Every visible part of a dataset, sorted."""
    from dccd.storage.layout import dataset_dir

    return sorted(dataset_dir(root, ds).glob("*/part-*.parquet"))
