"""Batch contracts in the writer's gate: unit and exchange-life errors and off-grid bars are quarantined by name,
id order is counted, good rows are written, and the writer actor reports the outcome as DataValidated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
from dccd.actors import Writer
from dccd.actors.messages import Batch, DataValidated, PartWritten

from dccd.contracts.rules import BatchRules, ContractRules
from dccd.domain import Candle, DatasetId, DataType, Span, Trade
from dccd.domain.timeutil import NS_PER_DAY, NS_PER_MIN, parse_iso_ns
from dccd.storage import Lake
from dccd.storage.layout import quarantine_dir
from dccd.storage.quality import gate, grid_mask, unit_mask
from dccd.storage.schema import records_to_table

from .helpers import BARS, BTC, NOW, PROV, T0, TRADES, calm_bars, walk_trades

BINANCE_START = parse_iso_ns("2017-07-01")


def _rules_of(data_type: DataType, records: list[Any], rules: BatchRules) -> dict[int, str]:
    res = gate(data_type, records_to_table(data_type, records), now_ns=NOW, skew_ns=0, rules=rules)
    return {} if res.bad is None else dict(zip(res.bad["ts"].to_pylist(), res.bad["rule"].to_pylist(), strict=True))


@pytest.mark.parametrize(
    ("ts", "rule"),
    [
        (T0, None),
        (T0 // 1_000, "ts_units"),  # µs stored as ns
        (T0 // 1_000_000, "ts_units"),  # ms
        (T0 // 1_000_000_000, "ts_units"),  # s
        (parse_iso_ns("2016-05-01"), "ts_in_life"),  # before Binance existed
        (BINANCE_START, None),
        (NOW + 1, "ts_not_future"),
        (12_345, "ts_in_life"),  # not a unit mix-up either: just wrong
    ],
)
def test_ts_units_and_exchange_life(ts: int, rule: str | None) -> None:
    """A ts in s, ms or µs that lands in the exchange's life once rescaled fails ts_units; any other
    ts before the exchange's first day fails ts_in_life; both are checked before ts_not_future."""
    got = _rules_of(DataType.TRADES, [Trade(ts, "1", 100.0, 1.0, "buy")], BatchRules(BINANCE_START))
    assert got.get(ts) == rule


