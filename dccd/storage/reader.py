"""Reads over the lake with DuckDB: pruned by path, deduplicated, sorted by ts.

Pruning happens in Python before DuckDB sees anything: only partition
directories overlapping ``[start, end)`` are listed, and within them only parts
whose range ``[first_ts, last_ts]`` overlaps. dccd's own parts carry the range
in their name; any other ``part-*.parquet`` (Spark, pyarrow, a user's script)
is data too, its range taken from the footer's ``ts`` statistics (or, for a
file written without them, from its ``ts`` column, read once). Each candidate's footer is read once per process
(cached by path, size and mtime); corrupt files and files without the lake
columns are skipped and listed in the result, never fatal (the caller, which
owns the logger, warns about them). Duplicates across parts are removed on the
natural key, keeping the row of the newest part (largest stamp; a foreign part
ranks by its modification time) and, inside a foreign part, its last row. Each
query runs on its own DuckDB connection (a cursor of one shared in-memory
database: separate connection state, no 15 ms start-up per query).

Over 500 lines for one reason: one read path (listing under the lock, footer pruning, pins, SQL,
running) whose steps share the PartFile/Plan model.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dccd.domain import DatasetId, DataType
from dccd.errors import CorruptPart, StorageError
from dccd.storage import layout
from dccd.storage.schema import LOOSE_SCHEMAS, SCHEMAS, key_sql, order_sql
from dccd.storage.writer import pid_alive

_FOOTER_CACHE_MAX = 200_000
_STRINGS = (pa.string(), pa.large_string(), pa.string_view())
_SQL_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR"}


class Footer(NamedTuple):
    """What a part's footer says: why it is unusable (None = good), its ts range and absent optional columns."""

    reason: str | None
    first_ts: int | None = None
    last_ts: int | None = None
    missing: tuple[str, ...] = ()


_footer_cache: OrderedDict[tuple[str, int, int], Footer] = OrderedDict()
_db_lock = threading.Lock()
_db: duckdb.DuckDBPyConnection | None = None


class Vanished(Exception):
    """A listed part disappeared before DuckDB opened it (a compaction replaced it): plan again."""


class BadFile(msgspec.Struct, frozen=True):
    """A file in the lake that was skipped, and why."""

    path: str
    reason: str


class PartFile(NamedTuple):
    """A candidate part, from its name (or, for a foreign name, its footer) and a stat."""

    path: str
    first_ts: int
    last_ts: int
    stamp: str
    size: int
    foreign: bool = False  # not named by dccd: rows may be unsorted and repeat keys inside the file


class Plan(NamedTuple):
    """Which files a read touches and the SQL to run over them.

    ``pins`` is set by ``plan(..., pin=True)``: the files are hard links in
    that directory (see :func:`pin_parts`), removed when :func:`iter_batches` ends.
    """

    data_type: DataType
    files: list[PartFile]
    skipped: list[BadFile]
    sql: str
    pins: Path | None = None


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB connection (cursor) for one query; close it when done."""
    global _db
    with _db_lock:
        if _db is None:
            _db = duckdb.connect(":memory:")
        return _db.cursor()


_filesystems: set[str] = set()


def register_filesystem(fs: Any) -> None:
    """Let the shared database open ``fs.protocol://`` paths (an object-store lake's parts; fsspec ``fs``)."""
    global _db
    with _db_lock:
        if _db is None:
            _db = duckdb.connect(":memory:")
        if fs.protocol not in _filesystems:
            _db.register_filesystem(fs)
            _filesystems.add(fs.protocol)


def _object_lake(root: Path) -> Any:
    """The read side of the object-store lake whose local root is ``root`` (None: a lake on local disk)."""
    from dccd.storage.objread import handle_for  # imports this module

    return handle_for(root)


