"""Rolling compaction of open partitions: tiered policy, a simulated day of a stream, reads racing merges."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from dccd.domain.timeutil import NS_PER_DAY, NS_PER_S, parse_iso_ns
from dccd.storage import Lake, catalog, compaction, layout, writer
from dccd.storage.compaction import CompactPolicy, plan_merges, tier
from dccd.storage.reader import PartFile
from dccd.storage.schema import records_to_table

from .helpers import PROV, TRADES, parts_of, trades

DAY = parse_iso_ns("2024-03-01")
MIB = 1 << 20


def part(i: int, size: int, written_ns: int, *, foreign: bool = False) -> PartFile:
    """A listed part for the pure policy: the i-th write, ``size`` bytes, written at ``written_ns``."""
    return PartFile(f"/p/{i}", i, i, layout.new_stamp(written_ns), size, foreign)


@pytest.fixture
def fast_root(tmp_path: Path) -> Iterator[Path]:
    """A lake directory on tmpfs when there is one (tens of thousands of real files in seconds)."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="dccd-test-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the policy (pure) ------------------------------------------------------------------------------


def test_tiers_grow_by_fan_in() -> None:
    """Tier 0 below base_bytes, then one tier per factor fan_in."""
    p = CompactPolicy(fan_in=4, base_bytes=1000)
    assert [tier(s, p) for s in (0, 999, 1000, 3999, 4000, 16_000)] == [0, 0, 1, 1, 2, 3]


def test_young_parts_are_left_alone() -> None:
    """Parts written less than min_age_s ago are never planned, even in a run of small parts."""
    now = DAY + 3600 * NS_PER_S
    parts = [part(i, 5000, now - (100 - i) * NS_PER_S) for i in range(100)]  # written 100 s .. 1 s ago
    (run,) = plan_merges(parts, CompactPolicy(min_age_s=60), now)
    assert run == parts[:41]  # written 100 .. 60 s ago
    assert plan_merges(parts, CompactPolicy(min_age_s=200), now) == []


def test_only_runs_of_one_tier_adjacent_in_write_order_merge() -> None:
    """A big part between small ones splits them; fewer than fan_in small parts in a run wait."""
    p = CompactPolicy(fan_in=4, base_bytes=MIB, min_age_s=0)
    sizes = [5 * MIB, 10, 10, 10, 2 * MIB, 10, 10, 10, 10, 10]
    parts = [part(i, s, DAY + i) for i, s in enumerate(sizes)]
    assert plan_merges(parts, p, DAY + NS_PER_DAY) == [parts[5:10]]
    assert plan_merges(parts[:9], p, DAY + NS_PER_DAY) == [parts[5:9]]
    assert plan_merges(parts[:8], p, DAY + NS_PER_DAY) == []


def test_foreign_parts_are_never_merged_and_split_runs() -> None:
    """A part another tool wrote is data, but rolling compaction does not rewrite it."""
    p = CompactPolicy(fan_in=2, min_age_s=0)
    parts = [part(0, 10, DAY), part(1, 10, DAY + 1, foreign=True), part(2, 10, DAY + 2), part(3, 10, DAY + 3)]
    assert plan_merges(parts, p, DAY + NS_PER_DAY) == [parts[2:4]]


def test_a_long_run_is_merged_in_batches_of_max_inputs() -> None:
    """Merges are bounded (memory, journal size); a single leftover part is not merged alone."""
    p = CompactPolicy(fan_in=4, min_age_s=0, max_inputs=10)
    parts = [part(i, 10, DAY + i) for i in range(21)]
    assert [len(r) for r in plan_merges(parts, p, DAY + NS_PER_DAY)] == [10, 10]


