"""Reader: range, dedup (newest write wins), sort, pruning, corrupt/foreign files, streaming, last_ts, outside readers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.dataset as pds
import pytest

from dccd.domain import Candle, Trade
from dccd.domain.timeutil import NS_PER_DAY, NS_PER_MIN, parse_iso_ns
from dccd.storage import Lake
from dccd.storage.layout import dataset_dir

from .helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars, corrupt, parts_of, trades


def test_read_is_half_open_sorted_and_deduplicated(tmp_path: Path) -> None:
    """Overlapping appends read back once per key, sorted, within [start, end)."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0 + 5 * NS_PER_MIN, 10), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    ts = lake.read_table(OHLC_1M, T0 + 2 * NS_PER_MIN, T0 + 12 * NS_PER_MIN).table["ts"].to_pylist()
    assert ts == [T0 + i * NS_PER_MIN for i in range(2, 12)]
    assert lake.read_table(OHLC_1M).table.num_rows == 15


def test_the_newest_write_wins_on_duplicate_keys(tmp_path: Path) -> None:
    """A corrected bar written later replaces the earlier one in reads."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 3, close=1.5), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + NS_PER_MIN, 1, close=1.9), PROV, now_ns=NOW)
    assert lake.read_table(OHLC_1M).table["close"].to_pylist() == [1.5, 1.9, 1.5]


def test_trades_dedup_on_id_else_composite_across_parts(tmp_path: Path) -> None:
    """Trades seen twice (REST then WS) read once; id-less trades dedup on (ts, price, amount, side)."""
    lake = Lake(tmp_path)
    lake.write(TRADES, [*trades(0, 5), Trade(T0 + 99, None, 1.0, 1.0, None)], PROV, now_ns=NOW)
    lake.write(
        TRADES,
        [*trades(3, 5), Trade(T0 + 99, None, 1.0, 1.0, None), Trade(T0 + 99, None, 1.0, 2.0, None)],
        PROV,
        now_ns=NOW,
    )
    rows = lake.read_table(TRADES).table.to_pylist()
    assert [r["id"] for r in rows] == ["0", None, None, "1", "2", "3", "4", "5", "6", "7"]
    assert [r["amount"] for r in rows[1:3]] == [1.0, 2.0]


def test_only_overlapping_partitions_are_listed(tmp_path: Path) -> None:
    """A corrupt file in a partition outside the range does not affect the read, nor is it reported."""
    lake = Lake(tmp_path)
    lake.write(TRADES, trades(0, 10, ts0=T0), PROV, now_ns=NOW)
    lake.write(TRADES, trades(10, 10, ts0=T0 + NS_PER_DAY), PROV, now_ns=NOW)
    for p in parts_of(tmp_path, TRADES):
        if "date=2024-01-02" in str(p):
            corrupt(p)
    res = lake.read_table(TRADES, T0, T0 + NS_PER_DAY)
    assert res.table.num_rows == 10 and res.skipped == []


def test_a_corrupt_file_in_range_is_reported_not_fatal(tmp_path: Path) -> None:
    """A torn part inside the range is skipped and listed; the other parts are still read."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    bad = Path(lake.write(OHLC_1M, bars(T0 + 10 * NS_PER_MIN, 10), PROV, now_ns=NOW).parts[0].path)
    corrupt(bad)
    res = lake.read_table(OHLC_1M)
    assert res.table.num_rows == 10
    assert [s.path for s in res.skipped] == [str(bad)] and res.skipped[0].reason.startswith("corrupt")
    with lake.open_reader(OHLC_1M) as stream:
        assert stream.reader.read_all().num_rows == 10 and len(stream.skipped) == 1


def test_truncated_part_with_valid_name_is_reported(tmp_path: Path) -> None:
    """A part cut short (no footer) is reported as corrupt, the read goes on."""
    lake = Lake(tmp_path)
    p = Path(lake.write(OHLC_1M, bars(T0, 100), PROV, now_ns=NOW).parts[0].path)
    lake.write(OHLC_1M, bars(T0 + 100 * NS_PER_MIN, 5), PROV, now_ns=NOW)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    res = lake.read_table(OHLC_1M)
    assert res.table.num_rows == 5 and [s.path for s in res.skipped] == [str(p)]


