"""On-demand contracts over stored data: each reports exactly its planted violations (counts, days, examples)
and passes clean data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.contracts.check import SelectorError, check, select
from dccd.contracts.report import FAIL, PASS, SKIPPED, CheckReport, ContractResult
from dccd.contracts.rules import ContractRules, MaintenanceWindow
from dccd.domain import Candle, DatasetId, DataType, Span, Trade
from dccd.domain.timeutil import NS_PER_DAY, NS_PER_MIN, NS_PER_S, ns_to_iso, parse_iso_ns
from dccd.storage import Lake, Provenance

from .helpers import BARS, BTC, NOW, PROV, T0, TRADES, bars_of, calm_bars, walk_trades, write_foreign

RULES = ContractRules()


def run(root: Path, *selectors: str, rules: ContractRules = RULES) -> CheckReport:
    return check(root, rules, selectors, now_ns=NOW)


def contract(report: CheckReport, dataset: DatasetId, name: str) -> ContractResult:
    (ds,) = [d for d in report.datasets if d.dataset == str(dataset)]
    (found,) = [c for c in ds.contracts if c.contract == name]
    return found


def test_clean_data_passes_every_contract(tmp_path: Path) -> None:
    """Consistent trades, the bars they make, and the same bars on a second exchange: every contract passes."""
    lake = Lake(tmp_path)
    trades = walk_trades(2 * 3600)
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    lake.write(BARS, bars_of(trades), PROV, now_ns=NOW)
    lake.write(DatasetId("okx", BTC, DataType.OHLC, Span.parse("1m")), bars_of(trades), PROV, now_ns=NOW)
    report = run(tmp_path)
    assert (report.ok, report.violations, report.rows) == (True, 0, 7200 + 120 + 120)
    statuses = {(d.dataset, c.contract): c.status for d in report.datasets for c in d.contracts}
    assert statuses[(str(BARS), "bars_vs_trades")] == PASS
    assert statuses[(str(BARS), "cross_exchange")] == PASS
    assert statuses[(str(TRADES), "monotonic_ids")] == PASS
    assert statuses[("okx:BTC/USDT:ohlc:1m", "bars_vs_trades")] == SKIPPED  # no okx trades
    assert set(statuses.values()) == {PASS, SKIPPED}


def test_schema_units_reports_a_foreign_part(tmp_path: Path) -> None:
    """Rows of a part written around the gate (ms ts, negative amount) are reported under schema_units with
    their rule, on the day their ts falls on."""
    Lake(tmp_path).write(TRADES, walk_trades(10), PROV, now_ns=NOW)
    write_foreign(tmp_path, TRADES, {"ts": [T0 + 100 * NS_PER_S, T0 + 101 * NS_PER_S], "id": ["100", "101"],
                                     "price": [100.0, 100.0], "amount": [-1.0, 1.0], "side": ["buy", "sell"]})  # fmt: skip
    ms = T0 // 1_000_000
    write_foreign(tmp_path, TRADES, {"ts": [ms], "id": ["102"], "price": [1.0], "amount": [1.0]}, "part-ms.parquet")
    c = contract(run(tmp_path, "binance:BTC-USDT:trades"), TRADES, "schema_units")
    assert (c.status, c.violations, [(d.day, d.count) for d in c.days]) == (
        FAIL,
        2,
        [("1970-01-01", 1), ("2024-01-01", 1)],
    )
    assert c.days[0].examples[0]["rule"] == "ts_units" and c.days[0].examples[0]["id"] == "102"
    assert c.days[1].examples[0] == {"ts": "2024-01-01T00:01:40Z", "id": "100", "price": 100.0, "amount": -1.0,
                                     "side": "buy", "recv_ts": None, "rule": "amount_non_negative"}  # fmt: skip


def test_unique_key_reports_conflicting_copies_only(tmp_path: Path) -> None:
    """A bar stored twice with different closes is a conflict (one, with its copies and variants); a bar stored
    twice identically is not."""
    lake = Lake(tmp_path)
    bars = calm_bars(10)
    lake.write(BARS, bars, PROV, now_ns=NOW)
    lake.write(BARS, bars[2:4], PROV, now_ns=NOW)  # exact copies
    assert contract(run(tmp_path), BARS, "unique_key").status == PASS
    changed = Candle(bars[5].ts, 100.0, 100.5, 99.5, 100.2, 1.0)
    lake.write(BARS, [changed], PROV, now_ns=NOW)
    c = contract(run(tmp_path), BARS, "unique_key")
    assert (c.status, c.violations) == (FAIL, 1)
    assert c.days[0].examples == [{"ts": "2024-01-01T00:05:00Z", "copies": 2, "variants": 2}]


def test_unique_key_on_trade_ids(tmp_path: Path) -> None:
    """One trade id stored with two prices is one conflict, shown by id."""
    lake = Lake(tmp_path)
    lake.write(TRADES, walk_trades(5), PROV, now_ns=NOW)
    lake.write(TRADES, [Trade(T0 + 3 * NS_PER_S, "3", 99.0, 0.5, "buy")], PROV, now_ns=NOW)
    c = contract(run(tmp_path), TRADES, "unique_key")
    assert (c.violations, c.days[0].examples) == (
        1,
        [{"ts": "2024-01-01T00:00:03Z", "id": "3", "copies": 2, "variants": 2}],
    )


def test_monotonic_ids_reports_each_descent(tmp_path: Path) -> None:
    """Ids falling back in time order are reported one per descent with the row before; an exchange without
    sequential ids is skipped."""
    lake = Lake(tmp_path)
    ids = [1, 2, 3, 10, 4, 5, 6, 11, 7, 12]
    lake.write(
        TRADES, [Trade(T0 + k * NS_PER_S, str(i), 100.0, 0.5, "buy") for k, i in enumerate(ids)], PROV, now_ns=NOW
    )
    bybit = DatasetId("bybit", BTC, DataType.TRADES)
    lake.write(
        bybit, [Trade(T0 + k * NS_PER_S, str(i), 100.0, 0.5, "buy") for k, i in enumerate(ids)], PROV, now_ns=NOW
    )
    report = run(tmp_path)
    c = contract(report, TRADES, "monotonic_ids")
    assert (c.status, c.violations) == (FAIL, 2)
    assert c.days[0].examples == [
        {"ts": "2024-01-01T00:00:04Z", "id": "4", "prev_ts": "2024-01-01T00:00:03Z", "prev_id": "10"},
        {"ts": "2024-01-01T00:00:08Z", "id": "7", "prev_ts": "2024-01-01T00:00:07Z", "prev_id": "11"},
    ]
    assert contract(report, bybit, "monotonic_ids").status == SKIPPED


def test_ohlc_invariants_and_bar_grid_on_foreign_bars(tmp_path: Path) -> None:
    """A foreign bar with high < close and one off the 1m grid are reported under their own contracts."""
    Lake(tmp_path).write(BARS, calm_bars(5), PROV, now_ns=NOW)
    ts = [T0 + 10 * NS_PER_MIN, T0 + 11 * NS_PER_MIN + 7 * NS_PER_S]
    write_foreign(tmp_path, BARS, {"ts": ts, "open": [100.0, 100.0], "high": [100.0, 101.0], "low": [99.0, 99.0],
                                   "close": [100.5, 100.0], "volume": [1.0, 1.0]})  # fmt: skip
    report = run(tmp_path)
    inv, grid = contract(report, BARS, "ohlc_invariants"), contract(report, BARS, "bar_grid")
    assert (inv.violations, inv.days[0].examples[0]["rule"], inv.days[0].examples[0]["ts"]) == (
        1, "ohlc_high", "2024-01-01T00:10:00Z")  # fmt: skip
    assert (grid.violations, grid.days[0].examples[0]["ts"]) == (1, "2024-01-01T00:11:07Z")


def test_bar_count_per_day_and_maintenance_windows(tmp_path: Path) -> None:
    """Two days of 1m bars with 3 missing on day 1 and 1 on day 2: each day reports its missing count, expected
    and stored, and its first missing bar; a declared window over day 1's hole excuses exactly those bars."""
    lake = Lake(tmp_path)
    skip = {100, 101, 102, 1440 + 7}
    bars = [b for i, b in enumerate(calm_bars(2 * 1440)) if i not in skip]
    lake.write(BARS, bars, PROV, now_ns=NOW)
    c = contract(run(tmp_path), BARS, "bar_count")
    assert [(d.day, d.count) for d in c.days] == [("2024-01-01", 3), ("2024-01-02", 1)]
    assert c.days[0].examples == [
        {"ts": "2024-01-01T00:00:00Z", "expected": 1440, "stored": 1437, "first_missing": "2024-01-01T01:40:00Z"}
    ]
    window = MaintenanceWindow("binance", None, T0 + 100 * NS_PER_MIN, T0 + 103 * NS_PER_MIN)
    excused = contract(run(tmp_path, rules=ContractRules(maintenance=(window,))), BARS, "bar_count")
    assert [(d.day, d.count) for d in excused.days] == [("2024-01-02", 1)]
    other = MaintenanceWindow("binance", BTC.__class__.parse("ETH/USDT"), T0, T0 + NS_PER_DAY)  # another symbol
    assert contract(run(tmp_path, rules=ContractRules(maintenance=(other,))), BARS, "bar_count").violations == 4
    assert contract(run(tmp_path, rules=ContractRules(bar_max_missing=3)), BARS, "bar_count").violations == 0


