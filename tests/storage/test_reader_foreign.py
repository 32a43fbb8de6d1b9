"""Reader: any part-*.parquet in a partition is data (footer-pruned, cached); wrong or corrupt parts are reported."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dccd.domain.timeutil import NS_PER_DAY, NS_PER_MIN
from dccd.storage import Lake, reader
from dccd.storage.layout import dataset_dir

from .helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars, corrupt, trades


def _ohlc(ts: list[int], close: float = 1.5) -> pa.Table:
    n = len(ts)
    return pa.table(
        {
            "ts": pa.array(ts, pa.int64()),
            "open": [1.0] * n,
            "high": [2.0] * n,
            "low": [0.5] * n,
            "close": [close] * n,
            "volume": [10.0] * n,
        }
    )


def _part(root: Path, sub: str, name: str, table: pa.Table, mtime_s: float | None = None, **kw: object) -> Path:
    path = dataset_dir(root, OHLC_1M if "ohlc" in sub else TRADES) / sub.split("/")[-1] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **kw)  # type: ignore[arg-type]
    if mtime_s is not None:
        os.utime(path, (mtime_s, mtime_s))
    return path


def test_foreign_named_parts_are_read_deduplicated_and_sorted(tmp_path: Path) -> None:
    """Parts named by Spark/pyarrow (no ts range in the name) are read; optional columns they lack read as null."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    _part(
        tmp_path,
        "ohlc/month=2024-01",
        "part-00000-5f1c.snappy.parquet",
        _ohlc([T0 + 9 * NS_PER_MIN, T0 + 3 * NS_PER_MIN]),
    )
    res = lake.read_table(OHLC_1M)
    assert res.skipped == []
    assert res.table["ts"].to_pylist() == [T0 + i * NS_PER_MIN for i in (0, 1, 2, 3, 4, 9)]
    assert res.table["quote_volume"].null_count == 6


def test_newest_file_wins_and_a_foreign_parts_last_row_wins_inside_it(tmp_path: Path) -> None:
    """Duplicate keys resolve to the newest file (foreign parts rank by mtime), then to the file's last row."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 3, close=1.5), PROV, now_ns=NOW)  # stamp = now (wall clock)
    old = time.time() - 3600
    t1 = T0 + NS_PER_MIN
    _part(tmp_path, "ohlc/month=2024-01", "part-old.parquet", _ohlc([t1], close=0.6), mtime_s=old)
    _part(tmp_path, "ohlc/month=2024-01", "part-new.parquet", _ohlc([t1, T0 + 2 * NS_PER_MIN, t1], close=1.9))
    tbl = pq.read_table(dataset_dir(tmp_path, OHLC_1M) / "month=2024-01" / "part-new.parquet")
    _part(tmp_path, "ohlc/month=2024-01", "part-new.parquet",
          tbl.set_column(4, "close", pa.array([1.1, 1.9, 1.8])))  # fmt: skip
    assert lake.read_table(OHLC_1M).table["close"].to_pylist() == [1.5, 1.8, 1.9]


def test_foreign_parts_are_pruned_by_footer_statistics(tmp_path: Path) -> None:
    """A read outside a foreign part's footer ts range never hands the part to DuckDB."""
    lake = Lake(tmp_path)
    a = _part(tmp_path, "ohlc/month=2024-01", "part-a.parquet", _ohlc([T0, T0 + NS_PER_MIN]))
    b = _part(tmp_path, "ohlc/month=2024-01", "part-b.parquet", _ohlc([T0 + 10 * NS_PER_MIN]))
    p = reader.plan(tmp_path, OHLC_1M, T0 + 5 * NS_PER_MIN, T0 + 20 * NS_PER_MIN)
    assert [f.path for f in p.files] == [str(b)] and p.files[0].foreign
    assert lake.last_ts(OHLC_1M) == T0 + 10 * NS_PER_MIN
    assert str(a) in {f.path for f in reader.plan(tmp_path, OHLC_1M).files}