def test_non_part_files_and_wrong_columns_are_reported(tmp_path: Path) -> None:
    """A stray parquet file not named part-*.parquet, or a part without the lake columns, is skipped and listed."""
    lake = Lake(tmp_path)
    good = Path(lake.write(OHLC_1M, bars(T0, 3), PROV, now_ns=NOW).parts[0].path)
    stray = good.parent / "export.parquet"
    stray.write_bytes(good.read_bytes())
    alien = good.parent / good.name.replace("part-", "part-").replace(good.name[-32:-8], "f" * 24)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"ts": [T0], "x": [1.0]}), alien)
    res = lake.read_table(OHLC_1M)
    assert res.table.num_rows == 3
    reasons = {Path(s.path).name: s.reason for s in res.skipped}
    assert "does not match part-*.parquet" in reasons["export.parquet"]
    assert reasons[alien.name] == "wrong schema: no 'open' column (has ts, x)"


def test_streaming_reader_yields_batches_in_order(tmp_path: Path) -> None:
    """open_reader streams record batches of bounded size, the whole range in ts order."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 1000), PROV, now_ns=NOW)
    with lake.open_reader(OHLC_1M, batch_rows=256) as stream:
        batches = list(stream.reader)
    assert max(b.num_rows for b in batches) <= 2048 and sum(b.num_rows for b in batches) == 1000
    ts = [t for b in batches for t in b.column("ts").to_pylist()]
    assert ts == sorted(ts)


async def test_async_batches_stream_from_a_thread(tmp_path: Path) -> None:
    """aopen_batches yields every row asynchronously."""
    lake = Lake(tmp_path)
    await lake.awrite(OHLC_1M, bars(T0, 300), PROV, now_ns=NOW)
    async with lake.aopen_batches(OHLC_1M, batch_rows=100) as (batches, skipped):
        rows = [b.num_rows async for b in batches]
    assert sum(rows) == 300 and skipped == []


def test_missing_dataset_reads_empty_without_creating_directories(tmp_path: Path) -> None:
    """Reading a dataset that does not exist returns zero rows and creates nothing."""
    res = Lake(tmp_path / "lake").read_table(OHLC_1M)
    assert res.table.num_rows == 0 and res.table.schema.names[0] == "ts"
    assert not (tmp_path / "lake").exists()
    assert Lake(tmp_path / "lake").last_ts(OHLC_1M) is None


def test_last_ts_comes_from_part_names_and_skips_corrupt_parts(tmp_path: Path) -> None:
    """last_ts is the max stored ts (newest partition first), ignoring a corrupt newest part."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + 3 * NS_PER_MIN, 2), PROV, now_ns=NOW)
    assert lake.last_ts(OHLC_1M) == T0 + 9 * NS_PER_MIN
    feb = parse_iso_ns("2024-02-01")
    newest = Path(lake.write(OHLC_1M, bars(feb, 2), PROV, now_ns=NOW).parts[0].path)
    assert lake.last_ts(OHLC_1M) == feb + NS_PER_MIN
    corrupt(newest)
    assert lake.last_ts(OHLC_1M) == T0 + 9 * NS_PER_MIN


def test_plain_duckdb_reads_the_lake_with_hive_partitioning(tmp_path: Path) -> None:
    """DuckDB with no dccd code sees every row and the partition columns from the paths."""
    lake = Lake(tmp_path)
    lake.write(TRADES, trades(0, 10, ts0=T0) + trades(10, 5, ts0=T0 + NS_PER_DAY), PROV, now_ns=NOW)
    rows = duckdb.execute(
        f"select exchange, symbol, date::varchar, count(*), sum(price) from read_parquet('{tmp_path}/trades/**/*.parquet',"
        " hive_partitioning=true) group by all order by 3"
    ).fetchall()
    assert [r[:4] for r in rows] == [
        ("binance", "BTC-USDT", "2024-01-01", 10),
        ("binance", "BTC-USDT", "2024-01-02", 5),
    ]


