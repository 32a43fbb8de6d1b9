"""``Lake(root)``: the one handle actors, the web app and the CLI use.

Every method blocks (disk, DuckDB); each has an ``a``-prefixed twin that runs
it in a Trio worker thread, so the event loop never waits on the disk::

    lake = Lake("./data")
    res = await lake.awrite(ds, candles, Provenance("binance", "rest", run_id))
    rows = (await lake.aread_table(ds, start_ns, end_ns)).table
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import trio

from dccd.contracts.rules import DEFAULT_RULES, BatchRules, ContractRules, sequential_exchange
from dccd.domain import DatasetId
from dccd.domain.plan import StoredTrades
from dccd.domain.records import Trade
from dccd.storage import catalog, compaction, layout, objstore, reader, snapshots, views, writer
from dccd.storage import inventory as inv
from dccd.storage.export import Export
from dccd.storage.quality import DEFAULT_SKEW_NS
from dccd.storage.reader import BadFile
from dccd.storage.runs import Offload
from dccd.storage.schema import LOOSE_SCHEMAS

T = TypeVar("T")


@dataclass(frozen=True)
class ReadResult:
    """Rows of a read (deduplicated, sorted by ts) and the files skipped as corrupt or foreign."""

    table: pa.Table
    skipped: list[BadFile] = field(default_factory=list)


@dataclass(frozen=True)
class BatchStream:
    """A streaming read: ``reader`` yields record batches; ``skipped`` as in :class:`ReadResult`."""

    reader: pa.RecordBatchReader
    skipped: list[BadFile]


class Lake:
    """A Parquet lake rooted at ``root``. Construction does no I/O.

    Args:
        root: lake directory (created on first write).
        skew_ns: clock skew tolerated by the ``ts_not_future`` gate.
        contracts: the data contracts' settings (the batch contracts run on every write unless off).
    """

    def __new__(cls, root: Path | str, **kwargs: Any) -> Lake:
        """``Lake(root)`` of an object-store lake (its ``s3://`` URI, or the local root ``Config.data_root`` gives
        for one) is a :class:`dccd.storage.objlake.ObjectLake`."""
        if cls is Lake and (objstore.is_object_uri(root) or objstore.settings_for(root) is not None):
            from dccd.storage.objlake import ObjectLake  # imports this module

            return super().__new__(ObjectLake)
        return super().__new__(cls)

    def __init__(
        self,
        root: Path | str,
        *,
        skew_ns: int = DEFAULT_SKEW_NS,
        offload: Offload | None = None,
        contracts: ContractRules = DEFAULT_RULES,
    ) -> None:
        self.root = Path(root)
        self._offload: Offload = offload or trio.to_thread.run_sync
        self.skew_ns = skew_ns
        self.contracts = contracts
        self._monotonic: dict[str, bool] = {}
        self.repaired = snapshots.Reconciled(0, 0)
        """What the last :meth:`sweep` repaired in the catalog."""

    def batch_rules(self, dataset: DatasetId) -> BatchRules | None:
        """The batch contracts' settings for a write to ``dataset`` (None: off)."""
        exchange = dataset.exchange
        if exchange not in self._monotonic:
            self._monotonic[exchange] = sequential_exchange(exchange)
        return self.contracts.for_batch(dataset, self._monotonic[exchange])

    # -- writing -------------------------------------------------------------------------
    def sweep(self) -> list[Path]:
        """Startup: remove temp files left by crashed writers and the inputs an interrupted compaction
        had already replaced (:func:`dccd.storage.compaction.recover`); return them."""
        if not self.root.exists():
            return []
        swept = writer.sweep_temp(self.root) + compaction.recover(self.root) + reader.sweep_pins(self.root)
        swept += views.sweep_view_pins(self.root)
        self.repaired = self.repair_catalog()
        return swept

    def repair_catalog(self) -> snapshots.Reconciled:
        """Register the parts the catalog lacks (a crash between a part's rename and its registration) and end
        the rows whose files are gone; see :func:`dccd.storage.snapshots.reconcile`."""
        return snapshots.reconcile(self.root)

    def write(
        self, dataset: DatasetId, records: Sequence[Any], provenance: writer.Provenance, *, now_ns: int | None = None
    ) -> writer.WriteResult:
        """Append domain Structs; see :func:`dccd.storage.writer.write_records`."""
        return writer.write_records(
            self.root,
            dataset,
            records,
            provenance,
            now_ns=now_ns,
            skew_ns=self.skew_ns,
            rules=self.batch_rules(dataset),
        )

    def write_table(
        self, dataset: DatasetId, table: pa.Table, provenance: writer.Provenance, *, now_ns: int | None = None
    ) -> writer.WriteResult:
        """Append an Arrow table with the lake columns."""
        return writer.write_table(
            self.root, dataset, table, provenance, now_ns=now_ns, skew_ns=self.skew_ns, rules=self.batch_rules(dataset)
        )

    # -- reading -------------------------------------------------------------------------
    def read_table(
        self,
        dataset: DatasetId,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        as_of: str | int | None = None,
    ) -> ReadResult:
        """Rows with ``start_ns <= ts < end_ns`` (None = unbounded), deduplicated, sorted.

        ``as_of``: a snapshot id, tag or ISO time; the rows the lake held at that snapshot.
        """
        table, skipped = reader.read_table(self.root, dataset, start_ns, end_ns, as_of=as_of)
        return ReadResult(table, skipped)

    @contextlib.contextmanager
    def open_reader(
        self,
        dataset: DatasetId,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        batch_rows: int = 65_536,
        as_of: str | int | None = None,
    ) -> Iterator[BatchStream]:
        """Stream a read as a ``pyarrow.RecordBatchReader``; the query is closed on exit."""
        p = reader.plan(self.root, dataset, start_ns, end_ns, pin=True, as_of=as_of)
        batches = reader.iter_batches(p, batch_rows)
        try:
            yield BatchStream(pa.RecordBatchReader.from_batches(LOOSE_SCHEMAS[dataset.data_type], batches), p.skipped)
        finally:
            batches.close()

    def export(
        self,
        dataset: DatasetId,
        fmt: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        as_of: str | int | None = None,
    ) -> Export:
        """An iterable of byte chunks in ``fmt`` (csv, jsonl, parquet, arrow); ``.rows`` after iterating.

        Raises:
            ValueError: unknown format.
            SnapshotNotFound: ``as_of`` names no retained snapshot.
        """
        return Export(reader.plan(self.root, dataset, start_ns, end_ns, pin=True, as_of=as_of), fmt)

    def export_to(
        self,
        dataset: DatasetId,
        fmt: str,
        out: Path | str | BinaryIO,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        as_of: str | int | None = None,
    ) -> tuple[int, list[BadFile]]:
        """Write an export to a file path or binary stream; return (rows, skipped files)."""
        exp = self.export(dataset, fmt, start_ns, end_ns, as_of=as_of)
        if isinstance(out, str | os.PathLike):
            with open(out, "wb") as f:
                return exp.write_to(f), exp.plan.skipped
        return exp.write_to(out), exp.plan.skipped

    def last_ts(self, dataset: DatasetId) -> int | None:
        """Newest stored ts of ``dataset`` (for ``--start last``), from part names and footers: no data is read."""
        for pdir in reversed(reader.partitions(self.root, dataset)):
            bounds = layout.partition_bounds(pdir.name)
            parts, _bad = reader.list_parts(self.root, dataset, *(bounds or (None, None)))
            for p in sorted(parts, key=lambda p: p.last_ts, reverse=True):
                if p.foreign or reader.check_footer(dataset.data_type, p.path) is None:
                    return p.last_ts
        return None

    def stored_ts(self, dataset: DatasetId, start_ns: int | None, end_ns: int | None) -> list[int]:
        """Sorted ts stored in ``[start_ns, end_ns)`` (bar open times for OHLC planning)."""
        table = self.read_table(dataset, start_ns, end_ns).table
        return sorted(table.column("ts").to_pylist()) if table.num_rows else []

    def stored_trades(self, dataset: DatasetId, start_ns: int | None, end_ns: int | None) -> StoredTrades | None:
        """First/last ts and sorted integer ids of the trades stored in ``[start_ns, end_ns)`` (None: none)."""
        table = self.read_table(dataset, start_ns, end_ns).table
        if table.num_rows == 0:
            return None
        ts = table.column("ts")
        return StoredTrades(pc.min(ts).as_py(), pc.max(ts).as_py(), _int_ids(table))

    def trade_ids_at(self, dataset: DatasetId, ts: int) -> frozenset[str]:
        """Ids of the trades stored at ``ts`` (a resume cursor re-reads that instant: they are not new)."""
        table = self.read_table(dataset, ts, ts + 1).table
        return frozenset(str(i) for i in table.column("id").to_pylist()) if table.num_rows else frozenset()

    def last_trade(self, dataset: DatasetId) -> Trade | None:
        """The newest stored trade (the highest integer id at the newest ts), or None."""
        last_ts = self.last_ts(dataset)
        if last_ts is None:
            return None
        table = self.read_table(dataset, last_ts, last_ts + 1).table
        if table.num_rows == 0:
            return None
        ids = _int_ids(table)
        row = table.slice(table.num_rows - 1, 1).to_pylist()[0]
        tid = str(ids[-1]) if ids else row["id"]
        return Trade(row["ts"], tid, row["price"], row["amount"], row["side"], row.get("recv_ts"))

    def has_dataset(self, dataset: DatasetId) -> bool:
        """True when ``dataset`` was ever collected here (it has a partition directory)."""
        return bool(reader.partitions(self.root, dataset))

    def stored_range(self, dataset: DatasetId) -> tuple[int, int] | None:
        """``(first_ts, last_ts)`` stored for ``dataset``, from part names and footers, or None."""
        return reader.stored_range(self.root, dataset)

    def nearest(self, dataset: DatasetId) -> list[DatasetId]:
        """Datasets the lake holds closest to ``dataset`` (for "nothing stored" messages)."""
        return reader.nearest(reader.datasets(self.root) if self.root.is_dir() else [], dataset)

    def missing_message(self, dataset: DatasetId, *, show_root: bool = True) -> str:
        """One line: ``dataset`` was never collected, and what the lake holds nearest to it."""
        span = f" {dataset.span.label}" if dataset.span else ""
        where = f" in {self.root}" if show_root else ""
        what = f"no {dataset.exchange} {dataset.symbol} {dataset.data_type.value}{span} stored{where}"
        near = self.nearest(dataset)
        if not near:
            return f"{what} (the lake holds no {dataset.exchange} data)" if self.root.is_dir() else what
        return f"{what}; nearest: " + ", ".join(
            f"{d.exchange} {d.symbol} {d.data_type.value}{f' {d.span.label}' if d.span else ''}" for d in near
        )

    # -- maintenance ---------------------------------------------------------------------
    def datasets(self) -> list[DatasetId]:
        """Every dataset present in the lake."""
        return reader.datasets(self.root)

    def quarantine(self, path: Path | str) -> Path:
        """Move a file out of the data (a corrupt part, say) to ``{root}/_dccd/quarantine/<its relative path>``.

        Returns:
            The new path.

        Raises:
            ValueError: ``path`` is not a file under the lake root, is already in ``_dccd``,
                or the quarantine already holds a file of that name.
        """
        if Path(path).is_symlink():
            raise ValueError(f"{path} is a symbolic link, not a part")
        src, root = Path(path).resolve(), self.root.resolve()
        try:
            rel = src.relative_to(root)
        except ValueError:
            raise ValueError(f"{path} is not inside the lake {self.root}") from None
        if rel.parts and rel.parts[0] == layout.META_DIR:
            raise ValueError(f"{path} is dccd's own state, not data")
        if not src.is_file():
            raise ValueError(f"{path} is not a file")
        dest = layout.quarantine_root(root) / rel
        if dest.exists():
            raise ValueError(f"{dest} already exists")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dest)  # same file system: atomic; the part is never half in both places
        writer.fsync_dir(dest.parent)
        writer.fsync_dir(src.parent)
        with catalog.transaction(root) as con:  # it leaves the current view (snapshots lose it too)
            catalog.end_files(con, [str(rel)])
        return dest

    def inventory(self, dataset: DatasetId | None = None) -> list[inv.DatasetInventory]:
        """Rows, ranges, sizes and exact gaps per dataset."""
        return inv.inventory(self.root, dataset)

    def compact(self, dataset: DatasetId | None = None) -> list[compaction.CompactResult]:
        """Compact every partition of ``dataset`` (or of all datasets) now."""
        return compaction.compact(self.root, dataset)

    def compact_closed(self, now_ns: int) -> list[compaction.CompactResult]:
        """Compact partitions whose day/month ended by ``now_ns``."""
        return compaction.compact_closed(self.root, now_ns)

    def compact_rolling(
        self, dataset: DatasetId, now_ns: int, policy: compaction.CompactPolicy | None = None
    ) -> list[compaction.CompactResult]:
        """Serve's maintenance pass over one dataset: closed partitions whole, open ones by ``policy``."""
        return compaction.compact_rolling(self.root, dataset, now_ns, policy)

    # -- snapshots (see dccd.storage.snapshots) ------------------------------------------
    def create_snapshot(
        self, *, tag: str | None = None, note: str | None = None, keep: int | None = None
    ) -> catalog.Snapshot:
        """Take a snapshot now (``keep``: retention of untagged snapshots applied after)."""
        return snapshots.create(self.root, tag=tag, note=note, keep=keep)

    def list_snapshots(self) -> list[snapshots.SnapshotInfo]:
        """Retained snapshots with their datasets, parts, rows and bytes, oldest first."""
        return snapshots.info(self.root) if catalog.exists(self.root) else []

    def snapshot(self, ref: str | int) -> catalog.Snapshot:
        """The snapshot ``ref`` names (id, tag or ISO time)."""
        return snapshots.resolve(self.root, ref)

    def snapshot_diff(self, a: str | int, b: str | int) -> list[snapshots.DatasetDiff]:
        """Datasets, rows and ranges added and removed from snapshot ``a`` to ``b``."""
        return snapshots.diff(self.root, a, b)

    def drop_snapshot(self, ref: str | int) -> tuple[catalog.Snapshot, list[str]]:
        """Drop one snapshot; return it and the parts deleted because nothing references them any more."""
        return snapshots.drop(self.root, ref)

    def prune_snapshots(self, keep: int) -> tuple[list[catalog.Snapshot], list[str]]:
        """Retention: keep the newest ``keep`` untagged snapshots (tags forever); return dropped and deleted."""
        return snapshots.prune(self.root, keep)

    def export_snapshot(self, ref: str | int, out_dir: Path | str) -> dict[str, Any]:
        """Write snapshot ``ref`` as a self-contained Parquet tree plus manifest; return the manifest."""
        return snapshots.export(self.root, ref, Path(out_dir))

    def files_as_of(
        self, dataset: DatasetId, as_of: str | int, start_ns: int | None = None, end_ns: int | None = None
    ) -> list[reader.PartFile]:
        """Part files of ``dataset`` at snapshot ``as_of`` (see :func:`dccd.storage.snapshots.files_as_of`)."""
        return snapshots.files_as_of(self.root, dataset, as_of, start_ns, end_ns)

    # -- async twins ---------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        result: T = await self._offload(functools.partial(fn, *args, **kwargs))
        return result

    async def asweep(self) -> list[Path]:
        """Async :meth:`sweep`."""
        return await self._run(self.sweep)

    async def awrite(self, *args: Any, **kwargs: Any) -> writer.WriteResult:
        """Async :meth:`write` (the write completes even if the caller is cancelled)."""
        return await self._run(self.write, *args, **kwargs)

    async def awrite_table(self, *args: Any, **kwargs: Any) -> writer.WriteResult:
        """Async :meth:`write_table`."""
        return await self._run(self.write_table, *args, **kwargs)

    async def aread_table(self, *args: Any, **kwargs: Any) -> ReadResult:
        """Async :meth:`read_table`."""
        return await self._run(self.read_table, *args, **kwargs)

    async def aexport_to(self, *args: Any, **kwargs: Any) -> tuple[int, list[BadFile]]:
        """Async :meth:`export_to` (the whole export runs in one worker thread)."""
        return await self._run(self.export_to, *args, **kwargs)

    async def alast_ts(self, dataset: DatasetId) -> int | None:
        """Async :meth:`last_ts`."""
        return await self._run(self.last_ts, dataset)

    async def astored_ts(self, dataset: DatasetId, start_ns: int | None, end_ns: int | None) -> list[int]:
        """Async :meth:`stored_ts`."""
        return await self._run(self.stored_ts, dataset, start_ns, end_ns)

    async def astored_trades(self, dataset: DatasetId, start_ns: int | None, end_ns: int | None) -> StoredTrades | None:
        """Async :meth:`stored_trades`."""
        return await self._run(self.stored_trades, dataset, start_ns, end_ns)

    async def atrade_ids_at(self, dataset: DatasetId, ts: int) -> frozenset[str]:
        """Async :meth:`trade_ids_at`."""
        return await self._run(self.trade_ids_at, dataset, ts)

    async def alast_trade(self, dataset: DatasetId) -> Trade | None:
        """Async :meth:`last_trade`."""
        return await self._run(self.last_trade, dataset)

    async def ainventory(self, dataset: DatasetId | None = None) -> list[inv.DatasetInventory]:
        """Async :meth:`inventory`."""
        return await self._run(self.inventory, dataset)

    async def acompact(self, dataset: DatasetId | None = None) -> list[compaction.CompactResult]:
        """Async :meth:`compact`."""
        return await self._run(self.compact, dataset)

    async def acompact_closed(self, now_ns: int) -> list[compaction.CompactResult]:
        """Async :meth:`compact_closed`."""
        return await self._run(self.compact_closed, now_ns)

    async def acompact_rolling(self, *args: Any, **kwargs: Any) -> list[compaction.CompactResult]:
        """Async :meth:`compact_rolling`."""
        return await self._run(self.compact_rolling, *args, **kwargs)

    async def adatasets(self) -> list[DatasetId]:
        """Async :meth:`datasets`."""
        return await self._run(self.datasets)

    async def acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run any blocking method of this lake (``lake.acall(lake.list_snapshots)``) in a worker thread."""
        return await self._run(fn, *args, **kwargs)

    @contextlib.asynccontextmanager
    async def aopen_batches(
        self,
        dataset: DatasetId,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        batch_rows: int = 65_536,
        as_of: str | int | None = None,
    ) -> AsyncIterator[tuple[AsyncIterator[pa.RecordBatch], list[BadFile]]]:
        """Async streaming read: ``async with lake.aopen_batches(ds) as (batches, skipped): async for b in batches``.

        Each batch is fetched in a worker thread; the query closes on exit.
        """
        p = await self._run(functools.partial(reader.plan, pin=True, as_of=as_of), self.root, dataset, start_ns, end_ns)
        batches = reader.iter_batches(p, batch_rows)
        try:
            yield _AsyncPull(batches), p.skipped
        finally:
            await trio.to_thread.run_sync(batches.close)


def _int_ids(table: pa.Table) -> tuple[int, ...] | None:
    """Sorted integer ids of a trades table, or None if any id is not an integer."""
    try:
        return tuple(sorted(int(i) for i in table.column("id").to_pylist()))
    except (TypeError, ValueError):
        return None


class _AsyncPull(Generic[T]):
    """Async iterator pulling each item of a sync iterator in a worker thread."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items

    def __aiter__(self) -> _AsyncPull[T]:
        return self

    async def __anext__(self) -> T:
        item = await trio.to_thread.run_sync(next, self._items, _END)
        if item is _END:
            raise StopAsyncIteration
        return item


_END: Any = object()
