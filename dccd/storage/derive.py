"""Bars derived from stored trades, and their reconciliation with stored bars.

One DuckDB query per chunk of time (a UTC day for spans up to 1d, one bar
otherwise) turns the lake's deduplicated trades into the lake's OHLC columns:

- ``ts``: the bar's open time (``Span.align``: epoch-aligned, Monday for 1w,
  the calendar month for 1M);
- ``open``/``close``: the price of the first/last trade in match order (ts,
  then the integer trade id, then the id text);
- ``high``/``low``: the extreme prices;
- ``volume``: the sum of amounts, ``quote_volume``: the sum of price x amount,
  both summed as ``DECIMAL(38, 10)`` / ``DECIMAL(38, 20)`` (exact for prices and
  amounts of up to 10 decimals, as exchanges send them), then rounded once to
  float64, so they equal the exchange's decimal totals parsed as floats;
- ``trades``: the number of trades.

A period without any trade gets no bar (what Coinbase documents, what Bitfinex,
Kraken, OKX and the fake exchanges do; never a fabricated zero bar). Only
complete periods are derived: a bar is final when its end is at or before both
``now`` and the trade coverage (:func:`trade_coverage_end`), so the bar of the
newest stored trade is never written while more trades may join it.
No row goes through Python: the query returns an Arrow table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from dccd.domain import DatasetId, DataType
from dccd.domain.spans import Span
from dccd.domain.timeutil import NS_PER_DAY
from dccd.storage import reader
from dccd.storage.runs import RunState, RunStore
from dccd.storage.schema import LOOSE_SCHEMAS

# 1970-01-01 was a Thursday: weekly bars open on Mondays, 4 days after the epoch (as Span.align).
_WEEK_OFFSET_NS: Final[int] = 4 * NS_PER_DAY
OHLC_FIELDS: Final[tuple[str, ...]] = ("open", "high", "low", "close", "volume", "quote_volume", "trades")
# Derived volumes are exact decimal sums rounded once; an exchange's own float totals may differ in the last bits.
VOLUME_RTOL: Final[float] = 1e-9


def bucket_sql(span: Span, col: str = "ts") -> str:
    """SQL of the bar open time (ns) of ``col``: equal to ``Span.align`` for ts > 0."""
    if span.calendar:
        return f"epoch_ns(date_trunc('month', make_timestamp({col} // 1000)))"
    off = _WEEK_OFFSET_NS if span.label == "1w" else 0
    return f"(({col} - {off}) // {span.ns}) * {span.ns} + {off}"


def bars_sql(span: Span, trades_sql: str) -> str:
    """Aggregate the rows of ``trades_sql`` (the lake's trade columns) into bars, ordered by ts."""
    dec, dec_p = "DECIMAL(38, 10)", "DECIMAL(38, 10)"
    return f"""
        WITH t AS (SELECT {bucket_sql(span)} AS b, ts, TRY_CAST(id AS BIGINT) AS idn, id, price, amount
                   FROM ({trades_sql}))
        SELECT b AS ts,
               first(price ORDER BY ts, idn, id) AS open,
               max(price) AS high,
               min(price) AS low,
               last(price ORDER BY ts, idn, id) AS close,
               CAST(sum(CAST(amount AS {dec})) AS DOUBLE) AS volume,
               CAST(sum(CAST(price AS {dec_p}) * CAST(amount AS {dec})) AS DOUBLE) AS quote_volume,
               CAST(count(*) AS BIGINT) AS trades
        FROM t GROUP BY b ORDER BY b"""


def chunks(span: Span, start_ns: int, end_ns: int) -> Iterator[tuple[int, int]]:
    """Span-aligned ``[lo, hi)`` pieces of ``[start_ns, end_ns)`` (start aligned): a UTC day each for spans up
    to 1d (every such span divides a day), one bar each for longer spans."""
    lo = start_ns
    while lo < end_ns:
        hi = (lo // NS_PER_DAY + 1) * NS_PER_DAY if span.ns <= NS_PER_DAY else span.next(lo)
        yield lo, min(hi, end_ns)
        lo = hi


def derive_chunk(root: Path, trades: DatasetId, span: Span, lo: int, hi: int) -> pa.Table:
    """Bars opening in ``[lo, hi)`` (span-aligned bounds) from the stored trades of ``trades``; lake OHLC columns.

    Raises:
        StorageError: parts kept vanishing (compactions racing the read).
    """
    for _attempt in range(5):
        try:
            p = reader.plan(root, trades, lo, hi)
            if not p.files:
                return LOOSE_SCHEMAS[DataType.OHLC].empty_table()
            # The read's dedup without its ORDER BY (a sort of every trade by ts and id text): the aggregates order
            # within each bar themselves.
            trades_sql = reader.build_sql(
                DataType.TRADES, reader.needs_dedup(DataType.TRADES, p.files), lo, hi, order=False, files=p.files
            )
            table, _skipped = reader.run_table(p, bars_sql(span, trades_sql))
            return table.cast(LOOSE_SCHEMAS[DataType.OHLC])
        except reader.Vanished:
            continue
    from dccd.errors import StorageError

    raise StorageError(f"{trades}: parts kept vanishing while deriving bars")


def derive_missing(root: Path, trades: DatasetId, ohlc: DatasetId, lo: int, hi: int) -> tuple[pa.Table, int]:
    """Bars of ``[lo, hi)`` derived from the trades that ``ohlc`` does not hold yet, and how many periods had
    trades (stored bars are never rewritten: a re-run derives nothing twice)."""
    assert ohlc.span is not None
    bars = derive_chunk(root, trades, ohlc.span, lo, hi)
    if bars.num_rows == 0:
        return bars, 0
    stored, _skipped = reader.read_table(root, ohlc, lo, hi)
    if stored.num_rows == 0:
        return bars, bars.num_rows
    keep = pc.invert(pc.is_in(bars["ts"], value_set=stored["ts"]))
    return bars.filter(keep), bars.num_rows


def derive_bars(root: Path, trades: DatasetId, span: Span, start_ns: int, end_ns: int) -> pa.Table:
    """Bars opening in ``[align_up(start_ns), end_ns)``, chunk by chunk (for tests and reconciliation)."""
    parts = [derive_chunk(root, trades, span, lo, hi) for lo, hi in chunks(span, span.align_up(start_ns), end_ns)]
    return pa.concat_tables(parts) if parts else LOOSE_SCHEMAS[DataType.OHLC].empty_table()


def trades_dataset(ohlc: DatasetId) -> DatasetId:
    """The trades dataset bars of ``ohlc`` derive from."""
    return DatasetId(ohlc.exchange, ohlc.symbol, DataType.TRADES)


def trade_coverage_end(root: Path, runs: RunStore | None, trades: DatasetId) -> int | None:
    """Up to when (ns, exclusive) the stored trades of ``trades`` are known complete, or None (nothing stored).

    The newest stored trade proves every earlier instant was collected; a successful trades backfill
    that resumed from the stored trades (or started at or before the newest one) proves its whole
    requested range, up to its end (bounded by when it ran), even where the exchange had no trades.
    """
    last = reader.stored_range(root, trades)
    if last is None:
        return None
    cover = last[1]
    if runs is None or not runs.path.exists():
        return cover
    for run, _events in runs.dataset_history(trades):
        if run.operation != "backfill" or run.state != RunState.SUCCEEDED:
            continue
        start, end = run.progress.get("requested_start"), run.progress.get("requested_end")
        if not isinstance(end, int) or (isinstance(start, int) and start > cover):
            continue
        cover = max(cover, min(end, run.created_ns))
    return cover


def final_end(span: Span, end_ns: int, now_ns: int, coverage_ns: int) -> int:
    """Exclusive bound of the bar opens that are final: a bar must end by ``now`` and by the trade coverage."""
    bound = min(now_ns, coverage_ns)
    return min(end_ns, span.align(bound))


# -- reconciliation ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BarDiff:
    """One field of one bar where the derived bar and the stored bar disagree."""

    ts: int
    field: str
    derived: Any
    stored: Any


@dataclass
class ReconcileReport:
    """Derived bars vs the stored (exchange's) bars over a range of final bars."""

    dataset: DatasetId
    start_ns: int
    end_ns: int
    compared: int = 0
    only_derived: list[int] = field(default_factory=list)  # bar opens with trades but no stored bar
    only_stored: list[int] = field(default_factory=list)  # stored bars whose period has no stored trade
    diffs: list[BarDiff] = field(default_factory=list)

    @property
    def differing_bars(self) -> int:
        """Number of bars with at least one differing field."""
        return len({d.ts for d in self.diffs})


def reconcile(
    root: Path,
    ohlc: DatasetId,
    start_ns: int,
    end_ns: int,
    *,
    runs: RunStore | None = None,
    now_ns: int | None = None,
    rtol: float = VOLUME_RTOL,
) -> ReconcileReport:
    """Compare bars derived from the stored trades with the stored bars of ``ohlc`` in ``[start_ns, end_ns)``.

    Only final bars (see :func:`final_end`) are compared. Prices and trade counts must be equal;
    volumes within ``rtol`` (relative). A field the stored bar lacks (null: the exchange does not
    publish it) is not compared.
    """
    span = ohlc.span
    assert span is not None
    trades = trades_dataset(ohlc)
    now_ns = time.time_ns() if now_ns is None else now_ns
    cover = trade_coverage_end(root, runs, trades)
    start = span.align_up(start_ns)
    end = final_end(span, end_ns, now_ns, cover) if cover is not None else start
    report = ReconcileReport(ohlc, start, max(start, end))
    if end <= start:
        return report
    derived = derive_bars(root, trades, span, start, end)
    stored, _skipped = reader.read_table(root, ohlc, start, end)
    d_ts, s_ts = derived["ts"], stored["ts"]
    report.only_derived = pc.filter(d_ts, pc.invert(pc.is_in(d_ts, value_set=s_ts))).to_pylist()
    report.only_stored = pc.filter(s_ts, pc.invert(pc.is_in(s_ts, value_set=d_ts))).to_pylist()
    both = derived.join(stored, "ts", join_type="inner", left_suffix="_d", right_suffix="_s").sort_by("ts")
    report.compared = both.num_rows
    for name in OHLC_FIELDS:
        a, b = both[f"{name}_d"], both[f"{name}_s"]
        if name in ("volume", "quote_volume"):
            tol = pc.multiply(pc.max_element_wise(pc.abs(a), pc.abs(b)), rtol)
            same = pc.less_equal(pc.abs(pc.subtract(a, b)), tol)
        else:
            same = pc.equal(a, b)
        bad = pc.and_(pc.is_valid(b), pc.invert(pc.fill_null(same, False)))
        if not pc.any(bad).as_py():
            continue
        rows = both.filter(bad).select(["ts", f"{name}_d", f"{name}_s"]).to_pylist()
        report.diffs += [BarDiff(r["ts"], name, r[f"{name}_d"], r[f"{name}_s"]) for r in rows]
    report.diffs.sort(key=lambda d: (d.ts, OHLC_FIELDS.index(d.field)))
    return report