def test_sizes_out_of_order_still_bound_the_part_count() -> None:
    """Alternating big and small parts never form a tier run; past max_parts the cheapest window merges."""
    p = CompactPolicy(fan_in=4, min_age_s=0, max_parts=8)
    sizes = [MIB * 3 if i % 2 else 100 for i in range(9)]
    parts = [part(i, s, DAY + i) for i, s in enumerate(sizes)]
    (run,) = plan_merges(parts, p, DAY + NS_PER_DAY)
    assert run == parts[0:4]  # ties: the oldest of the cheapest windows
    assert plan_merges(parts[:8], p, DAY + NS_PER_DAY) == []


def test_a_day_of_two_second_parts_in_the_size_model() -> None:
    """43,200 parts of 3 KB, a pass every 5 min: after every pass a handful of settled parts, each byte
    rewritten a few times (not once per pass), and fewer than fan_in parts per tier."""
    p = CompactPolicy()  # the serve defaults: fan_in 4, 1 MiB base, 60 s min age
    parts: list[PartFile] = []
    rewritten = written = 0
    for i in range(43_200):
        now = DAY + i * 2 * NS_PER_S
        parts.append(part(i, 3_000, now))
        written += 3_000
        if i % 150 == 149:  # the maintenance interval
            while runs := plan_merges(parts, p, now):
                for run in runs:
                    size = sum(r.size for r in run)
                    rewritten += size
                    k = parts.index(run[0])
                    parts[k : k + len(run)] = [PartFile("/m", 0, 0, run[-1].stamp, size)]
            settled = [q for q in parts if layout.stamp_ns(q.stamp) <= now - 60 * NS_PER_S]
            tiers = [tier(q.size, p) for q in settled]
            assert all(tiers.count(t) < p.fan_in for t in set(tiers)), tiers
            assert len(settled) <= 12 and len(parts) - len(settled) <= 30
    assert sum(q.size for q in parts) == written
    assert rewritten < 6 * written  # ~log_4(day / 1 MiB) + tier-0 rewrites, not 288 passes


# --- a simulated day of a stream, with real parts -------------------------------------------------


def _write_parts(root: Path, first: int, n: int, step_s: int) -> None:
    """Parts of one trade each, as the writer names and fills them, stamped at their trade's time (the
    simulated wall clock); fsync is skipped: this is about the policy, not durability."""
    table = records_to_table(TRADES.data_type, trades(first, n, ts0=DAY, step_ns=step_s * NS_PER_S))
    meta = writer.provenance_metadata(TRADES, PROV)
    pdir = layout.dataset_dir(root, TRADES) / layout.partition_name("date", DAY)
    pdir.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        row = table.slice(k, 1)
        ts = row["ts"][0].as_py()
        name = layout.part_name(ts, ts, layout.new_stamp(ts))
        pq.write_table(row.replace_schema_metadata(meta), pdir / name, compression="none")


