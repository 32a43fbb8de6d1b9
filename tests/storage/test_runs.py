"""Run history: lifecycle, progress, events, filters, orphans, async wrappers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dccd.storage import RunStore
from dccd.storage.runs import ORPHAN_ERROR

from .helpers import OHLC_1M, TRADES


def test_run_lifecycle_progress_and_counts(tmp_path: Path) -> None:
    """A run goes pending -> running -> succeeded, merging progress and adding row counts."""
    store = RunStore(tmp_path)
    rid = store.create("backfill", OHLC_1M, now_ns=10)
    assert store.get(rid) is not None and store.get(rid).state == "pending"  # type: ignore[union-attr]
    assert store.start(rid, now_ns=20) and not store.start(rid)
    store.progress(rid, done=5, total=10, unit="bars", pages=1)
    store.progress(rid, done=8, rows=800)
    store.add_rows(rid, written=800, quarantined=2)
    store.add_rows(rid, written=100)
    assert store.finish(rid, "succeeded", now_ns=30)
    assert not store.finish(rid, "failed", error="late")  # terminal states stick
    run = store.get(rid)
    assert run is not None
    assert (run.state, run.started_ns, run.ended_ns, run.error) == ("succeeded", 20, 30, None)
    assert run.progress == {"done": 8, "total": 10, "unit": "bars", "pages": 1, "rows": 800}
    assert (run.rows_written, run.rows_quarantined) == (900, 2)
    assert (run.exchange, run.symbol, run.data_type, run.span) == ("binance", "BTC/USDT", "ohlc", "1m")


def test_events_record_gaps_fills_and_reconnects(tmp_path: Path) -> None:
    """A stream run lists its reconnects and filled ranges in order."""
    store = RunStore(tmp_path)
    rid = store.create("stream", TRADES, state="running")
    store.event(rid, "reconnect", detail="1006 abnormal closure")
    store.event(rid, "gap", 100, 200, "ids missing after reconnect")
    store.event(rid, "filled", 100, 200, "rest")
    assert [(e.kind, e.lo, e.hi) for e in store.events(rid)] == [
        ("reconnect", None, None),
        ("gap", 100, 200),
        ("filled", 100, 200),
    ]
    with pytest.raises(ValueError, match="gap filled reconnect"):
        store.event(rid, "hole")


def test_list_filters_by_state_newest_first_with_limit(tmp_path: Path) -> None:
    """list_runs returns newest first, filtered by state and capped by limit."""
    store = RunStore(tmp_path)
    ids = [store.create("backfill", OHLC_1M, now_ns=i) for i in range(5)]
    store.finish(ids[1], "failed", error="boom")
    assert [r.run_id for r in store.list_runs()] == ids[::-1]
    assert [r.run_id for r in store.list_runs(state="failed")] == [ids[1]]
    assert len(store.list_runs(limit=2)) == 2
    with pytest.raises(ValueError, match="not a run state"):
        store.list_runs(state="done")


def test_bad_operation_and_states_are_rejected(tmp_path: Path) -> None:
    """Unknown operations, initial or final states raise ValueError with the choices."""
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="backfill stream compact"):
        store.create("sync")
    with pytest.raises(ValueError, match="pending or running"):
        store.create("backfill", state="succeeded")
    with pytest.raises(ValueError, match="final state"):
        store.finish(store.create("compact"), "running")


def test_orphans_of_dead_processes_are_failed_but_live_ones_kept(tmp_path: Path) -> None:
    """mark_orphans fails running runs whose process exited, and leaves this process's runs alone."""
    store = RunStore(tmp_path)
    mine = store.create("stream", TRADES, state="running")
    code = (
        "import sys; from dccd.storage import RunStore; "
        "print(RunStore(sys.argv[1]).create('backfill', state='running'))"
    )
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    orphan = child.stdout.strip()
    assert store.mark_orphans(now_ns=99) == [orphan]
    run = store.get(orphan)
    assert run is not None and (run.state, run.error, run.ended_ns) == ("failed", ORPHAN_ERROR, 99)
    assert store.get(mine).state == "running"  # type: ignore[union-attr]
    assert store.mark_orphans() == []


def test_database_is_wal_under_meta_dir(tmp_path: Path) -> None:
    """The history lives in {root}/_dccd/runs.db in WAL mode; construction alone creates nothing."""
    store = RunStore(tmp_path)
    assert not store.path.exists()
    store.create("compact")
    assert store.path == tmp_path / "_dccd" / "runs.db"
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_async_wrappers(tmp_path: Path) -> None:
    """The a* methods do the same work from Trio via worker threads."""
    store = RunStore(tmp_path)
    rid = await store.acreate("backfill", OHLC_1M)
    assert await store.astart(rid)
    await store.aprogress(rid, done=1, total=2, unit="bars")
    await store.aadd_rows(rid, 5, 1)
    await store.aevent(rid, "gap", 1, 2)
    assert await store.afinish(rid, "cancelled")
    run = await store.aget(rid)
    assert run is not None and run.state == "cancelled" and run.rows_written == 5
    assert [r.run_id for r in await store.alist_runs(state="cancelled")] == [rid]
    assert len(await store.aevents(rid)) == 1
    assert await store.amark_orphans() == []


def test_run_states_are_an_enum_with_the_stored_values(tmp_path: Path) -> None:
    """Run states are a StrEnum whose values are what the database, the JSON and the CLI show (unchanged);
    a stored run reads back as the enum member."""
    import msgspec

    from dccd.storage.runs import STATES, TERMINAL, RunState

    assert [s.value for s in STATES] == ["pending", "running", "succeeded", "partial", "failed", "cancelled"]
    assert {"succeeded", "partial", "failed", "cancelled"} == TERMINAL
    store = RunStore(tmp_path)
    rid = store.create("backfill", OHLC_1M, now_ns=10)
    assert store.finish(rid, RunState.PARTIAL, error="half", now_ns=20)
    run = store.get(rid)
    assert run is not None and run.state is RunState.PARTIAL
    assert msgspec.json.decode(msgspec.json.encode(run))["state"] == "partial"
    con = sqlite3.connect(store.path)
    assert con.execute("SELECT state FROM runs WHERE run_id = ?", (rid,)).fetchone() == ("partial",)
    con.close()