def test_pyarrow_dataset_reads_the_lake(tmp_path: Path) -> None:
    """pyarrow.dataset with hive partitioning reads the same rows and partition keys."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(parse_iso_ns("2024-01-31T23:58"), 4), PROV, now_ns=NOW)
    lake.write(OHLC_1M, [Candle(parse_iso_ns("2024-03-01"), 1, 2, 0.5, 1, 1)], PROV, now_ns=NOW)
    table = pds.dataset(tmp_path / "ohlc", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 5
    assert sorted(set(table["month"].to_pylist())) == ["2024-01", "2024-02", "2024-03"]
    assert set(table["span"].to_pylist()) == {"1m"} and set(table["symbol"].to_pylist()) == {"BTC-USDT"}


def test_temp_files_are_invisible_to_globs(tmp_path: Path) -> None:
    """A leftover temp file in a partition is ignored by dccd and by outside *.parquet globs."""
    lake = Lake(tmp_path)
    good = Path(lake.write(OHLC_1M, bars(T0, 3), PROV, now_ns=NOW).parts[0].path)
    (good.parent / f".{good.name}.999999-abcd.tmp").write_bytes(b"half a parquet")
    assert lake.read_table(OHLC_1M).table.num_rows == 3
    assert duckdb.execute(f"select count(*) from read_parquet('{tmp_path}/ohlc/**/*.parquet')").fetchall() == [(3,)]


@pytest.mark.parametrize("bad_range", [(10, 5), (10, 10)])
def test_empty_or_inverted_ranges_read_nothing(tmp_path: Path, bad_range: tuple[int, int]) -> None:
    """A range with end <= start returns no rows."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 20), PROV, now_ns=NOW)
    start, end = (T0 + n * NS_PER_MIN for n in bad_range)
    assert lake.read_table(OHLC_1M, start, end).table.num_rows == 0
    assert dataset_dir(tmp_path, OHLC_1M).exists()


def test_disjoint_bar_parts_are_read_in_order_without_a_sort(tmp_path: Path) -> None:
    """Non-overlapping bar parts written out of order come back sorted, on the no-sort fast path."""
    import random

    from dccd.storage import reader

    lake = Lake(tmp_path)
    chunks = list(range(0, 3000, 100))
    random.Random(3).shuffle(chunks)
    for c in chunks:  # 30 parts over three months, written in random order
        lake.write(OHLC_1M, bars(T0 + c * 45 * NS_PER_MIN, 100, step_ns=45 * NS_PER_MIN), PROV, now_ns=NOW)
    p = reader.plan(tmp_path, OHLC_1M)
    assert "ORDER BY" not in p.sql and "QUALIFY" not in p.sql
    ts = lake.read_table(OHLC_1M).table["ts"].to_pylist()
    assert ts == sorted(ts) and len(ts) == 3000
    lake.write(OHLC_1M, bars(T0, 1), PROV, now_ns=NOW)  # now two parts overlap: dedup and sort again
    assert "QUALIFY" in reader.plan(tmp_path, OHLC_1M).sql


def test_a_part_compacted_away_mid_read_is_replanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a compaction deletes listed parts between planning and querying, the read plans again and loses nothing."""
    from dccd.storage import reader

    lake = Lake(tmp_path)
    for i in range(3):
        lake.write(OHLC_1M, bars(T0 + i * 10 * NS_PER_MIN, 10), PROV, now_ns=NOW)
    real_plan, calls = reader.plan, []

    def plan_then_compact(*args: object, **kwargs: object) -> reader.Plan:
        p = real_plan(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(p)
        if len(calls) == 1:
            lake.compact(OHLC_1M)
        return p

    monkeypatch.setattr(reader, "plan", plan_then_compact)
    res = lake.read_table(OHLC_1M)
    assert len(calls) == 2 and res.table.num_rows == 30 and res.skipped == []
