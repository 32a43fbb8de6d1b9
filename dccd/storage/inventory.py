"""Inventory: per dataset rows, ts range, bytes, parts and exact gaps.

Gaps are listed in ``gap_ranges`` (each with its unit, count, source and detail;
``gaps`` keeps the plain ``(lo, hi)`` pairs of the dataset's ``gap_kind``):

- OHLC: missing bar intervals ``[first_missing_open, next_present_open)`` by span
  between the first and last stored bar (vectorised with Arrow), plus the bars a
  backfill asked for before the first / after the last stored bar. Holes the
  exchange confirmed (``exchange returned no bars``) are marked so.
- funding / OI: the same, at the series' own cadence when it is regular (the
  most common step covers >= 90 % of steps and every step is a multiple of
  it); otherwise none from the data and ``gap_note`` says why.
- trades of an exchange whose adapter declares ``sequential_trade_ids``: every
  missing id range, whatever its size (inclusive ``(lo, hi)``, with the ts of the
  trades around it), computed in DuckDB with one window over the distinct ids.
- trades of other exchanges: time holes from the run history (gaps a stream
  recorded and did not refill, e.g. around a reconnect) and the part of a failed
  or cancelled backfill's requested range after the last stored trade, unless a
  later successful backfill covered it.
- ranges a backfill recorded as not served by the exchange (``unavailable``).
- book: snapshots have no expected cadence; no gaps.

Parts skipped as corrupt or of the wrong schema are listed in ``skipped``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dccd.domain import DatasetId, DataType, Span, missing_bars
from dccd.domain.gaps import merge_ranges
from dccd.errors import StorageError
from dccd.storage.reader import BadFile, PartFile, Plan, Vanished, connect, datasets, footer, needs_dedup, plan
from dccd.storage.runs import RunEvent, RunRecord, RunState, RunStore
from dccd.storage.schema import key_sql

REGULAR_SHARE = 0.9
HOLE_DETAIL = "exchange returned no bars"  # detail of a backfill's exchange-confirmed OHLC hole
History = list[tuple[RunRecord, list[RunEvent]]]


class GapRange(msgspec.Struct, frozen=True):
    """One hole: ``unit`` ``"ns"`` = half-open ts range ``[lo, hi)``, ``"id"`` = inclusive trade ids ``lo..hi``.

    ``count`` is the number of missing bars / prints / ids (None for a time hole of
    trades, whose count is unknown); ``source`` says how it was found (``bars``,
    ``cadence``, ``ids``, ``stream``, ``backfill``, ``unavailable``); for an id
    hole ``first_ts``/``last_ts`` are the ts of the stored trades around it.
    """

    lo: int
    hi: int
    unit: str
    count: int | None
    source: str
    detail: str = ""
    first_ts: int | None = None
    last_ts: int | None = None


class DatasetInventory(msgspec.Struct, frozen=True):
    """What the lake holds for one dataset.

    ``gap_kind`` is ``"ts"`` (half-open ns intervals of missing bars/prints or time
    holes), ``"id"`` (inclusive missing trade-id ranges) or None (not computed; see
    ``gap_note``); ``gaps`` are the ``(lo, hi)`` pairs of that kind and
    ``gap_ranges`` every hole with its count and source (see the module docstring).
    """

    exchange: str
    symbol: str
    data_type: str
    span: str | None
    rows: int
    first_ts: int | None
    last_ts: int | None
    bytes: int
    parts: int
    partitions: int
    gap_kind: str | None
    gaps: list[tuple[int, int]]
    gap_note: str = ""
    skipped: list[BadFile] = []
    gap_ranges: list[GapRange] = []
    missing: int = 0  # sum of the counted gap ranges (bars, prints or ids)


def _read_ts(files: list[PartFile], skipped: list[BadFile]) -> pa.Array:
    """The ts column of every file, ascending and distinct."""
    chunks = []
    for f in sorted(files, key=lambda f: f.first_ts):
        try:
            chunks.extend(pq.read_table(f.path, columns=["ts"])["ts"].chunks)
        except (OSError, pa.ArrowException) as exc:
            skipped.append(BadFile(f.path, f"corrupt: {exc}"))
    ts = pa.chunked_array(chunks, pa.int64()).combine_chunks()
    if needs_dedup(DataType.OHLC, files):  # parts overlap: duplicates and disorder possible
        ts = pc.unique(ts)
        ts = pc.take(ts, pc.sort_indices(ts))
    return ts


def _step_gaps(ts: pa.Array, step: int, offset: int = 0) -> list[tuple[int, int]]:
    """Gaps in a series expected every ``step`` ns from aligned opens (ts ascending, distinct)."""
    if len(ts) < 2:
        return []
    prev, cur = ts[:-1], ts[1:]
    expect = pc.add(pc.multiply(pc.divide(pc.subtract(prev, offset), step), step), offset + step)
    mask = pc.greater(cur, expect)
    return list(zip(pc.filter(expect, mask).to_pylist(), pc.filter(cur, mask).to_pylist(), strict=True))


def _cadence_gaps(ts: pa.Array) -> tuple[str | None, list[tuple[int, int]], str]:
    if len(ts) < 3:
        return None, [], "too few rows to infer a cadence"
    diffs = pc.subtract(ts[1:], ts[:-1])
    counts = pc.value_counts(diffs)
    best = pc.index(counts.field("counts"), pc.max(counts.field("counts")).as_py()).as_py()
    step, share = counts.field("values")[best].as_py(), counts.field("counts")[best].as_py() / len(diffs)
    rem = pc.subtract(diffs, pc.multiply(pc.divide(diffs, step), step))
    if share < REGULAR_SHARE or pc.max(rem).as_py() != 0:
        return None, [], f"irregular cadence (most common step {step} ns covers {share:.0%} of steps)"
    return "ts", _step_gaps(ts, step, ts[0].as_py() % step), f"cadence {step} ns"


def _sequential_ids(exchange: str) -> bool:
    """Whether the exchange's adapter declares per-symbol sequential trade ids (unknown exchange: False)."""
    from dccd.errors import ConfigError
    from dccd.sources.base import sequential_ids
    from dccd.sources.registry import get_adapter

    try:
        return sequential_ids(get_adapter(exchange))
    except ConfigError:
        return False


