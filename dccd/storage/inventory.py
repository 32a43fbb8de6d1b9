"""Inventory: per dataset rows, ts range, bytes, parts and exact gaps.

Gaps (same semantics as :mod:`dccd.domain.gaps`, between the first and last
stored row, computed vectorised with Arrow — no Python loop over rows):

- OHLC: missing bar intervals ``[first_missing_open, next_present_open)`` by span.
- funding / OI: the same, at the series' own cadence when it is regular (the
  most common step covers >= 90 % of steps and every step is a multiple of
  it); otherwise no gaps are computed and ``gap_note`` says why.
- trades: inclusive missing id ranges when ids are integers and look
  sequential (at most half the id range missing); otherwise none, with a note.
- book: snapshots have no expected cadence; no gaps.
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
from dccd.storage.reader import BadFile, PartFile, connect, datasets, needs_dedup, plan
from dccd.storage.schema import key_sql

REGULAR_SHARE = 0.9


class DatasetInventory(msgspec.Struct, frozen=True):
    """What the lake holds for one dataset.

    ``gap_kind`` is ``"ts"`` (half-open ns intervals of missing bars/prints),
    ``"id"`` (inclusive missing trade-id ranges) or None (not computed; see ``gap_note``).
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


def _id_gaps(con: duckdb.DuckDBPyConnection, files: list[str]) -> tuple[str | None, list[tuple[int, int]], str]:
    ids = con.sql(
        "SELECT count(*) AS n, count(try_cast(id AS BIGINT)) AS ok FROM read_parquet($f) WHERE id IS NOT NULL",
        params={"f": files},
    ).fetchall()[0]
    if ids[0] == 0 or ids[0] != ids[1]:
        return None, [], "trade ids are not integers" if ids[0] else "trades have no ids"
    arr = (
        con.sql(
            "SELECT DISTINCT CAST(id AS BIGINT) AS i FROM read_parquet($f) WHERE id IS NOT NULL ORDER BY i",
            params={"f": files},
        )
        .to_arrow_table()["i"]
        .combine_chunks()
    )
    lo, hi = arr[0].as_py(), arr[-1].as_py()
    if len(arr) * 2 < hi - lo + 1:
        return None, [], f"trade ids are not sequential ({len(arr)} ids over a range of {hi - lo + 1})"
    step = pc.subtract(arr[1:], arr[:-1])
    mask = pc.greater(step, 1)
    los = pc.add(pc.filter(arr[:-1], mask), 1).to_pylist()
    his = pc.subtract(pc.filter(arr[1:], mask), 1).to_pylist()
    return "id", list(zip(los, his, strict=True)), "sequential integer ids"


def dataset_inventory(root: Path, ds: DatasetId) -> DatasetInventory:
    """Inventory of one dataset (see the module docstring for gap rules)."""
    p = plan(root, ds)
    skipped = list(p.skipped)
    files = p.files
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
    gaps: list[tuple[int, int]] = []
    note = ""
    if not files:
        rows, first, last = 0, None, None
    elif ds.data_type in (DataType.OHLC, DataType.FUNDING, DataType.OI):
        ts = _read_ts(files, skipped)
        rows, first, last = len(ts), ts[0].as_py() if len(ts) else None, ts[-1].as_py() if len(ts) else None
        if ds.data_type is DataType.OHLC:
            assert ds.span is not None
            kind, gaps = "ts", _bar_gaps(ts, ds.span)
        else:
            kind, gaps, note = _cadence_gaps(ts)
    else:
        paths = [f.path for f in files]
        con = connect()
        try:
            rows, first, last = con.sql(
                f"SELECT count(*), min(t0), max(t0) FROM (SELECT {key_sql(ds.data_type)}, min(ts) AS t0"
                f" FROM read_parquet($f) GROUP BY ALL)",
                params={"f": paths},
            ).fetchall()[0]
            if ds.data_type is DataType.TRADES:
                kind, gaps, note = _id_gaps(con, paths)
            else:
                note = "book snapshots have no expected cadence"
        finally:
            con.close()
    return DatasetInventory(
        **base, rows=rows, first_ts=first, last_ts=last, gap_kind=kind, gaps=gaps, gap_note=note, skipped=skipped
    )


def _bar_gaps(ts: pa.Array, span: Span) -> list[tuple[int, int]]:
    if span.calendar:  # month lengths vary; at most 12 bars a year, so the pure reference is cheap
        return missing_bars(ts.to_pylist(), span)
    offset = span.align(span.ns * 10) % span.ns  # 0, or Monday for 1w
    return _step_gaps(ts, span.ns, offset)


def inventory(root: Path, ds: DatasetId | None = None) -> list[DatasetInventory]:
    """Inventory of ``ds`` or of every dataset in the lake."""
    return [dataset_inventory(root, d) for d in ([ds] if ds else datasets(root))]
