"""Run ownership: owner leases with heartbeats decide which open runs are orphaned; old databases migrate."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from dccd.storage import RunStore
from dccd.storage.runs import LEASE_TTL_S, ORPHAN_ERROR, OWNER_RETENTION_NS

from .helpers import OHLC_1M, TRADES

T0 = 1_700_000_000 * 10**9
S = 10**9
TTL_NS = round(LEASE_TTL_S * S)


def owner_store(root: Path, now_ns: int = T0) -> RunStore:
    """A store holding a fresh lease taken at ``now_ns`` (one process of the lake)."""
    store = RunStore(root)
    store.register_owner(now_ns=now_ns)
    return store


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(child.stdout)


def test_runs_of_a_stale_owner_fail_and_a_live_owners_runs_are_kept(tmp_path: Path) -> None:
    """A check 61 s after an owner's last heartbeat fails its runs; an owner that beat 11 s ago keeps its own."""
    stale, live, checker = (owner_store(tmp_path) for _ in range(3))
    stale_runs = [stale.create("stream", TRADES, state="running"), stale.create("backfill", OHLC_1M)]
    kept = live.create("stream", TRADES, state="running")
    assert live.heartbeat(now_ns=T0 + 50 * S)
    assert checker.mark_orphans(now_ns=T0 + TTL_NS + S) == stale_runs
    for run_id in stale_runs:
        run = stale.get(run_id)
        assert run is not None and run.owner_id == stale.owner_id
        assert (run.state, run.error, run.ended_ns) == (
            "failed",
            f"orphaned: owner {stale.owner_id} stopped heartbeating",
            T0 + TTL_NS + S,
        )
    assert live.get(kept).state == "running"  # type: ignore[union-attr]
    assert not stale.heartbeat(now_ns=T0 + TTL_NS + 2 * S)  # the stale process learns its lease was taken
    assert live.heartbeat(now_ns=T0 + TTL_NS + 2 * S)
    assert checker.mark_orphans(now_ns=T0 + TTL_NS + 2 * S) == []


def test_a_heartbeat_exactly_ttl_old_is_still_alive(tmp_path: Path) -> None:
    """The TTL bound is exclusive: an owner whose heartbeat is exactly 60 s old keeps its run."""
    owner, checker = owner_store(tmp_path), owner_store(tmp_path)
    run_id = owner.create("stream", TRADES, state="running")
    assert checker.mark_orphans(now_ns=T0 + TTL_NS) == []
    assert checker.mark_orphans(now_ns=T0 + TTL_NS + 1) == [run_id]


def test_a_reused_pid_cannot_keep_a_run_alive(tmp_path: Path) -> None:
    """An owner whose pid now belongs to a live process is still dead once its heartbeat is older than the TTL."""
    owner, checker = owner_store(tmp_path), owner_store(tmp_path)
    run_id = owner.create("backfill", OHLC_1M, state="running")
    with sqlite3.connect(owner.path) as con:  # the pid of the stopped owner now runs something else
        con.execute("UPDATE owners SET pid = ? WHERE owner_id = ?", (os.getppid(), owner.owner_id))
        con.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (os.getppid(), run_id))
    assert checker.mark_orphans(now_ns=T0 + 30 * S) == []
    assert checker.mark_orphans(now_ns=T0 + TTL_NS + S) == [run_id]


def test_an_owner_whose_pid_exited_on_this_host_is_failed_at_once(tmp_path: Path) -> None:
    """A crashed process on this host (pid gone) loses its runs at the next start, without waiting for the TTL."""
    code = (
        "import sys; from dccd.storage import RunStore; s = RunStore(sys.argv[1]); "
        f"s.register_owner(now_ns={T0}); print(s.owner_id, s.create('stream', state='running'))"
    )
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    owner_id, run_id = child.stdout.split()
    checker = owner_store(tmp_path, T0 + S)
    assert checker.mark_orphans(now_ns=T0 + 2 * S) == [run_id]
    run = checker.get(run_id)
    assert run is not None and run.error is not None
    assert run.error.startswith(f"orphaned: owner {owner_id} exited (pid ")


