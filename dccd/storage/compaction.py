"""Compaction: merge a partition's parts, rolling (open partitions) or whole (closed ones).

Rolling policy (:func:`plan_merges`, the one ``dccd serve`` runs on today's partitions):
parts younger than ``min_age_s`` (by the write time in their stamp) are left
alone; older ones are put in size tiers (tier 0 below ``base_bytes``, each next
tier ``fan_in`` times larger) and every run of at least ``fan_in`` parts that are
adjacent in write order and share a tier becomes one part. A part is rewritten
about once per tier it climbs, never once per pass, and a partition keeps fewer
than ``fan_in`` parts per tier: a day of two-second parts ends in a handful.
Closed partitions (day/month over) and ``dccd compact`` merge whole partitions.

One merge (:func:`_merge`) is crash-safe and never lets dccd's reader see a row
twice or miss one:

1. the merged rows go to a hidden temp file, fsynced (readers skip it; the startup sweep removes it);
2. a journal ``_dccd/compaction/{dataset}-{token}.json`` naming the output and its inputs is made durable;
3. under the dataset's listing lock (exclusive; readers list parts under it shared) the temp
   file is renamed into place, the catalog commits the swap (output begins, inputs end at one
   snapshot id) and the inputs leave the data tree (deleted, or moved to the retained area while
   a snapshot needs them: :func:`dccd.storage.catalog.retire`), so a listing sees the inputs or the
   merged part, never both, never neither. Raw readers of the hive tree (DuckDB, Spark) can see
   both only for these few milliseconds;
4. the journal is removed.

A crash before 3 leaves a journal whose output does not exist: it is dropped. A
crash inside 3 leaves one whose output exists: the startup sweep
(:func:`recover`, run by :meth:`Lake.sweep`) or the next compaction of the
dataset commits it to the catalog and retires the inputs it names; until then dccd's reader deduplicates.

The merged part takes the newest input's write time in its stamp and its
inputs are adjacent in write order, so it ranks among the other parts exactly
where they did: on duplicate keys the newest write still wins. Only the merge's
inputs are deleted (never a part being written: writers' temp files are hidden
and parts are immutable), and writers take no lock, so compaction never blocks
them. Compactions of one dataset are serialised across processes with an
advisory lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pyarrow.parquet as pq

from dccd.domain import DatasetId
from dccd.storage import catalog, layout
from dccd.storage.reader import (
    BadFile,
    PartFile,
    Plan,
    Vanished,
    build_sql,
    check_footer,
    datasets,
    list_parts,
    listing_lock,
    partitions,
    run_table,
)
from dccd.storage.schema import SCHEMAS
from dccd.storage.writer import PROVENANCE_KEY, Provenance, fsync_dir, parquet_options, provenance_metadata

_JOURNAL = re.compile(r"^(.+)-([0-9a-f]{24})\.json$")
MAX_ROUNDS = 64  # merges cascade (outputs join the next tier); bound the rounds of one pass


class CompactResult(msgspec.Struct, frozen=True):
    """One merge in a partition: ``inputs`` parts merged into ``output`` holding ``rows``."""

    partition: str
    inputs: int
    rows: int
    output: str | None
    removed: int
    skipped: tuple[BadFile, ...] = ()


class CompactPolicy(msgspec.Struct, frozen=True):
    """Thresholds of rolling compaction (see the module docstring).

    Args:
        fan_in: merge a run of this many adjacent parts of one size tier; tiers grow by this factor.
        base_bytes: parts below this size are tier 0.
        min_age_s: parts written less than this long ago are left alone.
        max_inputs: at most this many parts go into one merge (bounds memory and journal size).
        max_parts: if a partition still holds more parts than this (sizes out of order, e.g. a backfill
            interleaved with a stream), the ``fan_in`` adjacent parts with the fewest bytes are merged too.
    """

    fan_in: int = 4
    base_bytes: int = 1 << 20
    min_age_s: float = 60.0
    max_inputs: int = 2000
    max_parts: int = 24

    def __post_init__(self) -> None:
        if self.fan_in < 2 or self.max_inputs < 2 or self.base_bytes < 1 or self.min_age_s < 0:
            raise ValueError("compaction needs fan_in >= 2, max_inputs >= 2, base_bytes >= 1 and min_age_s >= 0")
        if self.max_parts < self.fan_in:
            raise ValueError(f"compaction max_parts ({self.max_parts}) must be at least fan_in ({self.fan_in})")


def tier(size: int, policy: CompactPolicy) -> int:
    """Size tier of a part of ``size`` bytes: 0 below ``base_bytes``, +1 per factor ``fan_in``."""
    t, cap = 0, policy.base_bytes
    while size >= cap:
        t, cap = t + 1, cap * policy.fan_in
    return t


def plan_merges(parts: Sequence[PartFile], policy: CompactPolicy, now_ns: int) -> list[list[PartFile]]:
    """The merges to do now in one partition (pure; disjoint runs, each adjacent in write order).

    Args:
        parts: the partition's good parts, sorted by stamp.
        now_ns: wall clock, compared with the write time in each stamp.
    """
    cutoff = now_ns - int(policy.min_age_s * 1e9)
    eligible: list[PartFile] = []
    for p in parts:  # sorted by write time: the settled parts are a prefix
        if layout.stamp_ns(p.stamp) > cutoff:
            break
        eligible.append(p)
    runs: list[list[PartFile]] = []
    # Foreign parts (not named by dccd) are never rewritten here; they split runs.
    for (foreign, _tier), group in itertools.groupby(eligible, key=lambda p: (p.foreign, tier(p.size, policy))):
        g = list(group)
        if foreign or len(g) < policy.fan_in:
            continue
        runs.extend(c for i in range(0, len(g), policy.max_inputs) if len(c := g[i : i + policy.max_inputs]) > 1)
    if runs or len(eligible) <= policy.max_parts:
        return runs
    windows = [eligible[i : i + policy.fan_in] for i in range(len(eligible) - policy.fan_in + 1)]
    windows = [w for w in windows if not any(p.foreign for p in w)]
    return [min(windows, key=lambda w: sum(p.size for p in w))] if windows else []


@contextlib.contextmanager
def _dataset_lock(root: Path, ds: DatasetId) -> Iterator[bool]:
    """Non-blocking exclusive lock per dataset; yields False when another process holds it."""
    path = layout.lock_path(root, ds, "compact")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
    """Distinct (source, transport, run_id) of the inputs, looking through earlier merges."""
    seen: dict[str, dict[str, object]] = {}
    for f in files:
        try:
            raw = (pq.read_metadata(f.path).metadata or {}).get(PROVENANCE_KEY)
            doc = json.loads(raw) if raw else {}
        except (OSError, ValueError):
            doc = {}
        nested = doc.get("merged_from") if doc.get("transport") == "compaction" else None
        for entry in nested if isinstance(nested, list) else [doc]:
            e = {k: entry.get(k) for k in ("source", "transport", "run_id")} if isinstance(entry, dict) else {}
            seen.setdefault(json.dumps(e, sort_keys=True), e)
    return list(seen.values())


def _write_durable(path: Path, data: bytes) -> None:
    tmp = path.parent / layout.temp_name(path.name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _journal_key(name: str) -> str | None:
    """Dataset key of a journal file name (``{key}-{stamp}.json``), or None for anything else."""
    m = _JOURNAL.match(name)
    return m.group(1) if m else None


def _journals(root: Path, ds: DatasetId) -> list[Path]:
    jdir, key = layout.journal_dir(root), layout.dataset_key(ds)
    try:
        return sorted(jdir / n for n in os.listdir(jdir) if _journal_key(n) == key)
    except FileNotFoundError:
        return []


def _replay(root: Path, ds: DatasetId) -> list[Path]:
    """Finish or drop the journals of ``ds`` left by a crash (the caller holds the dataset lock).

    Returns:
        Inputs deleted because their merged part was already in place.
    """
    removed: list[Path] = []
    for jpath in _journals(root, ds):
        try:
            doc = json.loads(jpath.read_bytes())
            pdir = root / doc["partition"]
            output, inputs = pdir / doc["output"], [str(pdir / n) for n in doc["inputs"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours or unreadable: leave it for a human
        if output.exists():  # the swap had begun: the merged part supersedes what is left of its inputs
            with listing_lock(root, ds, exclusive=True):
                _commit(root, ds, output, inputs, _output_entry(root, output))
                removed += catalog.retire(root, [_rel(root, p) for p in inputs])
            fsync_dir(pdir)
        jpath.unlink(missing_ok=True)
        fsync_dir(jpath.parent)
    return removed


def _rel(root: Path, path: Path | str) -> str:
    return str(Path(path).relative_to(root))


def _output_entry(root: Path, output: Path) -> catalog.NewFile | None:
    """What to register for a merged part (from its footer and bytes); None if it cannot be read."""
    try:
        meta = pq.read_metadata(output)
        name = layout.parse_part_name(output.name)
        digest = catalog.checksum_file(output)
        size = output.stat().st_size
    except (OSError, ValueError):
        return None
    if name is None:
        return None
    return catalog.NewFile(_rel(root, output), meta.num_rows, name.first_ts, name.last_ts, size, digest, name.stamp)


def _commit(root: Path, ds: DatasetId, output: Path, inputs: Sequence[str], entry: catalog.NewFile | None) -> None:
    """The catalog side of a swap: the output begins and the inputs end at one snapshot id."""
    key = str(layout.dataset_dir(root, ds).relative_to(root))
    rel_inputs = [_rel(root, p) for p in inputs]
    if entry is None:  # unreadable output (should not happen): end the inputs; the repair registers what is there
        with catalog.transaction(root) as con:
            catalog.end_files(con, rel_inputs)
        return
    catalog.commit_merge(root, key, entry, rel_inputs)


def recover(root: Path) -> list[Path]:
    """Startup: complete the merges a crash interrupted (see the module docstring); return the inputs deleted.

    A dataset whose compaction lock is held (a live compaction) is left to its owner.
    """
    try:
        names = os.listdir(layout.journal_dir(root))
    except FileNotFoundError:
        return []
    keys = {_journal_key(n) for n in names}
    removed: list[Path] = []
    for ds in datasets(root):
        if layout.dataset_key(ds) in keys:
            with _dataset_lock(root, ds) as locked:
                if locked:
                    removed += _replay(root, ds)
    return removed


def _merge(root: Path, ds: DatasetId, pdir: Path, parts: list[PartFile]) -> CompactResult | None:
    """Merge ``parts`` (sorted by stamp, adjacent in write order) into one; the caller holds the dataset lock."""
    try:
        table, bad = run_table(Plan(ds.data_type, parts, [], build_sql(ds.data_type, True, None, None, files=parts)))
    except Vanished:
        return None  # someone removed a part meanwhile (not a dccd compaction: that one holds our lock)
    inputs = [p for p in parts if p.path not in {b.path for b in bad}]
    if table.num_rows == 0 or len(inputs) < 2:
        return None
    table = table.cast(SCHEMAS[ds.data_type])
    first, last = table["ts"][0].as_py(), table["ts"][-1].as_py()
    stamp = max(p.stamp for p in inputs)[:16] + layout.new_stamp(0)[16:]  # newest input's write time
    name = layout.part_name(first, last, stamp)
    merged = _merged_from(inputs)
    source = "+".join(sorted({str(m["source"]) for m in merged}))
    meta = provenance_metadata(ds, Provenance(source, "compaction"), merged_from=merged, inputs=len(inputs))
    tmp = pdir / layout.temp_name(name)
    jdir = layout.journal_dir(root)
    journal = jdir / f"{layout.dataset_key(ds)}-{stamp}.json"
    swapped = False
    try:
        pq.write_table(table.replace_schema_metadata(meta), tmp, **parquet_options(table.column_names))
        _fsync_file(tmp)
        entry = catalog.NewFile(
            _rel(root, pdir / name), table.num_rows, first, last, tmp.stat().st_size, catalog.checksum_file(tmp), stamp
        )
        jdir.mkdir(parents=True, exist_ok=True)
        doc = {
            "partition": str(pdir.relative_to(root)),
            "output": name,
            "inputs": [os.path.basename(p.path) for p in inputs],
        }
        _write_durable(journal, json.dumps(doc).encode())
        with listing_lock(root, ds, exclusive=True):
            os.replace(tmp, pdir / name)
            swapped = True
            fsync_dir(pdir)  # the merged part is durable before any input goes
            # The catalog commit, then the inputs leave the data tree: deleted, or moved to the retained
            # area while a snapshot needs them. A crash in between is finished by the journal's replay.
            _commit(root, ds, pdir / name, [p.path for p in inputs], entry)
            removed = len(catalog.retire(root, [_rel(root, p.path) for p in inputs]))
        fsync_dir(pdir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if not swapped:
            journal.unlink(missing_ok=True)
        raise  # after the swap the journal stays: replay finishes the deletions
    journal.unlink(missing_ok=True)
    fsync_dir(jdir)
    return CompactResult(str(pdir), len(inputs), table.num_rows, str(pdir / name), removed, tuple(bad))


def _good_parts(root: Path, ds: DatasetId, pdir: Path) -> tuple[list[PartFile], list[BadFile]]:
    bounds = layout.partition_bounds(pdir.name)
    if bounds is None:
        return [], []
    parts, skipped = list_parts(root, ds, *bounds)
    good = []
    for p in parts:
        reason = check_footer(ds.data_type, p.path)
        if reason is None:
            good.append(p)
        elif reason != "vanished":
            skipped.append(BadFile(p.path, reason))
    return good, skipped


def _attach(result: CompactResult | None, skipped: list[BadFile]) -> CompactResult | None:
    if result is None or not skipped:
        return result
    return msgspec.structs.replace(result, skipped=(*result.skipped, *skipped))


def compact_partition(
    root: Path, ds: DatasetId, partition_dir: Path, *, max_inputs: int = 2000, foreign: bool = True
) -> CompactResult | None:
    """Merge every part of one partition into one (a caller holds the dataset lock).

    More than ``max_inputs`` parts are merged in adjacent batches first. With ``foreign=False``
    parts dccd did not name are left as they are (and the dccd parts around them merged).

    Returns:
        The last merge, or None when there was nothing to merge (fewer than two good parts).
    """
    last: CompactResult | None = None
    for _ in range(MAX_ROUNDS):
        good, skipped = _good_parts(root, ds, partition_dir)
        good = good if foreign else [p for p in good if not p.foreign]
        if len(good) < 2:
            break
        batches = [good[i : i + max_inputs] for i in range(0, len(good), max_inputs)]
        results = [_merge(root, ds, partition_dir, b) for b in batches if len(b) > 1]
        done = [r for r in results if r is not None]
        if not done:
            break
        last = _attach(done[-1], skipped)
        if len(batches) == 1:
            break
    return last


def compact_open_partition(
    root: Path, ds: DatasetId, partition_dir: Path, policy: CompactPolicy, now_ns: int | None = None
) -> list[CompactResult]:
    """Rolling compaction of one partition by ``policy`` (a caller holds the dataset lock).

    Args:
        now_ns: wall clock for the part ages (default: now).
    """
    out: list[CompactResult] = []
    for _ in range(MAX_ROUNDS):
        good, skipped = _good_parts(root, ds, partition_dir)
        wall = time.time_ns() if now_ns is None else now_ns
        done = [r for run in plan_merges(good, policy, wall) if (r := _merge(root, ds, partition_dir, run))]
        if not done:
            break
        out.extend(done[:-1])
        out.append(_attach(done[-1], skipped) or done[-1])
    return out


def compact_dataset(root: Path, ds: DatasetId, *, closed_before_ns: int | None = None) -> list[CompactResult]:
    """Compact the partitions of ``ds`` whole (only those ending at or before ``closed_before_ns`` if given).

    Returns an empty list when another process is compacting the same dataset.
    """
    out = []
    with _dataset_lock(root, ds) as locked:
        if not locked:
            return []
        _replay(root, ds)
        for pdir in partitions(root, ds, None, closed_before_ns):
            bounds = layout.partition_bounds(pdir.name)
            if closed_before_ns is not None and (bounds is None or bounds[1] > closed_before_ns):
                continue  # still open: more data is expected
            res = compact_partition(root, ds, pdir)
            if res is not None:
                out.append(res)
    return out


def compact_rolling(
    root: Path, ds: DatasetId, now_ns: int, policy: CompactPolicy | None = None, *, wall_ns: int | None = None
) -> list[CompactResult]:
    """What ``dccd serve`` runs on its maintenance interval for one dataset.

    Closed partitions (ended by ``now_ns``) are merged whole; open ones by the rolling ``policy``.
    Parts dccd did not name (another tool's) are never rewritten here (``dccd compact`` merges them).
    Journals of interrupted merges are replayed first.

    Args:
        wall_ns: wall clock for part ages (default: now); stamps record real write times.

    Returns:
        The merges done; empty when another process is compacting ``ds``.
    """
    policy = policy or CompactPolicy()
    out: list[CompactResult] = []
    with _dataset_lock(root, ds) as locked:
        if not locked:
            return []
        _replay(root, ds)
        for pdir in partitions(root, ds):
            bounds = layout.partition_bounds(pdir.name)
            if bounds is not None and bounds[1] <= now_ns:
                res = compact_partition(root, ds, pdir, max_inputs=policy.max_inputs, foreign=False)
                out.extend([res] if res is not None else [])
            else:
                out.extend(compact_open_partition(root, ds, pdir, policy, wall_ns))
    return out


def compact(root: Path, ds: DatasetId | None = None) -> list[CompactResult]:
    """On demand: compact every partition (open ones too) of ``ds``, or of every dataset."""
    return [r for d in ([ds] if ds else datasets(root)) for r in compact_dataset(root, d)]


def compact_closed(root: Path, now_ns: int) -> list[CompactResult]:
    """Compact every closed partition (its day or month ended by ``now_ns``) of every dataset."""
    return [r for d in datasets(root) for r in compact_dataset(root, d, closed_before_ns=now_ns)]
