"""Reads of an object-store lake: the parts come from the catalog (the commit log's local cache), never a listing.

:mod:`dccd.storage.reader` hands a root that :func:`dccd.storage.objstore.settings_for` knows to
:func:`handle_for`, whose :class:`ObjectReads` answers ``plan``, ``list_parts`` and ``datasets`` from the
catalog after catching it up with the log. Part paths are ``s3://bucket/prefix/<Hive path>`` URLs that DuckDB
opens through pyarrow's S3 file system (registered on the reader's database), so the SQL, the dedup, the
views and the exports are the local lake's own. Parts are immutable and deleted only after a grace period
once no retained snapshot needs them, so a read needs no pins.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb

from dccd.domain import DatasetId
from dccd.storage import catalog, commitlog, layout
from dccd.storage.objstore import ObjectStore, StoreSettings, duckdb_filesystem, settings_for, store_for


class ObjectReads:
    """The read side of one object-store lake whose local root (cache) is ``root``."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.root = settings.cache_dir
        self.store: ObjectStore = store_for(settings)
        self.protocol, self.fs = duckdb_filesystem(self.store)
        from dccd.storage import reader

        reader.register_filesystem(self.fs)
        prefix = f"{settings.prefix}/" if settings.prefix else ""
        self.base = f"{self.protocol}://{settings.bucket}/{prefix}"
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        commitlog.prepare(self.root)

    def refresh(self) -> int:
        """Apply the log entries the local catalog lacks (one LIST when there are none); return the last applied
        sequence number. Every read calls it, so a reader sees every commit made before the read began.
        """
        with self._lock:
            return commitlog.catch_up(self.store, self.root)

    def url(self, rel: str) -> str:
        """What DuckDB opens for lake-relative path ``rel``."""
        return self.base + rel

    def rel(self, url: str) -> str:
        """Inverse of :meth:`url`."""
        return url[len(self.base) :] if url.startswith(self.base) else url

    def key(self, ds: DatasetId) -> str:
        """The catalog key of ``ds`` (its Hive directory, relative)."""
        return str(layout.dataset_dir(self.root, ds).relative_to(self.root))

    def list_parts(
        self, ds: DatasetId, start_ns: int | None = None, end_ns: int | None = None, *, as_of: str | int | None = None
    ) -> list[Any]:
        """The live parts of ``ds`` (or those of snapshot ``as_of``) overlapping ``[start_ns, end_ns)``, by stamp."""
        from dccd.storage.reader import PartFile
        from dccd.storage.snapshots import resolve

        self.refresh()
        snap = resolve(self.root, as_of).snapshot_id if as_of is not None else None
        out = []
        for f in catalog.files_at(self.root, snap, self.key(ds)):
            if (end_ns is not None and f.min_ts >= end_ns) or (start_ns is not None and f.max_ts < start_ns):
                continue
            out.append(PartFile(self.url(f.path), f.min_ts, f.max_ts, f.stamp, f.size, f.foreign))
        return out

    def plan(
        self, ds: DatasetId, start_ns: int | None = None, end_ns: int | None = None, *, as_of: str | int | None = None
    ) -> Any:
        """A :class:`dccd.storage.reader.Plan` over the catalog's parts (no pins: parts are immutable here)."""
        from dccd.storage import reader

        good = self.list_parts(ds, start_ns, end_ns, as_of=as_of)
        if reader.presorted(ds.data_type, good):
            good.sort(key=lambda p: p.first_ts)
            sql = reader.build_sql(ds.data_type, False, start_ns, end_ns, order=False, files=good)
        else:
            sql = reader.build_sql(ds.data_type, reader.needs_dedup(ds.data_type, good), start_ns, end_ns, files=good)
        return reader.Plan(ds.data_type, good, [], sql, None)

    def datasets(self) -> list[DatasetId]:
        """The datasets holding live parts."""
        from dccd.storage.reader import _dataset_order

        self.refresh()
        with catalog.transaction(self.root, write=False) as con:
            keys = [r[0] for r in con.execute("SELECT DISTINCT dataset FROM data_file WHERE end_snapshot IS NULL")]
        found = [ds for k in keys if (ds := layout.parse_dataset_dir(self.root, self.root / k)) is not None]
        return sorted(found, key=_dataset_order)

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let a DuckDB connection (a database of its own) open this lake's ``s3`` parts."""
        con.register_filesystem(self.fs)


_handles: dict[StoreSettings, ObjectReads] = {}
_handles_lock = threading.Lock()


def handle_for(root: Path | str) -> ObjectReads | None:
    """The read side of the object-store lake whose local root is ``root`` (None: a local lake)."""
    settings = settings_for(root)
    if settings is None:
        return None
    with _handles_lock:
        h = _handles.get(settings)
        if h is None:
            h = _handles[settings] = ObjectReads(settings)
    return h