def test_a_simulated_day_of_a_stream_ends_in_a_handful_of_parts(
    fast_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of a stream on a virtual clock, a real part every 16 s and serve's pass every 5 min: at every
    pass a handful of parts and exactly the rows written, each once on disk; the closed day is one part.

    (One part per 16 s keeps this test at 5,400 real files; the 43,200 two-second parts of a real day run in
    the size model above and, as real files, in ``tests/bench/lake.py --rolling``.)"""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # tmpfs anyway; keeps the merges CPU-bound
    policy = CompactPolicy(base_bytes=4 << 10, min_age_s=60)  # small tiers: the day climbs several
    lake, step_s, per_pass, n = Lake(fast_root), 16, 19, NS_PER_DAY // (16 * NS_PER_S)
    most = 0
    for first in range(0, n, per_pass):
        count = min(per_pass, n - first)
        _write_parts(fast_root, first, count, step_s)
        now = DAY + (first + count - 1) * step_s * NS_PER_S
        compaction.compact_rolling(fast_root, TRADES, now, policy, wall_ns=now)
        most = max(most, len(parts_of(fast_root, TRADES)))
    young = 60 // step_s
    assert most <= young + 12
    ids = lake.read_table(TRADES).table["id"].to_pylist()
    assert ids == [str(i) for i in range(n)]
    on_disk = [i for p in parts_of(fast_root, TRADES) for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]
    assert sorted(on_disk, key=int) == ids
    compaction.compact_rolling(fast_root, TRADES, DAY + NS_PER_DAY, policy)
    (only,) = parts_of(fast_root, TRADES)
    assert pq.read_table(only)["id"].to_pylist() == ids


# --- reads racing merges ----------------------------------------------------------------------------


def test_reads_during_compaction_never_see_a_duplicate_or_a_hole(tmp_path: Path) -> None:
    """A writer appends, a compactor merges as eagerly as it can, readers read: every read is exactly the
    ids 0..n-1 for some n at least what was written when it started."""
    lake, stop = Lake(tmp_path), threading.Event()
    written = [0]
    errors: list[str] = []
    eager = CompactPolicy(fan_in=2, min_age_s=0, base_bytes=1 << 40)
    reads = [0]

    def write() -> None:
        i = 0
        while not stop.is_set():
            lake.write(TRADES, trades(i, 3, ts0=DAY), PROV, now_ns=DAY + NS_PER_DAY)
            i += 3
            written[0] = i

    def compact() -> None:
        while not stop.is_set():
            compaction.compact_rolling(tmp_path, TRADES, DAY, eager)

    def read() -> None:
        while not stop.is_set():
            floor = written[0]
            ids = [int(x) for x in lake.read_table(TRADES).table["id"].to_pylist()]
            reads[0] += 1
            if ids != list(range(len(ids))) or len(ids) < floor:
                errors.append(f"read {len(ids)} ids, {len(set(ids))} distinct, max {max(ids, default=-1)}, >= {floor}")

    threads = [threading.Thread(target=f) for f in (write, compact, read, read)]
    for t in threads:
        t.start()
    time.sleep(4.0)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert reads[0] > 20 and written[0] > 60
    assert len(parts_of(tmp_path, TRADES)) < written[0] // 3  # merges did happen meanwhile


# --- crash safety: a merge killed at each step ------------------------------------------------------

CHILD = str(Path(__file__).with_name("compaction_child.py"))


def _raw_ids(root: Path) -> list[str]:
    """Ids in every visible part, duplicates included: what a raw reader of the hive tree sees."""
    return [i for p in parts_of(root, TRADES) for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]


def _journals(root: Path) -> list[str]:
    jdir = layout.journal_dir(root)
    return os.listdir(jdir) if jdir.is_dir() else []


@pytest.mark.parametrize("repair", ["startup sweep", "next compaction"])
@pytest.mark.parametrize("point", ["before-swap", "after-swap", "after-commit", "after-unlink:3"])
def test_a_merge_killed_at_any_step_is_repaired_and_never_read_twice(tmp_path: Path, point: str, repair: str) -> None:
    """Killed before the swap, after it, or halfway through deleting inputs: dccd's reader sees every row once
    right away, and the startup sweep or the next compaction removes what the merged part replaced."""
    lake = Lake(tmp_path)
    for k in range(6):
        lake.write(TRADES, trades(k * 10, 10, ts0=DAY), PROV, now_ns=DAY + NS_PER_DAY)
    newer = [msgspec.structs.replace(t, price=7.0) for t in trades(0, 5, ts0=DAY)]
    lake.write(TRADES, newer, PROV, now_ns=DAY + NS_PER_DAY)  # corrections: must keep winning
    before = lake.read_table(TRADES).table
    assert before["price"].to_pylist()[:5] == [7.0] * 5
    inputs, raw_before = parts_of(tmp_path, TRADES), _raw_ids(tmp_path)

    proc = subprocess.run([sys.executable, CHILD, str(tmp_path), point], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert lake.read_table(TRADES).table.equals(before)  # dccd's reader: every row once, newest write wins
    assert len(_journals(tmp_path)) == 1
    visible = parts_of(tmp_path, TRADES)
    if point == "before-swap":
        assert visible == inputs  # the merged part is still a hidden temp file
    else:
        assert len(visible) == 1 + len(inputs) - (3 if point == "after-unlink:3" else 0)
        assert len(_raw_ids(tmp_path)) > before.num_rows  # the window raw readers may see

    if repair == "startup sweep":
        lake.sweep()
    else:
        compaction.compact_rolling(tmp_path, TRADES, DAY, CompactPolicy(min_age_s=1e9))  # repairs, merges nothing
    assert _journals(tmp_path) == []
    raw = _raw_ids(tmp_path)
    if point == "before-swap":
        assert raw == raw_before  # nothing was replaced: the inputs stay as they were
    else:
        assert len(raw) == len(set(raw)) == before.num_rows  # only the merged part is left
    assert lake.read_table(TRADES).table.equals(before)
    assert len(parts_of(tmp_path, TRADES)) == (len(inputs) if point == "before-swap" else 1)
    if repair == "startup sweep":
        leftovers = [p for p in layout.dataset_dir(tmp_path, TRADES).rglob("*") if p.is_file() and p not in visible]
        assert leftovers == []  # the dead child's temp file went too
    live = {tmp_path / f.path for f in catalog.files_at(tmp_path, None)}
    assert live == set(parts_of(tmp_path, TRADES))  # the catalog's current view is the data tree


def test_a_listing_never_sees_half_a_swap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A swap that happens while a reader is halfway through listing a partition waits for the listing.

    A large directory reaches a reader in batches: the merged part may land in a batch already read while
    its inputs are gone from the batches still to come. The fake scandir below hands out the entries that
    way, with a compaction running between the first entry and the rest; the read still has every row.
    """
    lake = Lake(tmp_path)
    for k in range(4):
        lake.write(TRADES, trades(k * 10, 10, ts0=DAY), PROV, now_ns=DAY + NS_PER_DAY)
    pdir = str(parts_of(tmp_path, TRADES)[0].parent)
    real_scandir, reader_thread = os.scandir, threading.current_thread()
    swapped, torn = threading.Event(), [False]

    def compact() -> None:
        compaction.compact(tmp_path, TRADES)
        swapped.set()

    def batched(entries: list[os.DirEntry[str]]) -> Iterator[os.DirEntry[str]]:
        yield entries[0]
        worker = threading.Thread(target=compact)
        worker.start()
        swapped.wait(2.0)  # with the listing lock held, the swap cannot happen yet
        yield from (e for e in entries[1:] if os.path.exists(e.path))
        torn[0] = True

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        if str(path) != pdir or threading.current_thread() is not reader_thread or torn[0]:
            return real_scandir(path)
        return batched(list(real_scandir(path)))

    monkeypatch.setattr(os, "scandir", scandir)
    ids = lake.read_table(TRADES).table["id"].to_pylist()
    assert swapped.wait(10) and torn[0]
    assert ids == [str(i) for i in range(40)]
    assert len(parts_of(tmp_path, TRADES)) == 1


def test_serve_passes_leave_foreign_parts_alone(tmp_path: Path) -> None:
    """A part another tool wrote stays as it is in serve's passes, closed partitions included; dccd's merge."""
    lake = Lake(tmp_path)
    for k in range(3):
        lake.write(TRADES, trades(k * 10, 10, ts0=DAY), PROV, now_ns=DAY + NS_PER_DAY)
    pdir = parts_of(tmp_path, TRADES)[0].parent
    other = records_to_table(TRADES.data_type, trades(30, 10, ts0=DAY))
    pq.write_table(other, pdir / "part-0-spark.parquet")
    before = lake.read_table(TRADES).table
    compaction.compact_rolling(tmp_path, TRADES, DAY + 2 * NS_PER_DAY)  # the day is closed: whole merge
    names = sorted(p.name for p in parts_of(tmp_path, TRADES))
    assert len(names) == 2 and "part-0-spark.parquet" in names
    assert lake.read_table(TRADES).table.equals(before)
