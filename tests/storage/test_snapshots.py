"""Catalog and snapshots: as-of reads, retention, repair, rebuild, diff and export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa
import pytest

from dccd.domain.timeutil import NS_PER_DAY, NS_PER_MIN, ns_to_iso
from dccd.errors import StorageError
from dccd.storage import Lake, catalog, compaction, snapshots
from dccd.storage.snapshots import SnapshotNotFound

from .helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars, parts_of, trades

DAY = T0


def _live(root: Path) -> dict[str, tuple[int, int, int, int, str, str]]:
    """The catalog's current view: path -> (rows, min ts, max ts, size, checksum, stamp)."""
    return {f.path: (f.rows, f.min_ts, f.max_ts, f.size, f.checksum, f.stamp) for f in catalog.files_at(root, None)}


def _data_tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.glob("[!_]*/**/part-*.parquet")}


def _retained(root: Path) -> set[str]:
    base = root / "_dccd" / "retained"
    return {str(p.relative_to(base)) for p in base.rglob("*.parquet")} if base.is_dir() else set()


def _stream(lake: Lake, first: int, n: int, rows: int = 10) -> None:
    """``n`` stream-sized trade writes (one part each), ids from ``first * rows``."""
    for k in range(first, first + n):
        lake.write(TRADES, trades(k * rows, rows, ts0=DAY), PROV, now_ns=NOW)


def test_every_write_registers_its_parts_with_rows_range_size_and_checksum(tmp_path: Path) -> None:
    """Each committed part is in the catalog with the writer's counts, its ts range, size and sha256."""
    lake = Lake(tmp_path)
    res = lake.write(OHLC_1M, bars(T0 + 31 * NS_PER_DAY - 5 * NS_PER_MIN, 10), PROV, now_ns=NOW)  # spans 2 months
    assert len(res.parts) == 2
    live = catalog.files_at(tmp_path, None)
    assert {str(tmp_path / f.path) for f in live} == {p.path for p in res.parts}
    by_path = {str(tmp_path / f.path): f for f in live}
    for p in res.parts:
        f = by_path[p.path]
        assert (f.rows, f.min_ts, f.max_ts, f.size) == (p.rows, p.first_ts, p.last_ts, p.bytes)
        assert f.checksum == catalog.checksum_file(p.path) and f.end_snapshot is None
        assert f.origin == "rest" and f.dataset == "ohlc/exchange=binance/symbol=BTC-USDT/span=1m"
    assert {f.begin_snapshot for f in live} == {1}  # the first snapshot to come holds them


def test_as_of_returns_exactly_the_rows_read_at_snapshot_time_after_writes_and_compaction(tmp_path: Path) -> None:
    """A snapshot, then corrections, more rows and a compaction: reads as of it (by id, tag and time) are
    identical to the read taken when it was taken, while the current read sees the new rows."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 6)
    at_snapshot = lake.read_table(TRADES).table
    csv_then = b"".join(lake.export(TRADES, "csv"))
    snap = lake.create_snapshot(tag="v1", note="before the fixes")
    fixed = [msgspec.structs.replace(t, price=7.0) for t in trades(0, 5, ts0=DAY)]
    lake.write(TRADES, fixed, PROV, now_ns=NOW)  # corrections of rows the snapshot holds
    _stream(lake, 6, 4)
    lake.compact(TRADES)
    assert len(parts_of(tmp_path, TRADES)) == 1
    assert len(_retained(tmp_path)) == 6  # the snapshot's parts left the data tree, not the disk
    now = lake.read_table(TRADES).table
    assert now.num_rows == 100 and now["price"].to_pylist()[:5] == [7.0] * 5
    time_ref = ns_to_iso(snap.time_ns + 1)
    for ref in (snap.snapshot_id, str(snap.snapshot_id), "v1", time_ref):
        assert lake.read_table(TRADES, as_of=ref).table.equals(at_snapshot)
    assert b"".join(lake.export(TRADES, "csv", as_of="v1")) == csv_then
    with lake.open_reader(TRADES, as_of="v1") as stream:
        assert pa.Table.from_batches(list(stream.reader), stream.reader.schema).equals(at_snapshot)
    window = lake.read_table(TRADES, DAY + 10_000_000, DAY + 20_000_000, as_of="v1").table
    assert window.equals(at_snapshot.slice(10, 10))


def test_a_snapshot_of_a_lake_without_writes_through_dccd_registers_what_is_there(tmp_path: Path) -> None:
    """Parts from before the catalog existed (or another tool's) join it at snapshot time, so the snapshot
    holds what a read then returned."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 3)
    catalog.forget(tmp_path)
    catalog.catalog_path(tmp_path).unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(catalog.catalog_path(tmp_path)) + suffix).unlink(missing_ok=True)
    before = lake.read_table(TRADES).table
    lake.create_snapshot(tag="t")
    lake.write(TRADES, trades(500, 5, ts0=DAY), PROV, now_ns=NOW)
    assert lake.read_table(TRADES, as_of="t").table.equals(before)


