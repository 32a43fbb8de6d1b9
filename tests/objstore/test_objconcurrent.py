"""Several writer processes on one s3 lake, and a writer killed between its part's put and its commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from dccd.storage import Lake, catalog, commitlog
from dccd.storage.objlake import ObjectLake
from tests.storage.writer_child import DATASET

ROOT = Path(__file__).parents[2]


def _child(uri: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.objstore.writer_child", uri, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ),
    )  # fmt: skip


def test_two_writer_processes_lose_nothing(s3_uri: str) -> None:
    """Two processes committing batches to one lake at once race for log numbers; every row is stored once."""
    batches, rows = 30, 50
    procs = [_child(s3_uri, str(i * batches), str(batches), str(rows)) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert len(out.split()) == batches
    lake = Lake(s3_uri)
    assert isinstance(lake, ObjectLake)
    table = lake.read_table(DATASET).table
    assert sorted(int(i) for i in table["id"].to_pylist()) == list(range(2 * batches * rows))
    # every batch is one log entry naming one new part; no part twice; every part object is committed
    entries = [
        msgspec.json.decode(lake.obj.store.get(commitlog.log_key(s)) or b"", type=commitlog.Record).entry
        for s in range(1, 2 * batches + 1)
    ]
    paths = [f.path for e in entries if isinstance(e, commitlog.AddFiles) for f in e.files]
    assert len(paths) == len(set(paths)) == 2 * batches
    assert lake.obj.store.get(commitlog.log_key(2 * batches + 1)) is None
    assert {k for k, _, _ in lake.obj.store.list("trades/")} == set(paths)
    writers = {msgspec.json.decode(lake.obj.store.get(commitlog.log_key(s)) or b"", type=commitlog.Record).writer
               for s in range(1, 2 * batches + 1)}  # fmt: skip
    assert len(writers) == 2


def test_a_writer_killed_before_its_commit_leaves_an_orphan_the_sweep_deletes(s3_uri: str) -> None:
    """SIGKILL between the part's put and the log commit: the lake reads as before, the orphan is swept."""
    lake = Lake(s3_uri)
    assert isinstance(lake, ObjectLake)
    ok = _child(s3_uri, "0", "2", "20")
    assert ok.communicate(timeout=60)[0].split() == ["0", "1"]
    before = lake.read_table(DATASET).table
    child = _child(s3_uri, "5", "1", "20", "hang")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "hanging"
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    objects = {k for k, _, _ in lake.obj.store.list("trades/")}
    assert len(objects) == 3  # two committed parts and the orphan
    assert lake.read_table(DATASET).table.equals(before)
    assert lake.sweep() == []  # younger than the orphan age: it may be a commit in flight
    time.sleep(1.1)
    orphans = lake.sweep_orphans(max_age_s=1)
    assert len(orphans) == 1 and orphans[0] in objects
    assert len(lake.obj.store.list("trades/")) == 2
    assert lake.read_table(DATASET).table.equals(before)


def test_a_lost_race_for_a_log_number_retries_on_the_next(s3_uri: str, tmp_path: Path, monkeypatch: object) -> None:
    """Another writer taking the number between this writer's catch-up and its put: the put gets 412, the entry
    lands on the next number, and both writers' batches are read."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    a = Lake(s3_uri)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    b = Lake(s3_uri)
    assert isinstance(a, ObjectLake) and isinstance(b, ObjectLake)
    from tests.storage.writer_child import NOW, batch

    real = a.obj.store.put_if_absent
    calls: list[bool] = []

    def racing(key: str, data: bytes) -> bool:
        if key.startswith(commitlog.LOG_DIR) and not calls:  # b commits between a's catch-up and a's put
            b.write(DATASET, batch(1, 10), Provenance("b", "test"), now_ns=NOW)
        if key.startswith(commitlog.LOG_DIR):
            calls.append(real(key, data))
            return calls[-1]
        return real(key, data)

    from dccd.storage import Provenance

    monkeypatch.setattr(a.obj.store, "put_if_absent", racing)
    a.write(DATASET, batch(0, 10), Provenance("a", "test"), now_ns=NOW)
    assert calls == [False, True]  # a's log entry lost the race once, then landed on the next number
    assert sorted(int(i) for i in a.read_table(DATASET).table["id"].to_pylist()) == list(range(20))
    assert b.read_table(DATASET).table.equals(a.read_table(DATASET).table)


def test_a_new_machine_starts_from_the_newest_checkpoint(
    s3_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CHECKPOINT_EVERY-th commit stores the catalog; a fresh cache loads it and reads only the later entries."""
    from dccd.storage import Provenance
    from tests.storage.writer_child import NOW, batch

    monkeypatch.setattr(commitlog, "CHECKPOINT_EVERY", 3)
    a = Lake(s3_uri)
    assert isinstance(a, ObjectLake)
    for k in range(7):
        a.write(DATASET, batch(k, 10), Provenance("a", "test"), now_ns=NOW)
    a.create_snapshot(tag="s")  # entry 8
    assert [k for k, _, _ in a.obj.store.list(commitlog.CHECKPOINT_DIR + "/")] == [
        commitlog.checkpoint_key(3),
        commitlog.checkpoint_key(6),
    ]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "new-machine"))
    b = Lake(s3_uri)
    assert isinstance(b, ObjectLake)
    fetched: list[str] = []
    real = b.obj.store.get
    monkeypatch.setattr(b.obj.store, "get", lambda key: fetched.append(key) or real(key))
    assert b.read_table(DATASET).table.equals(a.read_table(DATASET).table)
    assert fetched == [commitlog.checkpoint_key(6), commitlog.log_key(7), commitlog.log_key(8)]
    assert b.read_table(DATASET, as_of="s").table.num_rows == 70
    with catalog.transaction(a.root, write=False) as ca, catalog.transaction(b.root, write=False) as cb:
        cols = "dataset, begin_snapshot, end_snapshot, path, record_count, checksum, stamp"
        assert (
            ca.execute(f"SELECT {cols} FROM data_file ORDER BY path").fetchall()
            == cb.execute(f"SELECT {cols} FROM data_file ORDER BY path").fetchall()
        )


def test_compaction_while_two_processes_write_loses_nothing(s3_uri: str) -> None:
    """Merges committed between other processes' batches end only their own inputs: every row once, none lost."""
    lake = Lake(s3_uri)
    assert isinstance(lake, ObjectLake)
    batches, rows = 20, 30
    procs = [_child(s3_uri, str(i * batches), str(batches), str(rows)) for i in range(2)]
    merges = 0
    while any(p.poll() is None for p in procs):
        merges += sum(r.inputs > 1 for r in lake.compact(DATASET))
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    merges += sum(r.inputs > 1 for r in lake.compact(DATASET))
    assert merges >= 1
    ids = [int(i) for i in lake.read_table(DATASET).table["id"].to_pylist()]
    assert sorted(ids) == list(range(2 * batches * rows))
    parts = lake.obj.list_parts(DATASET)
    assert len(parts) == 1  # the last compaction merged everything into one part
    raw = lake.read_table(DATASET)  # and that part alone holds each id once (no row merged twice)
    from dccd.storage.reader import connect

    cur = connect()
    try:
        n = cur.execute("SELECT count(*), count(DISTINCT id) FROM read_parquet($f)", {"f": [parts[0].path]}).fetchone()
    finally:
        cur.close()
    assert n == (2 * batches * rows, 2 * batches * rows) and raw.table.num_rows == n[0]
