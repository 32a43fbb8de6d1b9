"""Quality gates: each rule quarantines exactly the rows breaking it, named, counted, never blocking good rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from dccd.domain import BookLevel, BookSnapshot, Candle, DataType, Funding, OpenInterest, Trade
from dccd.domain.timeutil import NS_PER_S
from dccd.storage import Lake
from dccd.storage.layout import quarantine_dir
from dccd.storage.quality import gate
from dccd.storage.schema import records_to_table

from .helpers import BOOK, FUNDING, NOW, OHLC_1M, OI, PROV, T0, TRADES

GOOD_BAR = Candle(T0, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 3)
GOOD_TRADE = Trade(T0, "1", 100.0, 0.5, "buy")


def _rules(data_type: DataType, records: list[Any]) -> list[str | None]:
    """Rule per input record (None = passed), matched back by ts."""
    res = gate(data_type, records_to_table(data_type, records), now_ns=NOW, skew_ns=60 * NS_PER_S)
    bad = {} if res.bad is None else dict(zip(res.bad["ts"].to_pylist(), res.bad["rule"].to_pylist(), strict=True))
    return [bad.get(r.ts) for r in records]


@pytest.mark.parametrize(
    ("bar", "rule"),
    [
        (GOOD_BAR, None),
        (Candle(T0 + 1, 1.0, 0.9, 0.5, 0.8, 1.0), "ohlc_high"),  # high < open
        (Candle(T0 + 2, 1.0, 2.0, 0.5, 2.5, 1.0), "ohlc_high"),  # high < close
        (Candle(T0 + 3, 1.0, 2.0, 1.1, 1.5, 1.0), "ohlc_low"),  # low > open
        (Candle(T0 + 4, 1.0, 2.0, 0.5, 0.4, 1.0), "ohlc_low"),  # low > close
        (Candle(T0 + 5, 3.0, 2.0, 2.5, 3.0, 1.0), "ohlc_low_le_high"),
        (Candle(T0 + 6, 0.0, 2.0, 0.5, 1.5, 1.0), "price_positive"),
        (Candle(T0 + 7, 1.0, 2.0, -0.5, 1.5, 1.0), "price_positive"),
        (Candle(T0 + 8, 1.0, 2.0, 0.5, math.nan, 1.0), "values_finite"),
        (Candle(T0 + 9, 1.0, 2.0, 0.5, 1.5, -1.0), "volume_non_negative"),
        (Candle(T0 + 10, 1.0, 2.0, 0.5, 1.5, 1.0, -2.0), "volume_non_negative"),
        (Candle(T0 + 11, 1.0, 2.0, 0.5, 1.5, 1.0, None, -1), "volume_non_negative"),
        (Candle(T0 + 12, 1.0, 2.0, 0.5, 1.5, math.nan), "values_finite"),
        (Candle(T0 + 13, 1.0, 2.0, 0.5, 1.5, 0.0, None, 0), None),  # zero volume is fine
        (Candle(-60 * NS_PER_S, 1.0, 2.0, 0.5, 1.5, 1.0), "ts_positive"),
        (Candle(NOW + 61 * NS_PER_S, 1.0, 2.0, 0.5, 1.5, 1.0), "ts_not_future"),
        (Candle(NOW + 59 * NS_PER_S, 1.0, 2.0, 0.5, 1.5, 1.0), None),  # within the skew
        (Candle(T0 + 14, 1.0, None, 0.5, 1.5, 1.0), "required_present"),  # type: ignore[arg-type]
    ],
)
def test_ohlc_rules(bar: Candle, rule: str | None) -> None:
    """Each OHLC invariant and range rule catches its row, and only it, with the rule's name."""
    assert _rules(DataType.OHLC, [GOOD_BAR, bar] if bar is not GOOD_BAR else [bar])[-1] == rule


