"""Snapshots of the lake: create, list, diff, drop, retention, as-of file sets, export; catalog repair and rebuild.

A snapshot is a commit id kept in the catalog (:mod:`dccd.storage.catalog`): the parts visible at it stay
readable (compaction retains the ones it replaces) until the snapshot is dropped. ``as_of`` everywhere
(CLI ``--as-of``, API ``?as_of=``, client ``as_of=``) names one by id, by tag, or by an ISO time (the newest
snapshot taken at or before it), and a read as of it returns exactly the rows the lake held when it was taken.

For other readers of the lake (a SQL endpoint, scanners): :func:`files_as_of` gives the part files of a
dataset as of a snapshot, in the order the reader ranks them (oldest write first); pass them to
:func:`dccd.storage.reader.plan` (``as_of=``), which also pins them for a streaming read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pyarrow.parquet as pq

from dccd.domain import DatasetId
from dccd.domain.timeutil import ns_to_iso, parse_iso_ns
from dccd.errors import StorageError
from dccd.storage import catalog, layout, reader
from dccd.storage.catalog import DataFile, NewFile, Snapshot
from dccd.storage.reader import PartFile
from dccd.storage.writer import fsync_dir, parquet_options

_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
MANIFEST = "manifest.json"


class SnapshotNotFound(StorageError):
    """An ``as_of`` that names no retained snapshot."""


class Reconciled(NamedTuple):
    """What a repair did: parts registered (found on disk, unknown to the catalog) and rows ended (file gone)."""

    registered: int
    ended: int


class SnapshotInfo(msgspec.Struct, frozen=True):
    """A snapshot with what it holds."""

    snapshot_id: int
    time: str
    time_ns: int
    tag: str | None
    note: str | None
    datasets: int
    parts: int
    rows: int
    bytes: int


class DatasetDiff(msgspec.Struct, frozen=True):
    """How one dataset differs between two snapshots (rows compared whole, on the deduplicated reads)."""

    dataset: str
    status: str  # added | removed | changed | rewritten (same rows, other files: a compaction)
    rows_added: int
    rows_removed: int
    added_first_ts: int | None
    added_last_ts: int | None
    removed_first_ts: int | None
    removed_last_ts: int | None
    parts_added: int
    parts_removed: int


def dataset_key(root: Path, ds: DatasetId) -> str:
    """Catalog key of ``ds``: its directory relative to the lake root."""
    return str(layout.dataset_dir(root, ds).relative_to(root))


def parse_dataset_key(root: Path, key: str) -> DatasetId | None:
    """Inverse of :func:`dataset_key` (None for a key that names no dataset)."""
    return layout.parse_dataset_dir(root, root / key)


def describe(root: Path, part: PartFile) -> NewFile | None:
    """What to register for a part found on disk (None: unreadable, or gone meanwhile)."""
    try:
        rows = pq.read_metadata(part.path).num_rows
        digest = catalog.checksum_file(part.path)
    except (OSError, ValueError):
        return None  # gone meanwhile, or unreadable: not registered (readers skip it too)
    rel = str(Path(part.path).relative_to(root))
    return NewFile(rel, rows, part.first_ts, part.last_ts, part.size, digest, part.stamp, part.foreign)


# -- repair ---------------------------------------------------------------------------------------------


def reconcile(root: Path) -> Reconciled:
    """Make the catalog's live parts the data tree's good parts: register unknown ones, end vanished ones.

    Run at start (a crash between a part's rename and its registration), before each snapshot (parts
    other tools dropped in), and by ``dccd catalog rebuild``. Each dataset is checked under its shared
    listing lock, so a compaction's swap is never seen half done.
    """
    if reader._object_lake(root) is not None:
        raise StorageError("an object-store lake's catalog is its commit log: nothing on disk to rebuild it from")
    registered = ended = 0
    on_disk = set(reader.datasets(root)) if root.is_dir() else set()
    keys = {dataset_key(root, ds): ds for ds in on_disk}
    for key in catalog.datasets(root) if catalog.exists(root) else []:
        if key not in keys and (ds := parse_dataset_key(root, key)) is not None:
            keys[key] = ds
    for key, ds in sorted(keys.items()):
        # Footers and checksums of the unknown parts are read without the lock (a compaction waiting for it
        # would time out over a large unknown lake); the lists are then taken again under it.
        described = _describe_unknown(root, ds, key) if ds in on_disk else {}
        with reader.listing_lock(root, ds):
            parts, _bad = reader._scan_parts(root, ds, None, None) if ds in on_disk else ([], [])
            known = catalog.rows_by_path(root, key)
            present = {str(Path(p.path).relative_to(root)) for p in parts}
            new = [nf for rel, nf in described.items() if rel in present and rel not in known]
            gone = [f.path for f in known.values() if f.end_snapshot is None and f.path not in present]
            if new or gone:
                with catalog.transaction(root) as con:
                    registered += catalog.insert_files(con, key, new, "repair")
                    ended += catalog.end_files(con, gone)
    return Reconciled(registered, ended)


def _describe_unknown(root: Path, ds: DatasetId, key: str) -> dict[str, NewFile]:
    """What to register for the good parts of ``ds`` the catalog has no row for."""
    parts, _bad = reader.list_parts(root, ds)
    known = catalog.rows_by_path(root, key)
    out = {}
    for p in parts:
        rel = str(Path(p.path).relative_to(root))
        if rel in known or reader.check_footer(ds.data_type, p.path) is not None:
            continue  # registered, or corrupt / not lake data: readers skip it too
        if (nf := describe(root, p)) is not None:
            out[rel] = nf
    return out


def register_existing(root: Path, ds: DatasetId, paths: list[Path | str], origin: str) -> int:
    """Register parts a caller placed in the data tree itself (an import or archive restore that renames
    whole files in rather than going through the writer); returns how many were new to the catalog.

    Raises:
        StorageError: a path is not a good part of ``ds`` under ``root``.
    """
    key = dataset_key(root, ds)
    wanted = {str(Path(p).resolve()) for p in paths}
    with reader.listing_lock(root, ds):
        parts, _bad = reader._scan_parts(root, ds, None, None)
    found = [p for p in parts if str(Path(p.path).resolve()) in wanted]
    files = [nf for p in found if reader.check_footer(ds.data_type, p.path) is None and (nf := describe(root, p))]
    if len(files) != len(wanted):
        bad = sorted(wanted - {str((root / f.path).resolve()) for f in files})
        raise StorageError(f"{ds}: not a readable part of the dataset: {bad[0]}")
    with catalog.transaction(root) as con:
        return catalog.insert_files(con, key, files, origin)


def retained_orphans(root: Path) -> list[Path]:
    """Files in the retained area the catalog has no row for (left by a lost catalog)."""
    base = layout.meta_dir(root) / catalog.RETAINED_DIR
    if not base.is_dir():
        return []
    files = [Path(d) / n for d, _, names in os.walk(base) for n in names]
    if not files:
        return []
    known = {f.path for key in catalog.datasets(root) for f in catalog.rows_by_path(root, key).values()}
    return [f for f in files if str(f.relative_to(root)) not in known and str(f.relative_to(base)) not in known]


def rebuild(root: Path) -> Reconciled:
    """``dccd catalog rebuild``: derive the catalog's live parts from the files (a lost catalog starts afresh)."""
    return reconcile(root)


