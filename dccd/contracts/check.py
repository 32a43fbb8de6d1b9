"""``dccd check`` / ``GET /api/v1/quality``: every data contract over stored datasets, one report per dataset and day.

Each dataset is read once (deduplicated, sorted, its parts pinned so a compaction cannot change them under
the check), registered in DuckDB as ``t``, and handed to the contracts of its type
(:mod:`dccd.contracts.stored`). Two contracts look across datasets: ``bars_vs_trades`` (bars against the
trades stored for the same exchange and symbol) and ``cross_exchange`` (closes against the same pair's on
the other exchanges). Blocking; run it in a worker thread from async code.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from dccd.contracts import stored
from dccd.contracts.report import CheckReport, ContractResult, DatasetReport, SkippedFile, result, skipped
from dccd.contracts.rules import ContractRules, sequential_exchange
from dccd.domain import DatasetId, DataType
from dccd.domain.timeutil import NS_PER_DAY, ns_to_iso
from dccd.errors import StorageError
from dccd.storage import reader, snapshots
from dccd.storage.quality import DEFAULT_SKEW_NS

Planner = Callable[[DatasetId, "int | None", "int | None"], reader.Plan]
"""Plans the read of one dataset (default: the lake's current parts, pinned); ``--as-of`` swaps it."""


class SelectorError(ValueError):
    """A ``DATASET`` selector that is malformed or matches nothing stored (one line)."""


def _names(ds: DatasetId) -> tuple[str, str]:
    tail = f":{ds.data_type.value}" + (f":{ds.span.label}" if ds.span else "")
    return f"{ds.exchange}:{ds.symbol}{tail}".lower(), f"{ds.exchange}:{ds.symbol.slug}{tail}".lower()


def select(found: Sequence[DatasetId], selectors: Sequence[str]) -> list[DatasetId]:
    """The datasets matching any selector, sorted: ``EXCHANGE[:SYMBOL[:TYPE[:SPAN]]]`` (symbol as ``BTC/USDT``
    or ``BTC-USDT``, case-insensitive), each matching whole ``:``-separated fields from the left.

    Raises:
        SelectorError: a selector is empty or matches no stored dataset.
    """
    if not selectors:
        return sorted(found)
    out: set[DatasetId] = set()
    for sel in selectors:
        want = sel.strip().lower()
        if not want or want.startswith(":") or any(c.isspace() for c in want):
            raise SelectorError(
                f"DATASET {sel[:80]!r}: not EXCHANGE[:SYMBOL[:TYPE[:SPAN]]] (e.g. binance:BTC/USDT:ohlc:1m)"
            )
        hits = [ds for ds in found if any(n == want or n.startswith(want + ":") for n in _names(ds))]
        if not hits:
            near = ", ".join(str(d) for d in sorted(found)[:8]) or "nothing"
            raise SelectorError(f"DATASET {sel[:80]!r}: no stored dataset matches (stored: {near})")
        out.update(hits)
    return sorted(out)


class _Checker:
    """One check run: the caches the cross-dataset contracts share."""

    def __init__(
        self,
        root: Path,
        rules: ContractRules,
        start_ns: int | None,
        end_ns: int | None,
        now_ns: int,
        planner: Planner | None,
        everything: list[DatasetId],
    ) -> None:
        self.root, self.rules, self.start_ns, self.end_ns, self.now_ns = root, rules, start_ns, end_ns, now_ns
        self.planner: Planner = planner or (lambda ds, lo, hi: reader.plan(root, ds, lo, hi, pin=True))
        self.everything = everything
        self.closes: dict[DatasetId, pa.Table] = {}
        self.trades: tuple[DatasetId, int | None, int | None, pa.Table] | None = None  # the last trades read

    def read(self, ds: DatasetId, lo: int | None, hi: int | None) -> tuple[pa.Table, list[str], list[reader.BadFile]]:
        """Rows (deduplicated, sorted), the parts read (pinned paths) and the skipped files."""
        for _attempt in range(5):
            p = self.planner(ds, lo, hi)
            try:
                table, bad = reader.run_table(p)
                return table, [f.path for f in p.files], bad
            except reader.Vanished:
                continue
            finally:
                if p.pins is not None:
                    shutil.rmtree(p.pins, ignore_errors=True)
        raise StorageError(f"{ds}: parts kept vanishing during the check")

    def dataset(self, ds: DatasetId) -> DatasetReport:
        """Every contract of ``ds``'s type over its stored rows."""
        p = self.planner(ds, self.start_ns, self.end_ns)
        try:
            table, bad = reader.run_table(p)
            con = reader.connect()
            try:
                con.register("t", table)
                results = self._contracts(con, ds, table, p)
            finally:
                con.close()
        finally:
            if p.pins is not None:
                shutil.rmtree(p.pins, ignore_errors=True)
        ts = table["ts"]
        first = ns_to_iso(ts[0].as_py()) if table.num_rows else None
        last = ns_to_iso(ts[-1].as_py()) if table.num_rows else None
        return DatasetReport(
            str(ds), ds.exchange, str(ds.symbol), ds.data_type.value, ds.span.label if ds.span else None,
            table.num_rows, first, last, sum(r.violations for r in results), results,
            [SkippedFile(b.path, b.reason) for b in bad],
        )  # fmt: skip

    def _contracts(
        self, con: duckdb.DuckDBPyConnection, ds: DatasetId, table: pa.Table, p: reader.Plan
    ) -> list[ContractResult]:
        rules, n = self.rules, self.rules.examples
        dt = ds.data_type
        out: list[ContractResult] = []
        rows = stored.row_rules(ds, table, rules, self.now_ns + DEFAULT_SKEW_NS)
        out.append(result("schema_units", rows["schema_units"], n))
        if reader.needs_dedup(dt, p.files):
            out.append(result("unique_key", stored.key_conflicts(con, ds, [f.path for f in p.files]), n))
        else:  # one dccd part, or ts-keyed parts whose ranges do not overlap: no key can repeat
            out.append(result("unique_key", rows["schema_units"].slice(0, 0), n, "no two parts can hold one key"))
        if dt is DataType.TRADES:
            if sequential_exchange(ds.exchange):
                out.append(result("monotonic_ids", stored.id_descents(con, table), n))
            else:
                out.append(skipped("monotonic_ids", f"{ds.exchange} does not guarantee sequential trade ids"))
        if dt is DataType.OHLC:
            out.append(result("ohlc_invariants", rows["ohlc_invariants"], n))
            out.append(result("bar_grid", rows["bar_grid"], n))
            out.extend(self._bars(con, ds, table))
        if dt in (DataType.TRADES, DataType.OHLC):
            out.append(result("bad_tick", stored.bad_ticks(con, ds, rules, table), n) if table.num_rows >= 3 else
                       skipped("bad_tick", "fewer than 3 rows"))  # fmt: skip
        if dt is DataType.TRADES:
            out.append(result("stale_feed", stored.stale(con, ds, rules), n))
        return out

    def _bars(self, con: duckdb.DuckDBPyConnection, ds: DatasetId, table: pa.Table) -> list[ContractResult]:
        """``bar_count``, ``bars_vs_trades`` and ``cross_exchange`` of one bar dataset."""
        span, n = ds.span, self.rules.examples
        assert span is not None
        out = []
        intraday = not span.calendar and span.ns <= NS_PER_DAY
        if not intraday:
            out.append(skipped("bar_count", f"{span.label} bars: no per-day count"))
        elif table.num_rows:
            out.append(result("bar_count", stored.bar_counts(con, ds, self.rules), n))
        else:
            out.append(result("bar_count", table.select(["ts"]), n))
        out.append(self._reconcile(con, ds, table))
        out.append(self._cross(con, ds, table))
        return out

    def _reconcile(self, con: duckdb.DuckDBPyConnection, ds: DatasetId, table: pa.Table) -> ContractResult:
        span = ds.span
        assert span is not None
        tds = DatasetId(ds.exchange, ds.symbol, DataType.TRADES)
        if tds not in self.everything:
            return skipped("bars_vs_trades", "no trades stored for this exchange and symbol")
        if span.calendar or span.ns > NS_PER_DAY or table.num_rows == 0:
            return skipped("bars_vs_trades", "only intraday bars are rebuilt from trades")
        lo, hi = table["ts"][0].as_py(), span.next(table["ts"][-1].as_py())
        trades = self._trades(tds, lo, hi)
        con.register("tr", trades)
        found, compared = stored.bars_vs_trades(con, span, self.rules.reconcile_rel_tol)
        if compared == 0 and found.num_rows == 0:
            return skipped("bars_vs_trades", "no bar lies wholly inside the stored trades")
        return result("bars_vs_trades", found, self.rules.examples, f"{compared} bars compared")

    def _trades(self, tds: DatasetId, lo: int, hi: int) -> pa.Table:
        if self.trades is not None and self.trades[:3] == (tds, lo, hi):
            return self.trades[3]
        table, _files, _bad = self.read(tds, lo, hi)
        self.trades = (tds, lo, hi, table)
        return table

    def _cross(self, con: duckdb.DuckDBPyConnection, ds: DatasetId, table: pa.Table) -> ContractResult:
        others = [d for d in self.everything if d.data_type is DataType.OHLC and d.symbol == ds.symbol
                  and d.span == ds.span and d.exchange != ds.exchange]  # fmt: skip
        if not others:
            return skipped("cross_exchange", f"no other exchange stores {ds.symbol} {ds.span}")
        if table.num_rows == 0:
            return result("cross_exchange", table.select(["ts"]), self.rules.examples)
        lo, hi = table["ts"][0].as_py(), table["ts"][-1].as_py() + 1
        parts = [self._closes(o, lo, hi) for o in others]
        con.register("o", pa.concat_tables(parts))
        names = ", ".join(o.exchange for o in others)
        return result("cross_exchange", stored.cross_deviation(con, self.rules.cross_max_rel), self.rules.examples,
                      f"against {names}")  # fmt: skip

    def _closes(self, ds: DatasetId, lo: int, hi: int) -> pa.Table:
        """``ts, close, exchange`` of a bar dataset (cached for the run, cut to ``[lo, hi)``)."""
        if ds not in self.closes:
            table, _files, _bad = self.read(ds, self.start_ns, self.end_ns)
            ex = pa.repeat(pa.scalar(ds.exchange, pa.string()), table.num_rows)
            self.closes[ds] = pa.table({"ts": table["ts"], "close": table["close"], "exchange": ex})
        closes = self.closes[ds]
        return _cut(closes, lo, hi)


def _cut(table: pa.Table, lo: int, hi: int) -> pa.Table:
    ts = table["ts"]
    return table.filter(
        pc.and_(pc.greater_equal(ts, pa.scalar(lo, pa.int64())), pc.less(ts, pa.scalar(hi, pa.int64())))
    )


def check(
    root: Path,
    rules: ContractRules,
    selectors: Sequence[str] = (),
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    now_ns: int | None = None,
    as_of: str | int | None = None,
) -> CheckReport:
    """Run every contract over the stored datasets ``selectors`` pick (all when empty).

    Args:
        root: the lake.
        rules: thresholds (:func:`dccd.contracts.rules.resolve`).
        selectors: ``EXCHANGE[:SYMBOL[:TYPE[:SPAN]]]`` each (see :func:`select`).
        start_ns, end_ns: check only rows with ``start_ns <= ts < end_ns``.
        now_ns: the clock for the ``ts_not_future`` rule (default: now).
        as_of: check the lake as a snapshot held it (an id, tag or ISO time; see :mod:`dccd.storage.snapshots`):
            its datasets and parts, every contract (the cross-dataset ones too) on that view.

    Raises:
        SelectorError: a selector matches nothing stored.
        SnapshotNotFound: ``as_of`` names no retained snapshot.
        StorageError: the lake could not be read.
    """
    t0 = time.perf_counter()
    now = time.time_ns() if now_ns is None else now_ns
    planner: Planner | None = None
    shown_as_of: str | None = None
    if as_of is not None:
        snap = snapshots.resolve(root, as_of)  # resolved once: every dataset reads the same snapshot
        sid = snap.snapshot_id
        everything = snapshots.datasets_as_of(root, sid)
        planner = lambda ds, lo, hi: reader.plan(root, ds, lo, hi, pin=True, as_of=sid)  # noqa: E731
        shown_as_of = f"{sid}" + (f" ({snap.tag})" if snap.tag else "") + f" at {ns_to_iso(snap.time_ns)}"
    else:
        everything = reader.datasets(root) if root.is_dir() else []
    chosen = select(everything, selectors)
    run = _Checker(root, rules, start_ns, end_ns, now, planner, everything)
    reports = [run.dataset(ds) for ds in chosen]
    violations = sum(r.violations for r in reports)
    ok = violations == 0 and not any(r.skipped_files for r in reports)
    return CheckReport(
        ok, violations, sum(r.rows for r in reports), reports, ns_to_iso(now), round(time.perf_counter() - t0, 3),
        ns_to_iso(start_ns) if start_ns is not None else None, ns_to_iso(end_ns) if end_ns is not None else None,
        shown_as_of,
    )  # fmt: skip


__all__ = ["Planner", "SelectorError", "check", "select"]