@pytest.mark.parametrize(
    ("trade", "rule"),
    [
        (Trade(T0 + 1, "2", 0.0, 1.0, "buy"), "price_positive"),
        (Trade(T0 + 2, "3", 100.0, -0.1, "sell"), "amount_non_negative"),
        (Trade(T0 + 3, "4", 100.0, 0.0, None), None),
        (Trade(T0 + 4, "5", 100.0, 1.0, "BUY"), "side_valid"),
        (Trade(T0 + 5, None, 100.0, 1.0, "sell"), None),
        (Trade(0, "6", 100.0, 1.0, "buy"), "ts_positive"),
        (Trade(None, "7", 100.0, 1.0, "buy"), "required_present"),  # type: ignore[arg-type]
    ],
)
def test_trade_rules(trade: Trade, rule: str | None) -> None:
    """Trade prices must be positive, amounts non-negative and sides buy/sell/null."""
    assert _rules(DataType.TRADES, [GOOD_TRADE, trade])[-1] == rule


def test_book_funding_and_oi_rules() -> None:
    """Book sides are bid/ask with positive prices; funding rates finite; open interest non-negative."""
    assert _rules(
        DataType.BOOK,
        [BookLevel(T0, "bid", 1.0, 1.0), BookLevel(T0 + 1, "buy", 2.0, 1.0), BookLevel(T0 + 2, "ask", -1.0, 1.0)],
    ) == [None, "side_valid", "price_positive"]
    assert _rules(
        DataType.FUNDING, [Funding(T0, -0.001, None), Funding(T0 + 1, math.inf), Funding(T0 + 2, 0.1, 0.0)]
    ) == [
        None,
        "rate_finite",
        "price_positive",
    ]
    assert _rules(
        DataType.OI, [OpenInterest(T0, 0.0), OpenInterest(T0 + 1, -1.0), OpenInterest(T0 + 2, 1.0, -5.0)]
    ) == [
        None,
        "amount_non_negative",
        "amount_non_negative",
    ]


def test_duplicate_keys_keep_the_last_row_and_quarantine_the_rest() -> None:
    """Within a batch the last row of a natural key wins; earlier copies fail unique_key."""
    first = Candle(T0, 1.0, 2.0, 0.5, 1.5, 1.0)
    later = Candle(T0, 1.0, 2.0, 0.5, 1.5, 99.0)
    other = Candle(T0 + 60, 1.0, 2.0, 0.5, 1.5, 1.0)
    res = gate(DataType.OHLC, records_to_table(DataType.OHLC, [first, other, later]), now_ns=NOW)
    assert res.good["volume"].to_pylist() == [99.0, 1.0]
    assert res.bad is not None and res.bad.to_pylist()[0]["volume"] == 1.0
    assert res.reasons == {"unique_key": 1}


def test_trade_duplicates_by_id_else_by_composite_key() -> None:
    """Trades dedup on id; id-less trades on (ts, price, amount, side), nulls equal."""
    batch = [
        Trade(T0 + 2, "10", 1.0, 1.0, "buy"),
        Trade(T0 + 1, "9", 1.0, 1.0, "buy"),
        Trade(T0 + 5, "10", 2.0, 1.0, "buy"),  # same id, later: wins
        Trade(T0 + 3, None, 1.0, 1.0, None),
        Trade(T0 + 3, None, 1.0, 1.0, None),  # composite duplicate (null side == null side)
        Trade(T0 + 3, None, 1.0, 2.0, None),  # different amount: distinct
    ]
    res = gate(DataType.TRADES, records_to_table(DataType.TRADES, batch), now_ns=NOW)
    assert [(r["id"], r["ts"] - T0) for r in res.good.to_pylist()] == [("9", 1), (None, 3), (None, 3), ("10", 5)]
    assert res.reasons == {"unique_key": 2}


def test_numeric_ids_of_growing_width_are_not_mistaken_for_duplicates() -> None:
    """ids 9 -> 10 are not lexically ordered, yet nothing is quarantined."""
    batch = [Trade(T0 + i, str(i), 1.0, 1.0, "buy") for i in range(5, 15)]
    res = gate(DataType.TRADES, records_to_table(DataType.TRADES, batch), now_ns=NOW)
    assert res.bad is None and res.good.num_rows == 10


def test_good_rows_come_out_sorted_with_the_strict_schema() -> None:
    """Good rows are sorted by ts and cast to the non-nullable lake schema."""
    batch = [Trade(T0 + 5, "2", 1.0, 1.0, "buy"), Trade(T0 + 1, "1", 1.0, 1.0, "sell")]
    res = gate(DataType.TRADES, records_to_table(DataType.TRADES, batch), now_ns=NOW)
    assert res.good["ts"].to_pylist() == [T0 + 1, T0 + 5]
    assert not res.good.schema.field("ts").nullable and res.good.schema.field("recv_ts").nullable