# -- snapshots ------------------------------------------------------------------------------------------


def _snapshots(root: Path) -> list[Snapshot]:
    with catalog.transaction(root, write=False) as con:
        rows = con.execute("SELECT snapshot_id, snapshot_time, tag, note FROM snapshot ORDER BY snapshot_id").fetchall()
    return [Snapshot(*r) for r in rows]


def check_tag(tag: str) -> str:
    """A tag: a letter, then letters, digits, ``.``, ``_`` or ``-`` (at most 64).

    Raises:
        ValueError: anything else (an all-digit tag would read as a snapshot id).
    """
    if not _TAG.match(tag):
        raise ValueError(f"tag {tag[:70]!r}: use a letter then letters, digits, '.', '_' or '-' (at most 64)")
    return tag


def create(root: Path, *, tag: str | None = None, note: str | None = None, keep: int | None = None) -> Snapshot:
    """Take a snapshot of the lake as it is now (after a repair pass); apply retention when ``keep`` is given.

    Raises:
        ValueError: a bad or taken tag, or ``keep`` below 0.
    """
    if tag is not None:
        check_tag(tag)
    if keep is not None and keep < 0:
        raise ValueError("--keep must be 0 or more")
    reconcile(root)
    now = time.time_ns()
    with catalog.transaction(root) as con:
        if tag is not None and con.execute("SELECT 1 FROM snapshot WHERE tag = ?", (tag,)).fetchone():
            raise ValueError(f"tag {tag!r} is taken (drop that snapshot first)")
        snap = catalog.pending_snapshot(con)
        con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'last_snapshot'", (snap,))
        con.execute("INSERT INTO snapshot VALUES (?, ?, ?, ?)", (snap, now, tag, note))
    if keep is not None:
        prune(root, keep)
    return Snapshot(snap, now, tag, note)