def test_bars_vs_trades_reports_the_bars_trades_do_not_make(tmp_path: Path) -> None:
    """Bars rebuilt from stored trades: a bar whose high disagrees, and a minute with trades but no bar, are
    reported; bars outside the trades' range are not compared."""
    lake = Lake(tmp_path)
    trades = walk_trades(30 * 60, ts0=T0 + 10 * NS_PER_MIN)
    bars = calm_bars(10) + bars_of(trades)  # 10 bars before the first trade
    bars[15] = Candle(bars[15].ts, bars[15].open, 101.0, bars[15].low, bars[15].close, bars[15].volume, None, 60)
    del bars[20]
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    lake.write(BARS, bars, PROV, now_ns=NOW)
    c = contract(run(tmp_path), BARS, "bars_vs_trades")
    assert (c.status, c.violations, c.note) == (FAIL, 2, "28 bars compared")
    first, second = c.days[0].examples
    assert (first["ts"], first["bar_high"], first["trades_high"], first["trades"]) == (
        "2024-01-01T00:15:00Z",
        101.0,
        100.02,
        60,
    )
    assert (second["ts"], second["bar_open"], second["trades"]) == ("2024-01-01T00:20:00Z", None, 60)


def test_bad_ticks_on_trades_and_bars(tmp_path: Path) -> None:
    """One trade at 150 among prices of 100 is reported with the window's median and MAD; so is one bar whose
    close jumps; a 0.3 % move (under min_rel) is not."""
    lake = Lake(tmp_path)
    trades = walk_trades(1000)
    trades[500] = Trade(trades[500].ts, "500", 150.0, 0.5, "buy")
    trades[700] = Trade(trades[700].ts, "700", 100.3, 0.5, "buy")
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    bars = calm_bars(300)
    bars[42] = Candle(bars[42].ts, 100.0, 120.0, 99.5, 120.0, 1.0)
    lake.write(BARS, bars, PROV, now_ns=NOW)
    report = run(tmp_path)
    t = contract(report, TRADES, "bad_tick")
    assert (t.violations, t.days[0].examples) == (
        1, [{"ts": "2024-01-01T00:08:20Z", "id": "500", "price": 150.0, "median": 100.01, "mad": 0.01}])  # fmt: skip
    b = contract(report, BARS, "bad_tick")
    assert (b.violations, b.days[0].examples[0]["ts"], b.days[0].examples[0]["close"]) == (
        1,
        "2024-01-01T00:42:00Z",
        120.0,
    )
    calm = check(tmp_path, ContractRules(bad_tick=RULES.bad_tick.__class__(window=101, k=10.0, min_rel=0.6)),
                 (str(TRADES),), now_ns=NOW)  # fmt: skip
    assert calm.datasets[0].violations == 0


