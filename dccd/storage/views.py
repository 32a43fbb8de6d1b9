"""SQL views of the lake: ``trades``, ``ohlc``, ``book``, ``funding``, ``oi`` and ``signals`` on one DuckDB connection.

Each view is every dataset of its type (or the ones a filter keeps), with the partition columns
(``exchange``, ``symbol`` as its slug ``BTC-USDT``, ``span`` for ohlc, ``date`` as a DATE for trades
and books, ``month`` as text for the rest) and deduplicated on the natural key within each dataset,
the newest part winning, exactly as a read does (:mod:`dccd.storage.reader` plans the parts: footers
checked, foreign parts ranked, corrupt files skipped and reported).

Files are pinned: the parts of one listing of each dataset are hard-linked into a hive-shaped tree under
``{root}/_dccd/pins/views/`` (links named ``PID-RANDOM-N.parquet``, removed when the views close), so a
compaction that merges parts mid-query changes nothing the query sees; a part merged away before its
link was made fails the link and the dataset is listed again (a crashed process's links are swept at
the next start, :func:`sweep_view_pins`).

``lockdown=True`` (what untrusted SQL gets) opens a database of its own whose engine may open the pin
tree (links to lake parts) and nothing else (``allowed_directories``, ``enable_external_access=false``),
spills to a private directory beside the pins, and locks its configuration.

    with open_views(root, {"ohlc"}) as views:
        views.con.sql("SELECT symbol, arg_max(close, ts) FROM ohlc WHERE span = '1h' GROUP BY symbol")
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dccd.domain import DatasetId, DataType
from dccd.errors import StorageError
from dccd.storage import layout, reader
from dccd.storage.reader import BadFile, PartFile
from dccd.storage.schema import LOOSE_SCHEMAS, key_sql
from dccd.storage.writer import pid_alive

SIGNALS: Final[str] = "signals"
"""Directory (under the root) and view of stored scanner signals: ``signals/scanner=NAME/date=YYYY-MM-DD/``."""
VIEWS: Final[tuple[str, ...]] = (*(dt.value for dt in DataType), SIGNALS)

PARTITION_COLUMNS: Final[dict[DataType, tuple[str, ...]]] = {
    DataType.TRADES: ("exchange", "symbol", "date"),
    DataType.BOOK: ("exchange", "symbol", "date"),
    DataType.OHLC: ("exchange", "symbol", "span", "month"),
    DataType.FUNDING: ("exchange", "symbol", "month"),
    DataType.OI: ("exchange", "symbol", "month"),
}
_HIVE_TYPES = {"exchange": "VARCHAR", "symbol": "VARCHAR", "span": "VARCHAR", "date": "DATE", "month": "VARCHAR"}
_SQL_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR"}

SIGNAL_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("ts", "BIGINT"),
    ("exchange", "VARCHAR"),
    ("symbol", "VARCHAR"),
    ("scanner", "VARCHAR"),
    ("version", "VARCHAR"),
    ("params_hash", "VARCHAR"),
    ("span", "VARCHAR"),
    ("values", "VARCHAR"),
    ("snapshot", "VARCHAR"),
    ("run_id", "VARCHAR"),
    ("scanned_ns", "BIGINT"),
    ("date", "DATE"),
)
"""Columns of the ``signals`` view while no signal is stored (the stored parts' own columns otherwise): those
the scanners write (``dccd.scan.signals``) plus ``date`` from the path."""
SIGNAL_KEY: Final[tuple[str, ...]] = ("scanner", "version", "params_hash", "span", "exchange", "symbol", "ts")
"""A signal's natural key (the key columns its parts hold): one hit of one scanner config per bar; a re-run
that finds it again (another ``run_id``, ``scanned_ns``) counts once, its newest part winning."""

DEFAULT_MEMORY_LIMIT: Final[str] = "1GB"
_VIEW_WORDS = re.compile(r"\b(" + "|".join(VIEWS) + r")\b", re.IGNORECASE)


_names_lock = threading.Lock()
_names_db: duckdb.DuckDBPyConnection | None = None


def _names_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of a database that can open no file: binding a statement there reads nothing (a
    ``read_csv`` of a FIFO would otherwise block the binder) and changes nothing."""
    global _names_db
    with _names_lock:
        if _names_db is None:
            db = duckdb.connect(":memory:", config={"enable_external_access": False})
            db.execute("SET autoload_known_extensions = false")
            db.execute("SET lock_configuration = true")
            _names_db = db
        return _names_db.cursor()


def views_named(sql: str) -> set[str]:
    """The lake views ``sql`` uses, so only those are planned and pinned.

    DuckDB names the tables the statement reads (``get_table_names``, bound on a database that can open
    no file); where it cannot bind it, every view name appearing as a word (a superset is harmless,
    only slower: ``SELECT sum(trades) FROM ohlc`` would build ``trades`` too).
    """
    try:
        con = _names_cursor()
        try:
            found = con.get_table_names(sql)
        finally:
            con.close()
    except duckdb.Error:
        return {m.lower() for m in _VIEW_WORDS.findall(sql)}
    return {name.lower() for name in found} & set(VIEWS)


@dataclass
class LakeViews:
    """An open set of views: ``con`` to query, what each view reads, and the files skipped as unreadable."""

    con: duckdb.DuckDBPyConnection
    parts: dict[str, int] = field(default_factory=dict)
    skipped: list[BadFile] = field(default_factory=list)
    pinned: bool = True


@dataclass
class _Group:
    """The parts of one view that share a dedup need, in stamp order, and the columns some of them lack."""

    parts: list[PartFile] = field(default_factory=list)
    missing: list[set[str]] = field(default_factory=list)


PIN_TREE: Final[str] = "views"
"""Under ``{root}/_dccd/pins/``: the hive-shaped tree of the views' pins (directories stay; links come and go)."""


def _pid_of(name: str) -> int | None:
    pid = name.partition("-")[0]
    return int(pid) if pid.isdigit() else None


class _Pinner:
    """Hard-links parts at their own relative path under the pin tree, named ``PID-RANDOM-N.parquet``, so hive
    columns still read from the path; falls back to the parts' own paths where links cannot be made.

    The tree's directories are kept between queries (creating and removing a directory costs milliseconds
    on a journaling file system; a link costs tens of microseconds): a view set adds and removes only its links.
    """

    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token, self.ok = root, token, True
        self.tree = layout.meta_dir(root) / reader.PINS_DIR / PIN_TREE
        self._prefix, self._tree = str(root) + os.sep, str(self.tree) + os.sep
        self.links: list[str] = []

    def _link(self, part: PartFile) -> PartFile:
        # String operations: pathlib costs more than the link itself here (thousands of parts per query).
        if not part.path.startswith(self._prefix):
            raise OSError(f"{part.path} is not under {self.root}")
        folder = self._tree + os.path.dirname(part.path[len(self._prefix) :])
        dest = f"{folder}{os.sep}{self.token}-{len(self.links)}.parquet"
        try:
            os.link(part.path, dest)
        except FileNotFoundError:
            if not os.path.exists(part.path):
                raise
            os.makedirs(folder, exist_ok=True)
            os.link(part.path, dest)
        self.links.append(dest)
        return part._replace(path=dest)

    def pin(self, parts: list[PartFile]) -> list[PartFile]:
        """``parts`` at their pinned paths (their own paths once links have failed).

        Raises:
            FileNotFoundError: a part is gone (a compaction merged it away after the listing): plan again.
        """
        if not self.ok:
            return parts
        start = len(self.links)
        try:
            return [self._link(p) for p in parts]
        except OSError as exc:
            self.unpin(start)  # a plan again must not find these parts twice
            if isinstance(exc, FileNotFoundError):
                raise
            self.ok = False  # another file system, no permission: read the parts where they are
            return parts

    def unpin(self, start: int = 0) -> None:
        """Remove the links from the ``start``-th on."""
        for link in self.links[start:]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
        del self.links[start:]


def sweep_view_pins(root: Path) -> list[Path]:
    """Startup: remove the views' pins left by processes that are gone; return them."""
    removed = []
    for dirpath, _dirs, files in os.walk(layout.meta_dir(root) / reader.PINS_DIR / PIN_TREE):
        for name in files:
            pid = _pid_of(name)
            if pid is not None and not pid_alive(pid):
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                removed.append(path)
    return removed


def _plan_dataset(
    root: Path, ds: DatasetId, start_ns: int | None, end_ns: int | None, pinner: _Pinner, as_of: str | int | None
) -> tuple[list[PartFile], list[set[str]], list[BadFile], bool]:
    """One dataset's usable parts (pinned), the optional columns each lacks, the skipped files, dedup needed.

    The listing (under the shared listing lock) sees one side of any compaction's swap; a part a
    compaction removed before its link was made fails the link, and the dataset is planned again, so
    the pinned parts are always one consistent listing.
    """
    for _attempt in range(5):
        try:
            snapshot: dict[str, Any] = {} if as_of is None else {"as_of": as_of}
            p = reader.plan(root, ds, start_ns, end_ns, **snapshot)
            missing = [set(reader.footer(ds.data_type, f.path).missing) for f in p.files]
            return pinner.pin(p.files), missing, p.skipped, reader.needs_dedup(ds.data_type, p.files)
        except (reader.Vanished, FileNotFoundError):
            continue  # a compaction swapped parts between the listing and the links
    raise StorageError(f"{ds}: parts kept vanishing while the SQL views were planned")


def _columns(dt: DataType, missing: list[set[str]]) -> tuple[str, str]:
    """Select list of the lake columns (absent-everywhere ones as typed NULLs) and the union_by_name option."""
    everywhere = set.intersection(*missing) if missing else set()
    union = ", union_by_name=true" if any(m - everywhere for m in missing) else ""
    cols = ", ".join(
        f"CAST(NULL AS {_SQL_TYPES[f.type]}) AS {f.name}" if f.name in everywhere else f.name for f in LOOSE_SCHEMAS[dt]
    )
    return cols, union


def snapshots_module() -> Any:
    """The lake catalog's snapshot module (``dccd.storage.snapshots``), or None in a build without it."""
    try:
        return importlib.import_module("dccd.storage.snapshots")
    except ModuleNotFoundError:
        return None


def _datasets(root: Path, as_of: str | int | None) -> list[DatasetId]:
    """The datasets the lake holds now, or held at snapshot ``as_of``."""
    if as_of is None:
        return reader.datasets(root) if root.is_dir() else []
    snapshots = snapshots_module()
    if snapshots is None:
        raise StorageError("as_of: this dccd has no lake catalog (snapshots)")
    found: list[DatasetId] = snapshots.datasets_as_of(root, as_of)
    return found


def _hive_types(columns: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{c}': {_HIVE_TYPES[c]}" for c in columns) + "}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_list(parts: list[PartFile]) -> str:
    return "[" + ", ".join(_quote(p.path) for p in parts) + "]"


def _range_sql(start_ns: int | None, end_ns: int | None) -> str:
    cond = ([f"ts >= {int(start_ns)}"] if start_ns is not None else []) + (
        [f"ts < {int(end_ns)}"] if end_ns is not None else []
    )
    return " WHERE " + " AND ".join(cond) if cond else ""


def _dataset_view_sql(
    dt: DataType, plain: _Group, dedup: _Group, start_ns: int | None = None, end_ns: int | None = None
) -> str:
    """The SQL of one data type's view: the parts needing no dedup as they are, UNION ALL the others deduplicated
    on the natural key within each dataset (``exchange``, ``symbol``, ``span``), the newest part's row winning."""
    hive = PARTITION_COLUMNS[dt]
    selects = []
    for group, qualify in ((plain, False), (dedup, True)):
        if not group.parts:
            continue
        cols, union = _columns(dt, group.missing)
        sql = (
            f"SELECT {cols}, {', '.join(hive)} FROM read_parquet({_file_list(group.parts)}, hive_partitioning=true, "
            f"hive_types={_hive_types(hive)}{union}){_range_sql(start_ns, end_ns)}"
        )
        if qualify:
            by = ", ".join([c for c in hive if c in ("exchange", "symbol", "span")] + [key_sql(dt)])
            newest = (
                "file_index DESC, file_row_number DESC" if any(p.foreign for p in group.parts) else "file_index DESC"
            )
            sql += f" QUALIFY row_number() OVER (PARTITION BY {by} ORDER BY {newest}) = 1"
        selects.append(sql)
    if selects:
        return " UNION ALL ".join(f"({s})" for s in selects)
    nulls = [f"CAST(NULL AS {_SQL_TYPES[f.type]}) AS {f.name}" for f in LOOSE_SCHEMAS[dt]]
    nulls += [f"CAST(NULL AS {_HIVE_TYPES[c]}) AS {c}" for c in hive]
    return f"SELECT {', '.join(nulls)} LIMIT 0"


def signal_parts(root: Path) -> tuple[list[PartFile], list[BadFile]]:
    """The readable ``part-*.parquet`` files under ``{root}/signals/scanner=*/date=*/``, oldest stamp first."""
    parts: list[PartFile] = []
    bad: list[BadFile] = []
    base = root / SIGNALS
    if not base.is_dir():
        return parts, bad
    for scanner in sorted(base.iterdir()):
        if not scanner.name.startswith("scanner=") or not scanner.is_dir():
            continue
        for pdir in sorted(scanner.iterdir()):
            if layout.partition_bounds(pdir.name) is None or not pdir.is_dir():
                continue
            for entry in os.scandir(pdir):
                if layout.is_hidden_name(entry.name) or not layout.is_part_file_name(entry.name):
                    continue
                try:
                    st = entry.stat()
                    pq.read_metadata(entry.path)
                except FileNotFoundError:
                    continue
                except (OSError, pa.ArrowException) as exc:
                    bad.append(BadFile(entry.path, f"corrupt: {exc}"))
                    continue
                name = layout.parse_part_name(entry.name)
                stamp = name.stamp if name else layout.foreign_stamp(st.st_mtime_ns, entry.name)
                parts.append(PartFile(entry.path, 0, 0, stamp, st.st_size, foreign=name is None))
    parts.sort(key=lambda p: p.stamp)
    return parts, bad


def signals_view_sql(parts: list[PartFile], columns: Collection[str]) -> str:
    """The ``signals`` view: every stored signal (the parts' columns plus ``scanner`` and ``date`` from the path),
    deduplicated on :data:`SIGNAL_KEY` (the key columns the parts hold), the newest part winning."""
    if not parts:
        return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in SIGNAL_COLUMNS) + " LIMIT 0"
    sql = (
        f"SELECT * EXCLUDE (file_index, file_row_number) FROM (SELECT *, file_index, file_row_number FROM "
        f"read_parquet({_file_list(parts)}, hive_partitioning=true, hive_types={{'scanner': VARCHAR, 'date': DATE}}, "
        "union_by_name=true))"
    )
    key = [c for c in SIGNAL_KEY if c in columns]
    if key:
        sql += (
            f" QUALIFY row_number() OVER (PARTITION BY {', '.join(map(_ident, key))} "
            "ORDER BY file_index DESC, file_row_number DESC) = 1"
        )
    return sql


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _signal_columns(parts: list[PartFile]) -> set[str]:
    cols = {"scanner", "date"}
    for p in parts:
        cols.update(pq.read_schema(p.path).names)
    return cols


def _lock_down(
    con: duckdb.DuckDBPyConnection,
    tree: Path,
    files: list[str],
    spill: Path | None,
    memory_limit: str,
    threads: int,
) -> None:
    """Let the engine open the pin ``tree`` (links to lake parts only) and those of ``files`` outside it (parts
    that could not be pinned), nothing else: no other file, extension, database or setting change from here on.
    It spills to ``spill`` (None: it does not spill)."""
    inside = str(tree) + os.sep
    con.execute(f"SET memory_limit = {_quote(memory_limit)}")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET temp_directory = {_quote(str(spill) if spill else '')}")
    con.execute(f"SET allowed_directories = [{_quote(inside)}]")  # one entry: a list of 10,000 paths takes seconds
    con.execute(f"SET allowed_paths = [{', '.join(_quote(f) for f in files if not f.startswith(inside))}]")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")


@contextlib.contextmanager
def open_views(
    root: Path | str,
    names: Collection[str] = VIEWS,
    *,
    keep: Callable[[DatasetId], bool] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    lockdown: bool = True,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
    as_of: str | int | None = None,
) -> Iterator[LakeViews]:
    """A DuckDB connection with the lake views ``names`` (see the module docstring); closed and unpinned on exit.

    Args:
        root: the lake root (need not exist: every view is then empty).
        names: which of :data:`VIEWS` to create (the others do not exist on the connection).
        keep: only datasets for which this returns True are read (e.g. one span, some exchanges).
        start_ns / end_ns: only rows with ``start_ns <= ts < end_ns`` (parts outside are not even opened).
        lockdown: a database of its own that can open nothing but the pinned parts and whose settings are locked
            (for SQL from users); False: a cursor of the shared in-memory database (trusted callers).
        memory_limit / threads: DuckDB limits of a locked-down database.
        as_of: a snapshot id, tag or ISO time: the market-data views read the parts the lake catalog held
            then (``signals`` are not versioned and read as they are now).

    Raises:
        ValueError: an unknown view name.
        StorageError: parts kept vanishing while planning (compactions racing it); ``as_of`` names no
            snapshot (``SnapshotNotFound``) or the lake has no catalog.
    """
    unknown = set(names) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown lake view(s) {', '.join(sorted(unknown))} (views: {' '.join(VIEWS)})")
    root = Path(root)
    token = f"{os.getpid()}-{os.urandom(6).hex()}"
    pinner = _Pinner(root, token)
    spill_dir = layout.meta_dir(root) / reader.PINS_DIR / f"{token}-spill"  # a dead process's is swept
    con: duckdb.DuckDBPyConnection | None = None
    spill: Path | None = None
    try:
        found = _datasets(root, as_of)
        views: dict[str, str] = {}
        files: list[str] = []
        skipped: list[BadFile] = []
        parts: dict[str, int] = {}
        for dt in DataType:
            if dt.value not in names:
                continue
            plain, dedup = _Group(), _Group()
            for ds in found:
                if ds.data_type is not dt or (keep is not None and not keep(ds)):
                    continue
                got, missing, bad, needs = _plan_dataset(root, ds, start_ns, end_ns, pinner, as_of)
                group = dedup if needs else plain
                group.parts.extend(got)
                group.missing.extend(missing)
                skipped.extend(bad)
            for group in (plain, dedup):  # file_index order = stamp order: the newest part's row wins
                pairs = sorted(zip(group.parts, group.missing, strict=True), key=lambda pm: pm[0].stamp)
                group.parts, group.missing = [p for p, _ in pairs], [m for _, m in pairs]
                files.extend(p.path for p in group.parts)
            parts[dt.value] = len(plain.parts) + len(dedup.parts)
            views[dt.value] = _dataset_view_sql(dt, plain, dedup, start_ns, end_ns)
        if SIGNALS in names:
            sig, bad = signal_parts(root)
            sig = pinner.pin(sig)
            skipped.extend(bad)
            files.extend(p.path for p in sig)
            parts[SIGNALS] = len(sig)
            views[SIGNALS] = signals_view_sql(sig, _signal_columns(sig))
        if lockdown:
            if root.is_dir():  # DuckDB creates the spill directory when it spills, but not its parents
                spill_dir.parent.mkdir(parents=True, exist_ok=True)
                spill = spill_dir
            con = duckdb.connect(":memory:")
            if (obj := reader._object_lake(root)) is not None:
                obj.attach(con)  # an object-store lake: its parts (and no other object) by URL, allowed below
            _lock_down(con, pinner.tree, files, spill, memory_limit, threads or os.cpu_count() or 1)
        else:
            con = reader.connect()
        for name, sql in views.items():
            con.execute(f"CREATE {'' if lockdown else 'OR REPLACE TEMP '}VIEW {name} AS {sql}")
        if lockdown:
            con.execute("SET lock_configuration = true")
        yield LakeViews(con, parts, skipped, pinner.ok)
    finally:
        if con is not None:
            con.close()
        pinner.unpin()
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