def test_as_of_names_that_match_nothing_fail_with_what_exists(tmp_path: Path) -> None:
    """Unknown ids, tags and times before the first snapshot raise SnapshotNotFound naming the retained ones."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 1)
    with pytest.raises(SnapshotNotFound, match="no snapshot 'nope'"):
        lake.read_table(TRADES, as_of="nope")
    s = lake.create_snapshot(tag="first")
    with pytest.raises(SnapshotNotFound, match=r"retained: first"):
        lake.read_table(TRADES, as_of=str(s.snapshot_id + 100))
    with pytest.raises(SnapshotNotFound, match="at or before 2000-01-01"):
        lake.read_table(TRADES, as_of="2000-01-01")
    with pytest.raises(SnapshotNotFound, match="no snapshot id, tag or ISO time"):
        lake.read_table(TRADES, as_of="2024-13-45")
    with pytest.raises(ValueError, match="is taken"):
        lake.create_snapshot(tag="first")
    with pytest.raises(ValueError, match="tag '12'"):
        lake.create_snapshot(tag="12")


def test_iso_time_picks_the_newest_snapshot_taken_at_or_before_it(tmp_path: Path) -> None:
    """``as_of=TIME`` reads the snapshot current at that time."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 1)
    a = lake.create_snapshot()
    _stream(lake, 1, 1)
    b = lake.create_snapshot()
    assert lake.snapshot(ns_to_iso(a.time_ns)).snapshot_id == a.snapshot_id
    assert lake.snapshot(ns_to_iso(b.time_ns)).snapshot_id == b.snapshot_id
    assert lake.read_table(TRADES, as_of=ns_to_iso(a.time_ns)).table.num_rows == 10
    assert lake.read_table(TRADES, as_of=ns_to_iso(b.time_ns + NS_PER_DAY)).table.num_rows == 20


def test_retention_collects_exactly_the_parts_no_kept_snapshot_references(tmp_path: Path) -> None:
    """Three snapshots with compactions between: --keep 1 drops the oldest untagged one and deletes exactly
    the retained parts only it needed; a tagged snapshot is kept forever, dropping it frees the rest."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 3)
    s1 = lake.create_snapshot()
    set1 = {f.path for f in catalog.files_at(tmp_path, s1.snapshot_id)}
    lake.compact(TRADES)
    _stream(lake, 3, 2)
    s2 = lake.create_snapshot(tag="keepme")
    set2 = {f.path for f in catalog.files_at(tmp_path, s2.snapshot_id)}
    lake.compact(TRADES)
    _stream(lake, 5, 2)
    s3 = lake.create_snapshot()
    set3 = {f.path for f in catalog.files_at(tmp_path, s3.snapshot_id)}
    lake.compact(TRADES)
    assert _retained(tmp_path) == (set1 | set2 | set3) - _data_tree(tmp_path)
    reads = {s.snapshot_id: lake.read_table(TRADES, as_of=s.snapshot_id).table for s in (s2, s3)}

    dropped, deleted = lake.prune_snapshots(keep=1)
    assert [d.snapshot_id for d in dropped] == [s1.snapshot_id]
    assert set(deleted) == set1 - set2 - set3
    assert _retained(tmp_path) == (set2 | set3) - _data_tree(tmp_path)
    for sid, table in reads.items():
        assert lake.read_table(TRADES, as_of=sid).table.equals(table)

    lake.prune_snapshots(keep=0)  # the tagged one stays
    assert [s.tag for s in lake.list_snapshots()] == ["keepme"]
    assert _retained(tmp_path) == set2 - _data_tree(tmp_path)
    lake.drop_snapshot("keepme")
    assert _retained(tmp_path) == set() and lake.list_snapshots() == []
    assert set(_live(tmp_path)) == _data_tree(tmp_path)
    with catalog.transaction(tmp_path, write=False) as con:
        assert con.execute("SELECT count(*) FROM data_file WHERE end_snapshot IS NOT NULL").fetchone() == (0,)


def test_without_snapshots_compaction_deletes_its_inputs_as_before(tmp_path: Path) -> None:
    """No snapshot references them: compacted inputs are deleted at once and leave no catalog rows."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 4)
    lake.compact(TRADES)
    assert _retained(tmp_path) == set() and set(_live(tmp_path)) == _data_tree(tmp_path)
    with catalog.transaction(tmp_path, write=False) as con:
        assert con.execute("SELECT count(*) FROM data_file").fetchone() == (1,)


