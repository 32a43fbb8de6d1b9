"""Writer: contract columns, provenance footer, partition split, immutable parts, atomicity, temp sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dccd
from dccd.domain import BookLevel, DataType, Trade
from dccd.domain.timeutil import NS_PER_MIN, parse_iso_ns
from dccd.errors import StorageError
from dccd.storage import Lake, Provenance
from dccd.storage.layout import dataset_dir, temp_name

from .helpers import BOOK, FUNDING, NOW, OHLC_1M, OI, PROV, T0, TRADES, bars, funding, oi, parts_of, trades

CONTRACT = {
    "trades": [("ts", "int64", False), ("id", "string", True), ("price", "double", False),
               ("amount", "double", False), ("side", "string", True), ("recv_ts", "int64", True)],
    "ohlc": [("ts", "int64", False), ("open", "double", False), ("high", "double", False), ("low", "double", False),
             ("close", "double", False), ("volume", "double", False), ("quote_volume", "double", True),
             ("trades", "int64", True)],
    "book": [("ts", "int64", False), ("side", "string", False), ("price", "double", False),
             ("amount", "double", False), ("seq", "int64", True)],
    "funding": [("ts", "int64", False), ("rate", "double", False), ("mark_price", "double", True)],
    "oi": [("ts", "int64", False), ("open_interest", "double", False), ("open_interest_value", "double", True)],
}  # fmt: skip


def test_files_hold_exactly_the_contract_columns_and_provenance(tmp_path: Path) -> None:
    """Every type's part has the DESIGN §4 columns (no hive columns), zstd, and provenance in its footer."""
    lake = Lake(tmp_path)
    lake.write(TRADES, trades(0, 3), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0, 3), PROV, now_ns=NOW)
    lake.write(BOOK, [BookLevel(T0, "bid", 1.0, 2.0, 5)], PROV, now_ns=NOW)
    lake.write(FUNDING, funding(T0, 2, 8 * 60 * NS_PER_MIN), PROV, now_ns=NOW)
    lake.write(OI, oi(T0, [0]), PROV, now_ns=NOW)
    for ds in (TRADES, OHLC_1M, BOOK, FUNDING, OI):
        (path,) = parts_of(tmp_path, ds)
        schema = pq.read_schema(path)
        got = [(f.name, str(f.type), f.nullable) for f in schema]
        assert got == CONTRACT[ds.data_type.value]
        meta = pq.read_metadata(path)
        assert meta.row_group(0).column(0).compression == "ZSTD"
        prov = json.loads(meta.metadata[b"dccd.provenance"])
        assert prov["source"] == "binance" and prov["transport"] == "rest" and prov["run_id"] == "run-1"
        assert prov["dccd_version"] == dccd.__version__ and prov["dataset"] == str(ds)


def test_a_batch_is_split_by_partition(tmp_path: Path) -> None:
    """Rows spanning a UTC midnight (trades) or a month end (ohlc) become one part per partition."""
    lake = Lake(tmp_path)
    midnight = parse_iso_ns("2024-01-02")
    res = lake.write(TRADES, trades(0, 4, ts0=midnight - 2 * NS_PER_MIN, step_ns=NS_PER_MIN), PROV, now_ns=NOW)
    assert [(Path(p.path).parent.name, p.rows) for p in res.parts] == [("date=2024-01-01", 2), ("date=2024-01-02", 2)]
    month_end = parse_iso_ns("2024-02-01")
    res = lake.write(OHLC_1M, bars(month_end - 3 * NS_PER_MIN, 5), PROV, now_ns=NOW)
    assert [(Path(p.path).parent.name, p.rows) for p in res.parts] == [("month=2024-01", 3), ("month=2024-02", 2)]
    assert res.parts[0].last_ts == month_end - NS_PER_MIN and res.parts[1].first_ts == month_end


def test_sparse_batches_skip_empty_partitions(tmp_path: Path) -> None:
    """Rows on days 1 and 3 give two parts; day 2 gets no directory."""
    day = 24 * 60 * NS_PER_MIN
    rows = [Trade(T0, "1", 1.0, 1.0), Trade(T0 + 2 * day, "2", 1.0, 1.0), Trade(T0 + 2 * day + 1, "3", 1.0, 1.0)]
    res = Lake(tmp_path).write(TRADES, rows, PROV, now_ns=NOW)
    assert [Path(p.path).parent.name for p in res.parts] == ["date=2024-01-01", "date=2024-01-03"]
    assert not (dataset_dir(tmp_path, TRADES) / "date=2024-01-02").exists()


