"""Inventory gaps of any size: sequential trade ids (declared by the adapter), run-history time holes for the
other exchanges, backfill requests beyond what is stored, and foreign/wrong parts listed."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.domain.timeutil import NS_PER_MIN, NS_PER_S
from dccd.storage import Lake, RunStore
from dccd.storage.layout import dataset_dir

from .helpers import NOW, OHLC_1M, PROV, T0, bars

ETH = Symbol.parse("ETH/USDT")
BIN_TRADES = DatasetId("binance", ETH, DataType.TRADES)
BYBIT_TRADES = DatasetId("bybit", ETH, DataType.TRADES)


def _trades(ids: range, ts0: int, step_ns: int = NS_PER_S) -> list[Trade]:
    return [Trade(ts0 + (i - ids.start) * step_ns, str(i), 2000.0, 0.1, "buy") for i in ids]


def test_a_large_id_hole_on_a_sequential_exchange_is_an_exact_gap(tmp_path: Path) -> None:
    """A 10-minute backfill next to a stored 30-minute range leaves a hole larger than the ids present:
    it is reported exactly (ids, count, ts around it), not given up on as 'not sequential'."""
    lake = Lake(tmp_path)
    early = range(1_000_000, 1_000_600)  # [-90m, -80m]: 600 trades
    late = range(1_050_000, 1_051_800)  # the stored 30 minutes
    lake.write(BIN_TRADES, _trades(early, T0), PROV, now_ns=NOW)
    lake.write(BIN_TRADES, _trades(late[:1000], T0 + 60 * NS_PER_MIN), PROV, now_ns=NOW)
    lake.write(BIN_TRADES, _trades(late[900:], T0 + 60 * NS_PER_MIN + 900 * NS_PER_S), PROV, now_ns=NOW)
    (inv,) = lake.inventory(BIN_TRADES)
    assert inv.gap_kind == "id" and inv.rows == 2400
    assert inv.gaps == [(1_000_600, 1_049_999)]
    from dccd.storage.inventory import GapRange

    assert inv.gap_ranges == [
        GapRange(1_000_600, 1_049_999, "id", 49_400, "ids", "", T0 + 599 * NS_PER_S, T0 + 60 * NS_PER_MIN)
    ]
    assert inv.missing == 49_400


def test_every_id_hole_is_listed_across_foreign_parts_and_days(tmp_path: Path) -> None:
    """Id holes of any size over several parts (a foreign one among them) and two days, in one DuckDB window."""
    lake = Lake(tmp_path)
    ids = [i for i in range(100, 400) if i not in (150, 151) and not 200 <= i < 390]
    day = 86_400 * NS_PER_S
    lake.write(BIN_TRADES, [t for t in _trades(range(100, 400), T0) if int(t.id or 0) in ids[:40]], PROV, now_ns=NOW)
    rest = [t for t in _trades(range(100, 400), T0 + day) if int(t.id or 0) in ids[30:]]
    path = dataset_dir(tmp_path, BIN_TRADES) / "date=2024-01-02" / "part-00000-spark.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([{"ts": t.ts, "id": t.id, "price": t.price, "amount": t.amount} for t in rest]), path
    )
    (inv,) = lake.inventory(BIN_TRADES)
    assert inv.gaps == [(150, 151), (200, 389)] and [g.count for g in inv.gap_ranges] == [2, 190]
    assert inv.parts == 2 and inv.skipped == []


def test_non_sequential_trades_report_unfilled_run_holes(tmp_path: Path) -> None:
    """Bybit (ids not sequential): an unfilled stream gap and a cancelled backfill's unfetched tail are time holes;
    a refilled gap and a range a later backfill covered are not."""
    lake, runs = Lake(tmp_path), RunStore(tmp_path)
    lake.write(BYBIT_TRADES, [Trade(T0 + i * NS_PER_S, f"u{i}", 1.0, 1.0) for i in range(0, 600)], PROV, now_ns=NOW)
    stream = runs.create("stream", BYBIT_TRADES, state="running", now_ns=NOW)
    runs.set_symbols(stream, "BTC/USDT,ETH/USDT")
    runs.event(stream, "gap", T0 + 10 * NS_PER_S, T0 + 20 * NS_PER_S, "ETH/USDT: reconnected", now_ns=NOW + 1)
    runs.event(stream, "gap", T0 + 30 * NS_PER_S, T0 + 40 * NS_PER_S, "ETH/USDT: dropped", now_ns=NOW + 2)
    runs.event(stream, "filled", T0 + 30 * NS_PER_S, T0 + 40 * NS_PER_S, "ETH/USDT: refilled", now_ns=NOW + 3)
    runs.event(stream, "gap", T0 + 50 * NS_PER_S, T0 + 60 * NS_PER_S, "BTC/USDT: other symbol", now_ns=NOW + 4)
    bf = runs.create("backfill", BYBIT_TRADES, now_ns=NOW + 5)
    runs.progress(bf, requested_start=T0 + 300 * NS_PER_S, requested_end=T0 + 900 * NS_PER_S)
    runs.finish(bf, "cancelled", now_ns=NOW + 6)
    (inv,) = lake.inventory(BYBIT_TRADES)
    assert inv.gap_kind == "ts" and "not sequential" in inv.gap_note
    assert inv.gaps == [(T0 + 10 * NS_PER_S, T0 + 20 * NS_PER_S), (T0 + 599 * NS_PER_S + 1, T0 + 900 * NS_PER_S)]
    assert [g.source for g in inv.gap_ranges] == ["stream", "backfill"] and inv.gap_ranges[1].count is None
    fix = runs.create("backfill", BYBIT_TRADES, now_ns=NOW + 7)
    runs.progress(fix, requested_start=T0, requested_end=T0 + 1000 * NS_PER_S)
    runs.finish(fix, "succeeded", now_ns=NOW + 8)
    assert lake.inventory(BYBIT_TRADES)[0].gaps == []


def test_bars_a_backfill_asked_for_beyond_the_stored_range_are_gaps(tmp_path: Path) -> None:
    """A backfill of [00:00, 00:30) that stored bars 10..19 leaves 10 bars missing on each side; an
    exchange-confirmed interior hole is marked as such; unavailable ranges are listed apart."""
    lake, runs = Lake(tmp_path), RunStore(tmp_path)
    lake.write(OHLC_1M, bars(T0 + 10 * NS_PER_MIN, 10, skip=(4,)), PROV, now_ns=NOW)
    run = runs.create("backfill", OHLC_1M, now_ns=NOW)
    runs.progress(run, requested_start=T0, requested_end=T0 + 30 * NS_PER_MIN)
    runs.event(run, "gap", T0 + 14 * NS_PER_MIN, T0 + 15 * NS_PER_MIN, "exchange returned no bars for [...]")
    runs.event(run, "unavailable", T0 - 60 * NS_PER_MIN, T0, "kraken serves only the last 720 bars")
    runs.finish(run, "succeeded", now_ns=NOW)
    (inv,) = lake.inventory(OHLC_1M)
    m = NS_PER_MIN
    assert inv.gaps == [(T0, T0 + 10 * m), (T0 + 14 * m, T0 + 15 * m), (T0 + 20 * m, T0 + 30 * m)]
    assert [(g.count, g.source, g.detail) for g in inv.gap_ranges if g.source != "unavailable"] == [
        (10, "backfill", ""), (1, "bars", "exchange returned no bars"), (10, "backfill", "")]  # fmt: skip
    assert inv.missing == 21
    [unav] = [g for g in inv.gap_ranges if g.source == "unavailable"]
    assert (unav.lo, unav.hi, unav.detail) == (T0 - 60 * m, T0, "kraken serves only the last 720 bars")


def test_wrong_schema_parts_are_listed_by_inventory(tmp_path: Path) -> None:
    """A part with the wrong columns is listed in skipped with its reason; the dataset's rows still count."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    bad = dataset_dir(tmp_path, OHLC_1M) / "month=2024-01" / "part-user.parquet"
    pq.write_table(pa.table({"ts": [T0], "open": ["1.0"]}), bad)
    (inv,) = lake.inventory(OHLC_1M)
    assert inv.rows == 5 and [(s.path, s.reason.split(":")[0]) for s in inv.skipped] == [(str(bad), "wrong schema")]
