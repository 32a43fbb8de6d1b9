"""Lake layout: paths follow DESIGN §4, names round-trip, foreign names are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.domain.timeutil import NS_PER_DAY, parse_iso_ns
from dccd.storage import layout

ROOT = Path("/lake")


@pytest.mark.parametrize(
    ("ds", "ts", "expected"),
    [
        (
            DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES),
            "2024-01-01T12:00",
            "/lake/trades/exchange=binance/symbol=BTC-USDT/date=2024-01-01",
        ),
        (
            DatasetId("kraken", Symbol.parse("ETH/USD"), DataType.BOOK),
            "2024-02-29T23:59:59.999999999",
            "/lake/book/exchange=kraken/symbol=ETH-USD/date=2024-02-29",
        ),
        (
            DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m")),
            "2024-01-31T23:59",
            "/lake/ohlc/exchange=binance/symbol=BTC-USDT/span=1m/month=2024-01",
        ),
        (
            DatasetId("bybit", Symbol.parse("BTC/USDT:perp"), DataType.FUNDING),
            "2024-03-01",
            "/lake/funding/exchange=bybit/symbol=BTC-USDT-PERP/month=2024-03",
        ),
        (
            DatasetId("okx", Symbol.parse("BTC/USDT:perp"), DataType.OI),
            "2023-12-31T23:00",
            "/lake/oi/exchange=okx/symbol=BTC-USDT-PERP/month=2023-12",
        ),
    ],
)
def test_partition_paths_follow_the_contract(ds: DatasetId, ts: str, expected: str) -> None:
    """Each data type lands in its documented hive directory and partition."""
    kind = layout.partition_kind(ds.data_type)
    assert str(layout.dataset_dir(ROOT, ds) / layout.partition_name(kind, parse_iso_ns(ts))) == expected


def test_partition_bounds_are_half_open_day_and_calendar_month() -> None:
    """Partition names map to exact [lo, hi) ns ranges, including leap Februaries."""
    assert layout.partition_bounds("date=2024-02-29") == (parse_iso_ns("2024-02-29"), parse_iso_ns("2024-03-01"))
    assert layout.partition_bounds("month=2024-02") == (parse_iso_ns("2024-02-01"), parse_iso_ns("2024-03-01"))
    assert layout.partition_bounds("month=2024-12") == (parse_iso_ns("2024-12-01"), parse_iso_ns("2025-01-01"))
    lo, hi = layout.partition_bounds("date=1999-12-31") or (0, 0)
    assert hi - lo == NS_PER_DAY


@pytest.mark.parametrize("name", ["date=2024-02-30", "month=2024-13", "date=2024-1-1", "year=2024", "notes"])
def test_foreign_partition_names_are_rejected(name: str) -> None:
    """Impossible or unknown partition names give None, so readers skip them."""
    assert layout.partition_bounds(name) is None


def test_part_names_round_trip_and_sort_by_first_ts() -> None:
    """A part name carries first/last ts and a stamp; zero padding keeps names in ts order."""
    a = layout.part_name(5, 10**18, layout.new_stamp(2))
    b = layout.part_name(40, 50, layout.new_stamp(1))
    assert layout.parse_part_name(a) == (5, 10**18, a[-32:-8])
    assert sorted([b, a]) == [a, b]
    assert layout.parse_part_name("part-1.parquet") is None
    assert layout.parse_part_name("data.parquet") is None


def test_stamps_are_unique_and_ordered_by_time() -> None:
    """Two stamps at the same ns differ (random token); a later time sorts after."""
    assert layout.new_stamp(7) != layout.new_stamp(7)
    assert layout.new_stamp(7) < layout.new_stamp(8)


def test_temp_names_are_hidden_and_carry_the_pid() -> None:
    """Temp files start with '.', end in '.tmp' (invisible to *.parquet globs) and name their writer."""
    import os

    name = layout.temp_name("part-x.parquet")
    assert name.startswith(".part-x.parquet.") and name.endswith(".tmp")
    assert layout.temp_owner_pid(name) == os.getpid()
    assert layout.temp_owner_pid("part-x.parquet") is None


def test_dataset_dirs_parse_back() -> None:
    """Dataset directories map back to their DatasetId; foreign ones give None."""
    for ds in (
        DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES),
        DatasetId("binance", Symbol.parse("BTC/USDT:perp"), DataType.OHLC, Span.parse("1M")),
    ):
        assert layout.parse_dataset_dir(ROOT, layout.dataset_dir(ROOT, ds)) == ds
    assert layout.parse_dataset_dir(ROOT, ROOT / "trades" / "exchange=x" / "foo") is None
    assert layout.parse_dataset_dir(ROOT, ROOT / "ohlc" / "exchange=x" / "symbol=BTC-USDT" / "span=7m") is None
    assert layout.parse_dataset_dir(ROOT, ROOT / "misc" / "exchange=x" / "symbol=BTC-USDT") is None


def test_quarantine_mirrors_the_data_layout_under_meta_dir() -> None:
    """Quarantined rows live under {root}/_dccd/quarantine/<type>/exchange=../symbol=../."""
    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
    assert str(layout.quarantine_dir(ROOT, ds)) == "/lake/_dccd/quarantine/trades/exchange=binance/symbol=BTC-USDT"
