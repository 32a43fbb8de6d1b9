"""Run history in SQLite (WAL) at ``{root}/_dccd/runs.db``.

Tables: ``runs`` (one row per backfill/stream/compaction) and ``run_gaps``
(per-run events: ``gap`` = a range known missing, ``filled`` = a range
refilled, ``reconnect`` = a stream reconnected, ``unavailable`` = a requested
range the exchange no longer serves, e.g. older than its recent history). The sync methods open one
connection per call, so any thread may use them; the ``a*`` methods run them
in a Trio worker thread so the event loop never blocks on the disk.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import trio

from dccd.domain import DatasetId
from dccd.domain.gaps import merge_ranges
from dccd.storage.layout import meta_dir

T = TypeVar("T")
STATES: Final[tuple[str, ...]] = ("pending", "running", "succeeded", "partial", "failed", "cancelled")
# partial: finished, but part of the requested range is not served by the exchange (``unavailable`` events)
TERMINAL: Final[frozenset[str]] = frozenset({"succeeded", "partial", "failed", "cancelled"})
OPERATIONS: Final[tuple[str, ...]] = ("backfill", "stream", "compact")
EVENT_KINDS: Final[tuple[str, ...]] = ("gap", "filled", "reconnect", "unavailable")
ORPHAN_ERROR: Final[str] = "orphaned: process exited"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
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
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_ns);
CREATE TABLE IF NOT EXISTS run_gaps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    kind TEXT NOT NULL, lo INTEGER, hi INTEGER, detail TEXT NOT NULL DEFAULT '', at_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS run_gaps_run ON run_gaps (run_id);
"""
_COLUMNS: Final[str] = (
    "run_id, operation, exchange, symbol, data_type, span, state, progress, rows_written, rows_quarantined,"
    " error, created_ns, started_ns, ended_ns, pid, host"
)


class RunRecord(msgspec.Struct, frozen=True):
    """One run as stored; ``progress`` holds done/total/unit/pages/rows (whatever was reported)."""

    run_id: str
    operation: str
    exchange: str | None
    symbol: str | None
    data_type: str | None
    span: str | None
    state: str
    progress: dict[str, Any]
    rows_written: int
    rows_quarantined: int
    error: str | None
    created_ns: int
    started_ns: int | None
    ended_ns: int | None
    pid: int
    host: str