def test_stale_feed_on_liquid_symbols_only(tmp_path: Path) -> None:
    """A liquid symbol (a trade a second) silent for 10 minutes is one stale period; a window over it excuses it;
    the same silence on a symbol trading less than liquid_per_hour is not reported."""
    lake = Lake(tmp_path)
    trades = walk_trades(24 * 3600)
    del trades[3600:4200]  # 01:00:00 .. 01:09:59 silent
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    c = contract(run(tmp_path), TRADES, "stale_feed")
    assert (c.violations, c.days[0].examples) == (
        1, [{"ts": "2024-01-01T00:59:59Z", "next_ts": "2024-01-01T01:10:00Z", "silent_s": 601.0, "trades_that_day": 85800}])  # fmt: skip
    window = MaintenanceWindow("binance", BTC, T0 + 3600 * NS_PER_S, T0 + 4200 * NS_PER_S)
    assert contract(run(tmp_path, rules=ContractRules(maintenance=(window,))), TRADES, "stale_feed").violations == 0
    short = MaintenanceWindow("binance", BTC, T0 + 3600 * NS_PER_S, T0 + 3700 * NS_PER_S)  # leaves 500 s silent
    assert contract(run(tmp_path, rules=ContractRules(maintenance=(short,))), TRADES, "stale_feed").violations == 1
    assert contract(run(tmp_path, rules=ContractRules(liquid_per_hour=4000.0)), TRADES, "stale_feed").violations == 0


