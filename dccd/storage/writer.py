"""Atomic, append-only part writer with quality gates and provenance.

A batch is converted column-wise to Arrow, passed through the quality gates,
sorted by ts, split by partition and written as one new immutable part per
partition: temp file ``.{name}.{pid}-{rand}.tmp`` in the partition directory,
fsync, ``os.replace``, fsync of the directory. Existing parts are never touched,
so appending 60 bars to a year of data costs the same as appending them to
nothing. Rows failing a gate go to ``{root}/_dccd/quarantine/...`` with the rule
name. All functions here block; :class:`dccd.storage.lake.Lake` offers async
wrappers that run them in a worker thread.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import dccd
from dccd.contracts.rules import BatchRules
from dccd.domain import DatasetId
from dccd.domain.timeutil import NS_PER_DAY
from dccd.errors import StorageError
from dccd.storage import catalog, layout, objstore
from dccd.storage.quality import DEFAULT_SKEW_NS, contract_counts, gate
from dccd.storage.schema import conform, records_to_table

ROW_GROUP_ROWS: Final[int] = 131_072
PROVENANCE_KEY: Final[bytes] = b"dccd.provenance"


class Provenance(msgspec.Struct, frozen=True):
    """Where a batch came from; stored in every part's footer."""

    source: str  # adapter / exchange name, e.g. "binance"
    transport: str  # "rest" | "ws" | "compaction" | ...
    run_id: str | None = None


class PartInfo(msgspec.Struct, frozen=True):
    """One part file written."""

    path: str
    rows: int
    first_ts: int
    last_ts: int
    bytes: int


class WriteResult(msgspec.Struct, frozen=True):
    """What one write did; ``quarantine_reasons`` maps rule name -> rows.

    ``rows_checked`` went through the gate; ``contract_failures`` maps each data contract that failed
    to its rows (quarantined ones and, for report-only contracts such as ``monotonic_ids``, written ones).
    """

    parts: tuple[PartInfo, ...] = ()
    rows_written: int = 0
    rows_quarantined: int = 0
    quarantine_reasons: dict[str, int] = {}
    quarantine_parts: tuple[str, ...] = ()
    rows_checked: int = 0
    contract_failures: dict[str, int] = {}


def parquet_options(columns: Sequence[str]) -> dict[str, Any]:
    """Writer options: zstd, ts delta-encoded, dictionary only for the low-cardinality ``side``."""
    return {
        "compression": "zstd",
        "compression_level": 3,
        "use_dictionary": [c for c in columns if c in ("side", "rule")],
        "column_encoding": {"ts": "DELTA_BINARY_PACKED"},
        "row_group_size": ROW_GROUP_ROWS,
        "write_statistics": True,
    }


def provenance_metadata(ds: DatasetId, prov: Provenance, **extra: Any) -> dict[bytes, bytes]:
    """Footer key/value metadata (JSON under ``dccd.provenance``)."""
    doc = {
        "source": prov.source,
        "transport": prov.transport,
        "run_id": prov.run_id,
        "dccd_version": dccd.__version__,
        "pyarrow_version": pa.__version__,
        "dataset": str(ds),
        "written_ns": time.time_ns(),
        **extra,
    }
    return {PROVENANCE_KEY: json.dumps(doc, separators=(",", ":")).encode()}


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """``mkdir -p`` that also fsyncs the parent of every directory it created."""
    if path.is_dir():
        return
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)  # another process may race us: fine
    for created in reversed(missing):
        fsync_dir(created.parent)


def write_part_atomic(table: pa.Table, directory: Path, name: str) -> int:
    """Write ``table`` as ``directory/name`` atomically and durably; return its size in bytes.

    A crash at any point leaves either no file or the complete file under
    ``name``; a leftover hidden ``.tmp`` file is removed by :func:`sweep_temp`.
    """
    return _write_part(table, directory, name, digest=False)[0]


def _write_part(table: pa.Table, directory: Path, name: str, *, digest: bool) -> tuple[int, str]:
    """:func:`write_part_atomic`, also returning the file's checksum when ``digest`` (else "")."""
    ensure_dir(directory)
    tmp = directory / layout.temp_name(name)
    try:
        pq.write_table(table, tmp, **parquet_options(table.column_names))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
            checksum = catalog.checksum_fd(fd, size) if digest else ""
        finally:
            os.close(fd)
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return size, checksum