def partitions(root: Path, ds: DatasetId, start_ns: int | None = None, end_ns: int | None = None) -> list[Path]:
    """Partition directories of ``ds`` overlapping ``[start_ns, end_ns)``, oldest first."""
    try:
        entries = list(os.scandir(layout.dataset_dir(root, ds)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for entry in entries:
        bounds = layout.partition_bounds(entry.name)
        if bounds is None or not entry.is_dir():
            continue
        lo, hi = bounds
        if (end_ns is None or lo < end_ns) and (start_ns is None or hi > start_ns):
            out.append((lo, Path(entry.path)))
    return [p for _, p in sorted(out)]


@contextlib.contextmanager
def listing_lock(root: Path, ds: DatasetId, *, exclusive: bool = False, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold the listing lock of ``ds``: shared while a reader lists parts, exclusive while a compaction
    swaps its merged part for its inputs, so a listing sees one side of the swap, never both or neither.

    Without a lake to lock (no data yet, read-only storage) a shared hold does nothing.

    Raises:
        TimeoutError: an exclusive hold waited ``timeout_s`` (only a stuck reader holds it that long).
    """
    path = layout.lock_path(root, ds, "list")
    try:
        if not exclusive and not layout.dataset_dir(root, ds).is_dir():
            raise FileNotFoundError(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        if exclusive:  # polled, so a compaction's worker thread gives up instead of hanging
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{ds}: listing lock still held after {timeout_s:g}s") from None
                    time.sleep(0.002)
        else:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def list_parts(
    root: Path, ds: DatasetId, start_ns: int | None = None, end_ns: int | None = None
) -> tuple[list[PartFile], list[BadFile]]:
    """Parts overlapping the range, sorted by stamp; plus unusable files found on the way.

    Listed under the shared listing lock of ``ds`` (see :func:`listing_lock`); an object-store lake's
    come from its catalog.
    """
    if (obj := _object_lake(root)) is not None:
        return obj.list_parts(ds, start_ns, end_ns), []
    with listing_lock(root, ds):
        return _scan_parts(root, ds, start_ns, end_ns)


PINS_DIR = "pins"
"""Under ``{root}/_dccd/``: one directory of hard links per streaming read in progress (``PID-RANDOM``)."""


def pin_parts(root: Path, parts: list[PartFile]) -> tuple[Path | None, list[PartFile]]:
    """Hard-link ``parts`` into a private directory so a compaction that unlinks them mid-read cannot pull
    them from under a streaming read (DuckDB opens a query's files lazily, batch after batch).

    Call under the listing lock that listed ``parts``, so none of them is gone yet. Where links cannot be
    made (another filesystem, no permission) the parts are returned as they are, unpinned.

    Returns:
        ``(directory to remove after the read or None, the parts with their pinned paths)``.
    """
    if not parts:
        return None, parts
    pins = root / "_dccd" / PINS_DIR / f"{os.getpid()}-{os.urandom(6).hex()}"
    try:
        pins.mkdir(parents=True)
        out = []
        for i, part in enumerate(parts):
            link = pins / f"{i}.parquet"
            os.link(part.path, link)
            out.append(part._replace(path=str(link)))
    except OSError:
        shutil.rmtree(pins, ignore_errors=True)
        return None, parts
    return pins, out


def sweep_pins(root: Path) -> list[Path]:
    """Startup: remove the pin directories of processes that are gone; return them."""
    base = root / "_dccd" / PINS_DIR
    removed = []
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    for entry in entries:
        pid = entry.name.partition("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _scan_parts(
    root: Path, ds: DatasetId, start_ns: int | None, end_ns: int | None
) -> tuple[list[PartFile], list[BadFile]]:
    """Parts overlapping the range, sorted by stamp; plus unusable files found on the way.

    A foreign-named ``part-*.parquet`` is listed with the ts range of its footer statistics;
    a corrupt one or one without the lake columns is returned among the bad files.
    """
    parts: list[PartFile] = []
    bad: list[BadFile] = []
    for pdir in partitions(root, ds, start_ns, end_ns):
        for entry in os.scandir(pdir):
            if layout.is_hidden_name(entry.name):
                continue  # temp files of writers in flight, _SUCCESS markers, checksums
            name = layout.parse_part_name(entry.name)
            if not entry.is_file() or (name is None and not layout.is_part_file_name(entry.name)):
                bad.append(BadFile(entry.path, "not data (the name does not match part-*.parquet)"))
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # compacted away meanwhile
            if name is not None:
                first, last, stamp, foreign = name.first_ts, name.last_ts, name.stamp, False
            else:
                info = footer(ds.data_type, entry.path)
                if info.reason is not None:
                    if info.reason != "vanished":
                        bad.append(BadFile(entry.path, info.reason))
                    continue
                if info.first_ts is None or info.last_ts is None:
                    continue  # no rows
                first, last = info.first_ts, info.last_ts
                stamp, foreign = layout.foreign_stamp(st.st_mtime_ns, entry.name), True
            if (end_ns is not None and first >= end_ns) or (start_ns is not None and last < start_ns):
                continue
            parts.append(PartFile(entry.path, first, last, stamp, st.st_size, foreign))
    parts.sort(key=lambda p: p.stamp)
    return parts, bad


def _columns_reason(data_type: DataType, schema: pa.Schema) -> tuple[str | None, tuple[str, ...]]:
    """Why a file's columns cannot be read as ``data_type`` (None if they can), and absent nullable columns.

    Column order, nullability and extra columns do not matter (reads select by name); every
    non-nullable lake column must be present with its type (any Arrow string type for strings).
    """
    missing: list[str] = []
    for want in SCHEMAS[data_type]:
        idx = schema.get_field_index(want.name)
        if idx < 0:
            if not want.nullable:
                return f"wrong schema: no {want.name!r} column (has {', '.join(schema.names)})", ()
            missing.append(want.name)
            continue
        got = schema.field(idx).type
        if got == pa.null() and want.nullable:  # pyarrow's type for a column written all null
            missing.append(want.name)
            continue
        if got != want.type and not (got in _STRINGS and want.type in _STRINGS):
            return f"wrong schema: column {want.name!r} is {got}, expected {want.type}", ()
    return None, tuple(missing)


def _ts_stats(meta: pq.FileMetaData) -> tuple[int | None, int | None]:
    """Min and max of ``ts`` over the row groups, or (None, None) when any group lacks statistics."""
    idx = meta.schema.to_arrow_schema().get_field_index("ts")
    lo: int | None = None
    hi: int | None = None
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if rg.num_rows == 0:
            continue
        st = rg.column(idx).statistics
        if st is None or not st.has_min_max or not isinstance(st.min, int) or not isinstance(st.max, int):
            return None, None
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return lo, hi


def footer(data_type: DataType, path: str) -> Footer:
    """Read (once per path, size and mtime: parts are immutable) what a part's footer says.

    An object-store lake's part (a URL) was checked by its writer before the catalog listed it: good.
    """
    if "://" in path:
        return Footer(None)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Footer("vanished")
    key = (path, st.st_size, st.st_mtime_ns)
    cached = _footer_cache.get(key)
    if cached is not None:
        return cached
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
        reason, missing = _columns_reason(data_type, schema)
        if reason:
            info = Footer(reason, missing=missing)
        else:
            lo, hi = _ts_stats(meta)
            if lo is None and meta.num_rows:  # written without statistics: read the ts column once
                ts = pq.read_table(path, columns=["ts"])["ts"]
                lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
            info = Footer(None, lo, hi, missing)
    except (OSError, pa.ArrowException) as exc:
        info = Footer(f"corrupt: {exc}")
    _footer_cache[key] = info
    if len(_footer_cache) > _FOOTER_CACHE_MAX:
        _footer_cache.popitem(last=False)
    return info


def check_footer(data_type: DataType, path: str) -> str | None:
    """Why ``path`` is unreadable or foreign, or None when it is a good part (cached)."""
    return footer(data_type, path).reason


def _missing_columns(data_type: DataType, path: str) -> tuple[str, ...]:
    return footer(data_type, path).missing


def _mark_bad(path: str, reason: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    _footer_cache[(path, st.st_size, st.st_mtime_ns)] = Footer(reason)


def needs_dedup(data_type: DataType, files: list[PartFile]) -> bool:
    """True when two parts may hold the same natural key.

    Keys of ts-keyed types contain ts, so parts with disjoint ts ranges cannot
    share a key. Trade ids are not ts, so several trade parts always dedup. A
    foreign part may repeat keys inside itself, so it always dedups.
    """
    if any(f.foreign for f in files):
        return True
    if len(files) < 2:
        return False
    if data_type is DataType.TRADES:
        return True
    spans = sorted((f.first_ts, f.last_ts) for f in files)
    return any(lo <= prev_hi for (_, prev_hi), (lo, _) in itertools.pairwise(spans))


def presorted(data_type: DataType, files: list[PartFile]) -> bool:
    """True when concatenating ``files`` by first ts already gives the read order (no sort needed).

    Holds for ts-keyed types whose parts do not overlap: each part is sorted and
    its ts are unique. DuckDB keeps file and row order (insertion order) for scans.
    """
    return data_type in (DataType.OHLC, DataType.FUNDING, DataType.OI) and not needs_dedup(data_type, files)


def build_sql(
    data_type: DataType,
    dedup: bool,
    start_ns: int | None,
    end_ns: int | None,
    *,
    order: bool = True,
    files: Sequence[PartFile] = (),
) -> str:
    """SQL over ``read_parquet($files)``; files ordered oldest stamp first when ``dedup``.

    ``files`` (the plan's parts) decides two things: a part lacking an optional column
    makes DuckDB match columns by name across files (absent ones read as null), and a
    foreign part makes its last row win among its own duplicate keys.
    """
    missing = [set(_missing_columns(data_type, f.path)) for f in files]
    everywhere = set.intersection(*missing) if missing else set()
    union = ", union_by_name=true" if any(m - everywhere for m in missing) else ""
    cols = ", ".join(
        f"CAST(NULL AS {_SQL_TYPES[f.type]}) AS {f.name}" if f.name in everywhere else f.name
        for f in LOOSE_SCHEMAS[data_type]
    )
    newest = "file_index DESC, file_row_number DESC" if any(f.foreign for f in files) else "file_index DESC"
    cond = []
    if start_ns is not None:
        cond.append(f"ts >= {int(start_ns)}")
    if end_ns is not None:
        cond.append(f"ts < {int(end_ns)}")
    sql = f"SELECT {cols} FROM read_parquet($files, hive_partitioning=false{union})"
    if cond:
        sql += " WHERE " + " AND ".join(cond)
    if dedup:
        sql += f" QUALIFY row_number() OVER (PARTITION BY {key_sql(data_type)} ORDER BY {newest}) = 1"
    return sql + f" ORDER BY {order_sql(data_type)}" if order else sql


def plan(
    root: Path,
    ds: DatasetId,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    pin: bool = False,
    as_of: str | int | None = None,
) -> Plan:
    """List, prune and check the parts for a read; build its SQL.

    ``pin=True`` (streaming reads) hard-links the parts while they are listed (:func:`pin_parts`):
    a compaction that replaces them during the read cannot fail it or change what it returns.
    ``as_of`` (a snapshot id, tag or ISO time) reads the parts the catalog held at that snapshot
    instead of listing the data tree (:func:`dccd.storage.snapshots.files_as_of`).

    Raises:
        SnapshotNotFound: ``as_of`` names no retained snapshot.
    """
    if (obj := _object_lake(root)) is not None:
        return obj.plan(ds, start_ns, end_ns, as_of=as_of)  # type: ignore[no-any-return]
    pins: Path | None = None
    if as_of is not None:
        good, skipped, pins = _plan_as_of(root, ds, start_ns, end_ns, as_of, pin)
    elif pin:
        with listing_lock(root, ds):
            good, skipped = _usable(ds, *_scan_parts(root, ds, start_ns, end_ns), locked=True)
            pins, good = pin_parts(root, good)
    else:
        good, skipped = _usable(ds, *list_parts(root, ds, start_ns, end_ns))
    if presorted(ds.data_type, good):
        good.sort(key=lambda p: p.first_ts)
        sql = build_sql(ds.data_type, False, start_ns, end_ns, order=False, files=good)
    else:
        sql = build_sql(ds.data_type, needs_dedup(ds.data_type, good), start_ns, end_ns, files=good)
    return Plan(ds.data_type, good, skipped, sql, pins)


def _plan_as_of(
    root: Path, ds: DatasetId, start_ns: int | None, end_ns: int | None, as_of: str | int, pin: bool
) -> tuple[list[PartFile], list[BadFile], Path | None]:
    """The usable parts of a snapshot (pinned if asked); looks again when a compaction moved one meanwhile."""
    from dccd.storage.snapshots import files_as_of  # imports this module

    for _attempt in range(5):
        parts = files_as_of(root, ds, as_of, start_ns, end_ns)
        pins: Path | None = None
        if pin:
            pins, linked = pin_parts(root, parts)
            if pins is None and any(not os.path.exists(p.path) for p in parts):
                continue  # moved to the retained area between the lookup and the link
            parts = linked
        try:
            good, skipped = _usable(ds, parts, [])
        except Vanished:
            if pins is not None:
                shutil.rmtree(pins, ignore_errors=True)
            continue
        return good, skipped, pins
    raise StorageError(f"{ds}: the parts of snapshot {as_of} kept moving during the read")


def _usable(
    ds: DatasetId, parts: list[PartFile], skipped: list[BadFile], *, locked: bool = False
) -> tuple[list[PartFile], list[BadFile]]:
    """The parts whose footer checks out; the others join ``skipped``.

    Raises:
        Vanished: a listed part is gone although the listing lock was released (``locked=False``): a
            compaction swapped it for its merged part, which this listing does not hold, so plan again.
            Under the lock only an outside deletion can remove a part; it is then dropped.
    """
    good = []
    for p in parts:
        reason = check_footer(ds.data_type, p.path)
        if reason is None:
            good.append(p)
        elif reason == "vanished":
            if not locked:
                raise Vanished(p.path)
        else:
            skipped.append(BadFile(p.path, reason))
    return good, skipped


def empty_table(data_type: DataType) -> pa.Table:
    """A zero-row table with the read schema."""
    return LOOSE_SCHEMAS[data_type].empty_table()


def run_table(p: Plan, sql: str | None = None) -> tuple[pa.Table, list[BadFile]]:
    """Run a plan to an Arrow table, dropping (and reporting) files DuckDB finds corrupt."""
    files, skipped = list(p.files), list(p.skipped)
    while files:
        con = connect()
        try:
            return con.sql(sql or p.sql, params={"files": [f.path for f in files]}).to_arrow_table(), skipped
        except duckdb.Error as exc:
            culprits = [f for f in files if f.path in str(exc)]
            if any("://" not in f.path and not os.path.exists(f.path) for f in culprits):
                raise Vanished(str(exc)) from exc
            if not culprits:
                raise CorruptPart(f"reading {len(files)} parts failed: {exc}") from exc
            for f in culprits:
                reason = f"corrupt: {str(exc).splitlines()[0]}"
                _mark_bad(f.path, reason)
                skipped.append(BadFile(f.path, reason))
            files = [f for f in files if f not in culprits]
        finally:
            con.close()
    return empty_table(p.data_type), skipped


def read_table(
    root: Path,
    ds: DatasetId,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    as_of: str | int | None = None,
) -> tuple[pa.Table, list[BadFile]]:
    """Rows of ``ds`` in ``[start_ns, end_ns)`` (as of snapshot ``as_of`` if given), deduplicated and sorted,
    plus the skipped files.

    Raises:
        StorageError: parts kept vanishing (compactions racing the read).
        SnapshotNotFound: ``as_of`` names no retained snapshot.
    """
    for _attempt in range(5):
        try:
            return run_table(plan(root, ds, start_ns, end_ns, as_of=as_of))
        except Vanished:
            continue
    raise StorageError(f"{ds}: parts kept vanishing during the read")


def iter_batches(p: Plan, batch_rows: int = 65_536, sql: str | None = None) -> Generator[pa.RecordBatch, None, None]:
    """Stream a plan's rows as record batches; the connection closes when the iterator ends or is closed.

    Raises:
        CorruptPart: a part passed its footer check but its data is damaged.
    """
    try:
        if not p.files:
            return
        con = connect()
        try:
            reader = con.sql(sql or p.sql, params={"files": [f.path for f in p.files]}).to_arrow_reader(batch_rows)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                yield batch
        except (duckdb.Error, pa.ArrowException) as exc:
            raise CorruptPart(f"streaming {len(p.files)} parts failed: {exc}") from exc
        finally:
            con.close()
    finally:
        if p.pins is not None:
            shutil.rmtree(p.pins, ignore_errors=True)


def datasets(root: Path) -> list[DatasetId]:
    """Every dataset directory present under ``root`` (foreign directories ignored), sorted."""
    if (obj := _object_lake(root)) is not None:
        return obj.datasets()  # type: ignore[no-any-return]
    found = []
    for dt in DataType:
        depth = 3 if dt is DataType.OHLC else 2
        level = [root / dt.value]
        for _ in range(depth):
            level = [Path(e.path) for d in level if d.is_dir() for e in os.scandir(d) if e.is_dir()]
        for path in level:
            ds = layout.parse_dataset_dir(root, path)
            if ds is not None:
                found.append(ds)
    return sorted(found, key=_dataset_order)


def _dataset_order(ds: DatasetId) -> tuple[object, ...]:
    """DatasetId order with None first: a spot symbol (market None) and its perp cannot be compared as Structs."""
    sym = ds.symbol
    return (ds.exchange, sym.base, sym.quote, sym.market or "", ds.data_type, ds.span is not None, ds.span)


def stored_range(root: Path, ds: DatasetId) -> tuple[int, int] | None:
    """``(first_ts, last_ts)`` of the readable parts of ``ds`` (from names and footers; no rows read)."""
    parts, _bad = list_parts(root, ds)
    good = [p for p in parts if p.foreign or check_footer(ds.data_type, p.path) is None]
    return (min(p.first_ts for p in good), max(p.last_ts for p in good)) if good else None


def _kinship(d: DatasetId, ds: DatasetId) -> int:
    """0 same exchange and symbol, 1 same exchange and type, 2 same symbol, 3 same exchange, 4 unrelated."""
    if d.exchange == ds.exchange:
        return 0 if d.symbol == ds.symbol else 1 if d.data_type is ds.data_type else 3
    return 2 if d.symbol == ds.symbol else 4


def nearest(found: list[DatasetId], ds: DatasetId, limit: int = 8) -> list[DatasetId]:
    """What the lake holds closest to ``ds``: the same exchange and symbol, else the same exchange and
    type (other symbols), else the same symbol on other exchanges, else the same exchange."""
    ranked = [(_kinship(d, ds), d) for d in found if d != ds]
    best = min((k for k, _ in ranked), default=4)
    return [d for k, d in ranked if k == best][:limit] if best < 4 else []