def test_cross_exchange_deviation_of_closes(tmp_path: Path) -> None:
    """A close 5 % off the other exchanges' median is reported on both sides of a two-exchange pair, with the
    others' median; a 1 % difference is within max_rel."""
    lake = Lake(tmp_path)
    okx = DatasetId("okx", BTC, DataType.OHLC, Span.parse("1m"))
    bars = calm_bars(60)
    lake.write(BARS, bars, PROV, now_ns=NOW)
    other = list(bars)
    other[7] = Candle(bars[7].ts, 100.0, 105.5, 99.5, 105.0, 1.0)
    other[9] = Candle(bars[9].ts, 100.0, 101.5, 99.5, 101.0, 1.0)
    lake.write(okx, other, Provenance("okx", "rest"), now_ns=NOW)
    report = run(tmp_path)
    mine, theirs = contract(report, BARS, "cross_exchange"), contract(report, okx, "cross_exchange")
    assert (mine.violations, mine.days[0].examples, mine.note) == (
        1, [{"ts": "2024-01-01T00:07:00Z", "close": 100.0, "others_median": 105.0, "others": "okx"}], "against okx")  # fmt: skip
    assert (theirs.violations, theirs.days[0].examples[0]["others_median"]) == (1, 100.0)


def test_examples_are_capped_and_counted_per_day(tmp_path: Path) -> None:
    """A contract failing on many rows over two days counts all of them per day and keeps the first N examples."""
    lake = Lake(tmp_path)
    ids = [i for pair in ((2 * k + 1, 2 * k) for k in range(30)) for i in pair]  # 1,0,3,2,...: 30 descents
    day2 = [Trade(T0 + NS_PER_DAY + k * NS_PER_S, str(100 + i), 100.0, 0.5, "buy") for k, i in enumerate([1, 0])]
    lake.write(
        TRADES,
        [Trade(T0 + k * NS_PER_S, str(i), 100.0, 0.5, "buy") for k, i in enumerate(ids)] + day2,
        PROV,
        now_ns=NOW,
    )
    c = contract(check(tmp_path, ContractRules(examples=2), now_ns=NOW), TRADES, "monotonic_ids")
    assert [(d.day, d.count, len(d.examples)) for d in c.days] == [("2024-01-01", 30, 2), ("2024-01-02", 1, 1)]
    assert [e["id"] for e in c.days[0].examples] == ["0", "2"]


