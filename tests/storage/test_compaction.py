"""Compaction: one deduplicated part per partition, crash-safe, deleting only its inputs."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from dccd.domain.timeutil import NS_PER_MIN, parse_iso_ns
from dccd.storage import Lake, compaction
from dccd.storage.layout import lock_path

from .helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars, corrupt, parts_of, trades

FEB = parse_iso_ns("2024-02-01")


def _snapshot(lake: Lake) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = lake.read_table(OHLC_1M).table.to_pylist()
    return rows


def test_compaction_merges_each_partition_into_one_part(tmp_path: Path) -> None:
    """Overlapping parts in two months become one part per month; reads are unchanged."""
    lake = Lake(tmp_path)
    for start in (0, 5, 10, 3):
        lake.write(
            OHLC_1M, bars(FEB - 8 * NS_PER_MIN + start * NS_PER_MIN, 8, close=1.0 + start / 10), PROV, now_ns=NOW
        )
    before = _snapshot(lake)
    results = lake.compact(OHLC_1M)
    assert [(Path(r.partition).name, r.inputs, r.removed) for r in results] == [
        ("month=2024-01", 3, 3),
        ("month=2024-02", 3, 3),
    ]
    assert [p.parent.name for p in parts_of(tmp_path, OHLC_1M)] == ["month=2024-01", "month=2024-02"]
    assert _snapshot(lake) == before
    assert lake.compact(OHLC_1M) == []  # nothing left to merge


def test_newest_write_still_wins_after_compaction(tmp_path: Path) -> None:
    """A correction merged by compaction keeps winning, and a later append beats the merged part."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 3, close=1.5), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0, 1, close=1.9), PROV, now_ns=NOW)
    lake.compact()
    assert lake.read_table(OHLC_1M).table["close"].to_pylist() == [1.9, 1.5, 1.5]
    lake.write(OHLC_1M, bars(T0 + NS_PER_MIN, 1, close=1.7), PROV, now_ns=NOW)
    assert lake.read_table(OHLC_1M).table["close"].to_pylist() == [1.9, 1.7, 1.5]


def test_parts_appended_during_a_compaction_survive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the merge's inputs are deleted: a part written while merging stays and is read."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + 5 * NS_PER_MIN, 5), PROV, now_ns=NOW)
    real = compaction._fsync_file

    def append_meanwhile(path: Path) -> None:
        Lake(tmp_path).write(OHLC_1M, bars(T0 + 3 * NS_PER_MIN, 10, close=0.9), PROV, now_ns=NOW)
        real(path)

    monkeypatch.setattr(compaction, "_fsync_file", append_meanwhile)
    (res,) = lake.compact(OHLC_1M)
    assert res.inputs == 2 and len(parts_of(tmp_path, OHLC_1M)) == 2
    closes = lake.read_table(OHLC_1M).table["close"].to_pylist()
    assert closes == [1.5] * 3 + [0.9] * 10  # the concurrent append is newer: it wins


def test_a_crash_between_merge_and_delete_only_leaves_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dying after the merged part is durable but before inputs are gone reads the same; the next run cleans up."""
    lake = Lake(tmp_path)
    for i in range(3):
        lake.write(OHLC_1M, bars(T0 + i * 4 * NS_PER_MIN, 6, close=1.0 + i / 10), PROV, now_ns=NOW)
    before = _snapshot(lake)

    def die(path: object) -> None:
        raise KeyboardInterrupt  # stands in for the process being killed here

    monkeypatch.setattr(os, "unlink", die)
    with pytest.raises(KeyboardInterrupt):
        lake.compact(OHLC_1M)
    monkeypatch.undo()
    assert len(parts_of(tmp_path, OHLC_1M)) == 4 and _snapshot(lake) == before
    lake.compact(OHLC_1M)
    assert len(parts_of(tmp_path, OHLC_1M)) == 1 and _snapshot(lake) == before


def test_compact_closed_leaves_open_partitions_alone(tmp_path: Path) -> None:
    """Only days/months that ended by now are compacted automatically."""
    lake = Lake(tmp_path)
    for _ in range(2):
        lake.write(TRADES, trades(0, 5, ts0=T0), PROV, now_ns=NOW)
        lake.write(OHLC_1M, bars(FEB, 5), PROV, now_ns=NOW)
        lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    now = FEB + 3 * 24 * 60 * NS_PER_MIN  # 2024-02-04: January and 2024-01-01 are closed
    results = lake.compact_closed(now)
    assert sorted(Path(r.partition).name for r in results) == ["date=2024-01-01", "month=2024-01"]
    assert len([p for p in parts_of(tmp_path, OHLC_1M) if p.parent.name == "month=2024-02"]) == 2


def test_corrupt_parts_are_skipped_and_kept(tmp_path: Path) -> None:
    """A corrupt part is reported, not merged and not deleted."""
    lake = Lake(tmp_path)
    for i in range(3):
        lake.write(OHLC_1M, bars(T0 + i * 10 * NS_PER_MIN, 10), PROV, now_ns=NOW)
    bad = parts_of(tmp_path, OHLC_1M)[1]
    corrupt(bad)
    (res,) = lake.compact(OHLC_1M)
    assert res.inputs == 2 and [s.path for s in res.skipped] == [str(bad)]
    assert bad.exists() and len(parts_of(tmp_path, OHLC_1M)) == 2


def test_a_second_compactor_backs_off(tmp_path: Path) -> None:
    """While another process holds the dataset's compaction lock, compaction does nothing."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    lake.compact(OHLC_1M)  # creates the lock file
    lake.write(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    lock = lock_path(tmp_path, OHLC_1M, "compact")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert lake.compact(OHLC_1M) == []
    finally:
        os.close(fd)
    assert len(lake.compact(OHLC_1M)) == 1


async def test_async_compaction(tmp_path: Path) -> None:
    """acompact and acompact_closed run in a worker thread."""
    lake = Lake(tmp_path)
    await lake.awrite(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    await lake.awrite(OHLC_1M, bars(T0, 5), PROV, now_ns=NOW)
    assert len(await lake.acompact_closed(NOW)) == 1
    assert await lake.acompact() == []