def test_unit_mask_is_exact_at_the_window_edges() -> None:
    """The rescaled windows are closed intervals of the exchange's life: their edges are in, one past is out."""
    lo, hi = BINANCE_START, NOW
    ts = [lo // 1000, lo // 1000 - 1, hi // 1000, hi // 1000 + 1, -(-lo // 10**6), hi // 10**6]
    assert unit_mask(pa_array(ts), lo, hi).to_pylist() == [True, False, True, False, True, True]


def pa_array(values: list[int]) -> pa.Array:
    return pa.array(values, pa.int64())


@pytest.mark.parametrize(
    ("span", "ts", "on_grid"),
    [
        ("1m", T0 + 5 * NS_PER_MIN, True),
        ("1m", T0 + 5 * NS_PER_MIN + 1, False),
        ("1h", T0 + 30 * NS_PER_MIN, False),
        ("1w", parse_iso_ns("2024-01-01"), True),  # a Monday
        ("1w", parse_iso_ns("2024-01-04"), False),  # a Thursday (the epoch's weekday)
        ("1M", parse_iso_ns("2024-02-01"), True),
        ("1M", parse_iso_ns("2024-02-02"), False),
        ("1M", parse_iso_ns("2024-02-01") + NS_PER_MIN, False),
        ("3d", 19_722 * NS_PER_DAY, True),  # 3d bars count from the epoch (Span.align)
        ("3d", 19_723 * NS_PER_DAY, False),
    ],
)
def test_bar_grid(span: str, ts: int, on_grid: bool) -> None:
    """A bar's open time must be one Span.align keeps (weeks open on Mondays, months on the 1st)."""
    sp = Span.parse(span)
    assert grid_mask(pa_array([ts]), sp).to_pylist() == [on_grid]
    assert (sp.align(ts) == ts) is on_grid
    bar = Candle(ts, 1.0, 2.0, 0.5, 1.5, 1.0)
    assert _rules_of(DataType.OHLC, [bar], BatchRules(BINANCE_START, sp)).get(ts) == (None if on_grid else "bar_grid")


def test_monotonic_ids_are_counted_not_quarantined() -> None:
    """Ids that fall back in time order are counted (one per descent) under monotonic_ids; every row is written."""
    trades = [Trade(T0 + k, str(i), 100.0, 1.0, "buy") for k, i in enumerate([1, 2, 3, 10, 4, 5, 6, 11, 7])]
    res = gate(
        DataType.TRADES, records_to_table(DataType.TRADES, trades), now_ns=NOW, rules=BatchRules(monotonic_ids=True)
    )
    assert (res.good.num_rows, res.bad, res.flags) == (9, None, {"monotonic_ids": 2})
    clean = gate(
        DataType.TRADES,
        records_to_table(DataType.TRADES, walk_trades(50)),
        now_ns=NOW,
        rules=BatchRules(monotonic_ids=True),
    )
    assert clean.flags == {}
    same_ts = [Trade(T0, "5", 100.0, 1.0, "buy"), Trade(T0, "4", 100.0, 1.0, "buy")]  # a tie is not a descent
    tied = gate(
        DataType.TRADES, records_to_table(DataType.TRADES, same_ts), now_ns=NOW, rules=BatchRules(monotonic_ids=True)
    )
    assert tied.flags == {}


def test_the_batch_path_quarantines_planted_rows_and_keeps_the_good_ones(tmp_path: Path) -> None:
    """Through Lake.write: ms and pre-listing ts and an off-grid bar go to the quarantine with their rule, every good
    row is readable, and the WriteResult maps each failed contract to its rows."""
    lake = Lake(tmp_path)
    good = calm_bars(10)
    planted = [
        Candle(T0 // 1_000_000 + 7, 1.0, 2.0, 0.5, 1.5, 1.0),  # ms
        Candle(parse_iso_ns("2015-03-02"), 1.0, 2.0, 0.5, 1.5, 1.0),  # before Binance
        Candle(T0 + 30 * NS_PER_MIN + 1, 1.0, 2.0, 0.5, 1.5, 1.0),  # off the 1m grid
        Candle(T0 + 40 * NS_PER_MIN, 1.0, 0.4, 0.5, 1.5, 1.0),  # high < low (an existing rule)
    ]
    res = lake.write(BARS, good[:5] + planted + good[5:], PROV, now_ns=NOW)
    assert (res.rows_written, res.rows_quarantined, res.rows_checked) == (10, 4, 14)
    assert res.quarantine_reasons == {"ts_units": 1, "ts_in_life": 1, "bar_grid": 1, "ohlc_low_le_high": 1}
    assert res.contract_failures == {"schema_units": 2, "bar_grid": 1, "ohlc_invariants": 1}
    assert lake.read_table(BARS).table["ts"].to_pylist() == [b.ts for b in good]
    (qpart,) = quarantine_dir(tmp_path, BARS).glob("*.parquet")
    q = pq.read_table(qpart)
    assert sorted(zip(q["ts"].to_pylist(), q["rule"].to_pylist(), strict=True)) == sorted(
        zip([b.ts for b in planted], ["ts_units", "ts_in_life", "bar_grid", "ohlc_low_le_high"], strict=True)
    )


def test_batch_contracts_off_keep_the_old_gate(tmp_path: Path) -> None:
    """contracts.batch: false runs the original gate only: a ms ts is positive and not in the future, so it is kept."""
    lake = Lake(tmp_path, contracts=ContractRules(batch=False))
    res = lake.write(TRADES, [Trade(T0 // 1_000_000, "1", 100.0, 1.0, "buy")], PROV, now_ns=NOW)
    assert (res.rows_written, res.rows_quarantined, res.contract_failures) == (1, 0, {})


def test_exchange_start_from_the_config_moves_the_life_bound(tmp_path: Path) -> None:
    """A configured exchange_start replaces the built-in first day (here: later, so 2024 rows of binance fail)."""
    lake = Lake(tmp_path, contracts=ContractRules(exchange_start_ns={"binance": parse_iso_ns("2024-06-01")}))
    res = lake.write(TRADES, walk_trades(3), PROV, now_ns=NOW)
    assert res.quarantine_reasons == {"ts_in_life": 3}
    other = DatasetId("okx", BTC, DataType.TRADES)  # other exchanges keep their bound
    assert lake.write(other, walk_trades(3), PROV, now_ns=NOW).rows_written == 3


async def test_the_writer_emits_data_validated_per_write(tmp_path: Path) -> None:
    """The writer actor follows each write's PartWritten with one DataValidated (scope batch): rows checked and
    rows per failed contract, including the report-only monotonic_ids."""
    lake = Lake(tmp_path)
    events: list[Any] = []
    trades = walk_trades(6)
    trades[3], trades[4] = Trade(trades[3].ts, "4", 100.0, 0.5, "buy"), Trade(trades[4].ts, "3", 100.0, 0.5, "buy")
    trades.append(Trade(T0 // 1000, "99", 100.0, 0.5, "buy"))  # µs
    writer = Writer(lambda ds, recs: lake.write(ds, recs, PROV, now_ns=NOW), max_rows=7, emit=events.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await writer.put(Batch(TRADES, trades, "test", "rest"))
        with trio.fail_after(10):
            while not any(isinstance(e, DataValidated) for e in events):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    parts = [e for e in events if isinstance(e, PartWritten)]
    (validated,) = [e for e in events if isinstance(e, DataValidated)]
    assert sum(p.rows for p in parts) == 6
    assert validated == DataValidated(str(TRADES), "batch", 7, {"schema_units": 1, "monotonic_ids": 1})