def test_a_part_written_without_statistics_is_ranged_from_its_ts_column(tmp_path: Path) -> None:
    """Without footer statistics the ts range is read from the column once; pruning stays exact."""
    _part(tmp_path, "ohlc/month=2024-01", "part-nostats.parquet", _ohlc([T0 + 7 * NS_PER_MIN, T0]),
          write_statistics=False)  # fmt: skip
    [f] = reader.plan(tmp_path, OHLC_1M).files
    assert (f.first_ts, f.last_ts) == (T0, T0 + 7 * NS_PER_MIN)
    assert reader.plan(tmp_path, OHLC_1M, T0 + 8 * NS_PER_MIN).files == []


def test_footers_are_cached_by_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second read opens no footer; rewriting the file (new mtime/size) reads it again."""
    path = _part(tmp_path, "ohlc/month=2024-01", "part-x.parquet", _ohlc([T0]))
    opened: list[str] = []
    real = pq.read_metadata
    monkeypatch.setattr(pq, "read_metadata", lambda p, *a, **k: opened.append(str(p)) or real(p, *a, **k))
    reader.plan(tmp_path, OHLC_1M)
    reader.plan(tmp_path, OHLC_1M)
    assert opened == [str(path)]
    _part(tmp_path, "ohlc/month=2024-01", "part-x.parquet", _ohlc([T0, T0 + NS_PER_MIN]), mtime_s=time.time() + 5)
    assert len(Lake(tmp_path).read_table(OHLC_1M).table) == 2 and opened == [str(path)] * 2


def test_wrong_schema_and_corrupt_foreign_parts_are_reported_not_fatal(tmp_path: Path) -> None:
    """A foreign part with the wrong column type and a corrupt one are skipped with reasons; the rest reads."""
    lake = Lake(tmp_path)
    lake.write(TRADES, trades(0, 5), PROV, now_ns=NOW)
    bad_type = pa.table({"ts": pa.array([T0], pa.int64()), "id": pa.array([9], pa.int64()),
                         "price": [1.0], "amount": [1.0]})  # fmt: skip
    wrong = _part(tmp_path, "trades/date=2024-01-01", "part-wrong.parquet", bad_type)
    torn = _part(tmp_path, "trades/date=2024-01-01", "part-torn.parquet", bad_type)
    corrupt(torn)
    (wrong.parent / "_SUCCESS").write_bytes(b"")
    res = lake.read_table(TRADES)
    assert res.table.num_rows == 5
    reasons = {Path(s.path).name: s.reason for s in res.skipped}
    assert reasons["part-wrong.parquet"] == "wrong schema: column 'id' is int64, expected string"
    assert reasons["part-torn.parquet"].startswith("corrupt:") and set(reasons) == {
        "part-wrong.parquet",
        "part-torn.parquet",
    }


def test_trade_ids_overlapping_across_foreign_parts_and_days_read_once(tmp_path: Path) -> None:
    """The same trade ids in foreign parts of two days read once, in ts order (large_string ids accepted)."""
    rows = trades(0, 10)
    tbl = pa.Table.from_pylist([{"ts": t.ts, "id": t.id, "price": t.price, "amount": t.amount, "side": t.side}
                                for t in rows])  # fmt: skip
    tbl = tbl.set_column(1, "id", tbl["id"].cast(pa.large_string()))
    _part(tmp_path, "trades/date=2024-01-01", "part-0.parquet", tbl.slice(0, 7))
    moved = tbl.slice(5).set_column(0, "ts", pa.array([t.ts + NS_PER_DAY for t in rows[5:]], pa.int64()))
    _part(tmp_path, "trades/date=2024-01-02", "part-1.parquet", moved.slice(0, 5))
    got = Lake(tmp_path).read_table(TRADES).table
    assert got["id"].to_pylist() == [str(i) for i in range(10)]
    assert got["ts"].to_pylist() == sorted(got["ts"].to_pylist())


def test_an_all_null_optional_column_reads_as_null(tmp_path: Path) -> None:
    """pyarrow writes an all-None column with the null type: an optional lake column like that reads as null."""
    tbl = _ohlc([T0]).append_column("trades", pa.nulls(1))
    _part(tmp_path, "ohlc/month=2024-01", "part-nulls.parquet", tbl)
    res = Lake(tmp_path).read_table(OHLC_1M)
    assert res.skipped == [] and res.table["trades"].to_pylist() == [None]
