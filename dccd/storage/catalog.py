"""The lake's catalog: every committed part, as of a snapshot id (SQLite in WAL mode, ``{root}/_dccd/catalog.db``).

Shaped like DuckLake's ``ducklake_data_file`` table: a part is live from ``begin_snapshot`` until
``end_snapshot`` (NULL while live), the ids being those of the first snapshot that holds it and the
first that does not. A commit records the *next* snapshot id (``last_snapshot + 1``, read in the same
statement or transaction) and never bumps the counter; only ``dccd snapshot create`` does, so the
parts visible at snapshot ``S`` are those with ``begin_snapshot <= S < end_snapshot`` (or live). A
writer's batch is one ``INSERT`` (atomic, no explicit transaction: the streaming writer commits many
small parts a second); a compaction ends its inputs and begins its output in one transaction.

The lake stays plain Hive Parquet: readers list the data tree and never need the catalog. A part a
compaction ends while a snapshot still needs it moves to ``{root}/_dccd/retained/<its path>`` (out of
the data tree, so raw readers never see it twice) and is deleted once no snapshot references it
(:func:`collect`). Where a part lives is derived, not stored: its data-tree path, else its retained path.

Registration follows the file (rename, then register): a crash in between leaves a part the catalog
does not know, which the startup repair (:func:`dccd.storage.snapshots.reconcile`) registers. SQLite
runs with ``synchronous=NORMAL`` (a power cut may lose the newest registrations, never corrupt the
database; the repair restores them from the files). Everything here blocks: call it from worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, NamedTuple

from dccd.errors import StorageError
from dccd.storage import layout

CATALOG_FILE: Final[str] = "catalog.db"
RETAINED_DIR: Final[str] = "retained"
BUSY_TIMEOUT_MS: Final[int] = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO catalog_meta VALUES ('schema_version', 1), ('last_snapshot', 0);
CREATE TABLE IF NOT EXISTS data_file (
    data_file_id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL,
    begin_snapshot INTEGER NOT NULL,
    end_snapshot INTEGER,
    path TEXT NOT NULL,
    path_is_relative INTEGER NOT NULL DEFAULT 1,
    file_format TEXT NOT NULL DEFAULT 'parquet',
    record_count INTEGER NOT NULL,
    file_size_bytes INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    stamp TEXT NOT NULL,
    is_foreign INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL,
    begin_ns INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS data_file_live_path ON data_file(path) WHERE end_snapshot IS NULL;
CREATE INDEX IF NOT EXISTS data_file_ended ON data_file(end_snapshot) WHERE end_snapshot IS NOT NULL;
CREATE TABLE IF NOT EXISTS snapshot (
    snapshot_id INTEGER PRIMARY KEY,
    snapshot_time INTEGER NOT NULL,
    tag TEXT UNIQUE,
    note TEXT
);
"""

_FILE_COLS = (
    "data_file_id, dataset, begin_snapshot, end_snapshot, path, record_count, file_size_bytes, min_ts, max_ts,"
    " checksum, stamp, is_foreign, origin"
)


class NewFile(NamedTuple):
    """A part to register: its path relative to the lake root and what it holds."""

    path: str
    rows: int
    min_ts: int
    max_ts: int
    size: int
    checksum: str
    stamp: str
    foreign: bool = False


class DataFile(NamedTuple):
    """One row of the catalog's ``data_file`` table."""

    data_file_id: int
    dataset: str
    begin_snapshot: int
    end_snapshot: int | None
    path: str
    rows: int
    size: int
    min_ts: int
    max_ts: int
    checksum: str
    stamp: str
    foreign: bool
    origin: str


class Snapshot(NamedTuple):
    """A retained snapshot: its id (a commit id), wall-clock time (ns UTC), optional tag and note."""

    snapshot_id: int
    time_ns: int
    tag: str | None
    note: str | None


def catalog_path(root: Path) -> Path:
    """``{root}/_dccd/catalog.db``."""
    return layout.meta_dir(root) / CATALOG_FILE


def retained_path(root: Path, rel: str) -> Path:
    """Where a part ended by a compaction but still in a snapshot is kept."""
    return layout.meta_dir(root) / RETAINED_DIR / rel


def locate(root: Path, rel: str) -> Path | None:
    """The file of catalog path ``rel``: in the data tree, else among the retained parts, else None."""
    for path in (root / rel, retained_path(root, rel)):
        if path.exists():
            return path
    return None


def dataset_rel(root: Path, part: Path | str) -> str:
    """Catalog dataset key of a part path: its dataset directory relative to the root (e.g. ``trades/exchange=x/symbol=A-B``)."""
    return str(Path(part).parent.parent.relative_to(root))