def split_partitions(ds: DatasetId, table: pa.Table) -> list[tuple[str, pa.Table]]:
    """Cut a ts-sorted table into ``(partition name, slice)`` pairs (zero-copy slices)."""
    kind = layout.partition_kind(ds.data_type)
    ts = table["ts"]
    first = layout.partition_name(kind, ts[0].as_py())
    if first == layout.partition_name(kind, ts[-1].as_py()):
        return [(first, table)]
    # Runs of equal UTC days; ts > 0 here so integer division is a floor.
    runs = pc.run_end_encode(pc.divide(ts, NS_PER_DAY).combine_chunks())
    out: list[tuple[str, pa.Table]] = []
    start = prev_end = 0
    cur: str | None = None
    for end, day in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
        name = layout.partition_name(kind, day * NS_PER_DAY)
        if name != cur and cur is not None:
            out.append((cur, table.slice(start, prev_end - start)))
            start = prev_end
        cur, prev_end = name, end
    assert cur is not None
    out.append((cur, table.slice(start, prev_end - start)))
    return out


def write_table(
    root: Path,
    ds: DatasetId,
    table: pa.Table,
    provenance: Provenance,
    *,
    now_ns: int | None = None,
    skew_ns: int = DEFAULT_SKEW_NS,
    rules: BatchRules | None = None,
) -> WriteResult:
    """Gate, split and append ``table`` (lake columns) to ``ds``; never modifies existing parts.

    ``rules`` adds the batch data contracts to the gate (:func:`dccd.storage.quality.gate`).

    Raises:
        StorageError: the table lacks lake columns.
        OSError: the disk failed (nothing partial is left visible).
    """
    if objstore.settings_for(root) is not None:  # its parts go to the store (ObjectLake.write_table), not here
        raise StorageError(f"{root} is an object-store lake's local cache: write through Lake, not to the directory")
    now_ns = time.time_ns() if now_ns is None else now_ns
    result = gate(ds.data_type, conform(ds.data_type, table), now_ns=now_ns, skew_ns=skew_ns, rules=rules)
    meta = provenance_metadata(ds, provenance)
    parts = []
    if result.good.num_rows:
        stamp_ns = time.time_ns()
        ds_dir = layout.dataset_dir(root, ds)
        ds_key = str(ds_dir.relative_to(root))
        entries = []
        for partition, chunk in split_partitions(ds, result.good):
            ts = chunk["ts"]
            first, last = ts[0].as_py(), ts[-1].as_py()
            stamp = layout.new_stamp(stamp_ns)
            name = layout.part_name(first, last, stamp)
            directory = ds_dir / partition
            size, digest = _write_part(chunk.replace_schema_metadata(meta), directory, name, digest=True)
            parts.append(PartInfo(str(directory / name), chunk.num_rows, first, last, size))
            entries.append(
                catalog.NewFile(f"{ds_key}/{partition}/{name}", chunk.num_rows, first, last, size, digest, stamp)
            )
        # The commit point: the parts join the catalog at one snapshot id (a crash before this line
        # leaves them unregistered; the startup repair registers them).
        catalog.register(root, ds_key, entries, provenance.transport)
    qparts: tuple[str, ...] = ()
    if result.bad is not None:
        qdir = layout.quarantine_dir(root, ds)
        name = f"part-{layout.new_stamp(time.time_ns())}.parquet"
        write_part_atomic(result.bad.replace_schema_metadata(meta), qdir, name)
        qparts = (str(qdir / name),)
    return WriteResult(
        parts=tuple(parts),
        rows_written=result.good.num_rows,
        rows_quarantined=0 if result.bad is None else result.bad.num_rows,
        quarantine_reasons=result.reasons,
        quarantine_parts=qparts,
        rows_checked=table.num_rows,
        contract_failures=contract_counts(result.reasons, result.flags),
    )


def write_records(
    root: Path,
    ds: DatasetId,
    records: Sequence[Any],
    provenance: Provenance,
    *,
    now_ns: int | None = None,
    skew_ns: int = DEFAULT_SKEW_NS,
    rules: BatchRules | None = None,
) -> WriteResult:
    """Append a batch of domain Structs (``Trade``, ``Candle``, ``BookLevel``/``BookSnapshot``, ...)."""
    if not records:
        return WriteResult()
    table = records_to_table(ds.data_type, records)
    return write_table(root, ds, table, provenance, now_ns=now_ns, skew_ns=skew_ns, rules=rules)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (this process counts as alive; a pid we may not signal too)."""
    if pid == os.getpid():
        return True  # another thread of this process may be writing it right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp(root: Path, *, max_age_s: float = 3600.0) -> list[Path]:
    """Remove temp leftovers of crashed writers anywhere under ``root``.

    A temp file is removed when its writer's pid is gone, or when it is older
    than ``max_age_s`` (pid reused, or written from another host).

    Returns:
        The removed paths.
    """
    removed = []
    now = time.time()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            pid = layout.temp_owner_pid(name)
            if pid is None:
                continue
            path = Path(dirpath) / name
            try:
                stale = not pid_alive(pid) or now - path.stat().st_mtime > max_age_s
                if stale:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # its writer finished (renamed it) meanwhile
    return removed