def test_rebuild_after_deleting_the_catalog_gives_the_same_current_view(tmp_path: Path) -> None:
    """Delete catalog.db: ``rebuild`` registers the same parts with the same rows, ranges, sizes and checksums."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 5)
    lake.compact(TRADES)
    _stream(lake, 5, 3)
    lake.write(OHLC_1M, bars(T0, 90), PROV, now_ns=NOW)
    before = _live(tmp_path)
    assert len(before) == 5
    catalog.forget(tmp_path)
    for f in catalog.catalog_path(tmp_path).parent.glob("catalog.db*"):
        f.unlink()
    res = snapshots.rebuild(tmp_path)
    assert res == snapshots.Reconciled(registered=5, ended=0)
    assert _live(tmp_path) == before
    assert snapshots.rebuild(tmp_path) == snapshots.Reconciled(0, 0)  # idempotent


def test_repair_ends_rows_of_parts_deleted_outside_dccd(tmp_path: Path) -> None:
    """A part removed by hand leaves the current view at the next repair."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 2)
    victim = parts_of(tmp_path, TRADES)[0]
    victim.unlink()
    assert lake.repair_catalog() == snapshots.Reconciled(0, 1)
    assert set(_live(tmp_path)) == _data_tree(tmp_path)


CHILD = """
import os, signal, sys
from pathlib import Path
from dccd.storage import catalog
from dccd.storage.writer import write_records, Provenance
from tests.storage.helpers import TRADES, trades, NOW, T0

def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

root = Path(sys.argv[1])
write_records(root, TRADES, trades(0, 10, ts0=T0), Provenance("t", "ws"), now_ns=NOW)
print("first", flush=True)
catalog.register = die  # the next part is renamed into place, then the process dies before registering it
write_records(root, TRADES, trades(10, 10, ts0=T0), Provenance("t", "ws"), now_ns=NOW)
"""


def test_sigkill_between_part_write_and_registration_is_repaired_at_start(tmp_path: Path) -> None:
    """A real process SIGKILLed after its part's rename and before its registration: after a restart (the
    startup sweep) the catalog holds exactly the data tree, and a snapshot reads every acked and landed row."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["first"]
    assert len(_data_tree(tmp_path)) == 2 and len(_live(tmp_path)) == 1  # the second part is unregistered
    lake = Lake(tmp_path)
    lake.sweep()
    assert set(_live(tmp_path)) == _data_tree(tmp_path)
    lake.create_snapshot(tag="after")
    assert lake.read_table(TRADES, as_of="after").table.num_rows == 20


def test_sigkill_at_random_moments_of_a_streaming_writer_leaves_a_consistent_catalog(tmp_path: Path) -> None:
    """A child appending as fast as it can is SIGKILLed mid-flight several times; each restart's repair makes
    the catalog's current view equal the data tree."""
    child = str(Path(__file__).with_name("writer_child.py"))
    for j, delay in enumerate((0.05, 0.11, 0.2)):
        proc = subprocess.Popen(
            [sys.executable, child, str(tmp_path), str(j * 1000), "0", "50"], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        Lake(tmp_path).sweep()
        assert set(_live(tmp_path)) == _data_tree(tmp_path)


def test_diff_reports_datasets_rows_and_ranges_added_and_removed(tmp_path: Path) -> None:
    """Between two snapshots: a new dataset, rows added, rows replaced (a correction is one removed and one
    added row) and a compaction that changes files but no rows."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 3)
    a = lake.create_snapshot(tag="a")
    lake.compact(TRADES)
    b = lake.create_snapshot(tag="b")
    (d,) = lake.snapshot_diff("a", "b")
    assert (d.status, d.rows_added, d.rows_removed, d.parts_added, d.parts_removed) == ("rewritten", 0, 0, 1, 3)
    lake.write(TRADES, [msgspec.structs.replace(trades(4, 1, ts0=DAY)[0], price=9.0)], PROV, now_ns=NOW)
    _stream(lake, 3, 1)
    lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    lake.create_snapshot(tag="c")
    diffs = {x.dataset: x for x in lake.snapshot_diff(b.snapshot_id, "c")}
    tr = diffs["trades/exchange=binance/symbol=BTC-USDT"]
    assert (tr.status, tr.rows_added, tr.rows_removed) == ("changed", 11, 1)
    assert (tr.added_first_ts, tr.added_last_ts) == (DAY + 4_000_000, DAY + 39_000_000)
    assert (tr.removed_first_ts, tr.removed_last_ts) == (DAY + 4_000_000, DAY + 4_000_000)
    oh = diffs["ohlc/exchange=binance/symbol=BTC-USDT/span=1m"]
    assert (oh.status, oh.rows_added, oh.rows_removed, oh.added_first_ts) == ("added", 5, 0, T0)
    back = {x.dataset: x for x in lake.snapshot_diff("c", a.snapshot_id)}
    assert back["ohlc/exchange=binance/symbol=BTC-USDT/span=1m"].status == "removed"


def test_export_is_a_self_contained_copy_duckdb_reads_alone(tmp_path: Path) -> None:
    """``export`` writes Hive Parquet plus a manifest; plain DuckDB over it returns the as-of rows exactly,
    and the manifest's checksums and row counts match the files."""
    lake = Lake(tmp_path / "lake")
    _stream(lake, 0, 4)
    lake.write(TRADES, [msgspec.structs.replace(trades(2, 1, ts0=DAY)[0], price=9.0)], PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + 31 * NS_PER_DAY - 5 * NS_PER_MIN, 10), PROV, now_ns=NOW)
    lake.create_snapshot(tag="rel")
    _stream(lake, 4, 2)
    lake.compact()
    out = tmp_path / "export"
    manifest = lake.export_snapshot("rel", out)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert {d["type"] for d in manifest["datasets"]} == {"trades", "ohlc"}
    for d in manifest["datasets"]:
        for f in d["files"]:
            assert catalog.checksum_file(out / f["path"]) == f["checksum"]
    con = duckdb.connect()
    got = con.sql(
        f"SELECT ts, id, price, amount, side, recv_ts FROM read_parquet('{out}/trades/**/*.parquet') ORDER BY ts, id"
    ).to_arrow_table()
    want = lake.read_table(TRADES, as_of="rel").table.select(got.column_names)
    assert got.num_rows == 40 and got.cast(want.schema).equals(want)
    assert con.execute(f"SELECT count(*) FROM read_parquet('{out}/ohlc/**/*.parquet')").fetchone() == (10,)
    with pytest.raises(ValueError, match="not empty"):
        lake.export_snapshot("rel", out)


