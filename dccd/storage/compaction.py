"""Compaction: merge a partition's parts into one deduplicated, sorted part.

Crash-safe at every step: the merged part is written atomically *before* any
input is deleted, and reads deduplicate, so a crash in between only leaves
duplicates that the next compaction removes. Only the parts that were inputs
of the merge are deleted, so writers appending meanwhile lose nothing. The
merged part takes the newest input's write time in its stamp, so a part
appended during the merge still wins on duplicate keys. (Exact for every key
that contains ts; a trade id re-sent with *different* content on another day
may resolve to either copy once one of the days is compacted.) Compactions of one
dataset are serialised across processes with an advisory lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pyarrow.parquet as pq

from dccd.domain import DatasetId
from dccd.storage import layout
from dccd.storage.reader import (
    BadFile,
    PartFile,
    Plan,
    Vanished,
    build_sql,
    check_footer,
    datasets,
    list_parts,
    partitions,
    run_table,
)
from dccd.storage.schema import SCHEMAS
from dccd.storage.writer import PROVENANCE_KEY, Provenance, fsync_dir, provenance_metadata, write_part_atomic


class CompactResult(msgspec.Struct, frozen=True):
    """One partition compacted: ``inputs`` parts merged into ``output`` holding ``rows``."""

    partition: str
    inputs: int
    rows: int
    output: str | None
    removed: int
    skipped: tuple[BadFile, ...] = ()


@contextlib.contextmanager
def _dataset_lock(root: Path, ds: DatasetId) -> Iterator[bool]:
    """Non-blocking exclusive lock per dataset; yields False when another process holds it."""
    lock_dir = layout.meta_dir(root) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = str(ds).replace("/", "-").replace(":", "_")
    fd = os.open(lock_dir / f"compact-{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _merged_from(files: list[PartFile]) -> list[dict[str, object]]:
    seen: dict[str, dict[str, object]] = {}
    for f in files:
        try:
            raw = (pq.read_metadata(f.path).metadata or {}).get(PROVENANCE_KEY)
            doc = json.loads(raw) if raw else {}
        except (OSError, ValueError):
            doc = {}
        entry = {k: doc.get(k) for k in ("source", "transport", "run_id")}
        seen.setdefault(json.dumps(entry, sort_keys=True), entry)
    return list(seen.values())


def compact_partition(root: Path, ds: DatasetId, partition_dir: Path) -> CompactResult | None:
    """Merge every part of one partition (a caller holds the dataset lock).

    Returns:
        None when there was nothing to merge (fewer than two good parts).
    """
    bounds = layout.partition_bounds(partition_dir.name)
    if bounds is None:
        return None
    parts, skipped = list_parts(root, ds, *bounds)
    good = []
    for p in parts:
        reason = check_footer(ds.data_type, p.path)
        if reason is None:
            good.append(p)
        elif reason != "vanished":
            skipped.append(BadFile(p.path, reason))
    if len(good) < 2:
        return None
    try:
        table, bad = run_table(Plan(ds.data_type, good, skipped, build_sql(ds.data_type, True, None, None, files=good)))
    except Vanished:
        return None  # someone else compacted it meanwhile
    inputs = [p for p in good if p.path not in {b.path for b in bad}]
    if table.num_rows == 0 or len(inputs) < 2:
        return None
    table = table.cast(SCHEMAS[ds.data_type])
    first, last = table["ts"][0].as_py(), table["ts"][-1].as_py()
    newest = max(p.stamp for p in inputs)
    stamp = newest[:16] + layout.new_stamp(0)[16:]  # newest input's write time, fresh token
    name = layout.part_name(first, last, stamp)
    merged = _merged_from(inputs)
    source = "+".join(sorted({str(m["source"]) for m in merged}))
    meta = provenance_metadata(ds, Provenance(source, "compaction"), merged_from=merged, inputs=len(inputs))
    write_part_atomic(table.replace_schema_metadata(meta), partition_dir, name)
    removed = 0
    for p in inputs:  # only the merge's inputs: parts appended meanwhile stay
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p.path)
            removed += 1
    fsync_dir(partition_dir)
    return CompactResult(
        str(partition_dir), len(inputs), table.num_rows, str(partition_dir / name), removed, tuple(bad)
    )


def compact_dataset(root: Path, ds: DatasetId, *, closed_before_ns: int | None = None) -> list[CompactResult]:
    """Compact the partitions of ``ds`` (only those ending at or before ``closed_before_ns`` if given).

    Returns an empty list when another process is compacting the same dataset.
    """
    out = []
    with _dataset_lock(root, ds) as locked:
        if not locked:
            return []
        for pdir in partitions(root, ds, None, closed_before_ns):
            bounds = layout.partition_bounds(pdir.name)
            if closed_before_ns is not None and (bounds is None or bounds[1] > closed_before_ns):
                continue  # still open: more data is expected
            res = compact_partition(root, ds, pdir)
            if res is not None:
                out.append(res)
    return out


def compact(root: Path, ds: DatasetId | None = None) -> list[CompactResult]:
    """On demand: compact every partition (open ones too) of ``ds``, or of every dataset."""
    return [r for d in ([ds] if ds else datasets(root)) for r in compact_dataset(root, d)]


def compact_closed(root: Path, now_ns: int) -> list[CompactResult]:
    """Compact every closed partition (its day or month ended by ``now_ns``) of every dataset."""
    return [r for d in datasets(root) for r in compact_dataset(root, d, closed_before_ns=now_ns)]
