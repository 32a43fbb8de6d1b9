"""The lake on a real S3 store (SeaweedFS on 127.0.0.1): the same reads as on disk, snapshots, compaction, retirement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dccd.domain import BookLevel
from dccd.storage import Lake, commitlog
from dccd.storage.objlake import ObjectLake, Unsupported
from tests.storage.helpers import FUNDING, NOW, OHLC_1M, PROV, T0, TRADES, bars, funding, trades


def _write_both(lakes: list[Lake]) -> None:
    for k in range(4):
        for lake in lakes:
            lake.write(TRADES, trades(k * 50, 80), PROV, now_ns=NOW)  # overlapping ids: dedup across parts
            lake.write(OHLC_1M, bars(T0 + k * 3_600_000_000_000, 30, close=1.0 + k / 10), PROV, now_ns=NOW)
            lake.write(FUNDING, funding(T0 + k * 86_400_000_000_000, 3, 28_800_000_000_000), PROV, now_ns=NOW)


def test_reads_equal_the_local_lake(s3_uri: str, tmp_path: Path) -> None:
    """The same writes give the same tables, value for value, from an s3 lake as from a local one."""
    s3, local = Lake(s3_uri), Lake(tmp_path / "local")
    assert isinstance(s3, ObjectLake)
    _write_both([s3, local])
    for ds in (TRADES, OHLC_1M, FUNDING):
        a, b = s3.read_table(ds).table, local.read_table(ds).table
        assert a.num_rows > 0 and a.equals(b), ds
        a, b = (
            s3.read_table(ds, T0 + 1_000_000, T0 + 86_400_000_000_000).table,
            local.read_table(ds, T0 + 1_000_000, T0 + 86_400_000_000_000).table,
        )
        assert a.equals(b)
        with s3.open_reader(ds) as stream:
            assert stream.reader.read_all().equals(local.read_table(ds).table)
    assert s3.datasets() == local.datasets()
    assert s3.last_ts(TRADES) == local.last_ts(TRADES) and s3.stored_range(OHLC_1M) == local.stored_range(OHLC_1M)
    assert s3.last_trade(TRADES) == local.last_trade(TRADES)
    assert s3.stored_trades(TRADES, None, None) == local.stored_trades(TRADES, None, None)
    inv_s3 = {(i.data_type, i.rows, i.first_ts, i.last_ts, tuple(i.gaps)) for i in s3.inventory()}
    assert inv_s3 == {(i.data_type, i.rows, i.first_ts, i.last_ts, tuple(i.gaps)) for i in local.inventory()}
    csv_s3, csv_local = tmp_path / "a.csv", tmp_path / "b.csv"
    s3.export_to(TRADES, "csv", csv_s3)
    local.export_to(TRADES, "csv", csv_local)
    assert csv_s3.read_bytes() == csv_local.read_bytes()


def test_a_second_process_view_sees_the_writes(s3_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader with its own cache directory (another machine) catches up from the log and reads the same rows."""
    writer = Lake(s3_uri)
    writer.write(TRADES, trades(0, 100), PROV, now_ns=NOW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-machine"))
    reader = Lake(s3_uri)
    assert reader.root != writer.root
    assert reader.read_table(TRADES).table.num_rows == 100
    writer.write(TRADES, trades(100, 50), PROV, now_ns=NOW)
    assert reader.read_table(TRADES).table.equals(writer.read_table(TRADES).table)
    assert reader.read_table(TRADES).table.num_rows == 150


def test_as_of_after_compaction_and_deferred_deletion(s3_uri: str) -> None:
    """A snapshot still reads its rows after a compaction; ended parts are deleted only once no snapshot needs them."""
    lake = Lake(s3_uri)
    assert isinstance(lake, ObjectLake)
    for k in range(4):
        lake.write(OHLC_1M, bars(T0 + k * 30 * 60_000_000_000, 30, close=1.5), PROV, now_ns=NOW)
    snap = lake.create_snapshot(tag="v1")
    lake.write(OHLC_1M, bars(T0, 10, close=1.9), PROV, now_ns=NOW)  # newer values of the first 10 bars
    before = lake.read_table(OHLC_1M, as_of="v1").table
    merged = lake.compact(OHLC_1M)
    assert len(merged) == 1 and merged[0].inputs == 5 and merged[0].rows == 120
    assert len(lake.obj.list_parts(OHLC_1M)) == 1
    assert lake.read_table(OHLC_1M, as_of=snap.snapshot_id).table.equals(before)
    now = lake.read_table(OHLC_1M).table
    assert now.num_rows == 120 and now["close"][0].as_py() == 1.9 and before["close"][0].as_py() == 1.5
    objects = lambda: {k for k, _, _ in lake.obj.store.list("ohlc/")}  # noqa: E731
    assert len(objects()) == 6
    # v1 needs the four first parts; the fifth, written after v1 and merged away, no snapshot ever held
    assert len(lake.collect(grace_s=0)) == 1
    assert len(objects()) == 5
    assert lake.read_table(OHLC_1M, as_of="v1").table.equals(before)
    lake.drop_snapshot("v1")  # within the grace period: nothing deleted yet
    assert len(objects()) == 5
    assert len(lake.collect(grace_s=0)) == 4
    assert objects() == {lake.obj.rel(p.path) for p in lake.obj.list_parts(OHLC_1M)}
    assert lake.read_table(OHLC_1M).table.equals(now)
    lake.sweep()
    assert lake.read_table(OHLC_1M).table.equals(now)


def test_collect_waits_for_the_grace_period(s3_uri: str) -> None:
    """A compacted-away part stays in the store during the grace period (a read planned before may open it)."""
    lake = Lake(s3_uri)
    assert isinstance(lake, ObjectLake)
    for k in range(3):
        lake.write(TRADES, trades(k * 10, 10), PROV, now_ns=NOW)
    lake.compact(TRADES)
    assert lake.collect(grace_s=3600) == []
    assert len(lake.obj.store.list("trades/")) == 4
    assert len(lake.collect(grace_s=0)) == 3
    assert len(lake.obj.store.list("trades/")) == 1
    assert lake.read_table(TRADES).table.num_rows == 30


def test_a_merge_of_inputs_someone_else_ended_aborts(
    s3_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two compactors merging the same parts: the second commit is refused, its output deleted, nothing doubled."""
    a = Lake(s3_uri)
    for k in range(4):
        a.write(TRADES, trades(k * 10, 10), PROV, now_ns=NOW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    b = Lake(s3_uri)
    assert isinstance(a, ObjectLake) and isinstance(b, ObjectLake)
    parts_b = b.obj.list_parts(TRADES)  # b planned its merge before a's merge landed
    assert len(a.compact(TRADES)) == 1
    partition = b.obj.rel(parts_b[0].path).rsplit("/", 2)[-2]
    assert b._merge(TRADES, partition, parts_b) is None
    assert len(b.obj.list_parts(TRADES)) == 1
    assert b.read_table(TRADES).table.num_rows == 40
    assert len(b.obj.store.list("trades/")) == 5  # a's output + the 4 ended inputs; b's output deleted
    with pytest.raises(commitlog.Conflict):
        commitlog.commit(
            b.obj.store, b.root, commitlog.Merge("x", commitlog.FileEntry("p", 1, 1, 1, 1, "", ""), ["gone"], 0), "t"
        )


def test_snapshot_tags_are_unique_across_writers(s3_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag taken through one cache is refused through another (the log is the one catalog)."""
    a = Lake(s3_uri)
    a.write(TRADES, trades(0, 10), PROV, now_ns=NOW)
    a.create_snapshot(tag="daily")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    b = Lake(s3_uri)
    with pytest.raises(ValueError, match="taken"):
        b.create_snapshot(tag="daily")
    assert [s.tag for s in b.list_snapshots()] == ["daily"]
    assert b.read_table(TRADES, as_of="daily").table.num_rows == 10


def test_unsupported_operations_refuse_in_one_line(s3_uri: str, tmp_path: Path) -> None:
    """What the object-store lake does not offer fails with one clear line, touching nothing."""
    lake = Lake(s3_uri)
    lake.write(TRADES, trades(0, 10), PROV, now_ns=NOW)
    lake.create_snapshot(tag="a")
    with pytest.raises(Unsupported) as err:
        lake.quarantine("x")
    assert "\n" not in str(err.value) and "object-store lake" in str(err.value)
    assert lake.read_table(TRADES).table.num_rows == 10


def test_book_round_trip(s3_uri: str, tmp_path: Path) -> None:
    """Book levels (list-free rows with a side) round-trip like the local lake's."""
    from tests.storage.helpers import BOOK

    rows = [BookLevel(T0 + i * 1_000_000, "bid" if i % 2 else "ask", 100.0 + i, 1.0) for i in range(20)]
    s3, local = Lake(s3_uri), Lake(tmp_path / "l")
    for lake in (s3, local):
        lake.write(BOOK, rows, PROV, now_ns=NOW)
    assert s3.read_table(BOOK).table.equals(local.read_table(BOOK).table)


def test_local_only_paths_refuse_an_s3_lakes_cache(s3_uri: str) -> None:
    """Writing parts into the cache directory (an import) or rebuilding the catalog from it is refused in one line."""
    from dccd.errors import StorageError
    from dccd.storage import snapshots, writer

    lake = Lake(s3_uri)
    lake.write(TRADES, trades(0, 10), PROV, now_ns=NOW)
    with pytest.raises(StorageError, match="object-store lake"):
        writer.write_records(lake.root, TRADES, trades(10, 10), PROV, now_ns=NOW)
    with pytest.raises(StorageError, match="commit log"):
        snapshots.rebuild(lake.root)
    assert lake.read_table(TRADES).table.num_rows == 10
    assert not list(lake.root.glob("trades/**/*.parquet"))


def test_a_corrupt_object_is_skipped_and_reported(s3_uri: str) -> None:
    """A part object overwritten with garbage (outside dccd) is skipped and named; the other parts still read."""
    lake = Lake(s3_uri)
    assert isinstance(lake, ObjectLake)
    lake.write(TRADES, trades(0, 10), PROV, now_ns=NOW)
    lake.write(TRADES, trades(10, 10), PROV, now_ns=NOW)
    bad = lake.obj.list_parts(TRADES)[0]
    lake.obj.store.put(lake.obj.rel(bad.path), b"not parquet at all" * 20)
    res = lake.read_table(TRADES)
    assert res.table.num_rows == 10 and [b.path for b in res.skipped] == [bad.path]
    assert res.skipped[0].reason.startswith("corrupt")


def test_a_second_endpoint_in_one_process_reads_through_its_own_protocol(s3_uri: str, seaweed: object) -> None:
    """Two stores in one process (other endpoints or keys) get DuckDB protocols of their own; both read."""
    from dccd.storage import objstore
    from dccd.storage.objread import ObjectReads

    lake = Lake(s3_uri)
    assert isinstance(lake, ObjectLake)
    lake.write(TRADES, trades(0, 10), PROV, now_ns=NOW)
    endpoint = lake.obj.settings.endpoint_url
    assert endpoint is not None
    other = objstore.resolve(  # the same server under another name: another endpoint to the process
        s3_uri,
        None,
        str(lake.root) + "-b",
        {**dict(__import__("os").environ), "AWS_ENDPOINT_URL": endpoint.replace("127.0.0.1", "localhost")},
    )
    objstore.register(other)
    reads = ObjectReads(other)
    assert reads.protocol != lake.obj.protocol and reads.base.startswith(reads.protocol + "://lake/")
    assert Lake(other.cache_dir).read_table(TRADES).table.equals(lake.read_table(TRADES).table)


def test_snapshot_diff_and_export_equal_the_local_lakes(s3_uri: str, tmp_path: Path) -> None:
    """The same history gives the same snapshot diff, and an export of the same files and rows, on s3 as on disk."""
    import json

    import pyarrow.parquet as pq

    s3, local = Lake(s3_uri), Lake(tmp_path / "local")
    for lake in (s3, local):
        lake.write(TRADES, trades(0, 50), PROV, now_ns=NOW)
        lake.write(OHLC_1M, bars(T0, 30), PROV, now_ns=NOW)
        lake.create_snapshot(tag="a")
        lake.write(TRADES, trades(40, 30), PROV, now_ns=NOW)
        lake.write(OHLC_1M, bars(T0, 10, close=1.9), PROV, now_ns=NOW)
        lake.compact()
        lake.create_snapshot(tag="b")

    def strip(diffs: list[Any]) -> list[Any]:
        return [(d.dataset, d.status, d.rows_added, d.rows_removed) for d in diffs]

    assert strip(s3.snapshot_diff("a", "b")) == strip(local.snapshot_diff("a", "b"))
    assert strip(s3.snapshot_diff("a", "b"))  # something changed
    m_s3 = s3.export_snapshot("a", tmp_path / "x-s3")
    m_local = local.export_snapshot("a", tmp_path / "x-local")

    def rows(m: dict[str, Any]) -> list[Any]:
        return [
            (d["dataset"], d["rows"], [(f["rows"], f["min_ts"], f["max_ts"]) for f in d["files"]])
            for d in m["datasets"]
        ]

    assert rows(m_s3) == rows(m_local) and json.loads((tmp_path / "x-s3" / "manifest.json").read_text())["tag"] == "a"
    for d in m_s3["datasets"]:
        for f in d["files"]:
            other = next(g for e in m_local["datasets"] if e["dataset"] == d["dataset"] for g in e["files"])
            assert pq.read_table(tmp_path / "x-s3" / f["path"]).equals(
                pq.read_table(tmp_path / "x-local" / other["path"])
            )
