"""SQL views of the lake: deduplicated per dataset, partition columns, pinned against compactions, locked down."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dccd.domain import DatasetId, DataType, Symbol
from dccd.domain.timeutil import NS_PER_HOUR, NS_PER_MIN
from dccd.storage import Lake
from dccd.storage import reader as rd
from dccd.storage.views import PIN_TREE, SIGNAL_COLUMNS, VIEWS, open_views, views_named

from .helpers import BTC, FUNDING, NOW, OHLC_1M, PROV, T0, TRADES, bars, corrupt, funding, parts_of, trades

OKX_TRADES = DatasetId("okx", BTC, DataType.TRADES)


def _rows(views_con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return views_con.sql(sql).fetchall()


def test_overlapping_parts_read_once_with_the_newest_part_winning(tmp_path: Path) -> None:
    """Bars written twice (second write newer, other close) and trades repeated across parts appear once each."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 100), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + 50 * NS_PER_MIN, 100, close=1.9), PROV, now_ns=NOW + 1)
    lake.write(TRADES, trades(0, 100), PROV, now_ns=NOW)
    lake.write(TRADES, trades(60, 100), PROV, now_ns=NOW)
    with open_views(tmp_path, {"ohlc", "trades"}) as v:
        ohlc = _rows(v.con, "SELECT count(*), count(DISTINCT ts), min(ts), max(ts) FROM ohlc")
        closes = _rows(v.con, f"SELECT DISTINCT close FROM ohlc WHERE ts >= {T0 + 50 * NS_PER_MIN}")
        old = _rows(v.con, f"SELECT DISTINCT close FROM ohlc WHERE ts < {T0 + 50 * NS_PER_MIN}")
        tr = _rows(v.con, "SELECT count(*), count(DISTINCT id), min(id::INT), max(id::INT) FROM trades")
    assert ohlc == [(150, 150, T0, T0 + 149 * NS_PER_MIN)]
    assert closes == [(1.9,)] and old == [(1.5,)]
    assert tr == [(160, 160, 0, 159)]


def test_the_same_key_in_two_datasets_is_two_rows(tmp_path: Path) -> None:
    """Dedup runs within a dataset: the same trade id on two exchanges is kept on both."""
    lake = Lake(tmp_path)
    lake.write(TRADES, trades(0, 10), PROV, now_ns=NOW)
    lake.write(TRADES, trades(0, 10), PROV, now_ns=NOW)
    lake.write(OKX_TRADES, trades(0, 10), PROV, now_ns=NOW)
    with open_views(tmp_path, {"trades"}) as v:
        got = _rows(v.con, "SELECT exchange, count(*) FROM trades GROUP BY ALL ORDER BY 1")
    assert got == [("binance", 10), ("okx", 10)]


def test_partition_columns_come_from_the_paths(tmp_path: Path) -> None:
    """Each view carries its hive columns: exchange, symbol slug, span (ohlc), date as DATE or month as text."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 3), PROV, now_ns=NOW)
    lake.write(TRADES, trades(0, 3), PROV, now_ns=NOW)
    lake.write(FUNDING, funding(T0, 3, 8 * NS_PER_HOUR), PROV, now_ns=NOW)
    with open_views(tmp_path) as v:
        ohlc = _rows(v.con, "SELECT DISTINCT exchange, symbol, span, month FROM ohlc")
        tr = _rows(v.con, "SELECT DISTINCT exchange, symbol, date FROM trades")
        fu = _rows(v.con, "SELECT DISTINCT exchange, symbol, month FROM funding")
        cols = {name: [c[0] for c in v.con.sql(f"DESCRIBE {name}").fetchall()] for name in VIEWS}
    assert ohlc == [("binance", "BTC-USDT", "1m", "2024-01")]
    assert tr == [("binance", "BTC-USDT", dt.date(2024, 1, 1))]
    assert fu == [("binance", "BTC-USDT-PERP", "2024-01")]
    assert cols["ohlc"][-4:] == ["exchange", "symbol", "span", "month"]
    assert cols["trades"][:6] == ["ts", "id", "price", "amount", "side", "recv_ts"]
    assert cols["book"][-3:] == ["exchange", "symbol", "date"]  # empty views have the columns too
    assert cols["oi"][-3:] == ["exchange", "symbol", "month"]
    assert cols["signals"] == [c for c, _ in SIGNAL_COLUMNS]


def test_every_view_exists_and_is_empty_without_a_lake(tmp_path: Path) -> None:
    """A root that does not exist gives every view, with zero rows, and creates nothing on disk."""
    root = tmp_path / "nothing"
    with open_views(root) as v:
        counts = {name: _rows(v.con, f"SELECT count(*) FROM {name}")[0][0] for name in VIEWS}
    assert counts == dict.fromkeys(VIEWS, 0)
    assert not root.exists()


def _signals(root: Path, scanner: str, day: str, name: str, rows: list[dict[str, object]]) -> Path:
    path = root / "signals" / f"scanner={scanner}" / f"date={day}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_stored_signals_are_read_deduplicated_with_scanner_and_date(tmp_path: Path) -> None:
    """Signal parts are read with their path's scanner and date; a hit stored twice (a re-run) counts once."""
    hit = {"ts": T0, "exchange": "binance", "symbol": "BTC/USDT", "version": "1", "params_hash": "ab", "values": "{}"}
    other = {**hit, "symbol": "ETH/USDT"}
    _signals(tmp_path, "breakout", "2024-01-01", "part-a.parquet", [hit, other])
    _signals(tmp_path, "breakout", "2024-01-01", "part-b.parquet", [hit])
    _signals(tmp_path, "relative_volume", "2024-01-01", "part-a.parquet", [hit])
    with open_views(tmp_path, {"signals"}) as v:
        got = _rows(v.con, "SELECT scanner, symbol, date FROM signals ORDER BY 1, 2")
    day = dt.date(2024, 1, 1)
    assert got == [("breakout", "BTC/USDT", day), ("breakout", "ETH/USDT", day), ("relative_volume", "BTC/USDT", day)]


