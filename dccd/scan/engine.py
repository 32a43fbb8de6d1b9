"""Running scans over the lake (blocking: call it from a worker thread).

:func:`run_scans` picks the stored OHLC series of the universe on the scan's span, lists for each
the parts holding its newest bars (the reader's listing: bad parts skipped, pruned by partition and
part name), and reads all of them with one ``read_parquet`` into a temp table (deduplicated
newest-write-wins when parts overlap, tail-cut per symbol, the universe's volume filter applied).
Scans of the same span and universe share that read. Each scanner then runs as one statement over
``bars`` (its own tail of that table) for the whole universe: no per-symbol loop.

``confirm`` scans are multi-timeframe conditions: each runs on its own span over the symbols the
main scan hit, and a hit is kept only when every confirm scan hit the same exchange and symbol; its
values join the hit's as ``<scanner>@<span>.<name>``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.domain.spans import SPAN_SECONDS
from dccd.domain.timeutil import NS_PER_S
from dccd.errors import ConfigError
from dccd.storage import layout, reader

from .contract import Scanner, Universe, check_output, get_scanner, params_hash, parse_params

DAY_NS = 86_400 * NS_PER_S


class ScanSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One scan: a scanner, its span and parameters, the universe, and multi-timeframe conditions."""

    scanner: str
    span: str = "1h"
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    universe: Universe = msgspec.field(default_factory=Universe)
    confirm: list[ScanSpec] = msgspec.field(default_factory=list)


class ScanResult(msgspec.Struct, frozen=True):
    """What a scan found: ``hits`` rows of ``exchange, symbol, ts`` plus the scanner's values."""

    scanner: str
    version: str
    params_hash: str
    span: str
    symbols: int
    hits: list[dict[str, Any]]
    elapsed_s: float


class Prepared(msgspec.Struct, frozen=True):
    """A validated scan spec: the scanner object, its typed config, the span."""

    spec: ScanSpec
    scanner: Any
    config: Any
    span: Span
    confirm: tuple[Prepared, ...]


def prepare(spec: ScanSpec, path: str = "") -> Prepared:
    """Validate a spec (scanner known, span accepted, parameters typed) before anything runs.

    Raises:
        ConfigError: one line naming the field.
    """
    pre = f"{path}." if path else ""
    try:
        scanner = get_scanner(spec.scanner)
    except ConfigError as exc:
        raise ConfigError(f"{pre}scanner", exc.message) from None
    try:
        span = Span.parse(spec.span)
    except ValueError as exc:
        raise ConfigError(f"{pre}span", str(exc)) from None
    if scanner.spans and span.label not in scanner.spans:
        raise ConfigError(f"{pre}span", f"{spec.scanner} scans {' '.join(scanner.spans)} bars, not {span.label}")
    for k, s in enumerate(spec.universe.symbols):
        try:
            Symbol.parse(s)
        except ValueError as exc:
            raise ConfigError(f"{pre}universe.symbols[{k}]", str(exc)) from None
    config = parse_params(scanner, spec.params, f"{pre}params")
    confirm = tuple(prepare(c, f"{pre}confirm[{i}]") for i, c in enumerate(spec.confirm))
    return Prepared(spec, scanner, config, span, confirm)


def select_datasets(root: Path, universe: Universe, span: Span) -> list[DatasetId]:
    """The stored OHLC series on ``span`` that the universe admits (all but the volume filter)."""
    wanted = {Symbol.parse(s) for s in universe.symbols}
    out = []
    for ds in reader.datasets(root):
        if ds.data_type is not DataType.OHLC or ds.span != span:
            continue
        if universe.exchanges and ds.exchange not in universe.exchanges:
            continue
        if universe.quotes and ds.symbol.quote not in universe.quotes:
            continue
        if wanted and ds.symbol not in wanted:
            continue
        out.append(ds)
    return out