def test_appending_writes_one_small_part_and_touches_nothing_else(tmp_path: Path) -> None:
    """Parts are immutable: an append adds one file and leaves every existing file byte-identical."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 3 * 24 * 60), PROV, now_ns=NOW)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in parts_of(tmp_path, OHLC_1M)}
    res = lake.write(OHLC_1M, bars(T0 + 3 * 24 * 60 * NS_PER_MIN, 60), PROV, now_ns=NOW)
    after = parts_of(tmp_path, OHLC_1M)
    assert set(after) - set(before) == {Path(res.parts[0].path)}
    for p, (ino, mtime, data) in before.items():
        assert (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) == (ino, mtime, data)


def test_part_names_carry_first_and_last_ts(tmp_path: Path) -> None:
    """The part name states the ts range of its rows."""
    res = Lake(tmp_path).write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    name = Path(res.parts[0].path).name
    assert name.startswith(f"part-{T0:019d}-{T0 + 9 * NS_PER_MIN:019d}-")


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If writing the temp file fails, neither a part nor a temp file remains and the error propagates."""
    Lake(tmp_path).write(OHLC_1M, bars(T0, 1), PROV, now_ns=NOW)
    real = pq.write_table

    def half_then_fail(table: pa.Table, where: Path, **kw: object) -> None:
        real(table, where, **kw)
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        Lake(tmp_path).write(OHLC_1M, bars(T0 + NS_PER_MIN, 1), PROV, now_ns=NOW)
    files = [p.name for p in (parts_of(tmp_path, OHLC_1M)[0].parent).iterdir()]
    assert len(files) == 1 and files[0].startswith("part-")


def test_sweep_removes_dead_writers_temps_and_keeps_live_ones(tmp_path: Path) -> None:
    """Temps of an exited pid or older than max_age go; a live writer's fresh temp stays."""
    pdir = tmp_path / "trades" / "exchange=binance" / "symbol=BTC-USDT" / "date=2024-01-01"
    pdir.mkdir(parents=True)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = pdir / f".part-a.parquet.{int(child.stdout)}-ab12.tmp"
    live = pdir / temp_name("part-b.parquet")
    old = pdir / temp_name("part-c.parquet")
    other = pdir / "notes.tmp"
    for p in (dead, live, old, other):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    removed = Lake(tmp_path).sweep()
    assert sorted(removed) == sorted([dead, old])
    assert live.exists() and other.exists()


def test_write_rejects_tables_without_the_columns(tmp_path: Path) -> None:
    """An Arrow table missing lake columns is a StorageError naming the problem."""
    with pytest.raises(StorageError, match="trades columns"):
        Lake(tmp_path).write_table(TRADES, pa.table({"ts": [1]}), PROV, now_ns=NOW)


def test_write_rejects_values_of_the_wrong_type(tmp_path: Path) -> None:
    """A record whose field cannot be stored in its column raises StorageError naming the column."""
    with pytest.raises(StorageError, match="'price'"):
        Lake(tmp_path).write(TRADES, [Trade(T0, "1", "cheap", 1.0)], PROV, now_ns=NOW)  # type: ignore[arg-type]


def test_empty_batches_write_nothing(tmp_path: Path) -> None:
    """An empty batch is a no-op returning an empty result."""
    res = Lake(tmp_path).write(TRADES, [], PROV)
    assert res.rows_written == 0 and res.parts == () and not tmp_path.joinpath("trades").exists()


def test_provenance_is_a_plain_struct() -> None:
    """Provenance names source and transport; run id optional."""
    assert Provenance("kraken", "ws").run_id is None


async def test_async_write_runs_in_a_worker_thread(tmp_path: Path) -> None:
    """awrite stores the batch without blocking the Trio loop and returns the same result shape."""
    lake = Lake(tmp_path)
    res = await lake.awrite(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    assert res.rows_written == 5
    assert (await lake.aread_table(OHLC_1M)).table.num_rows == 5
    assert await lake.alast_ts(OHLC_1M) == T0 + 4 * NS_PER_MIN
    assert DataType.OHLC is OHLC_1M.data_type
