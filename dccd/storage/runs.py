"""Run history in SQLite (WAL) at ``{root}/_dccd/runs.db``.

Tables: ``runs`` (one row per backfill/stream/compaction) and ``run_gaps``
(per-run events: ``gap`` = a range known missing, ``filled`` = a range
refilled, ``reconnect`` = a stream reconnected, ``unavailable`` = a requested
range the exchange no longer serves, e.g. older than its recent history). The sync methods open one
connection per call, so any thread may use them; the ``a*`` methods run them
in a Trio worker thread so the event loop never blocks on the disk.

Ownership: a process using the store registers an *owner* (table ``owners``:
id, pid, host, start and heartbeat times, wall-clock ns) and renews its lease
every :data:`LEASE_HEARTBEAT_S`; the runs it creates or starts name that
``owner_id``. :meth:`RunStore.mark_orphans`, called at start and every
:data:`ORPHAN_CHECK_S` by any process, fails the open runs of owners whose
heartbeat is older than :data:`LEASE_TTL_S` (``orphaned: owner <id> stopped
heartbeating``), so a zombie or a reused pid cannot keep a run ``running``; an
owner on this host whose pid is gone is failed at once. Runs written before
owners existed (no ``owner_id``) keep the old check: their pid on this host.
Databases of the old schema gain the column and table on first open.

Over 500 lines for one reason: one SQLite schema, its queries and the async twin of each query.
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
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import trio

from dccd.domain import DatasetId
from dccd.domain.gaps import merge_ranges
from dccd.storage.layout import meta_dir
from dccd.storage.writer import pid_alive

T = TypeVar("T")
Offload = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking call off the Trio thread (default ``trio.to_thread.run_sync``; tests may run it inline)."""


class RunState(StrEnum):
    """A run's state; the values are what the database, the API and the CLI show."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    """Finished, but part of the requested range is not served by the exchange (``unavailable`` events)."""
    FAILED = "failed"
    CANCELLED = "cancelled"


STATES: Final[tuple[RunState, ...]] = tuple(RunState)
TERMINAL: Final[frozenset[RunState]] = frozenset(
    {RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED, RunState.CANCELLED}
)
OPERATIONS: Final[tuple[str, ...]] = ("backfill", "stream", "compact", "import")
EVENT_KINDS: Final[tuple[str, ...]] = (
    "gap",
    "filled",
    "reconnect",
    "unavailable",
    "archive_missing",
    "archive_failed",
    "dead_letter",
)
ORPHAN_ERROR: Final[str] = "orphaned: process exited"
LEASE_HEARTBEAT_S: Final[float] = 10.0
"""How often a process renews its owner lease."""
LEASE_TTL_S: Final[float] = 60.0
"""An owner whose heartbeat is older than this is dead; its open runs are failed."""
ORPHAN_CHECK_S: Final[float] = 30.0
"""How often a long-lived process (serve) looks for dead owners."""
OWNER_RETENTION_NS: Final[int] = 7 * 86_400 * 1_000_000_000
"""Owner rows without open runs are deleted this long after their last heartbeat."""

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
    pid INTEGER NOT NULL, host TEXT NOT NULL,
    owner_id TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_ns);
CREATE TABLE IF NOT EXISTS run_gaps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    kind TEXT NOT NULL, lo INTEGER, hi INTEGER, detail TEXT NOT NULL DEFAULT '', at_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS run_gaps_run ON run_gaps (run_id);
CREATE TABLE IF NOT EXISTS owners (
    owner_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL, host TEXT NOT NULL,
    started_ns INTEGER NOT NULL, heartbeat_ns INTEGER NOT NULL,
    dead_ns INTEGER
);
"""
_COLUMNS: Final[str] = (
    "run_id, operation, exchange, symbol, data_type, span, state, progress, rows_written, rows_quarantined,"
    " error, created_ns, started_ns, ended_ns, pid, host, owner_id"
)
_OPEN: Final[str] = "state IN ('pending', 'running')"


class RunRecord(msgspec.Struct, frozen=True):
    """One run as stored; ``progress`` holds done/total/unit/pages/rows (whatever was reported).

    ``owner_id`` names the process lease (``owners`` row) the run belongs to; None for runs
    recorded before leases existed or by a store that registered no owner (``pid`` decides then).
    """

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
    owner_id: str | None = None