class RunEvent(msgspec.Struct, frozen=True):
    """A gap, filled range or reconnect recorded for a run (``lo``/``hi`` in the run's units)."""

    seq: int
    run_id: str
    kind: str
    lo: int | None
    hi: int | None
    detail: str
    at_ns: int


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """Run history of one lake. Construction does no I/O; the file is created on first use."""

    def __init__(self, root: Path | str) -> None:
        self.path = meta_dir(Path(root)) / "runs.db"
        self._ready = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    con = sqlite3.connect(self.path, timeout=30)
                    con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                    con.close()
                    self._ready = True
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        con = self._connect()
        try:
            return con.execute(sql, args).rowcount
        finally:
            con.close()

    def create(
        self,
        operation: str,
        dataset: DatasetId | None = None,
        *,
        run_id: str | None = None,
        state: str = "pending",
        now_ns: int | None = None,
    ) -> str:
        """Record a new run and return its id.

        Raises:
            ValueError: unknown operation or state.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"{operation!r} is not an operation ({' '.join(OPERATIONS)})")
        if state not in ("pending", "running"):
            raise ValueError(f"a new run is pending or running, not {state!r}")
        run_id = run_id or uuid.uuid4().hex
        now = time.time_ns() if now_ns is None else now_ns
        ds = (
            (
                dataset.exchange,
                str(dataset.symbol),
                dataset.data_type.value,
                dataset.span.label if dataset.span else None,
            )
            if dataset
            else (None, None, None, None)
        )
        self._write(
            "INSERT INTO runs (run_id, operation, exchange, symbol, data_type, span, state, created_ns, started_ns,"
            " pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                operation,
                *ds,
                state,
                now,
                now if state == "running" else None,
                os.getpid(),
                socket.gethostname(),
            ),
        )
        return run_id

    def start(self, run_id: str, *, now_ns: int | None = None) -> bool:
        """pending -> running, owned by this process; False if the run is not pending."""
        now = time.time_ns() if now_ns is None else now_ns
        n = self._write(
            "UPDATE runs SET state = 'running', started_ns = ?, pid = ?, host = ? WHERE run_id = ? AND state = 'pending'",
            (now, os.getpid(), socket.gethostname(), run_id),
        )
        return n == 1

    def progress(self, run_id: str, **fields: Any) -> None:
        """Merge ``fields`` (done, total, unit, pages, rows, ...) into the run's progress JSON."""
        self._write("UPDATE runs SET progress = json_patch(progress, ?) WHERE run_id = ?", (json.dumps(fields), run_id))

    def add_rows(self, run_id: str, written: int = 0, quarantined: int = 0) -> None:
        """Add to the run's written and quarantined row counters."""
        self._write(
            "UPDATE runs SET rows_written = rows_written + ?, rows_quarantined = rows_quarantined + ? WHERE run_id = ?",
            (written, quarantined, run_id),
        )

    def event(
        self,
        run_id: str,
        kind: str,
        lo: int | None = None,
        hi: int | None = None,
        detail: str = "",
        *,
        now_ns: int | None = None,
    ) -> None:
        """Record a gap / filled range / reconnect for a run.

        Raises:
            ValueError: unknown kind.
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"{kind!r} is not a run event kind ({' '.join(EVENT_KINDS)})")
        now = time.time_ns() if now_ns is None else now_ns
        self._write(
            "INSERT INTO run_gaps (run_id, kind, lo, hi, detail, at_ns) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, kind, lo, hi, detail, now),
        )

    def finish(self, run_id: str, state: str, *, error: str | None = None, now_ns: int | None = None) -> bool:
        """Move a pending/running run to a terminal state; False if it was already terminal or unknown.

        Raises:
            ValueError: ``state`` is not terminal.
        """
        if state not in TERMINAL:
            raise ValueError(f"{state!r} is not a final state ({' '.join(sorted(TERMINAL))})")
        now = time.time_ns() if now_ns is None else now_ns
        n = self._write(
            "UPDATE runs SET state = ?, error = ?, ended_ns = ? WHERE run_id = ? AND state IN ('pending', 'running')",
            (state, error, now, run_id),
        )
        return n == 1

    def get(self, run_id: str) -> RunRecord | None:
        """One run, or None."""
        rows = self._query(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def list_runs(self, *, state: str | None = None, operation: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs, newest first, optionally filtered.

        Raises:
            ValueError: unknown state.
        """
        if state is not None and state not in STATES:
            raise ValueError(f"{state!r} is not a run state ({' '.join(STATES)})")
        cond, args = [], []
        for col, val in (("state", state), ("operation", operation)):
            if val is not None:
                cond.append(f"{col} = ?")
                args.append(val)
        where = f" WHERE {' AND '.join(cond)}" if cond else ""
        return self._query(
            f"SELECT {_COLUMNS} FROM runs{where} ORDER BY created_ns DESC, rowid DESC LIMIT ?", (*args, limit)
        )

    def events(self, run_id: str) -> list[RunEvent]:
        """A run's events in the order recorded."""
        con = self._connect()
        try:
            rows = con.execute(
                "SELECT seq, run_id, kind, lo, hi, detail, at_ns FROM run_gaps WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        finally:
            con.close()
        return [RunEvent(*r) for r in rows]

    def known_gaps(self, dataset: DatasetId, start_ns: int, end_ns: int, detail_prefix: str) -> list[tuple[int, int]]:
        """Gap ranges earlier backfills of ``dataset`` recorded overlapping [start_ns, end_ns), whose detail starts
        with ``detail_prefix`` (e.g. exchange-confirmed holes), ascending and merged."""
        con = self._connect()
        try:
            rows = con.execute(
                "SELECT g.lo, g.hi FROM run_gaps g JOIN runs r ON r.run_id = g.run_id"
                " WHERE g.kind = 'gap' AND r.operation = 'backfill' AND r.exchange = ? AND r.symbol = ?"
                " AND r.data_type = ? AND coalesce(r.span, '') = ? AND g.hi > ? AND g.lo < ? AND g.detail LIKE ?",
                (
                    dataset.exchange,
                    str(dataset.symbol),
                    dataset.data_type.value,
                    dataset.span.label if dataset.span else "",
                    start_ns,
                    end_ns,
                    detail_prefix.replace("%", "") + "%",
                ),
            ).fetchall()
        finally:
            con.close()
        return merge_ranges([(int(lo), int(hi)) for lo, hi in rows])

    def set_symbols(self, run_id: str, symbols: str) -> None:
        """Name several symbols on one run (a multi-symbol stream): ``BTC/USDT,ETH/BTC``."""
        self._write("UPDATE runs SET symbol = ? WHERE run_id = ?", (symbols, run_id))

    def mark_orphans(self, *, now_ns: int | None = None) -> list[str]:
        """At startup: fail pending/running runs whose process (on this host) is gone; return their ids."""
        host = socket.gethostname()
        open_runs = self._query(f"SELECT {_COLUMNS} FROM runs WHERE state IN ('pending', 'running')", ())
        dead = [r.run_id for r in open_runs if r.host == host and r.pid != os.getpid() and not _pid_alive(r.pid)]
        for run_id in dead:
            self.finish(run_id, "failed", error=ORPHAN_ERROR, now_ns=now_ns)
        return dead

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[RunRecord]:
        con = self._connect()
        try:
            rows = con.execute(sql, args).fetchall()
        finally:
            con.close()
        out = []
        for r in rows:
            vals = list(r)
            vals[7] = json.loads(vals[7])
            out.append(RunRecord(*vals))
        return out

    # Async wrappers: the same calls in a worker thread.
    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def acreate(self, *args: Any, **kwargs: Any) -> str:
        """Async :meth:`create`."""
        return await self._run(self.create, *args, **kwargs)

    async def astart(self, run_id: str, **kwargs: Any) -> bool:
        """Async :meth:`start`."""
        return await self._run(self.start, run_id, **kwargs)

    async def aprogress(self, run_id: str, **fields: Any) -> None:
        """Async :meth:`progress`."""
        await self._run(self.progress, run_id, **fields)

    async def aadd_rows(self, run_id: str, written: int = 0, quarantined: int = 0) -> None:
        """Async :meth:`add_rows`."""
        await self._run(self.add_rows, run_id, written, quarantined)

    async def aevent(self, run_id: str, kind: str, *args: Any, **kwargs: Any) -> None:
        """Async :meth:`event`."""
        await self._run(self.event, run_id, kind, *args, **kwargs)

    async def afinish(self, run_id: str, state: str, **kwargs: Any) -> bool:
        """Async :meth:`finish`."""
        return await self._run(self.finish, run_id, state, **kwargs)

    async def aget(self, run_id: str) -> RunRecord | None:
        """Async :meth:`get`."""
        return await self._run(self.get, run_id)

    async def alist_runs(self, **kwargs: Any) -> list[RunRecord]:
        """Async :meth:`list_runs`."""
        return await self._run(self.list_runs, **kwargs)

    async def aevents(self, run_id: str) -> list[RunEvent]:
        """Async :meth:`events`."""
        return await self._run(self.events, run_id)

    async def amark_orphans(self, **kwargs: Any) -> list[str]:
        """Async :meth:`mark_orphans`."""
        return await self._run(self.mark_orphans, **kwargs)