def test_a_compaction_after_planning_changes_nothing_a_query_sees(tmp_path: Path) -> None:
    """Views pin their parts: merging and deleting every input after the views opened loses no row, raises nothing."""
    lake = Lake(tmp_path)
    for k in range(6):
        lake.write(OHLC_1M, bars(T0 + k * 100 * NS_PER_MIN, 100), PROV, now_ns=NOW)
    lake.write(TRADES, trades(0, 50), PROV, now_ns=NOW)
    lake.write(TRADES, trades(25, 50), PROV, now_ns=NOW)
    before = parts_of(tmp_path, OHLC_1M)
    with open_views(tmp_path, {"ohlc", "trades"}) as v:
        assert lake.compact(OHLC_1M) and lake.compact(TRADES)
        assert not any(p.exists() for p in before)
        got = _rows(v.con, "SELECT (SELECT count(*) FROM ohlc), (SELECT count(DISTINCT id) FROM trades)")
        assert v.pinned
    assert got == [(600, 75)]
    pins = tmp_path / "_dccd" / rd.PINS_DIR
    assert [p for p in pins.rglob("*") if not p.is_dir()] == []  # the links go with the views


def test_pins_mirror_the_lake_and_a_dead_process_s_are_swept(tmp_path: Path) -> None:
    """While open, each part has one link at its own relative path under the pin tree; a dead process's
    links are swept at start, a live one's are kept."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    (part,) = parts_of(tmp_path, OHLC_1M)
    tree = tmp_path / "_dccd" / rd.PINS_DIR / PIN_TREE
    with open_views(tmp_path, {"ohlc"}):
        (link,) = [p for p in tree.rglob("*.parquet")]
        assert link.parent.relative_to(tree) == part.parent.relative_to(tmp_path)
        assert link.stat().st_ino == part.stat().st_ino
        dead = link.parent / "999999999-abc-0.parquet"
        os.link(part, dead)
        assert lake.sweep() == [dead]
        assert link.exists() and not dead.exists()


def test_corrupt_parts_are_skipped_and_reported(tmp_path: Path) -> None:
    """A damaged part is left out of its view and listed in ``skipped``; the other rows read."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + 10 * NS_PER_MIN, 10), PROV, now_ns=NOW)
    bad = parts_of(tmp_path, OHLC_1M)[0]
    corrupt(bad)
    with open_views(tmp_path, {"ohlc"}) as v:
        assert _rows(v.con, "SELECT count(*) FROM ohlc") == [(10,)]
        assert [b.path for b in v.skipped] == [str(bad)]