def test_range_and_selectors(tmp_path: Path) -> None:
    """start/end bound the rows checked; selectors match whole fields from the left (slug or /, any case) and one
    matching nothing is an error naming what is stored."""
    lake = Lake(tmp_path)
    lake.write(BARS, calm_bars(2 * 1440), PROV, now_ns=NOW)
    lake.write(TRADES, walk_trades(10), PROV, now_ns=NOW)
    day2 = check(tmp_path, RULES, ("binance:btc-usdt:ohlc",), start_ns=T0 + NS_PER_DAY, now_ns=NOW)
    assert [(d.dataset, d.rows, d.first) for d in day2.datasets] == [(str(BARS), 1440, "2024-01-02T00:00:00Z")]
    found = [BARS, TRADES]
    assert select(found, ["binance"]) == sorted(found)
    assert select(found, ["BINANCE:BTC/USDT:trades"]) == [TRADES]
    assert select(found, ["binance:BTC-USDT:ohlc:1m"]) == [BARS]
    for bad in ("binance:BTC-USD", "bin", "binance:BTC-USDT:ohlc:5m", ":x"):
        with pytest.raises(SelectorError, match="DATASET"):
            select(found, [bad])


def test_bad_tick_sql_survives_the_duckdb_window_bug(tmp_path: Path) -> None:
    """The rolling-median SQL (two window levels with different orders, then filters) runs on DuckDB 2.0.1 over
    several symbols' datasets in one check: the PhysicalWindow partition bug would raise here."""
    lake = Lake(tmp_path)
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        ds = DatasetId("binance", BTC.__class__.parse(sym), DataType.TRADES)
        trades = walk_trades(500)
        trades[250] = Trade(trades[250].ts, "250", 300.0, 0.5, "buy")
        lake.write(ds, trades, PROV, now_ns=NOW)
    report = run(tmp_path)
    assert [next(c.violations for c in d.contracts if c.contract == "bad_tick") for d in report.datasets] == [1, 1, 1]


def test_bar_count_skips_calendar_spans(tmp_path: Path) -> None:
    """Monthly bars have no per-day count: bar_count and bars_vs_trades say so instead of failing."""
    ds = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1M"))
    months = [parse_iso_ns(f"2024-{m:02d}-01") for m in (1, 2, 3)]
    Lake(tmp_path).write(ds, [Candle(t, 1.0, 2.0, 0.5, 1.5, 1.0) for t in months], PROV, now_ns=NOW)
    report = run(tmp_path)
    assert contract(report, ds, "bar_count").status == SKIPPED
    assert contract(report, ds, "bar_grid").status == PASS
    assert report.ok and NS_PER_MIN


def test_as_of_checks_the_lake_a_snapshot_held(tmp_path: Path) -> None:
    """--as-of: a snapshot taken before a bad tick and a new dataset were written checks clean, names the
    snapshot, and sees neither; the current view sees both; an unknown snapshot raises SnapshotNotFound."""
    from dccd.storage.snapshots import SnapshotNotFound

    lake = Lake(tmp_path)
    trades = walk_trades(1000)
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    snap = lake.create_snapshot(tag="clean")
    lake.write(TRADES, [Trade(trades[-1].ts + NS_PER_S, "1000", 150.0, 0.5, "buy")], PROV, now_ns=NOW)
    lake.compact(TRADES)
    lake.write(BARS, calm_bars(10), PROV, now_ns=NOW)
    then = check(tmp_path, RULES, as_of="clean", now_ns=NOW)
    assert (then.ok, then.as_of, [(d.dataset, d.rows) for d in then.datasets]) == (
        True, f"{snap.snapshot_id} (clean) at {ns_to_iso(snap.time_ns)}", [(str(TRADES), 1000)])  # fmt: skip
    now = check(tmp_path, RULES, now_ns=NOW)
    assert (now.ok, [(d.dataset, d.rows) for d in now.datasets]) == (False, [(str(BARS), 10), (str(TRADES), 1001)])
    with pytest.raises(SnapshotNotFound):
        check(tmp_path, RULES, as_of="nope", now_ns=NOW)