def resolve(root: Path, as_of: str | int) -> Snapshot:
    """The snapshot ``as_of`` names: an id, a tag, or an ISO time (the newest snapshot taken at or before it).

    Raises:
        SnapshotNotFound: it names none (the message says what exists).
    """
    if (obj := reader._object_lake(root)) is not None:
        obj.refresh()  # an object-store lake's catalog is the log's local cache: catch it up first
    snaps = _snapshots(root) if catalog.exists(root) else []
    text = str(as_of).strip()
    if text.isdigit():
        found = [s for s in snaps if s.snapshot_id == int(text)]
    else:
        found = [s for s in snaps if s.tag == text]
        if not found and text[:1].isdigit():
            try:
                at = parse_iso_ns(text)
            except ValueError:
                raise SnapshotNotFound(f"as_of {text[:70]!r} is no snapshot id, tag or ISO time") from None
            found = [s for s in snaps if s.time_ns <= at][-1:]
            if not found:
                first = f"; the oldest is {snaps[0].snapshot_id} at {ns_to_iso(snaps[0].time_ns)}" if snaps else ""
                raise SnapshotNotFound(f"no snapshot was taken at or before {ns_to_iso(at)}{first}")
    if not found:
        known = ", ".join(s.tag or str(s.snapshot_id) for s in snaps[-8:]) or "none"
        raise SnapshotNotFound(f"no snapshot {text[:70]!r} (retained: {known})")
    return found[0]


def info(root: Path) -> list[SnapshotInfo]:
    """Every retained snapshot with its datasets, parts, rows and bytes, oldest first."""
    out = []
    for s in _snapshots(root):
        files = catalog.files_at(root, s.snapshot_id)
        out.append(
            SnapshotInfo(
                s.snapshot_id,
                ns_to_iso(s.time_ns),
                s.time_ns,
                s.tag,
                s.note,
                len({f.dataset for f in files}),
                len(files),
                sum(f.rows for f in files),
                sum(f.size for f in files),
            )
        )
    return out


def drop(root: Path, ref: str | int) -> tuple[Snapshot, list[str]]:
    """Drop one snapshot (tagged or not) and collect the parts only it needed; return it and those paths."""
    snap = resolve(root, ref)
    with catalog.transaction(root) as con:
        con.execute("DELETE FROM snapshot WHERE snapshot_id = ?", (snap.snapshot_id,))
    return snap, catalog.collect(root)


def prune(root: Path, keep: int) -> tuple[list[Snapshot], list[str]]:
    """Retention: keep the newest ``keep`` untagged snapshots and every tagged one; collect what the rest needed.

    Returns:
        The dropped snapshots and the parts deleted.
    """
    untagged = [s for s in _snapshots(root) if s.tag is None]
    dropped = untagged[: max(0, len(untagged) - keep)]
    if dropped:
        with catalog.transaction(root) as con:
            con.executemany("DELETE FROM snapshot WHERE snapshot_id = ?", [(s.snapshot_id,) for s in dropped])
    return dropped, catalog.collect(root)


# -- as-of file sets ------------------------------------------------------------------------------------


