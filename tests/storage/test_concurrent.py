"""Two processes appending to one dataset while compactions run lose nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dccd.storage import Lake

from .helpers import TRADES, parts_of

CHILD = str(Path(__file__).with_name("writer_child.py"))
ROWS, BATCHES = 2_000, 25


def test_two_writers_and_a_compactor_lose_nothing(tmp_path: Path) -> None:
    """Both writers' batches all read back exactly once, though compaction kept merging their parts."""
    procs = [
        subprocess.Popen(
            [sys.executable, CHILD, str(tmp_path), str(first), str(BATCHES), str(ROWS)], stdout=subprocess.PIPE
        )
        for first in (0, 1000)
    ]
    lake = Lake(tmp_path)
    rounds = 0  # compactions that merged something while a writer was still appending
    while any(p.poll() is None for p in procs):
        rounds += bool(lake.compact(TRADES)) and any(p.poll() is None for p in procs)
    outs = [p.communicate()[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and [len(o) for o in outs] == [BATCHES, BATCHES]
    lake.compact(TRADES)
    ids = lake.read_table(TRADES).table["id"].to_pylist()
    expected = {str(k * ROWS + i) for first in (0, 1000) for k in range(first, first + BATCHES) for i in range(ROWS)}
    assert len(ids) == len(expected) and set(ids) == expected
    assert rounds >= 1
    assert len(parts_of(tmp_path, TRADES)) == 1