def checksum_file(path: Path | str) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def checksum_fd(fd: int, size: int) -> str:
    """:func:`checksum_file` of an open file of ``size`` bytes (read from the page cache right after a write)."""
    h, pos = hashlib.sha256(), 0
    while pos < size:
        chunk = os.pread(fd, min(1 << 22, size - pos), pos)
        if not chunk:
            break
        h.update(chunk)
        pos += len(chunk)
    return "sha256:" + h.hexdigest()


class _Db:
    """One connection per process and lake, shared by threads under a lock (SQLite serialises writers anyway)."""

    __slots__ = ("con", "lock", "pid")

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self.con.executescript(_SCHEMA)


_dbs: dict[str, _Db] = {}
_dbs_lock = threading.Lock()


def _db(root: Path) -> _Db:
    key = os.path.abspath(root)
    db = _dbs.get(key)
    if db is not None and db.pid == os.getpid():
        return db
    with _dbs_lock:
        db = _dbs.get(key)
        if db is None or db.pid != os.getpid():  # first use, or a forked child
            db = _dbs[key] = _Db(catalog_path(root))
        return db


def forget(root: Path) -> None:
    """Close this process's connection to the catalog of ``root`` (before deleting or replacing the file)."""
    key = os.path.abspath(root)
    with _dbs_lock:
        db = _dbs.pop(key, None)
    if db is not None:
        with db.lock:
            db.con.close()


@contextlib.contextmanager
def transaction(root: Path, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """A transaction on the catalog of ``root`` (``BEGIN IMMEDIATE`` when writing).

    Raises:
        StorageError: SQLite failed (disk full, locked longer than the busy timeout, a damaged file).
    """
    try:
        db = _db(root)
        with db.lock:
            db.con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db.con
            except BaseException:
                db.con.execute("ROLLBACK")
                raise
            db.con.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StorageError(f"catalog {catalog_path(root)}: {exc}") from exc


_PENDING = "(SELECT value + 1 FROM catalog_meta WHERE key = 'last_snapshot')"
_INSERT = (
    "INSERT OR IGNORE INTO data_file (dataset, begin_snapshot, path, record_count, file_size_bytes, min_ts,"
    " max_ts, checksum, stamp, is_foreign, origin, begin_ns) "
)
_ROW = "(?,?,?,?,?,?,?,?,?,?,?)"


def pending_snapshot(con: sqlite3.Connection) -> int:
    """The id the next snapshot will take: what a commit records as its parts' begin or end."""
    return int(con.execute(_PENDING[1:-1]).fetchone()[0])


def _values(dataset: str, files: Sequence[NewFile], origin: str) -> list[object]:
    now = time.time_ns()
    out: list[object] = []
    for f in files:
        out += [dataset, f.path, f.rows, f.size, f.min_ts, f.max_ts, f.checksum, f.stamp, int(f.foreign), origin, now]
    return out


def insert_files(con: sqlite3.Connection, dataset: str, files: Sequence[NewFile], origin: str) -> int:
    """Register ``files`` as live from the pending snapshot, in one statement; a path already live is left
    as it is. Returns rows inserted."""
    inserted = 0
    for i in range(0, len(files), 500):  # bound the statement's parameters
        chunk = files[i : i + 500]
        sql = (
            _INSERT + f"SELECT column1, {_PENDING}, column2, column3, column4, column5, column6, column7, column8,"
            f" column9, column10, column11 FROM (VALUES {','.join([_ROW] * len(chunk))})"
        )
        inserted += con.execute(sql, _values(dataset, chunk, origin)).rowcount
    return inserted


def end_files(con: sqlite3.Connection, paths: Iterable[str]) -> int:
    """End the live rows of ``paths`` at the pending snapshot. Returns rows ended."""
    sql = f"UPDATE data_file SET end_snapshot = {_PENDING} WHERE path = ? AND end_snapshot IS NULL"
    return con.executemany(sql, [(p,) for p in paths]).rowcount


def register(root: Path, dataset: str, files: Sequence[NewFile], origin: str) -> None:
    """Register freshly committed parts (the writer's commit): one atomic statement, no explicit transaction.

    Raises:
        StorageError: SQLite failed.
    """
    try:
        db = _db(root)
        with db.lock:
            insert_files(db.con, dataset, files, origin)
    except sqlite3.Error as exc:
        raise StorageError(f"catalog {catalog_path(root)}: {exc}") from exc


def commit_merge(root: Path, dataset: str, output: NewFile, inputs: Sequence[str]) -> None:
    """A compaction's commit: ``output`` begins and ``inputs`` (catalog paths) end at the pending snapshot.

    Idempotent (a journal replay runs it again): a live output stays, ended inputs stay ended.
    """
    with transaction(root) as con:
        insert_files(con, dataset, [output], "compaction")
        end_files(con, inputs)


_REFERENCED = (
    "EXISTS (SELECT 1 FROM snapshot s WHERE s.snapshot_id >= f.begin_snapshot AND s.snapshot_id < f.end_snapshot)"
)


def retire(root: Path, paths: Sequence[str]) -> list[Path]:
    """Take ended parts out of the data tree (a compaction's inputs, after :func:`commit_merge`).

    A part some snapshot still needs moves to the retained area; any other is deleted with its row.
    Call under the dataset's exclusive listing lock. Returns the data-tree paths removed.
    """
    if not paths:
        return []
    with transaction(root, write=False) as con:
        keep = set()
        for p in paths:
            row = con.execute(
                f"SELECT 1 FROM data_file f WHERE f.path = ? AND f.end_snapshot IS NOT NULL AND {_REFERENCED}", (p,)
            ).fetchone()
            if row is not None:
                keep.add(p)
    removed: list[Path] = []
    for p in paths:
        src = root / p
        try:
            if p in keep:
                dest = retained_path(root, p)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dest)
            else:
                os.unlink(src)
        except FileNotFoundError:
            continue
        removed.append(src)
    gone = [p for p in paths if p not in keep]
    if gone:
        with transaction(root) as con:
            con.executemany("DELETE FROM data_file WHERE path = ? AND end_snapshot IS NOT NULL", [(p,) for p in gone])
    return removed