def _source(files: list[str], data_type: DataType) -> str:
    union = ", union_by_name=true" if any(footer(data_type, f).missing for f in files) else ""
    return f"read_parquet($f, hive_partitioning=false{union})"


def _id_gaps(con: duckdb.DuckDBPyConnection, files: list[str]) -> tuple[str | None, list[GapRange], str]:
    """Every missing id range of a sequential series, with the ts of the trades around it.

    One window ordering over the distinct ids (DuckDB 2.0.1 fails on two orderings
    over one ``read_parquet`` followed by a filter; see ANALYTICS.md).
    """
    if all("id" in footer(DataType.TRADES, f).missing for f in files):
        return None, [], "trades have no ids"
    src = _source(files, DataType.TRADES)
    n, ok = con.sql(
        f"SELECT count(*), count(try_cast(id AS BIGINT)) FROM {src} WHERE id IS NOT NULL", params={"f": files}
    ).fetchall()[0]
    if n == 0 or n != ok:
        return None, [], "trade ids are not integers" if n else "trades have no ids"
    rows = con.sql(
        f"""WITH ids AS (SELECT CAST(id AS BIGINT) AS i, min(ts) AS t FROM {src} WHERE id IS NOT NULL GROUP BY 1),
        w AS (SELECT i, t, lag(i) OVER (ORDER BY i) AS pi, lag(t) OVER (ORDER BY i) AS pt FROM ids)
        SELECT pi + 1, i - 1, pt, t FROM w WHERE i - pi > 1 ORDER BY i""",
        params={"f": files},
    ).fetchall()
    gaps = [GapRange(lo, hi, "id", hi - lo + 1, "ids", "", pt, t) for lo, hi, pt, t in rows]
    return "id", gaps, "sequential trade ids (declared by the exchange adapter)"


def _requested(run: RunRecord) -> tuple[int | None, int] | None:
    """A backfill's requested ``[start, end)``; start None = from what was stored (``last``/``origin``)."""
    start, end = run.progress.get("requested_start"), run.progress.get("requested_end")
    if not isinstance(end, int):
        return None
    return (start if isinstance(start, int) else None), min(end, run.created_ns)