def test_own_lease_is_never_judged_and_unknown_owners_are(tmp_path: Path) -> None:
    """A store never fails its own runs, however old its heartbeat; a run naming a missing owner row is failed."""
    store = owner_store(tmp_path)
    mine = store.create("stream", TRADES, state="running")
    other = owner_store(tmp_path)
    ghost = other.create("stream", TRADES, state="running")
    with sqlite3.connect(store.path) as con:
        con.execute("DELETE FROM owners WHERE owner_id = ?", (other.owner_id,))
    assert store.mark_orphans(now_ns=T0 + 100 * TTL_NS) == [ghost]
    assert store.get(ghost).error == f"orphaned: owner {other.owner_id} unknown"  # type: ignore[union-attr]
    assert store.get(mine).state == "running"  # type: ignore[union-attr]


def test_old_owner_rows_are_pruned_once_their_runs_ended(tmp_path: Path) -> None:
    """Owner rows a week past their last heartbeat go away (after their runs were failed); younger ones stay."""
    old = owner_store(tmp_path)
    recent = owner_store(tmp_path, T0 + S)
    checker = owner_store(tmp_path, T0 + OWNER_RETENTION_NS)
    run_id = old.create("compact", state="running")
    assert checker.mark_orphans(now_ns=T0 + OWNER_RETENTION_NS + S // 2) == [run_id]
    assert [o[0] for o in checker.owners()] == [recent.owner_id, checker.owner_id]
    assert checker.mark_orphans(now_ns=T0 + OWNER_RETENTION_NS + 2 * S) == []
    assert [o[0] for o in checker.owners()] == [checker.owner_id]


_OLD_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    exchange TEXT, symbol TEXT, data_type TEXT, span TEXT,
    state TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '{}',
    rows_written INTEGER NOT NULL DEFAULT 0,
    rows_quarantined INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_ns INTEGER NOT NULL, started_ns INTEGER, ended_ns INTEGER,
    pid INTEGER NOT NULL, host TEXT NOT NULL
);
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_created ON runs (created_ns);
CREATE TABLE run_gaps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    kind TEXT NOT NULL, lo INTEGER, hi INTEGER, detail TEXT NOT NULL DEFAULT '', at_ns INTEGER NOT NULL
);
"""


def test_an_old_schema_database_is_migrated_and_its_runs_keep_the_pid_check(tmp_path: Path) -> None:
    """A runs.db without owners gains them on open; its ownerless runs are judged by pid, new runs get an owner."""
    path = tmp_path / "_dccd" / "runs.db"
    path.parent.mkdir()
    host = socket.gethostname()
    with sqlite3.connect(path) as con:
        con.executescript(_OLD_SCHEMA)
        rows = [
            ("gone", "running", dead_pid(), host),
            ("here", "running", os.getpid(), host),
            ("elsewhere", "running", dead_pid(), "another-host"),
            ("done", "succeeded", dead_pid(), host),
        ]
        con.executemany(
            "INSERT INTO runs (run_id, operation, state, created_ns, pid, host) VALUES (?, 'backfill', ?, 1, ?, ?)",
            rows,
        )
        con.execute("INSERT INTO run_gaps (run_id, kind, lo, hi, at_ns) VALUES ('done', 'gap', 1, 2, 3)")
    stores = [RunStore(tmp_path) for _ in range(2)]
    assert [s.get("here").owner_id for s in stores] == [None, None]  # type: ignore[union-attr]  # migrating twice is fine
    store = stores[0]
    assert store.mark_orphans(now_ns=T0) == ["gone"]
    assert store.get("gone").error == ORPHAN_ERROR  # type: ignore[union-attr]
    assert [(r.run_id, r.state) for r in store.list_runs()][::-1] == [
        ("gone", "failed"),
        ("here", "running"),
        ("elsewhere", "running"),
        ("done", "succeeded"),
    ]
    assert [(e.lo, e.hi) for e in store.events("done")] == [(1, 2)]
    owner_id = store.register_owner(now_ns=T0)
    new = store.create("stream", TRADES)
    assert store.start(new, now_ns=T0)
    assert store.get(new).owner_id == owner_id  # type: ignore[union-attr]
    with sqlite3.connect(path) as con:
        assert "owner_id" in {r[1] for r in con.execute("PRAGMA table_info(runs)")}
        assert con.execute("SELECT count(*) FROM owners").fetchone() == (1,)