class LakeBars:
    """The newest ``tail`` bars of each series, as part files plus the SQL that reads them.

    Each series is listed once (the reader's listing lock, bad parts skipped) from the newest
    partition back to where its tail starts; :meth:`load` reads every file of every series in one
    ``read_parquet`` into a temp table ``_shared`` that each scanner's ``bars`` is cut from.
    """

    def __init__(self, root: Path, datasets: list[DatasetId], span: Span, tail: int, universe: Universe) -> None:
        self.span_ns = SPAN_SECONDS[span.label] * NS_PER_S
        self.tail = tail
        self.universe = universe
        self.files: list[str] = []
        idx: list[int] = []
        exchanges: list[str] = []
        symbols: list[str] = []
        starts: list[int] = []
        self.dedup = self.union = False
        self.series = 0
        for ds in datasets:
            found = self._parts(root, ds)
            if found is None:
                continue
            start, parts = found
            self.series += 1
            self.dedup = self.dedup or reader.needs_dedup(ds.data_type, parts)
            for f in parts:
                self.union = self.union or bool(reader.footer(ds.data_type, f.path).missing)
                idx.append(len(self.files))
                self.files.append(f.path)
                exchanges.append(ds.exchange)
                symbols.append(str(ds.symbol))
                starts.append(start)
        self.table = pa.table(
            {
                "idx": pa.array(idx, pa.int64()),
                "exchange": pa.array(exchanges, pa.string()),
                "symbol": pa.array(symbols, pa.string()),
                "start_ts": pa.array(starts, pa.int64()),
            }
        )

    def _parts(self, root: Path, ds: DatasetId) -> tuple[int, list[reader.PartFile]] | None:
        """``(first ts of the tail, the good parts holding it, oldest stamp first)``, or None if empty."""
        pdirs = reader.partitions(root, ds)
        if not pdirs:
            return None
        newest = layout.partition_bounds(pdirs[-1].name)
        listed_from: int | None = (newest[0] if newest else 0) - self.tail * self.span_ns
        for _attempt in range(5):
            parts, _bad = reader.list_parts(root, ds, listed_from)
            reasons = {p.path: reader.check_footer(ds.data_type, p.path) for p in parts}
            if "vanished" in reasons.values():
                continue  # a compaction swapped parts after the listing: list again
            good = [p for p in parts if reasons[p.path] is None]
            if not good:
                if listed_from is None:
                    return None
                listed_from = None  # the newest partitions hold nothing readable: look at all of them
                continue
            start = max(p.last_ts for p in good) - (self.tail - 1) * self.span_ns
            if listed_from is not None and start < listed_from:
                listed_from = start
                continue
            return start, [p for p in good if p.last_ts >= start]
        return None

    def load_sql(self) -> str:
        """The statement filling ``_shared`` (exchange, symbol, ts, OHLCV, quote volume, ``_last`` ts)."""
        # Files of one series are listed oldest stamp first, so on a duplicate ts the highest file index
        # is the newest write: it wins, as in every dccd read.
        qualify = (
            " QUALIFY row_number() OVER (PARTITION BY f.exchange, f.symbol, r.ts ORDER BY r._fi DESC) = 1"
            if self.dedup
            else ""
        )
        union = ", union_by_name=true" if self.union else ""
        sql = (
            "WITH _raw AS (SELECT file_index AS _fi, ts, open, high, low, close, volume, quote_volume"
            f" FROM read_parquet($files, hive_partitioning=false{union})),"
            " _b AS (SELECT f.exchange, f.symbol, r.ts, r.open, r.high, r.low, r.close, r.volume,"
            " coalesce(r.quote_volume, r.close * r.volume) AS quote_volume,"
            f" f.start_ts + {(self.tail - 1) * self.span_ns} AS _last"
            f" FROM _raw r JOIN _scan_files f ON r._fi = f.idx WHERE r.ts >= f.start_ts{qualify})"
        )
        if self.universe.min_quote_volume is not None:
            sql += (
                " SELECT * FROM _b WHERE (exchange, symbol) IN (SELECT (exchange, symbol) FROM _b"
                f" WHERE ts > _last - {DAY_NS} GROUP BY exchange, symbol"
                f" HAVING sum(quote_volume) >= {float(self.universe.min_quote_volume)!r})"
            )
        else:
            sql += " SELECT * FROM _b"
        return sql

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read the parts into the temp table ``_shared`` of ``con``."""
        con.register("_scan_files", self.table)
        con.execute("CREATE OR REPLACE TEMP TABLE _shared AS " + self.load_sql(), {"files": self.files})

    def bars_sql(self, tail: int) -> str:
        """The ``WITH bars AS (...)`` clause of a scanner reading ``tail`` of the loaded bars."""
        return (
            "WITH bars AS MATERIALIZED (SELECT exchange, symbol, ts, open, high, low, close, volume, quote_volume,"
            f" _last AS last_ts FROM _shared WHERE ts > _last - {int(tail) * self.span_ns}) "
        )


class Context:
    """The :class:`~dccd.scan.contract.ScanContext` a scanner gets."""

    def __init__(self, con: duckdb.DuckDBPyConnection, bars: LakeBars, tail: int) -> None:
        self.con = con
        self.bars_sql = bars.bars_sql(tail)
        self.params: dict[str, Any] = {}
        self.span_ns = bars.span_ns

    def query(self, select: str) -> pa.Table:
        """Run ``bars_sql + select`` and return an Arrow table."""
        return self.con.sql(self.bars_sql + select, params=self.params or None).to_arrow_table()

    def batches(self, symbols_per_batch: int = 64) -> Iterator[pa.Table]:
        """The bars as Arrow tables of whole symbols, sorted by exchange, symbol, ts."""
        table = self.query("SELECT * FROM bars ORDER BY exchange, symbol, ts")
        if table.num_rows == 0:
            return
        keys = [f"{e}\0{s}" for e, s in zip(table["exchange"].to_pylist(), table["symbol"].to_pylist(), strict=True)]
        start, seen = 0, 0
        for i in range(1, len(keys) + 1):
            if i == len(keys) or keys[i] != keys[i - 1]:
                seen += 1
                if seen == symbols_per_batch or i == len(keys):
                    yield table.slice(start, i - start)
                    start, seen = i, 0


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB connection for one scan."""
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _scan_table(scanner: Scanner, config: Any, ctx: Context) -> pa.Table:
    if hasattr(scanner, "scan"):
        out: pa.Table = scanner.scan(ctx, config)
        return check_output(scanner.name, out)
    parts = [check_output(scanner.name, scanner.scan_batch(b, config)) for b in ctx.batches()]  # type: ignore[attr-defined]
    parts = [p for p in parts if p.num_rows]
    return (
        pa.concat_tables(parts, promote_options="permissive")
        if parts
        else pa.table({k: [] for k in ("exchange", "symbol", "ts")})
    )