def test_keep_and_range_narrow_what_is_read(tmp_path: Path) -> None:
    """``keep`` drops datasets and ``start_ns``/``end_ns`` rows (and parts) outside the range."""
    lake = Lake(tmp_path)
    lake.write(TRADES, trades(0, 100), PROV, now_ns=NOW)
    lake.write(OKX_TRADES, trades(0, 100), PROV, now_ns=NOW)
    lo, hi = T0 + 10 * 1_000_000, T0 + 20 * 1_000_000
    with open_views(tmp_path, {"trades"}, keep=lambda ds: ds.exchange == "okx", start_ns=lo, end_ns=hi) as v:
        got = _rows(v.con, "SELECT exchange, count(*), min(ts), max(ts) FROM trades GROUP BY ALL")
    assert got == [("okx", 10, lo, hi - 1_000_000)]


def test_a_locked_down_view_set_opens_only_its_pinned_parts(tmp_path: Path) -> None:
    """Locked down, the engine refuses the lake's own files, other files and setting changes; the views still read."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    real = parts_of(tmp_path, OHLC_1M)[0]
    with open_views(tmp_path, {"ohlc"}) as v:
        assert _rows(v.con, "SELECT count(*) FROM ohlc") == [(10,)]
        for sql in (f"SELECT * FROM read_parquet('{real}')", "SELECT * FROM read_csv('/etc/passwd')"):
            with pytest.raises(duckdb.PermissionException):
                v.con.sql(sql).fetchall()
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            v.con.execute("SET enable_external_access = true")
    with open_views(tmp_path, {"ohlc"}, lockdown=False) as v:  # trusted callers: no restriction
        assert _rows(v.con, f"SELECT count(*) FROM read_parquet('{real}')") == [(10,)]


def test_views_named_are_the_tables_a_statement_reads() -> None:
    """DuckDB names the views read (a column called trades is not the trades view); where it cannot bind the
    statement, every view name appearing as a word, in any case."""
    assert views_named("SELECT sum(trades) FROM OHLC WHERE 'book' <> ''") == {"ohlc"}
    assert views_named("WITH x AS (SELECT * FROM main.trades) SELECT * FROM x, query_table('oi')") == {"trades", "oi"}
    assert views_named("SELECT * FROM Trades t JOIN ohlc USING (ts) -- book") == {"trades", "ohlc", "book"}
    assert views_named("SELECT 1 AS trades_count, 'oio'") == set()


def test_naming_the_views_opens_no_file(tmp_path: Path) -> None:
    """Finding the views of a statement that reads a FIFO returns at once (an unrestricted binder would block)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    found: list[set[str]] = []
    worker = threading.Thread(target=lambda: found.append(views_named(f"SELECT * FROM read_csv('{fifo}'), funding")))
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the binder so the test process can end
        with open(fifo, "w"):
            pass
    assert found == [{"funding"}]


def test_unknown_view_names_are_refused(tmp_path: Path) -> None:
    """Asking for a view that does not exist is a ValueError naming it."""
    with pytest.raises(ValueError, match="candles"), open_views(tmp_path, {"candles"}):
        pass


def test_spot_and_perp_of_one_pair_list_together(tmp_path: Path) -> None:
    """A lake with BTC/USDT and BTC/USDT:perp on one exchange lists both (sorting them used to raise TypeError)."""
    lake = Lake(tmp_path)
    lake.write(TRADES, trades(0, 3), PROV, now_ns=NOW)
    lake.write(FUNDING, funding(T0, 3, 8 * NS_PER_HOUR), PROV, now_ns=NOW)
    perp_trades = DatasetId("binance", Symbol.parse("BTC/USDT:perp"), DataType.TRADES)
    lake.write(perp_trades, trades(0, 3), PROV, now_ns=NOW)
    assert lake.datasets() == [TRADES, FUNDING, perp_trades]  # spot first, then the perp's types


def test_a_compaction_between_listing_and_pinning_plans_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts merged away after their listing fail their links; the dataset is planned again and every row read once."""
    lake = Lake(tmp_path)
    for k in range(4):
        lake.write(OHLC_1M, bars(T0 + k * 50 * NS_PER_MIN, 60), PROV, now_ns=NOW + k)  # overlapping: dedup
    real_plan = rd.plan
    calls: list[int] = []

    def plan_then_compact(*args: object, **kwargs: object) -> rd.Plan:
        p = real_plan(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(len(p.files))
        if len(calls) == 1:
            assert lake.compact(OHLC_1M)
        return p

    monkeypatch.setattr(rd, "plan", plan_then_compact)
    with open_views(tmp_path, {"ohlc"}) as v:
        got = _rows(v.con, "SELECT count(*), count(DISTINCT ts) FROM ohlc")
        assert v.parts == {"ohlc": 1}
    assert calls == [4, 1] and got == [(210, 210)]