def collect(root: Path) -> list[str]:
    """Delete the ended parts no retained snapshot references (files and rows); return their catalog paths.

    Only the retained area is touched, never the data tree (a file there under an ended row's path is a
    compaction input whose journal replay retires it, or a file put back by hand, registered by the next
    repair once its old row is gone). A deletion interrupted by a crash is finished by the next call.
    """
    with transaction(root, write=False) as con:
        rows = con.execute(
            f"SELECT data_file_id, path FROM data_file f WHERE f.end_snapshot IS NOT NULL AND NOT {_REFERENCED}"
        ).fetchall()
    for _id, rel in rows:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(retained_path(root, rel))
    if rows:
        with transaction(root) as con:
            con.executemany(
                f"DELETE FROM data_file AS f WHERE data_file_id = ? AND NOT {_REFERENCED}", [(r[0],) for r in rows]
            )
    return [r[1] for r in rows]


def _file(row: tuple[object, ...]) -> DataFile:
    f = DataFile(*row)  # type: ignore[arg-type]
    return f._replace(foreign=bool(f.foreign))


def files_at(root: Path, snap: int | None, dataset: str | None = None) -> list[DataFile]:
    """Rows visible at snapshot id ``snap`` (None: the live rows), of one dataset or all, by dataset then stamp."""
    where = ["(end_snapshot IS NULL" + (" OR end_snapshot > :snap)" if snap is not None else ")")]
    if snap is not None:
        where.append("begin_snapshot <= :snap")
    if dataset is not None:
        where.append("dataset = :ds")
    sql = f"SELECT {_FILE_COLS} FROM data_file WHERE {' AND '.join(where)} ORDER BY dataset, stamp"
    with transaction(root, write=False) as con:
        return [_file(r) for r in con.execute(sql, {"snap": snap, "ds": dataset}).fetchall()]


def rows_by_path(root: Path, dataset: str) -> dict[str, DataFile]:
    """Every row of ``dataset`` (live and ended) by path; the live one wins for a reused path."""
    with transaction(root, write=False) as con:
        rows = con.execute(
            f"SELECT {_FILE_COLS} FROM data_file WHERE dataset = ? ORDER BY end_snapshot IS NULL", (dataset,)
        ).fetchall()
    return {f.path: f for f in map(_file, rows)}


def datasets(root: Path) -> list[str]:
    """Datasets the catalog has rows for."""
    with transaction(root, write=False) as con:
        return [r[0] for r in con.execute("SELECT DISTINCT dataset FROM data_file ORDER BY dataset")]


def last_snapshot(root: Path) -> int:
    """The newest snapshot id taken (0 before the first)."""
    with transaction(root, write=False) as con:
        return int(con.execute("SELECT value FROM catalog_meta WHERE key = 'last_snapshot'").fetchone()[0])


def exists(root: Path) -> bool:
    """Whether the lake has a catalog file."""
    return catalog_path(root).exists()
