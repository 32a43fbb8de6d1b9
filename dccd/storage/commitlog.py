"""The catalog of an object-store lake: an append-only commit log in the store, replayed into a local SQLite cache.

Each catalog change is one object ``{prefix}/_dccd/log/{seq:020d}.json`` (msgspec JSON): files added to a
dataset (a writer's batch), a merge (a compaction's output begins, its inputs end), a snapshot taken or
dropped, ended files forgotten once their objects are deleted. Committing is a put-if-absent of the next
sequence number: when another writer took it (HTTP 412) the log tail is replayed, the change checked again
against the new state (a merge whose inputs someone else ended is refused: :class:`Conflict`) and the next
number tried. So the log is one total order every process agrees on, and nothing a writer committed is lost.

The local cache is the lake catalog's own SQLite schema (:mod:`dccd.storage.catalog`) under the lake's
local root, plus the last applied sequence number (``catalog_meta.log_seq``): a reader lists the log after
that number and applies what is new (one LIST request when nothing is), in one SQLite transaction, so
several processes sharing a cache directory never apply an entry twice. Replay is deterministic: an entry
that is not valid against the state before it (a merge of ended inputs, a taken tag) is skipped by every
replayer, exactly as its committer was told.

Every :data:`CHECKPOINT_EVERY`-th entry's committer also stores the whole catalog after it
(``_dccd/checkpoint/{seq:020d}.json``); an empty cache loads the newest checkpoint and replays only what follows.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Final

import msgspec

from dccd.errors import StorageError
from dccd.storage import catalog
from dccd.storage.objstore import ObjectStore

LOG_DIR: Final[str] = "_dccd/log"
CHECKPOINT_DIR: Final[str] = "_dccd/checkpoint"
MAX_ATTEMPTS: Final[int] = 200
COMMIT_DEADLINE_S: Final[float] = 600.0
"""A commit gives up after this long (well inside the orphan sweep's age, so a part it names is never swept)."""
CHECKPOINT_EVERY = 1000
"""The writer of every this-many-th entry also stores the whole catalog as it stands after it, so a new
machine loads that and replays only the entries after it."""


class FileEntry(msgspec.Struct, frozen=True):
    """A part: lake-relative path and what it holds."""

    path: str
    rows: int
    min_ts: int
    max_ts: int
    size: int
    checksum: str
    stamp: str

    def new_file(self) -> catalog.NewFile:
        return catalog.NewFile(self.path, self.rows, self.min_ts, self.max_ts, self.size, self.checksum, self.stamp)


class AddFiles(msgspec.Struct, frozen=True, tag="add"):
    """A writer's batch: ``files`` join ``dataset`` (live from the pending snapshot)."""

    dataset: str
    files: list[FileEntry]
    origin: str
    time_ns: int


class Merge(msgspec.Struct, frozen=True, tag="merge"):
    """A compaction: ``output`` begins and ``inputs`` (all live) end, at one snapshot id."""

    dataset: str
    output: FileEntry
    inputs: list[str]
    time_ns: int


class SnapshotTaken(msgspec.Struct, frozen=True, tag="snapshot"):
    """``dccd snapshot create``: the pending snapshot id becomes a retained snapshot."""

    time_ns: int
    tag: str | None = None
    note: str | None = None


class SnapshotsDropped(msgspec.Struct, frozen=True, tag="drop"):
    """Retained snapshots dropped (their parts become collectable)."""

    snapshot_ids: list[int]


class Forgotten(msgspec.Struct, frozen=True, tag="forget"):
    """Ended parts whose objects were deleted: their rows leave the catalog."""

    paths: list[str]


Entry = AddFiles | Merge | SnapshotTaken | SnapshotsDropped | Forgotten


class Record(msgspec.Struct, frozen=True):
    """One log object: the change and who committed it."""

    entry: Entry
    writer: str


class Checkpoint(msgspec.Struct, frozen=True):
    """The catalog after entry ``seq``: every row of its tables (``files`` without their local ids)."""

    seq: int
    last_snapshot: int
    files: list[tuple[str, int, int | None, str, int, str, int, int, int, int, str, str, int, str, int]]
    snapshots: list[tuple[int, int, str | None, str | None]]
    ended: list[tuple[str, int]]


_FILE_COLUMNS = (
    "dataset, begin_snapshot, end_snapshot, path, path_is_relative, file_format, record_count, file_size_bytes,"
    " min_ts, max_ts, checksum, stamp, is_foreign, origin, begin_ns"
)


class Conflict(StorageError):
    """The change is no longer valid against the log (another writer ended a merge's inputs, took a tag)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)
_checkpoint_decoder = msgspec.json.Decoder(Checkpoint)

_EXTRA_SCHEMA = """
INSERT OR IGNORE INTO catalog_meta VALUES ('log_seq', 0);
CREATE TABLE IF NOT EXISTS log_ended (path TEXT PRIMARY KEY, ended_ns INTEGER NOT NULL);
"""


def log_key(seq: int) -> str:
    """Lake-relative key of log entry ``seq``."""
    return f"{LOG_DIR}/{seq:020d}.json"


def checkpoint_key(seq: int) -> str:
    """Lake-relative key of the checkpoint taken after entry ``seq``."""
    return f"{CHECKPOINT_DIR}/{seq:020d}.json"


def _dump(con: sqlite3.Connection, seq: int) -> Checkpoint:
    return Checkpoint(
        seq,
        int(con.execute("SELECT value FROM catalog_meta WHERE key = 'last_snapshot'").fetchone()[0]),
        [tuple(r) for r in con.execute(f"SELECT {_FILE_COLUMNS} FROM data_file ORDER BY data_file_id")],
        [tuple(r) for r in con.execute("SELECT snapshot_id, snapshot_time, tag, note FROM snapshot")],
        [tuple(r) for r in con.execute("SELECT path, ended_ns FROM log_ended")],
    )


def write_checkpoint(store: ObjectStore, root: Path, seq: int) -> bool:
    """Store the catalog as it stands after entry ``seq`` (False: this cache is past it, or one exists)."""
    with catalog.transaction(root, write=False) as con:
        if applied_seq(con) != seq:
            return False
        cp = _dump(con, seq)
    return store.put_if_absent(checkpoint_key(seq), _encoder.encode(cp))


def _load_checkpoint(store: ObjectStore, root: Path) -> None:
    """A fresh cache: start from the newest checkpoint, if any (the log after it is replayed as usual)."""
    seqs = [s for key, _size, _mtime in store.list(CHECKPOINT_DIR + "/") if (s := _seq_of(key)) is not None]
    if not seqs:
        return
    body = store.get(checkpoint_key(max(seqs)))
    if body is None:
        return
    try:
        cp = _checkpoint_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise StorageError(f"{store.settings.uri}: checkpoint {max(seqs)} is not a dccd checkpoint: {exc}") from exc
    with catalog.transaction(root) as con:
        if applied_seq(con) != 0:
            return  # another process sharing this cache started it meanwhile
        con.executemany(f"INSERT INTO data_file ({_FILE_COLUMNS}) VALUES ({','.join('?' * 15)})", cp.files)
        con.executemany("INSERT INTO snapshot VALUES (?, ?, ?, ?)", cp.snapshots)
        con.executemany("INSERT OR REPLACE INTO log_ended VALUES (?, ?)", cp.ended)
        con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'last_snapshot'", (cp.last_snapshot,))
        con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'log_seq'", (cp.seq,))


def _seq_of(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    stem = name[:-5] if name.endswith(".json") else ""
    return int(stem) if len(stem) == 20 and stem.isdigit() else None


def applied_seq(con: sqlite3.Connection) -> int:
    """The last log entry applied to this cache."""
    row = con.execute("SELECT value FROM catalog_meta WHERE key = 'log_seq'").fetchone()
    return int(row[0]) if row else 0


_prepared: set[tuple[str, int]] = set()


def prepare(root: Path) -> None:
    """Create the cache's catalog (and the log bookkeeping) if needed (once per process)."""
    key = (os.path.abspath(root), os.getpid())
    if key in _prepared:
        return
    db = catalog._db(root)
    with db.lock:
        db.con.executescript(_EXTRA_SCHEMA)
    _prepared.add(key)


def valid(con: sqlite3.Connection, entry: Entry) -> str | None:
    """Why ``entry`` cannot apply to the catalog state in ``con`` (None: it can)."""
    if isinstance(entry, Merge):
        live = {
            r[0]
            for r in con.execute(
                "SELECT path FROM data_file WHERE dataset = ? AND end_snapshot IS NULL", (entry.dataset,)
            ).fetchall()
        }
        gone = [p for p in entry.inputs if p not in live]
        if gone:
            return f"{len(gone)} of the merge's inputs were already ended (another compaction took them)"
        if entry.output.path in live:
            return f"{entry.output.path} is already live"
    elif (
        isinstance(entry, SnapshotTaken)
        and entry.tag is not None
        and con.execute("SELECT 1 FROM snapshot WHERE tag = ?", (entry.tag,)).fetchone()
    ):
        return f"tag {entry.tag!r} is taken (drop that snapshot first)"
    return None


def _apply(con: sqlite3.Connection, entry: Entry) -> None:
    if valid(con, entry) is not None:
        return  # its committer was refused the same way: every replayer skips it
    if isinstance(entry, AddFiles):
        catalog.insert_files(con, entry.dataset, [f.new_file() for f in entry.files], entry.origin)
    elif isinstance(entry, Merge):
        catalog.insert_files(con, entry.dataset, [entry.output.new_file()], "compaction")
        catalog.end_files(con, entry.inputs)
        con.executemany("INSERT OR REPLACE INTO log_ended VALUES (?, ?)", [(p, entry.time_ns) for p in entry.inputs])
    elif isinstance(entry, SnapshotTaken):
        snap = catalog.pending_snapshot(con)
        con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'last_snapshot'", (snap,))
        con.execute("INSERT INTO snapshot VALUES (?, ?, ?, ?)", (snap, entry.time_ns, entry.tag, entry.note))
    elif isinstance(entry, SnapshotsDropped):
        con.executemany("DELETE FROM snapshot WHERE snapshot_id = ?", [(i,) for i in entry.snapshot_ids])
    else:
        con.executemany(
            "DELETE FROM data_file WHERE path = ? AND end_snapshot IS NOT NULL", [(p,) for p in entry.paths]
        )
        con.executemany("DELETE FROM log_ended WHERE path = ?", [(p,) for p in entry.paths])


def catch_up(store: ObjectStore, root: Path) -> int:
    """Apply the log entries this cache lacks; return the last applied sequence number.

    Raises:
        StorageError: the store failed, or a log object is not a dccd log entry.
    """
    prepare(root)
    with catalog.transaction(root, write=False) as con:
        have = applied_seq(con)
    if have == 0:
        _load_checkpoint(store, root)
        with catalog.transaction(root, write=False) as con:
            have = applied_seq(con)
    listed = store.list(LOG_DIR + "/", offset=log_key(have))
    seqs = sorted(s for key, _size, _mtime in listed if (s := _seq_of(key)) is not None and s > have)
    records: list[tuple[int, Record]] = []
    for seq in seqs:
        if seq != have + len(records) + 1:
            break  # a hole: an entry listed before the one under it became visible; take it next time
        body = store.get(log_key(seq))
        if body is None:
            break
        try:
            records.append((seq, _decoder.decode(body)))
        except msgspec.DecodeError as exc:
            raise StorageError(f"{store.settings.uri}: log entry {seq} is not a dccd log entry: {exc}") from exc
    if not records:
        return have
    with catalog.transaction(root) as con:
        now = applied_seq(con)  # another process sharing this cache may have applied some meanwhile
        for seq, rec in records:
            if seq == now + 1:
                _apply(con, rec.entry)
                now = seq
        con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'log_seq'", (now,))
    return now


def _applied_own(store: ObjectStore, root: Path, seq: int, entry: Entry) -> None:
    """Apply the entry just committed as ``seq`` without reading it back, when the cache stands right before it."""
    with catalog.transaction(root) as con:
        if applied_seq(con) == seq - 1:
            _apply(con, entry)
            con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'log_seq'", (seq,))
            return
    catch_up(store, root)  # another process sharing this cache moved it meanwhile


def commit(store: ObjectStore, root: Path, entry: Entry, writer: str) -> int:
    """Append ``entry`` to the log (put-if-absent of the next number, retried past other writers); return its
    sequence number once this cache has applied it.

    Raises:
        Conflict: the entry is not valid against the log (checked again after every lost race).
        StorageError: the store failed, or too many writers kept winning the race.
    """
    body = _encoder.encode(Record(entry, writer))
    deadline = time.monotonic() + COMMIT_DEADLINE_S
    for _attempt in range(MAX_ATTEMPTS):
        if time.monotonic() > deadline:
            break
        seq = catch_up(store, root)
        with catalog.transaction(root, write=False) as con:
            why = valid(con, entry)
        if why is not None:
            raise Conflict(why)
        if store.put_if_absent(log_key(seq + 1), body):
            _applied_own(store, root, seq + 1, entry)
            if (seq + 1) % CHECKPOINT_EVERY == 0:
                write_checkpoint(store, root, seq + 1)
            return seq + 1
        time.sleep(0.001 * (_attempt % 10))  # lost the race: replay what the winner wrote, check, retry
    raise StorageError(
        f"{store.settings.uri}: no log commit after {_attempt + 1} attempts in {COMMIT_DEADLINE_S:g}s (too many writers racing)"
    )