def _covered_later(history: History, after_ns: int, lo: int, hi: int) -> bool:
    """True when a successful backfill created after ``after_ns`` asked for all of ``[lo, hi)``."""
    for run, _ in history:
        req = _requested(run) if run.operation == "backfill" else None
        if req is None or run.state not in (RunState.SUCCEEDED, RunState.PARTIAL) or run.created_ns <= after_ns:
            continue
        start, end = req
        if (start is None or start <= lo) and hi <= end:
            return True
    return False


def _unavailable(history: History) -> list[GapRange]:
    out = []
    for _run, events in history:
        for e in events:
            if e.kind == "unavailable" and e.lo is not None and e.hi is not None and e.hi > e.lo:
                out.append(GapRange(e.lo, e.hi, "ns", None, "unavailable", e.detail))
    return out


def _time_holes(history: History, ts_in: Any, ds: DatasetId) -> list[GapRange]:
    """Trades without sequential ids: unfilled stream gaps and unfinished backfills, minus later coverage."""
    out: list[GapRange] = []
    for run, events in history:
        filled = {(e.lo, e.hi) for e in events if e.kind == "filled"}
        for e in events:
            if e.kind != "gap" or e.lo is None or e.hi is None or (e.lo, e.hi) in filled:
                continue
            hi = max(e.hi, e.lo + 1)  # an instant [t, t] is still a hole: make it half-open
            if not _covered_later(history, e.at_ns, e.lo, hi):
                out.append(GapRange(e.lo, hi, "ns", None, run.operation, e.detail))
        req = _requested(run) if run.operation == "backfill" else None
        if req is None or run.state not in (RunState.FAILED, RunState.CANCELLED):
            continue
        start, end = req
        if start is None:
            continue  # "last"/"origin": where it began is not recorded
        last = ts_in(start, end)
        lo = start if last is None else last + 1
        if lo < end and not _covered_later(history, run.created_ns, lo, end):
            detail = f"backfill {run.run_id[:12]} {run.state} before covering its requested range"
            out.append(GapRange(lo, end, "ns", None, "backfill", detail))
    merged = merge_ranges([(g.lo, g.hi) for g in out])
    return [
        GapRange(lo, hi, "ns", None, "+".join(sorted({g.source for g in out if g.lo < hi and g.hi > lo})),
                 "; ".join(dict.fromkeys(g.detail for g in out if g.lo < hi and g.hi > lo)))
        for lo, hi in merged
    ]  # fmt: skip


def _edge_bars(history: History, ts: pa.Array, span: Span) -> list[tuple[int, int]]:
    """Bars a backfill asked for before the first or after the last stored bar (none stored there)."""
    first, last = ts[0].as_py(), ts[-1].as_py()
    out = []
    for run, _ in history:
        req = _requested(run) if run.operation == "backfill" else None
        if req is None:
            continue
        start, end = req
        stop = span.align(end)  # the bar open at ``end`` is not complete (or not asked for)
        if start is not None and span.align_up(start) < min(first, stop):
            out.append((span.align_up(start), min(first, stop)))
        if stop > span.next(last) and (start is None or stop > start):
            out.append((max(span.next(last), span.align_up(start or 0)), stop))
    return merge_ranges(out)


def _confirmed(history: History) -> list[tuple[int, int]]:
    return merge_ranges(
        [(e.lo, e.hi) for _, ev in history for e in ev
         if e.kind == "gap" and e.lo is not None and e.hi is not None and e.detail.startswith(HOLE_DETAIL)]
    )  # fmt: skip


def _bar_ranges(gaps: list[tuple[int, int]], span: Span, history: History, source: str) -> list[GapRange]:
    confirmed = _confirmed(history) if source == "bars" else []
    out = []
    for lo, hi in gaps:
        detail = HOLE_DETAIL if any(a <= lo and hi <= b for a, b in confirmed) else ""
        out.append(GapRange(lo, hi, "ns", span.count(lo, hi), source, detail))
    return out


def dataset_inventory(root: Path, ds: DatasetId, history: History | None = None) -> DatasetInventory:
    """Inventory of one dataset (see the module docstring for gap rules).

    Raises:
        StorageError: its parts kept vanishing (compactions racing the listing).
    """
    for _attempt in range(5):
        try:
            p = plan(root, ds)
        except Vanished:  # a compaction swapped parts between the listing and the footer checks
            continue
        return _dataset_inventory(root, ds, p, history)
    raise StorageError(f"{ds}: parts kept vanishing during the inventory")


