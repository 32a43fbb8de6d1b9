"""Import the data directory of dccd 3.x (3.8.1) into the lake, fixing its known fidelity bugs on the way.

The predecessor's layout (one Parquet file per period, rewritten on every save)::

    {PATH}/{exchange}/ohlc/{BASE-QUOTE[_PERP]}/{span label}/{YYYY}.parquet
    {PATH}/{exchange}/open_interest/{pair}/{span label}/{YYYY}.parquet
    {PATH}/{exchange}/funding/{pair}/{YYYY}.parquet
    {PATH}/{exchange}/trades/{pair}/{YYYY-MM-DD}.parquet
    {PATH}/{exchange}/orderbook/{pair}/{YYYY-MM-DD}.parquet
    {PATH}/.dccd/   (its run history: not data, ignored)

Columns: ``TS`` (int64; ns in 3.x, seconds/ms/µs in older files: sniffed per
file), ``open high low close volume quote_volume trades`` (legacy v2 files:
``quoteVolume``, ``weightedAverage``), ``price amount side tid``, book levels
``side price amount count is_snapshot``, ``rate mark_price``,
``open_interest open_interest_value``.

Each file is read whole with pyarrow and normalised column-wise (no per-row
Python), then:

fixed (counted per kind)
    ``ts_unit``: a file's TS in s/ms/µs scaled to ns; ``coinbase_side``:
    Coinbase trades stored the maker side, flipped to the taker's;
    ``bitmex_close_time``: BitMEX bars were labelled with their close time,
    moved one span back to their open; ``kraken_float_time``: Kraken trade times
    went through float seconds (sub-µs noise), rounded to the µs Kraken sends.
dropped (counted per reason, never written)
    ``open_bar``: a bar still open when its file was written (3.x stored the
    forming bar; its file's modification time tells), as dccd never stores one.
skipped
    rows whose natural key the lake already holds (a re-import imports 0).
    ``bitmex_empty_bin``: BitMEX bins without trades, whose nulls 3.x stored as
    0.0 prices (dccd stores no bar for a period without trades).
quarantined
    whatever fails a quality gate (a negative amount, say), with the rule, under
    ``_dccd/quarantine``; a re-import skips rows already quarantined.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.domain.spans import SPAN_SECONDS
from dccd.storage import layout, reader
from dccd.storage.schema import LOOSE_SCHEMAS, TRADE_COMPOSITE
from dccd.storage.writer import Provenance, WriteResult, write_table

V3_TYPES: Final[dict[str, DataType]] = {
    "ohlc": DataType.OHLC,
    "trades": DataType.TRADES,
    "orderbook": DataType.BOOK,
    "funding": DataType.FUNDING,
    "open_interest": DataType.OI,
}
_SPANNED = ("ohlc", "open_interest")
# 3.x labels 1m..1w like dccd; any other span is "{seconds}s". Its "1M" was a fixed 30 days (2592000s), not
# a calendar month: not importable as dccd's 1M.
_SPAN_BY_SECONDS: Final[dict[int, str]] = {s: label for label, s in SPAN_SECONDS.items() if label != "1M"}
TRANSPORT: Final[str] = "import:dccd-3"


class ImportFailed(Exception):
    """PATH is not a dccd 3.x data directory (one line)."""


@dataclass
class ImportReport:
    """What an import did; counts are rows unless named files."""

    files: int = 0
    rows_read: int = 0
    rows_imported: int = 0
    rows_skipped: int = 0  # already in the lake
    fixed: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    datasets: set[str] = field(default_factory=set)
    files_ignored: list[tuple[str, str]] = field(default_factory=list)  # not data of a known kind
    files_failed: list[tuple[str, str]] = field(default_factory=list)  # unreadable

    @property
    def rows_quarantined(self) -> int:
        """Rows that failed a quality gate."""
        return sum(self.quarantined.values())

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (``--json``)."""
        return {
            "files": self.files,
            "datasets": sorted(self.datasets),
            "rows_read": self.rows_read,
            "rows_imported": self.rows_imported,
            "rows_skipped": self.rows_skipped,
            "rows_quarantined": self.rows_quarantined,
            "fixed": dict(sorted(self.fixed.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "files_ignored": [{"path": p, "reason": r} for p, r in self.files_ignored],
            "files_failed": [{"path": p, "reason": r} for p, r in self.files_failed],
        }

    def lines(self) -> list[str]:
        """The human report: one line per ignored/failed file, then the totals."""
        out = [f"ignored {p}: {r}" for p, r in self.files_ignored]
        out += [f"failed {p}: {r}" for p, r in self.files_failed]

        def kinds(c: Counter[str]) -> str:
            return " (" + ", ".join(f"{k} {v:,}" for k, v in sorted(c.items())) + ")" if c else ""

        out.append(
            f"{self.files:,} files, {len(self.datasets):,} datasets: {self.rows_read:,} rows read,"
            f" {self.rows_imported:,} imported, {sum(self.fixed.values()):,} fixed{kinds(self.fixed)},"
            f" {self.rows_quarantined:,} quarantined{kinds(self.quarantined)},"
            f" {self.rows_skipped:,} skipped (already present), {sum(self.dropped.values()):,} dropped"
            f"{kinds(self.dropped)}"
        )
        return out


@dataclass(frozen=True)
class V3File:
    """One data file of the predecessor and the dataset it belongs to."""

    path: Path
    dataset: DatasetId
    span_s: int | None  # the 3.x span in seconds (ohlc, open interest)


def _symbol(slug: str) -> Symbol:
    pair, _, market = slug.partition("_")
    base, sep, quote = pair.partition("-")
    if not sep or not base or not quote:
        raise ValueError(f"{slug!r} is not a pair like BTC-USDT")
    if market and market != "PERP":
        raise ValueError(f"{slug!r}: the {market.lower()} market has no dccd dataset")
    return Symbol.parse(f"{base}/{quote}{':perp' if market else ''}")


def _span_seconds(label: str) -> int:
    for s, lab in _SPAN_BY_SECONDS.items():
        if lab == label:
            return s
    if label.endswith("s") and label[:-1].isdigit():
        return int(label[:-1])
    raise ValueError(f"{label!r} is not a span label")


def discover(path: Path, report: ImportReport) -> list[V3File]:
    """The data files under ``path`` in 3.x's layout; other files are listed in ``report.files_ignored``.

    Raises:
        ImportFailed: ``path`` is missing, not a directory, or holds no 3.x data directory at all.
    """
    if not path.exists():
        raise ImportFailed(f"{path} does not exist")
    if not path.is_dir():
        raise ImportFailed(f"{path} is not a directory")
    found: list[V3File] = []
    layout_seen = False
    for exch in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for tdir in sorted(p for p in exch.iterdir() if p.is_dir()):
            if tdir.name not in V3_TYPES:
                continue
            layout_seen = True
            dtype = V3_TYPES[tdir.name]
            for f in sorted(tdir.rglob("*.parquet")):
                rel = f.relative_to(path)
                depth = len(rel.parts)
                try:
                    want = 5 if tdir.name in _SPANNED else 4
                    if depth != want:
                        raise ValueError(f"not at {exch.name}/{tdir.name}/PAIR/{'SPAN/' if want == 5 else ''}PERIOD")
                    sym = _symbol(rel.parts[2])
                    span_s = _span_seconds(rel.parts[3]) if want == 5 else None
                    span = None
                    if dtype is DataType.OHLC:
                        assert span_s is not None
                        if span_s not in _SPAN_BY_SECONDS:
                            raise ValueError(f"span {rel.parts[3]} has no dccd equivalent")
                        span = Span.parse(_SPAN_BY_SECONDS[span_s])
                    found.append(V3File(f, DatasetId(exch.name, sym, dtype, span), span_s))
                except ValueError as exc:
                    report.files_ignored.append((str(rel), str(exc)))
    if not layout_seen:
        kinds = "|".join(V3_TYPES)
        raise ImportFailed(f"{path} holds no dccd 3.x data (expected EXCHANGE/{{{kinds}}}/PAIR/... .parquet)")
    return found


def _canonical(table: pa.Table, dtype: DataType) -> pa.Table:
    """3.x (and legacy v2) columns as the lake's: renamed, typed, missing optional ones null."""
    names = table.column_names
    if "quoteVolume" in names and "quote_volume" not in names:
        table = table.rename_columns([("quote_volume" if n == "quoteVolume" else n) for n in names])
    rename = {"TS": "ts", "tid": "id"}
    cols = {rename.get(n, n): table[n] for n in table.column_names}
    n = table.num_rows
    out = []
    schema = LOOSE_SCHEMAS[dtype]
    for f in schema:
        col = cols.get(f.name)
        if col is None:
            out.append(pa.nulls(n, f.type))
        else:
            out.append(pc.cast(col, f.type))
    return pa.Table.from_arrays(out, schema=schema)


_FIX = "__fixed_"  # prefix of the per-row marker columns of each fix kind (dropped before writing)


def _mark(table: pa.Table, kind: str, mask: pa.ChunkedArray | pa.Array | bool) -> pa.Table:
    """Mark the rows a fix changed, so only the rows actually imported are counted as fixed."""
    col = pa.array([mask] * table.num_rows, pa.bool_()) if isinstance(mask, bool) else pc.fill_null(mask, False)
    return table.append_column(_FIX + kind, col)


def _ts_to_ns(table: pa.Table) -> pa.Table:
    """Scale a file's ``ts`` to ns when it is in s, ms or µs (sniffed from its largest value)."""
    top = pc.max(table["ts"]).as_py()
    if top is None or top >= 10**17:
        return table
    factor = 10**9 if top < 10**11 else 10**6 if top < 10**14 else 10**3
    table = table.set_column(0, "ts", pc.multiply(table["ts"], pa.scalar(factor, pa.int64())))
    return _mark(table, "ts_unit", True)


def _fix(v3: V3File, table: pa.Table, report: ImportReport) -> pa.Table:
    """The predecessor's fidelity bugs, fixed column-wise; changed rows are marked (see :func:`_mark`)."""
    ds, exchange = v3.dataset, v3.dataset.exchange
    if ds.data_type is DataType.TRADES and exchange == "coinbase":
        side = table["side"]
        flipped = pc.if_else(pc.equal(side, "buy"), "sell", pc.if_else(pc.equal(side, "sell"), "buy", side))
        table = table.set_column(table.schema.get_field_index("side"), "side", flipped.cast(pa.string()))
        table = _mark(table, "coinbase_side", pc.is_valid(side))
    if ds.data_type is DataType.TRADES and exchange == "kraken":
        ts = table["ts"]
        half = pa.scalar(500, pa.int64())
        rounded = pc.multiply(pc.divide(pc.add(ts, half), pa.scalar(1000, pa.int64())), pa.scalar(1000, pa.int64()))
        table = _mark(table.set_column(0, "ts", rounded), "kraken_float_time", pc.not_equal(ts, rounded))
    if ds.data_type is DataType.OHLC and exchange == "bitmex" and v3.span_s is not None:
        table = table.set_column(0, "ts", pc.subtract(table["ts"], pa.scalar(v3.span_s * 10**9, pa.int64())))
        table = _mark(table, "bitmex_close_time", True)
    if ds.data_type is DataType.OHLC and exchange == "bitmex":
        zero = pa.scalar(0.0, pa.float64())
        empty = pc.and_(
            pc.and_(pc.equal(table["open"], zero), pc.equal(table["high"], zero)),
            pc.and_(pc.equal(table["close"], zero), pc.equal(pc.fill_null(table["volume"], zero), zero)),
        )
        n_empty = pc.sum(pc.fill_null(empty, False).cast(pa.int64())).as_py() or 0
        if n_empty:
            report.dropped["bitmex_empty_bin"] += n_empty
            table = table.filter(pc.invert(pc.fill_null(empty, False)))
    if ds.data_type is DataType.OHLC and v3.span_s is not None:
        written_ns = v3.path.stat().st_mtime_ns
        closed = pc.less_equal(pc.add(table["ts"], pa.scalar(v3.span_s * 10**9, pa.int64())), written_ns)
        open_bars = table.num_rows - (pc.sum(closed.cast(pa.int64())).as_py() or 0)
        if open_bars:
            report.dropped["open_bar"] += open_bars
            table = table.filter(closed)
    return table


def _quarantined(lake_root: Path, ds: DatasetId, lo: int, hi: int) -> pa.Table | None:
    """Rows of ``ds`` the quality gates already quarantined in ``[lo, hi]`` (a re-import does not repeat them)."""
    qdir = layout.quarantine_dir(lake_root, ds)
    files = sorted(qdir.glob("part-*.parquet")) if qdir.is_dir() else []
    if not files:
        return None
    schema = LOOSE_SCHEMAS[ds.data_type]
    rows = pa.concat_tables([pq.read_table(f, columns=schema.names).cast(schema) for f in files])
    return rows.filter(pc.and_(pc.greater_equal(rows["ts"], lo), pc.less_equal(rows["ts"], hi)))


def _not_stored(lake_root: Path, ds: DatasetId, table: pa.Table) -> pa.Table:
    """The rows of ``table`` whose natural key the lake does not hold yet (nor its quarantine)."""
    if table.num_rows == 0:
        return table
    lo, hi = pc.min(table["ts"]).as_py(), pc.max(table["ts"]).as_py()
    stored, _skipped = reader.read_table(lake_root, ds, lo, hi + 1)
    quarantined = _quarantined(lake_root, ds, lo, hi)
    if quarantined is not None and quarantined.num_rows:
        stored = pa.concat_tables([stored, quarantined.cast(stored.schema)])
    if stored.num_rows == 0:
        return table
    if ds.data_type is DataType.TRADES:
        with_id = pc.is_valid(table["id"])
        old_ids = stored.filter(pc.is_valid(stored["id"])).select(["id"])
        a = table.filter(with_id).join(old_ids, "id", join_type="left anti")
        keys = list(TRADE_COMPOSITE)
        new_b = table.filter(pc.invert(with_id))
        old_b = stored.filter(pc.is_null(stored["id"])).select(keys)
        filled_new = new_b.set_column(new_b.schema.get_field_index("side"), "side", pc.fill_null(new_b["side"], ""))
        filled_old = old_b.set_column(old_b.schema.get_field_index("side"), "side", pc.fill_null(old_b["side"], ""))
        b = filled_new.join(filled_old, keys, join_type="left anti", use_threads=False)
        b = b.set_column(b.schema.get_field_index("side"), "side", pc.if_else(pc.equal(b["side"], ""), None, b["side"]))
        return pa.concat_tables([a.select(table.column_names), b.select(table.column_names).cast(table.schema)])
    keys = ["ts", "side", "price"] if ds.data_type is DataType.BOOK else ["ts"]
    return table.join(stored.select(keys), keys, join_type="left anti")


def prepare_file(v3: V3File, lake_root: Path, report: ImportReport) -> pa.Table | None:
    """Read, normalise, fix and deduplicate against the lake one 3.x file: the rows to write (lake columns,
    by ts), or None when the lake holds them all. Counts rows read, skipped, dropped and fixed in ``report``."""
    raw = pq.read_table(v3.path)
    report.files += 1
    report.rows_read += raw.num_rows
    report.datasets.add(str(v3.dataset))
    table = _canonical(raw, v3.dataset.data_type)
    table = _fix(v3, _ts_to_ns(table), report)
    new = _not_stored(lake_root, v3.dataset, table)
    report.rows_skipped += table.num_rows - new.num_rows
    if new.num_rows == 0:
        return None
    for name in [n for n in new.column_names if n.startswith(_FIX)]:
        report.fixed[name.removeprefix(_FIX)] += pc.sum(new[name].cast(pa.int64())).as_py() or 0
        new = new.drop_columns([name])
    if new.num_rows > 1:
        new = new.sort_by([(c, "ascending") for c in ("ts",)])
    return new


def count_written(report: ImportReport, result: WriteResult) -> None:
    """Add one write's outcome (rows imported, quarantined per rule) to ``report``."""
    report.rows_imported += result.rows_written
    report.quarantined.update(result.quarantine_reasons)


def import_file(v3: V3File, lake_root: Path, report: ImportReport) -> None:
    """Read, normalise, fix, deduplicate against the lake and write one 3.x file (through the quality gates)."""
    new = prepare_file(v3, lake_root, report)
    if new is not None:
        count_written(report, write_table(lake_root, v3.dataset, new, Provenance(v3.dataset.exchange, TRANSPORT, None)))


def check_source(path: Path, lake_root: Path) -> None:
    """Refuse to import the lake into itself.

    Raises:
        ImportFailed: ``path`` is the lake.
    """
    if path.exists() and lake_root.exists() and os.path.samefile(path, lake_root):
        raise ImportFailed(f"{path} is the lake itself, not a dccd 3.x data directory")


def import_v3(path: Path, lake_root: Path) -> ImportReport:
    """Import every 3.x data file under ``path`` into the lake at ``lake_root``; see the module docstring.

    Raises:
        ImportFailed: ``path`` is not a 3.x data directory, or is the lake itself.
    """
    check_source(path, lake_root)
    report = ImportReport()
    for v3 in discover(path, report):
        try:
            import_file(v3, lake_root, report)
        except (OSError, pa.ArrowException) as exc:
            report.files_failed.append((str(v3.path.relative_to(path)), f"{type(exc).__name__}: {exc}"))
    return report