def test_write_quarantines_bad_rows_with_rule_and_writes_the_good(tmp_path: Path) -> None:
    """A write stores good rows, puts bad rows under _dccd/quarantine with a rule column and reports counts."""
    lake = Lake(tmp_path)
    batch = [
        GOOD_BAR,
        Candle(T0 + 60 * NS_PER_S, 1.0, 0.5, 0.4, 0.45, 1.0),
        Candle(T0 + 120 * NS_PER_S, 1, 2, 0.5, 1, -3),
    ]
    res = lake.write(OHLC_1M, batch, PROV, now_ns=NOW)
    assert (res.rows_written, res.rows_quarantined) == (1, 2)
    assert res.quarantine_reasons == {"ohlc_high": 1, "volume_non_negative": 1}
    (qpath,) = res.quarantine_parts
    assert Path(qpath).parent == quarantine_dir(tmp_path, OHLC_1M)
    q = pq.read_table(qpath)
    assert sorted(q["rule"].to_pylist()) == ["ohlc_high", "volume_non_negative"]
    assert lake.read_table(OHLC_1M).table["ts"].to_pylist() == [T0]


def test_an_all_bad_batch_writes_no_part(tmp_path: Path) -> None:
    """When every row fails, nothing reaches the data tree but everything reaches the quarantine."""
    lake = Lake(tmp_path)
    res = lake.write(TRADES, [Trade(T0, "1", -1.0, 1.0, "buy")], PROV, now_ns=NOW)
    assert res.parts == () and res.rows_quarantined == 1
    assert not (tmp_path / "trades").exists()


def test_book_snapshots_are_flattened_to_levels(tmp_path: Path) -> None:
    """BookSnapshot records are stored as one row per level (bids then asks)."""
    snap = BookSnapshot(T0, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 3.0)], 7)
    res = Lake(tmp_path).write(BOOK, [snap], PROV, now_ns=NOW)
    assert res.rows_written == 3
    rows = Lake(tmp_path).read_table(BOOK).table.to_pylist()
    assert [(r["side"], r["price"], r["seq"]) for r in rows] == [("ask", 101.0, 7), ("bid", 99.0, 7), ("bid", 100.0, 7)]


def test_funding_and_oi_round_trip(tmp_path: Path) -> None:
    """Funding and OI rows are stored and read back unchanged, nulls kept."""
    lake = Lake(tmp_path)
    lake.write(FUNDING, [Funding(T0, -0.0001, None)], PROV, now_ns=NOW)
    lake.write(OI, [OpenInterest(T0, 12.5, 1e6)], PROV, now_ns=NOW)
    assert lake.read_table(FUNDING).table.to_pylist() == [{"ts": T0, "rate": -0.0001, "mark_price": None}]
    assert lake.read_table(OI).table.to_pylist() == [{"ts": T0, "open_interest": 12.5, "open_interest_value": 1e6}]


def test_nan_and_inf_prices_are_quarantined_as_values_finite() -> None:
    """NaN or infinite prices (which the fast page decoders let through) go to quarantine under values_finite."""
    import math

    from dccd.domain import Candle, Trade
    from dccd.storage.quality import gate
    from dccd.storage.schema import records_to_table

    now = 2_000_000_000_000_000_000
    bars = [
        Candle(60_000_000_000, 1.0, 2.0, 0.5, 1.5, 3.0),
        Candle(120_000_000_000, math.nan, 2.0, 0.5, 1.5, 3.0),
        Candle(180_000_000_000, 1.0, math.inf, 0.5, 1.5, 3.0),
    ]
    res = gate(DataType.OHLC, records_to_table(DataType.OHLC, bars), now_ns=now)
    assert res.good.column("ts").to_pylist() == [60_000_000_000]
    assert res.reasons == {"values_finite": 2}
    trades = [Trade(1, "1", 1.0, 1.0, "buy"), Trade(2, "2", 1.0, math.inf, "sell")]
    res = gate(DataType.TRADES, records_to_table(DataType.TRADES, trades), now_ns=now)
    assert res.good.column("id").to_pylist() == ["1"] and res.reasons == {"values_finite": 1}
