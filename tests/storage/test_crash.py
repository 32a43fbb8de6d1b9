"""Crash safety: a writer SIGKILLed at random moments never leaves a torn or half-visible batch."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from dccd.storage import Lake

from .helpers import TRADES

CHILD = str(Path(__file__).with_name("writer_child.py"))
ROWS = 20_000
KILLS = 20


def _spawn(root: Path, first: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, str(root), str(first), "0", str(ROWS), *extra], stdout=subprocess.PIPE, text=True
    )


def _kill_after_first_ack(proc: subprocess.Popen[str], delay_s: float) -> list[str]:
    """Wait until the child is appending, let it run ``delay_s`` more, SIGKILL it, return all its output."""
    assert proc.stdout is not None
    lines = [proc.stdout.readline().strip()]
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    lines += proc.stdout.read().split()
    proc.wait()
    proc.stdout.close()
    return lines


def test_sigkill_during_appends_loses_no_acked_batch_and_tears_nothing(tmp_path: Path) -> None:
    """20 kills at random moments: the tree reads cleanly, acked batches appear exactly once, temps are swept."""
    rnd = random.Random(4)
    started = time.monotonic()
    acked: set[int] = set()
    # Two children alive at a time so process start-up overlaps; each owns a disjoint batch range.
    procs = [(_spawn(tmp_path, j * 1000), j) for j in range(2)]
    for j in range(2, KILLS + 1):
        proc, _ = procs.pop(0)
        procs.append((_spawn(tmp_path, j * 1000, *(["hang"] if j == KILLS else [])), j))
        acked.update(int(x) for x in _kill_after_first_ack(proc, rnd.uniform(0.0, 0.12)) if x.isdigit())
    for proc, _ in procs:  # the last regular child, then the one hanging before its first rename
        acked.update(int(x) for x in _kill_after_first_ack(proc, rnd.uniform(0.0, 0.12)) if x.isdigit())

    glob = f"{tmp_path}/trades/**/*.parquet"
    counts = dict(
        duckdb.execute(
            f"SELECT CAST(id AS BIGINT) // {ROWS} AS k, count(*) FROM read_parquet('{glob}', hive_partitioning=true)"
            " GROUP BY k"
        ).fetchall()
    )
    assert acked and all(counts.get(k) == ROWS for k in acked)  # every acked batch, exactly once
    assert all(n == ROWS for n in counts.values())  # an unacked in-flight batch is all or nothing
    read = Lake(tmp_path).read_table(TRADES)
    assert read.skipped == [] and read.table.num_rows == ROWS * len(counts)

    temps = set(tmp_path.rglob(".*.tmp"))
    assert temps  # at least the hung child's temp file
    assert set(Lake(tmp_path).sweep()) == temps and not list(tmp_path.rglob(".*.tmp"))
    assert time.monotonic() - started < 30
