"""A streaming read survives a compaction that replaces its parts half way (parts are pinned by hard links).

DuckDB opens a streaming query's files lazily, one after the other, so a merge
that deleted the inputs mid-read used to end OHLC/funding/OI exports and API
streams with an error. A streaming plan hard-links its parts while they are
listed; the links go when the read ends, and a crashed reader's are swept at start.
"""

from __future__ import annotations

import os
from pathlib import Path

from dccd.domain.timeutil import NS_PER_MIN
from dccd.storage import Lake
from dccd.storage import reader as rd

from .helpers import NOW, OHLC_1M, PROV, T0, bars, parts_of


def _lake_of_many_parts(root: Path, parts: int = 30, rows: int = 500) -> Lake:
    lake = Lake(root)
    for k in range(parts):  # non-overlapping, so the read streams file by file (no sort, no dedup)
        lake.write(OHLC_1M, bars(T0 + k * rows * NS_PER_MIN, rows), PROV, now_ns=NOW)
    return lake


def test_a_compaction_during_a_streaming_read_changes_nothing_it_returns(tmp_path: Path) -> None:
    """Read one batch, merge and delete every input part, read on: every row comes back once, no error."""
    lake = _lake_of_many_parts(tmp_path)
    before = len(parts_of(tmp_path, OHLC_1M))
    with lake.open_reader(OHLC_1M, batch_rows=256) as stream:
        first = stream.reader.read_next_batch()
        assert lake.compact(OHLC_1M)  # the inputs are unlinked now
        assert len(parts_of(tmp_path, OHLC_1M)) < before
        rest = stream.reader.read_all()
    ts = first.column("ts").to_pylist() + rest.column("ts").to_pylist()
    assert ts == [T0 + i * NS_PER_MIN for i in range(30 * 500)]
    assert not list((tmp_path / "_dccd" / rd.PINS_DIR).iterdir())  # the read's links are gone with it


def test_an_export_during_a_compaction_is_complete(tmp_path: Path) -> None:
    """A CSV export interrupted by a compaction after its first chunk still has every row."""
    lake = _lake_of_many_parts(tmp_path)
    export = lake.export(OHLC_1M, "csv")
    chunks = iter(export)
    body = [next(chunks)]
    lake.compact(OHLC_1M)
    body.extend(chunks)
    lines = b"".join(body).decode().splitlines()
    assert len(lines) == 1 + 30 * 500 and export.rows == 30 * 500


def test_pins_of_a_dead_reader_are_swept_at_start(tmp_path: Path) -> None:
    """Links left by a reader that died are removed by the startup sweep; a live reader's are kept."""
    lake = _lake_of_many_parts(tmp_path, parts=3, rows=10)
    dead = tmp_path / "_dccd" / rd.PINS_DIR / "999999999-abc"
    dead.mkdir(parents=True)
    os.link(parts_of(tmp_path, OHLC_1M)[0], dead / "0.parquet")
    live = rd.plan(tmp_path, OHLC_1M, pin=True)
    assert live.pins is not None and live.pins.exists()
    assert dead in lake.sweep()
    assert not dead.exists() and live.pins.exists()
    list(rd.iter_batches(live))
    assert not live.pins.exists()
