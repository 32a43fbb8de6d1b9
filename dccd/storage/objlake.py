"""``Lake`` on an object store (``storage.path: s3://bucket/prefix``): writes, compaction, retirement, snapshots.

A part is written once under a unique name (the local lake's ``part-{first}-{last}-{stamp}.parquet`` in the
same Hive directories; the stamp carries a random token) with a put-if-absent, then committed to the catalog's
log (:mod:`dccd.storage.commitlog`) in one entry per batch: the commit is the atomic step. A crash between the
put and the commit leaves an object the catalog never references; :meth:`ObjectLake.sweep` deletes such
orphans once older than ``orphan_age_s``. A compaction writes its output part, commits the merge in one log
entry (refused cleanly when another process ended an input first: its output is deleted) and leaves its
inputs in place: ended parts are deleted by :meth:`ObjectLake.collect` once no retained snapshot needs them
and ``grace_s`` has passed since they ended, so a read planned before the merge still finds its files.

Reads go through :mod:`dccd.storage.objread` (the reader dispatches to it). Per-machine state (run
history, the catalog cache) lives in the local root, ``self.root``.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from dccd.contracts.rules import DEFAULT_RULES, ContractRules
from dccd.domain import DatasetId
from dccd.errors import StorageError
from dccd.storage import catalog, commitlog, compaction, layout, reader, snapshots, writer
from dccd.storage.lake import Lake
from dccd.storage.objread import ObjectReads, handle_for
from dccd.storage.objstore import is_object_uri, register, resolve
from dccd.storage.quality import DEFAULT_SKEW_NS, contract_counts, gate
from dccd.storage.runs import Offload
from dccd.storage.schema import SCHEMAS, conform, records_to_table

ORPHAN_AGE_S: Final[float] = 3600.0
"""A part object the catalog does not reference is deleted once this old (a writer commits within seconds)."""
GRACE_S: Final[float] = 900.0
"""An ended part (compacted away, no snapshot needs it) is deleted this long after it ended."""
DATA_DIRS: Final[tuple[str, ...]] = ("trades/", "book/", "ohlc/", "funding/", "oi/")


class Unsupported(StorageError):
    """An operation an object-store lake does not offer (yet)."""


def _sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


class ObjectLake(Lake):
    """A :class:`Lake` whose parts and catalog live in an S3-compatible store; ``root`` is the local cache.

    Args:
        root: the lake's local root (as ``Config.data_root`` gives it), or the ``s3://bucket/prefix`` URI
            itself (settings from the environment).
    """

    def __init__(
        self,
        root: Path | str,
        *,
        skew_ns: int = DEFAULT_SKEW_NS,
        offload: Offload | None = None,
        contracts: ContractRules = DEFAULT_RULES,
    ) -> None:
        if is_object_uri(root):
            root = register(resolve(str(root), None, None))
        obj = handle_for(root)
        if obj is None:
            raise StorageError(f"{root} is not the local root of an object-store lake")
        super().__init__(obj.root, skew_ns=skew_ns, offload=offload, contracts=contracts)
        self.obj: ObjectReads = obj
        self.uri = obj.settings.uri
        self.writer_id = f"{socket.gethostname()}:{os.getpid()}"
        self.orphan_age_s = ORPHAN_AGE_S
        self.grace_s = GRACE_S

    # -- writing -------------------------------------------------------------------------
    def _put_part(self, rel: str, table: pa.Table) -> catalog.NewFile:
        """Write ``table`` as the object of lake path ``rel`` (put-if-absent); return its catalog entry."""
        buf = io.BytesIO()
        pq.write_table(table, buf, **writer.parquet_options(table.column_names))
        data = buf.getvalue()
        if not self.obj.store.put_if_absent(rel, data):
            raise StorageError(f"{self.uri}: part {rel} already exists (a name clash: nothing was overwritten)")
        ts = table["ts"]
        stamp = layout.parse_part_name(rel.rsplit("/", 1)[-1])
        assert stamp is not None
        return catalog.NewFile(
            rel, table.num_rows, ts[0].as_py(), ts[-1].as_py(), len(data), _sha256(data), stamp.stamp
        )

    def write(
        self, dataset: DatasetId, records: Sequence[Any], provenance: writer.Provenance, *, now_ns: int | None = None
    ) -> writer.WriteResult:
        """Append domain Structs (see :meth:`write_table`)."""
        if not records:
            return writer.WriteResult()
        return self.write_table(dataset, records_to_table(dataset.data_type, records), provenance, now_ns=now_ns)

    def write_table(
        self, dataset: DatasetId, table: pa.Table, provenance: writer.Provenance, *, now_ns: int | None = None
    ) -> writer.WriteResult:
        """Gate, split and append ``table``: one new part object per partition, then one log commit for all.

        Raises:
            StorageError: the store failed (parts put before the failure are orphans the sweep removes).
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        rules = self.batch_rules(dataset)
        result = gate(
            dataset.data_type, conform(dataset.data_type, table), now_ns=now_ns, skew_ns=self.skew_ns, rules=rules
        )
        meta = writer.provenance_metadata(dataset, provenance)
        parts: list[writer.PartInfo] = []
        if result.good.num_rows:
            stamp_ns = time.time_ns()
            key = self.obj.key(dataset)
            entries = []
            for partition, chunk in writer.split_partitions(dataset, result.good):
                ts = chunk["ts"]
                first, last = ts[0].as_py(), ts[-1].as_py()
                rel = f"{key}/{partition}/{layout.part_name(first, last, layout.new_stamp(stamp_ns))}"
                nf = self._put_part(rel, chunk.replace_schema_metadata(meta))
                entries.append(commitlog.FileEntry(nf.path, nf.rows, first, last, nf.size, nf.checksum, nf.stamp))
                parts.append(writer.PartInfo(self.obj.url(rel), chunk.num_rows, first, last, nf.size))
            # The commit point: one log entry adds every part of the batch.
            entry = commitlog.AddFiles(key, entries, provenance.transport, time.time_ns())
            commitlog.commit(self.obj.store, self.root, entry, self.writer_id)
        qparts: tuple[str, ...] = ()
        if result.bad is not None:
            qrel = f"{layout.META_DIR}/quarantine/{layout.dataset_key(dataset)}/part-{layout.new_stamp(time.time_ns())}.parquet"
            buf = io.BytesIO()
            pq.write_table(result.bad.replace_schema_metadata(meta), buf)
            self.obj.store.put(qrel, buf.getvalue())
            qparts = (self.obj.url(qrel),)
        return writer.WriteResult(
            parts=tuple(parts),
            rows_written=result.good.num_rows,
            rows_quarantined=0 if result.bad is None else result.bad.num_rows,
            quarantine_reasons=result.reasons,
            quarantine_parts=qparts,
            rows_checked=table.num_rows,
            contract_failures=contract_counts(result.reasons, result.flags),
        )

    # -- maintenance ---------------------------------------------------------------------
    def sweep(self) -> list[Path]:
        """Startup: catch the catalog up, delete orphan part objects (older than ``orphan_age_s``, referenced by
        no catalog row) and ended parts past their grace; return what was deleted (as lake-relative paths)."""
        self.obj.refresh()
        self.repaired = snapshots.Reconciled(0, 0)
        return [Path(p) for p in self.sweep_orphans() + self.collect()]

    def sweep_orphans(self, *, max_age_s: float | None = None) -> list[str]:
        """Delete part objects no catalog row names and older than ``max_age_s`` (default ``orphan_age_s``)."""
        age = self.orphan_age_s if max_age_s is None else max_age_s
        listed = [o for d in DATA_DIRS for o in self.obj.store.list(d)]
        self.obj.refresh()  # after the listing: a part committed meanwhile is known now
        with catalog.transaction(self.root, write=False) as con:
            known = {r[0] for r in con.execute("SELECT path FROM data_file")}
        cutoff = time.time() - age
        orphans = [key for key, _size, mtime in listed if key not in known and mtime < cutoff]
        self.obj.store.delete(orphans)
        return orphans

    def collect(self, *, grace_s: float | None = None) -> list[str]:
        """Delete the ended parts no retained snapshot references and that ended ``grace_s`` ago; forget their rows."""
        grace = self.grace_s if grace_s is None else grace_s
        self.obj.refresh()
        cutoff = time.time_ns() - int(grace * 1e9)
        with catalog.transaction(self.root, write=False) as con:
            rows = con.execute(
                "SELECT f.path FROM data_file f JOIN log_ended e ON e.path = f.path"
                f" WHERE f.end_snapshot IS NOT NULL AND e.ended_ns <= ? AND NOT {catalog._REFERENCED}",
                (cutoff,),
            ).fetchall()
        paths = sorted({r[0] for r in rows})
        if paths:
            self.obj.store.delete(paths)
            commitlog.commit(self.obj.store, self.root, commitlog.Forgotten(paths), self.writer_id)
        return paths

    def repair_catalog(self) -> snapshots.Reconciled:
        """Nothing to repair: the log is the catalog (a part put but never committed is an orphan, swept)."""
        return snapshots.Reconciled(0, 0)

    def quarantine(self, path: Path | str) -> Path:
        """Not offered on an object store."""
        raise Unsupported(f"quarantine is not supported on an object-store lake ({self.uri})")

    # -- reading helpers that list directories locally -----------------------------------
    def last_ts(self, dataset: DatasetId) -> int | None:
        """Newest stored ts of ``dataset``, from the catalog."""
        parts = self.obj.list_parts(dataset)
        return max((p.last_ts for p in parts), default=None)

    def has_dataset(self, dataset: DatasetId) -> bool:
        """True when the catalog holds live parts of ``dataset``."""
        return bool(self.obj.list_parts(dataset))

    def missing_message(self, dataset: DatasetId, *, show_root: bool = True) -> str:
        """One line: ``dataset`` was never collected, and what the lake holds nearest to it."""
        span = f" {dataset.span.label}" if dataset.span else ""
        where = f" in {self.uri}" if show_root else ""
        what = f"no {dataset.exchange} {dataset.symbol} {dataset.data_type.value}{span} stored{where}"
        near = self.nearest(dataset)
        if not near:
            return what
        return f"{what}; nearest: " + ", ".join(
            f"{d.exchange} {d.symbol} {d.data_type.value}{f' {d.span.label}' if d.span else ''}" for d in near
        )

    # -- compaction ----------------------------------------------------------------------
    def _partitions(self, dataset: DatasetId) -> dict[str, list[reader.PartFile]]:
        out: dict[str, list[reader.PartFile]] = {}
        for p in self.obj.list_parts(dataset):
            out.setdefault(self.obj.rel(p.path).rsplit("/", 2)[-2], []).append(p)
        return dict(sorted(out.items()))

    def _merge(
        self, dataset: DatasetId, partition: str, parts: list[reader.PartFile]
    ) -> compaction.CompactResult | None:
        """Merge ``parts`` (adjacent in write order) into one part; None when another process merged one first."""
        if len(parts) < 2:
            return None
        plan = reader.Plan(
            dataset.data_type, parts, [], reader.build_sql(dataset.data_type, True, None, None, files=parts)
        )
        table, bad = reader.run_table(plan)
        if table.num_rows == 0 or bad:
            return None
        table = table.cast(SCHEMAS[dataset.data_type])
        first, last = table["ts"][0].as_py(), table["ts"][-1].as_py()
        stamp = max(p.stamp for p in parts)[:16] + layout.new_stamp(0)[16:]  # the newest input's write time
        rel = f"{self.obj.key(dataset)}/{partition}/{layout.part_name(first, last, stamp)}"
        meta = writer.provenance_metadata(dataset, writer.Provenance("compaction", "compaction"), inputs=len(parts))
        nf = self._put_part(rel, table.replace_schema_metadata(meta))
        entry = commitlog.Merge(
            self.obj.key(dataset),
            commitlog.FileEntry(nf.path, nf.rows, nf.min_ts, nf.max_ts, nf.size, nf.checksum, nf.stamp),
            [self.obj.rel(p.path) for p in parts],
            time.time_ns(),
        )
        try:
            commitlog.commit(self.obj.store, self.root, entry, self.writer_id)
        except commitlog.Conflict:
            self.obj.store.delete([rel])  # another compaction ended an input first: this output never existed
            return None
        return compaction.CompactResult(
            f"{self.obj.key(dataset)}/{partition}", len(parts), table.num_rows, self.obj.url(rel), 0
        )

    def _compact_dataset(
        self, dataset: DatasetId, closed_before_ns: int | None, policy: compaction.CompactPolicy | None, wall_ns: int
    ) -> list[compaction.CompactResult]:
        out = []
        for partition, parts in self._partitions(dataset).items():
            bounds = layout.partition_bounds(partition)
            closed = bounds is not None and closed_before_ns is not None and bounds[1] <= closed_before_ns
            if policy is None or closed:
                if policy is None and closed_before_ns is not None and not closed:
                    continue  # compact_closed: an open partition waits
                runs = [parts[i : i + 2000] for i in range(0, len(parts), 2000)]
            else:
                runs = compaction.plan_merges(parts, policy, wall_ns)
            out += [r for run in runs if (r := self._merge(dataset, partition, run)) is not None]
        return out

    def compact(self, dataset: DatasetId | None = None) -> list[compaction.CompactResult]:
        """Compact every partition of ``dataset`` (or of all datasets) now."""
        return [r for d in ([dataset] if dataset else self.datasets()) for r in self._compact_dataset(d, None, None, 0)]

    def compact_closed(self, now_ns: int) -> list[compaction.CompactResult]:
        """Compact partitions whose day/month ended by ``now_ns``."""
        return [r for d in self.datasets() for r in self._compact_dataset(d, now_ns, None, 0)]

    def compact_rolling(
        self, dataset: DatasetId, now_ns: int, policy: compaction.CompactPolicy | None = None
    ) -> list[compaction.CompactResult]:
        """Closed partitions whole, open ones by ``policy``; then ended parts past their grace are deleted."""
        out = self._compact_dataset(dataset, now_ns, policy or compaction.CompactPolicy(), time.time_ns())
        self.collect()
        return out

    # -- snapshots -----------------------------------------------------------------------
    def create_snapshot(
        self, *, tag: str | None = None, note: str | None = None, keep: int | None = None
    ) -> catalog.Snapshot:
        """Take a snapshot now (one log entry); ``keep``: retention of untagged snapshots applied after.

        Raises:
            ValueError: a bad or taken tag, or ``keep`` below 0.
        """
        if tag is not None:
            snapshots.check_tag(tag)
        if keep is not None and keep < 0:
            raise ValueError("--keep must be 0 or more")
        now = time.time_ns()
        try:
            commitlog.commit(self.obj.store, self.root, commitlog.SnapshotTaken(now, tag, note), self.writer_id)
        except commitlog.Conflict as exc:
            raise ValueError(str(exc)) from None
        with catalog.transaction(self.root, write=False) as con:
            row = con.execute(
                "SELECT snapshot_id, snapshot_time, tag, note FROM snapshot WHERE snapshot_time = ?"
                " ORDER BY snapshot_id DESC LIMIT 1",
                (now,),
            ).fetchone()
        if keep is not None:
            self.prune_snapshots(keep)
        return catalog.Snapshot(*row)

    def list_snapshots(self) -> list[snapshots.SnapshotInfo]:
        """Retained snapshots with their datasets, parts, rows and bytes, oldest first."""
        self.obj.refresh()
        return snapshots.info(self.root)

    def drop_snapshot(self, ref: str | int) -> tuple[catalog.Snapshot, list[str]]:
        """Drop one snapshot; return it and the parts deleted (ended ones past their grace no snapshot needs)."""
        snap = snapshots.resolve(self.root, ref)
        commitlog.commit(self.obj.store, self.root, commitlog.SnapshotsDropped([snap.snapshot_id]), self.writer_id)
        return snap, self.collect()

    def prune_snapshots(self, keep: int) -> tuple[list[catalog.Snapshot], list[str]]:
        """Keep the newest ``keep`` untagged snapshots (tags forever); return dropped and deleted."""
        self.obj.refresh()
        untagged = [s for s in snapshots._snapshots(self.root) if s.tag is None]
        dropped = untagged[: max(0, len(untagged) - keep)]
        if dropped:
            entry = commitlog.SnapshotsDropped([s.snapshot_id for s in dropped])
            commitlog.commit(self.obj.store, self.root, entry, self.writer_id)
        return dropped, self.collect()