def _dataset_inventory(root: Path, ds: DatasetId, p: Plan, history: History | None) -> DatasetInventory:
    skipped = list(p.skipped)
    files = p.files
    if history is None:
        history = RunStore(root).dataset_history(ds)
    base: dict[str, Any] = {
        "exchange": ds.exchange,
        "symbol": str(ds.symbol),
        "data_type": ds.data_type.value,
        "span": ds.span.label if ds.span else None,
        "bytes": sum(f.size for f in files),
        "parts": len(files),
        "partitions": len({os.path.dirname(f.path) for f in files}),
    }
    kind: str | None = None
    ranges: list[GapRange] = []
    note = ""
    if not files:
        rows, first, last = 0, None, None
    elif ds.data_type in (DataType.OHLC, DataType.FUNDING, DataType.OI):
        ts = _read_ts(files, skipped)
        rows, first, last = len(ts), ts[0].as_py() if len(ts) else None, ts[-1].as_py() if len(ts) else None
        if ds.data_type is DataType.OHLC and len(ts):
            assert ds.span is not None
            kind = "ts"
            ranges = _bar_ranges(_bar_gaps(ts, ds.span), ds.span, history, "bars")
            ranges += _bar_ranges(_edge_bars(history, ts, ds.span), ds.span, history, "backfill")
            ranges.sort(key=lambda g: g.lo)
        elif len(ts):
            kind, gaps, note = _cadence_gaps(ts)
            step = int(note.split()[1]) if kind else 0
            ranges = [GapRange(lo, hi, "ns", (hi - lo) // step, "cadence") for lo, hi in gaps]
    else:
        paths = [f.path for f in files]
        con = connect()
        try:
            src = _source(paths, ds.data_type)
            rows, first, last = con.sql(
                f"SELECT count(*), min(t0), max(t0) FROM (SELECT {key_sql(ds.data_type)}, min(ts) AS t0"
                f" FROM {src} GROUP BY ALL)",
                params={"f": paths},
            ).fetchall()[0]
            if ds.data_type is DataType.TRADES and _sequential_ids(ds.exchange):
                kind, ranges, note = _id_gaps(con, paths)
            elif ds.data_type is DataType.TRADES:

                def ts_in(lo: int, hi: int) -> int | None:
                    q = f"SELECT max(ts) FROM {src} WHERE ts >= {int(lo)} AND ts < {int(hi)}"
                    return con.sql(q, params={"f": paths}).fetchall()[0][0]  # type: ignore[no-any-return]

                kind, ranges = "ts", _time_holes(history, ts_in, ds)
                note = (
                    f"{ds.exchange} trade ids are not sequential: time holes from the run history"
                    " (unfilled stream gaps, unfinished backfills)"
                )
            else:
                note = "book snapshots have no expected cadence"
        finally:
            con.close()
    ranges += _unavailable(history)
    gaps = [(g.lo, g.hi) for g in ranges if kind and g.unit == ("id" if kind == "id" else "ns")
            and g.source != "unavailable"]  # fmt: skip
    missing = sum(g.count for g in ranges if g.count is not None and g.source != "unavailable")
    return DatasetInventory(
        **base, rows=rows, first_ts=first, last_ts=last, gap_kind=kind, gaps=gaps, gap_note=note,
        skipped=skipped, gap_ranges=ranges, missing=missing,
    )  # fmt: skip


def _bar_gaps(ts: pa.Array, span: Span) -> list[tuple[int, int]]:
    if span.calendar:  # month lengths vary; at most 12 bars a year, so the pure reference is cheap
        return missing_bars(ts.to_pylist(), span)
    offset = span.align(span.ns * 10) % span.ns  # 0, or Monday for 1w
    return _step_gaps(ts, span.ns, offset)


def inventory(root: Path, ds: DatasetId | None = None) -> list[DatasetInventory]:
    """Inventory of ``ds`` or of every dataset in the lake."""
    return [dataset_inventory(root, d) for d in ([ds] if ds else datasets(root))]