def _part(root: Path, f: DataFile) -> PartFile | None:
    if (obj := reader._object_lake(root)) is not None:  # an object-store lake: parts stay where they were put
        return PartFile(obj.url(f.path), f.min_ts, f.max_ts, f.stamp, f.size, f.foreign)
    path = catalog.locate(root, f.path)
    if path is None:
        return None
    return PartFile(str(path), f.min_ts, f.max_ts, f.stamp, f.size, f.foreign)


def files_as_of(
    root: Path, ds: DatasetId, as_of: str | int, start_ns: int | None = None, end_ns: int | None = None
) -> list[PartFile]:
    """The part files of ``ds`` visible at snapshot ``as_of``, overlapping ``[start_ns, end_ns)``, oldest write first.

    Paths are where the files are now (the data tree, or the retained area for parts compacted since);
    a compaction may move a data-tree file to the retained area at any time, so a long reader should
    pin them (``reader.plan(..., as_of=..., pin=True)``) or look again on ``FileNotFoundError``.

    Raises:
        SnapshotNotFound: ``as_of`` names no snapshot.
        StorageError: a part of the snapshot is missing (deleted outside dccd).
    """
    snap = resolve(root, as_of)
    out = []
    for f in catalog.files_at(root, snap.snapshot_id, dataset_key(root, ds)):
        if (end_ns is not None and f.min_ts >= end_ns) or (start_ns is not None and f.max_ts < start_ns):
            continue
        p = _part(root, f)
        if p is None:
            raise StorageError(f"snapshot {snap.snapshot_id}: part {f.path} is missing (deleted outside dccd)")
        out.append(p)
    return out


def datasets_as_of(root: Path, as_of: str | int) -> list[DatasetId]:
    """The datasets holding parts at snapshot ``as_of``."""
    snap = resolve(root, as_of)
    keys = sorted({f.dataset for f in catalog.files_at(root, snap.snapshot_id)})
    return [ds for k in keys if (ds := parse_dataset_key(root, k)) is not None]


# -- diff -----------------------------------------------------------------------------------------------


def _read_files(ds: DatasetId, files: list[PartFile], lo: int, hi: int) -> Any:
    p = reader.Plan(ds.data_type, files, [], reader.build_sql(ds.data_type, True, lo, hi, files=files))
    return reader.run_table(p)[0] if files else reader.empty_table(ds.data_type)


def diff(root: Path, a: str | int, b: str | int) -> list[DatasetDiff]:
    """Datasets, rows and ts ranges added and removed from snapshot ``a`` to snapshot ``b``.

    Rows are compared whole on the deduplicated reads, only over the ts span of the parts that differ.
    """
    sa, sb = resolve(root, a), resolve(root, b)
    fa = catalog.files_at(root, sa.snapshot_id)
    fb = catalog.files_at(root, sb.snapshot_id)
    out = []
    for key in sorted({f.dataset for f in fa} | {f.dataset for f in fb}):
        ds = parse_dataset_key(root, key)
        xa = {f.path: f for f in fa if f.dataset == key}
        xb = {f.path: f for f in fb if f.dataset == key}
        if ds is None or xa.keys() == xb.keys():
            continue
        changed = [xa[p] for p in xa.keys() - xb.keys()] + [xb[p] for p in xb.keys() - xa.keys()]
        lo, hi = min(f.min_ts for f in changed), max(f.max_ts for f in changed) + 1
        pa_ = [p for f in xa.values() if f.max_ts >= lo and f.min_ts < hi and (p := _part(root, f)) is not None]
        pb_ = [p for f in xb.values() if f.max_ts >= lo and f.min_ts < hi and (p := _part(root, f)) is not None]
        pa_.sort(key=lambda p: p.stamp)
        pb_.sort(key=lambda p: p.stamp)
        ta, tb = _read_files(ds, pa_, lo, hi), _read_files(ds, pb_, lo, hi)
        con = reader.connect()
        try:
            con.register("a", ta)
            con.register("b", tb)
            q = "SELECT count(*), min(ts), max(ts) FROM (SELECT * FROM {} EXCEPT SELECT * FROM {})"
            added = con.execute(q.format("b", "a")).fetchone() or (0, None, None)
            removed = con.execute(q.format("a", "b")).fetchone() or (0, None, None)
        finally:
            con.close()
        status = "added" if not xa else "removed" if not xb else "changed" if added[0] or removed[0] else "rewritten"
        out.append(
            DatasetDiff(
                key,
                status,
                int(added[0]),
                int(removed[0]),
                added[1],
                added[2],
                removed[1],
                removed[2],
                len(xb.keys() - xa.keys()),
                len(xa.keys() - xb.keys()),
            )
        )
    return out