class RunEvent(msgspec.Struct, frozen=True):
    """A gap, filled range or reconnect recorded for a run (``lo``/``hi`` in the run's units)."""

    seq: int
    run_id: str
    kind: str
    lo: int | None
    hi: int | None
    detail: str
    at_ns: int


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a database of an older schema up to date (idempotent; safe when two processes open it at once)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        if "owner_id" not in {row[1] for row in con.execute("PRAGMA table_info(runs)")}:
            con.execute("ALTER TABLE runs ADD COLUMN owner_id TEXT")
        con.execute("CREATE INDEX IF NOT EXISTS runs_owner ON runs (owner_id)")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class RunStore:
    """Run history of one lake. Construction does no I/O; the file is created on first use."""

    def __init__(self, root: Path | str, *, offload: Offload | None = None) -> None:
        self.path = meta_dir(Path(root)) / "runs.db"
        self._offload: Offload = offload or trio.to_thread.run_sync
        self._ready = False
        self._lock = threading.Lock()
        self.owner_id: str | None = None
        """This process's lease (:meth:`register_owner`); runs created or started here reference it."""

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                    try:
                        con.execute("PRAGMA journal_mode=WAL")
                        con.executescript(_SCHEMA)
                        _migrate(con)
                    finally:
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
        state: RunState = RunState.PENDING,
        now_ns: int | None = None,
    ) -> str:
        """Record a new run and return its id.

        Raises:
            ValueError: unknown operation or state.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"{operation!r} is not an operation ({' '.join(OPERATIONS)})")
        if state not in (RunState.PENDING, RunState.RUNNING):
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
            " pid, host, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                operation,
                *ds,
                state,
                now,
                now if state == RunState.RUNNING else None,
                os.getpid(),
                socket.gethostname(),
                self.owner_id,
            ),
        )
        return run_id

    def start(self, run_id: str, *, now_ns: int | None = None) -> bool:
        """pending -> running, owned by this process; False if the run is not pending."""
        now = time.time_ns() if now_ns is None else now_ns
        n = self._write(
            "UPDATE runs SET state = 'running', started_ns = ?, pid = ?, host = ?, owner_id = ?"
            " WHERE run_id = ? AND state = 'pending'",
            (now, os.getpid(), socket.gethostname(), self.owner_id, run_id),
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

    def finish(self, run_id: str, state: RunState, *, error: str | None = None, now_ns: int | None = None) -> bool:
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

    def match_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Run ids starting with ``prefix`` (the short ids the CLI and UI show), newest first, at most ``limit``.

        An id equal to ``prefix`` is the only answer: a full id never becomes ambiguous.
        """
        if not prefix or not self.path.exists():
            return []
        con = self._connect()
        try:
            if con.execute("SELECT 1 FROM runs WHERE run_id = ?", (prefix,)).fetchone():
                return [prefix]
            rows = con.execute(
                "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY created_ns DESC, rowid DESC LIMIT ?",
                (len(prefix), prefix, limit),
            ).fetchall()
        finally:
            con.close()
        return [r[0] for r in rows]

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

    def dataset_history(self, dataset: DatasetId) -> list[tuple[RunRecord, list[RunEvent]]]:
        """Every backfill/stream run of ``dataset`` (multi-symbol streams included) with its events, oldest
        first; a multi-symbol stream keeps only the gap/filled events of this symbol (their detail starts
        ``SYMBOL: ``) and its reconnects. Empty when the lake has no run history."""
        if not self.path.exists():
            return []
        sym = str(dataset.symbol)
        span = dataset.span.label if dataset.span else ""
        runs = self._query(
            f"SELECT {_COLUMNS} FROM runs WHERE operation IN ('backfill', 'stream') AND exchange = ?"
            " AND data_type = ? AND coalesce(span, '') = ? AND (symbol = ? OR ',' || symbol || ',' LIKE ?)"
            " ORDER BY created_ns, rowid",
            (dataset.exchange, dataset.data_type.value, span, sym, f"%,{sym},%"),
        )
        out = []
        for r in runs:
            events = self.events(r.run_id)
            if r.symbol != sym:
                events = [e for e in events if e.kind == "reconnect" or e.detail.startswith(f"{sym}: ")]
            out.append((r, events))
        return out

    def set_symbols(self, run_id: str, symbols: str) -> None:
        """Name several symbols on one run (a multi-symbol stream): ``BTC/USDT,ETH/BTC``."""
        self._write("UPDATE runs SET symbol = ? WHERE run_id = ?", (symbols, run_id))

    def register_owner(self, *, now_ns: int | None = None) -> str:
        """Take a new lease for this process; runs created or started through this store will name it.

        Returns:
            The new ``owner_id`` (also kept in :attr:`owner_id`).
        """
        now = time.time_ns() if now_ns is None else now_ns
        owner_id = uuid.uuid4().hex[:16]
        self._write(
            "INSERT INTO owners (owner_id, pid, host, started_ns, heartbeat_ns) VALUES (?, ?, ?, ?, ?)",
            (owner_id, os.getpid(), socket.gethostname(), now, now),
        )
        self.owner_id = owner_id
        return owner_id

    def heartbeat(self, *, now_ns: int | None = None) -> bool:
        """Renew this process's lease; False if there is none or another process already declared it dead.

        A lease is declared dead when its heartbeat was older than the TTL at some
        process's check (this one was frozen or starved): its open runs were failed then.
        """
        if self.owner_id is None:
            return False
        now = time.time_ns() if now_ns is None else now_ns
        n = self._write(
            "UPDATE owners SET heartbeat_ns = ? WHERE owner_id = ? AND dead_ns IS NULL", (now, self.owner_id)
        )
        return n == 1

    def owners(self) -> list[tuple[str, int, str, int, int, int | None]]:
        """Every lease: (owner_id, pid, host, started_ns, heartbeat_ns, dead_ns), oldest first."""
        con = self._connect()
        try:
            rows = con.execute(
                "SELECT owner_id, pid, host, started_ns, heartbeat_ns, dead_ns FROM owners ORDER BY started_ns, rowid"
            ).fetchall()
        finally:
            con.close()
        return [tuple(r) for r in rows]

    def mark_orphans(self, *, now_ns: int | None = None, ttl_s: float = LEASE_TTL_S) -> list[str]:
        """Fail the pending/running runs whose owner is gone; return their ids.

        An owner is gone when its heartbeat is older than ``ttl_s`` (whatever its pid
        does: a zombie or a reused pid keeps nothing alive), when it is on this host and
        its pid no longer exists, or when its lease row is missing. This store's own
        lease is never judged. Runs without an owner (older schema) are failed when their
        pid on this host is gone, as before. Safe to run from several processes at once:
        one transaction decides and updates.
        """
        now = time.time_ns() if now_ns is None else now_ns
        stale_before = now - round(ttl_s * 1e9)
        host, me = socket.gethostname(), os.getpid()
        failed: list[str] = []
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")  # a heartbeat cannot slip between the check and the update
            try:
                open_owners = con.execute(
                    "SELECT r.owner_id, o.pid, o.host, o.heartbeat_ns, o.dead_ns FROM runs r"
                    f" LEFT JOIN owners o ON o.owner_id = r.owner_id WHERE r.{_OPEN} AND r.owner_id IS NOT NULL"
                    " GROUP BY r.owner_id"
                ).fetchall()
                verdicts: dict[str, str] = {}
                for owner_id, pid, ohost, heartbeat_ns, dead_ns in open_owners:
                    if owner_id == self.owner_id:
                        continue
                    if heartbeat_ns is None:
                        verdicts[owner_id] = f"orphaned: owner {owner_id} unknown"
                    elif dead_ns is not None or heartbeat_ns < stale_before:
                        verdicts[owner_id] = f"orphaned: owner {owner_id} stopped heartbeating"
                    elif ohost == host and pid != me and not pid_alive(pid):
                        verdicts[owner_id] = f"orphaned: owner {owner_id} exited (pid {pid})"
                for owner_id, error in verdicts.items():
                    ids = con.execute(f"SELECT run_id FROM runs WHERE owner_id = ? AND {_OPEN}", (owner_id,)).fetchall()
                    con.execute(
                        f"UPDATE runs SET state = 'failed', error = ?, ended_ns = ? WHERE owner_id = ? AND {_OPEN}",
                        (error, now, owner_id),
                    )
                    con.execute("UPDATE owners SET dead_ns = ? WHERE owner_id = ? AND dead_ns IS NULL", (now, owner_id))
                    failed.extend(r[0] for r in ids)
                legacy = con.execute(
                    f"SELECT run_id, pid, host FROM runs WHERE owner_id IS NULL AND {_OPEN}"
                ).fetchall()
                for run_id, pid, rhost in legacy:
                    if rhost == host and pid != me and not pid_alive(pid):
                        con.execute(
                            "UPDATE runs SET state = 'failed', error = ?, ended_ns = ? WHERE run_id = ?",
                            (ORPHAN_ERROR, now, run_id),
                        )
                        failed.append(run_id)
                con.execute(
                    f"DELETE FROM owners WHERE heartbeat_ns < ? AND owner_id IS NOT ? AND owner_id NOT IN"
                    f" (SELECT owner_id FROM runs WHERE {_OPEN} AND owner_id IS NOT NULL)",
                    (now - OWNER_RETENTION_NS, self.owner_id),
                )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()
        return failed

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[RunRecord]:
        con = self._connect()
        try:
            rows = con.execute(sql, args).fetchall()
        finally:
            con.close()
        out = []
        for r in rows:
            vals = list(r)
            vals[6] = RunState(vals[6])
            vals[7] = json.loads(vals[7])
            out.append(RunRecord(*vals))
        return out

    # Async wrappers: the same calls in a worker thread.
    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        result: T = await self._offload(functools.partial(fn, *args, **kwargs))
        return result

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

    async def amatch_ids(self, prefix: str, **kwargs: Any) -> list[str]:
        """Async :meth:`match_ids`."""
        return await self._run(self.match_ids, prefix, **kwargs)

    async def alist_runs(self, **kwargs: Any) -> list[RunRecord]:
        """Async :meth:`list_runs`."""
        return await self._run(self.list_runs, **kwargs)

    async def aevents(self, run_id: str) -> list[RunEvent]:
        """Async :meth:`events`."""
        return await self._run(self.events, run_id)

    async def amark_orphans(self, **kwargs: Any) -> list[str]:
        """Async :meth:`mark_orphans`."""
        return await self._run(self.mark_orphans, **kwargs)

    async def aregister_owner(self, **kwargs: Any) -> str:
        """Async :meth:`register_owner`."""
        return await self._run(self.register_owner, **kwargs)

    async def aheartbeat(self, **kwargs: Any) -> bool:
        """Async :meth:`heartbeat`."""
        return await self._run(self.heartbeat, **kwargs)