def _tail(p: Prepared) -> int:
    return max(2, int(p.scanner.tail_bars(p.config, SPAN_SECONDS[p.span.label])))


def _run_group(root: Path, group: list[Prepared], universe: Universe) -> list[tuple[int, list[dict[str, Any]]]]:
    """Scans of one span and universe: the bars are read once, each scanner runs over them."""
    datasets = select_datasets(root, universe, group[0].span)
    if not datasets:
        return [(0, []) for _ in group]
    bars = LakeBars(root, datasets, group[0].span, max(_tail(p) for p in group), universe)
    if not bars.files:
        return [(0, []) for _ in group]
    con = connect()
    try:
        bars.load(con)
        return [
            (bars.series, _scan_table(p.scanner, p.config, Context(con, bars, _tail(p))).to_pylist()) for p in group
        ]
    finally:
        con.close()


def _confirm(root: Path, p: Prepared, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for c in p.confirm:
        if not hits:
            break
        keys = sorted({(h["exchange"], h["symbol"]) for h in hits})
        uni = msgspec.structs.replace(
            c.spec.universe,
            exchanges=tuple(sorted({e for e, _ in keys})),
            symbols=tuple(sorted({s for _, s in keys})),
        )
        [(_, chits)] = _run_group(root, [c], uni)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for h in chits:
            found.setdefault((h["exchange"], h["symbol"]), h)
        prefix = f"{c.scanner.name}@{c.span.label}."
        kept = []
        for h in hits:
            other = found.get((h["exchange"], h["symbol"]))
            if other is not None:
                kept.append({**h, **{prefix + k: v for k, v in other.items() if k not in ("exchange", "symbol")}})
        hits = _confirm(root, c, kept)
    return hits


def run_scans(root: Path | str, specs: list[ScanSpec] | list[Prepared]) -> list[ScanResult]:
    """Run scans over the lake at ``root``; scans of one span and universe share one read of the bars.

    Raises:
        ConfigError: a bad spec (validated with :func:`prepare` before anything runs).
        duckdb.Error: a scanner's SQL failed.
    """
    t0 = time.perf_counter()
    prepared = [s if isinstance(s, Prepared) else prepare(s) for s in specs]
    root = Path(root)
    groups: dict[tuple[str, Universe], list[int]] = {}
    for i, p in enumerate(prepared):
        groups.setdefault((p.span.label, p.spec.universe), []).append(i)
    found: dict[int, tuple[int, list[dict[str, Any]]]] = {}
    for (_, universe), members in groups.items():
        for i, out in zip(members, _run_group(root, [prepared[i] for i in members], universe), strict=True):
            found[i] = out
    results = []
    for i, p in enumerate(prepared):
        symbols, hits = found[i]
        hits = _confirm(root, p, hits)
        hits.sort(key=lambda h: (h["exchange"], h["symbol"], h["ts"]))
        results.append(
            ScanResult(
                scanner=p.scanner.name,
                version=str(p.scanner.version),
                params_hash=params_hash(p.scanner, p.config),
                span=p.span.label,
                symbols=symbols,
                hits=hits,
                elapsed_s=time.perf_counter() - t0,
            )
        )
    return results


def run_scan(root: Path | str, spec: ScanSpec | Prepared) -> ScanResult:
    """Run one scan (see :func:`run_scans`)."""
    [result] = run_scans(root, [spec] if isinstance(spec, Prepared) else [prepare(spec)])
    return result