def test_a_streaming_as_of_read_survives_the_snapshot_being_dropped_mid_read(tmp_path: Path) -> None:
    """As-of streaming reads pin their parts: dropping the snapshot and collecting its parts mid-read
    changes nothing in what the read returns."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 5)
    lake.create_snapshot(tag="x")
    want = lake.read_table(TRADES, as_of="x").table
    lake.compact(TRADES)
    with lake.open_reader(TRADES, as_of="x", batch_rows=7) as stream:
        first = stream.reader.read_next_batch()
        lake.drop_snapshot("x")
        assert _retained(tmp_path) == set()
        rest = list(stream.reader)
    assert pa.Table.from_batches([first, *rest]).equals(want)


def test_a_part_of_a_snapshot_deleted_outside_dccd_fails_the_as_of_read_clearly(tmp_path: Path) -> None:
    """A retained part removed by hand: the read names it instead of returning fewer rows."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 2)
    lake.create_snapshot(tag="x")
    lake.compact(TRADES)
    for p in (tmp_path / "_dccd" / "retained").rglob("*.parquet"):
        os.unlink(p)
    with pytest.raises(StorageError, match="is missing"):
        lake.read_table(TRADES, as_of="x")


def test_parts_begin_and_end_at_the_first_snapshot_that_holds_them_or_not(tmp_path: Path) -> None:
    """Writes before snapshot S begin at S, a merge after it ends its inputs and begins its output at S + 1:
    S still sees the inputs, the next snapshot sees the output only."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 3)
    assert {f.begin_snapshot for f in catalog.files_at(tmp_path, None)} == {1}
    s = lake.create_snapshot()
    assert s.snapshot_id == catalog.last_snapshot(tmp_path) == 1
    compaction.compact(tmp_path, TRADES)
    (out,) = catalog.files_at(tmp_path, None)
    assert out.begin_snapshot == 2 and out.origin == "compaction" and out.rows == 30
    assert {(f.begin_snapshot, f.end_snapshot) for f in catalog.files_at(tmp_path, 1)} == {(1, 2)}
    assert len(catalog.files_at(tmp_path, 1)) == 3
    s2 = lake.create_snapshot()
    assert [f.path for f in catalog.files_at(tmp_path, s2.snapshot_id)] == [out.path]


def test_collection_never_deletes_from_the_data_tree(tmp_path: Path) -> None:
    """A part deleted by hand, its row ended, then put back: dropping snapshots leaves the restored file alone,
    and the next repair registers it again."""
    lake = Lake(tmp_path)
    _stream(lake, 0, 2)
    victim = parts_of(tmp_path, TRADES)[0]
    saved = victim.read_bytes()
    lake.create_snapshot(tag="s")
    victim.unlink()
    lake.repair_catalog()
    victim.write_bytes(saved)
    lake.drop_snapshot("s")
    assert victim.exists()
    assert lake.repair_catalog() == snapshots.Reconciled(1, 0)
    assert set(_live(tmp_path)) == _data_tree(tmp_path)