# -- export ---------------------------------------------------------------------------------------------


def _copy_part(root: Path, path: str, dest: Path) -> None:
    """Copy a part file to ``dest`` (from the store, for an object-store lake's URL)."""
    obj = reader._object_lake(root) if "://" in path else None
    if obj is None:
        shutil.copyfile(path, dest)
        return
    data = obj.store.get(obj.rel(path))
    if data is None:
        raise StorageError(f"part {path} is missing from the store (deleted outside dccd)")
    dest.write_bytes(data)


def export(root: Path, ref: str | int, out_dir: Path) -> dict[str, Any]:
    """Write snapshot ``ref`` to ``out_dir`` as a self-contained Hive Parquet tree plus ``manifest.json``.

    Each partition becomes one part holding exactly its rows as of the snapshot (deduplicated, sorted);
    a partition whose parts cannot share a key (disjoint bars) is copied as it is. DuckDB alone reads it:
    ``SELECT * FROM read_parquet('DIR/ohlc/**/*.parquet', hive_partitioning=true)``.

    Raises:
        SnapshotNotFound: no such snapshot.
        ValueError: ``out_dir`` exists and is not empty.
    """
    snap = resolve(root, ref)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} exists and is not empty")
    entries = []
    for ds in datasets_as_of(root, snap.snapshot_id):
        key = dataset_key(root, ds)
        by_part: dict[str, list[PartFile]] = {}
        for f in catalog.files_at(root, snap.snapshot_id, key):
            p = _part(root, f)
            if p is None:
                raise StorageError(f"snapshot {snap.snapshot_id}: part {f.path} is missing (deleted outside dccd)")
            by_part.setdefault(Path(f.path).parent.name, []).append(p)
        written = []
        for partition, parts in sorted(by_part.items()):
            directory = out_dir / key / partition
            directory.mkdir(parents=True, exist_ok=True)
            if not reader.needs_dedup(ds.data_type, parts):
                for p in parts:
                    dest = directory / Path(p.path).name
                    _copy_part(root, p.path, dest)
                    written.append(dest)
            else:
                table = _read_files(
                    ds,
                    sorted(parts, key=lambda p: p.stamp),
                    min(p.first_ts for p in parts),
                    max(p.last_ts for p in parts) + 1,
                )
                if table.num_rows == 0:
                    continue
                ts = table["ts"]
                name = layout.part_name(ts[0].as_py(), ts[-1].as_py(), max(p.stamp for p in parts))
                pq.write_table(table, directory / name, **parquet_options(table.column_names))
                written.append(directory / name)
        described = []
        for w in written:
            meta = pq.read_metadata(w)
            lo, hi = reader._ts_stats(meta)
            described.append(
                {
                    "path": str(w.relative_to(out_dir)),
                    "rows": meta.num_rows,
                    "min_ts": lo,
                    "max_ts": hi,
                    "bytes": w.stat().st_size,
                    "checksum": catalog.checksum_file(w),
                }
            )
        entries.append(
            {
                "dataset": key,
                "exchange": ds.exchange,
                "symbol": str(ds.symbol),
                "type": ds.data_type.value,
                "span": ds.span.label if ds.span else None,
                "rows": sum(int(d["rows"]) for d in described),
                "files": described,
            }
        )
    manifest = {
        "format": "dccd-snapshot-export/1",
        "snapshot_id": snap.snapshot_id,
        "tag": snap.tag,
        "note": snap.note,
        "time": ns_to_iso(snap.time_ns),
        "time_ns": snap.time_ns,
        "read_with": "SELECT * FROM read_parquet('<dataset>/*/*.parquet') ORDER BY ts",
        "datasets": entries,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    fsync_dir(out_dir)
    return manifest
