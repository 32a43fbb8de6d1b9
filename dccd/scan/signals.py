"""Signals in the lake: ``{root}/signals/scanner=<name>/date=YYYY-MM-DD/part-*.parquet``.

One row per hit: ``ts`` (the bar, ns UTC), ``exchange``, ``symbol``, ``scanner``, ``version``,
``params_hash``, ``span``, ``values`` (the scanner's figures as a JSON object), ``snapshot`` (the lake
snapshot read; empty until the lake has a catalog), ``run_id`` and ``scanned_ns`` (when the scan ran).
Partitioned by the bar's UTC date; each part is written under a hidden temp name, fsynced and renamed,
so readers (dccd, DuckDB, Spark) never see a torn file. Backtest with e.g.::

    SELECT * FROM read_parquet('{root}/signals/*/*/*.parquet', hive_partitioning=true)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from dccd.domain.timeutil import ns_to_date
from dccd.storage.layout import new_stamp, part_name, temp_name
from dccd.storage.writer import ensure_dir, fsync_dir

SIGNALS_DIR = "signals"
SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("scanner", pa.string()),
        ("version", pa.string()),
        ("params_hash", pa.string()),
        ("span", pa.string()),
        ("values", pa.string()),
        ("snapshot", pa.string()),
        ("run_id", pa.string()),
        ("scanned_ns", pa.int64()),
    ]
)


class StoredSignal(msgspec.Struct, frozen=True):
    """One stored signal (``values`` decoded)."""

    ts: int
    exchange: str
    symbol: str
    scanner: str
    version: str
    params_hash: str
    span: str
    values: dict[str, Any]
    snapshot: str
    run_id: str
    scanned_ns: int


def signal_values(hit: dict[str, Any]) -> dict[str, Any]:
    """A hit's values: every field but the signal keys."""
    return {k: v for k, v in hit.items() if k not in ("exchange", "symbol", "ts")}


def write_signals(root: Path, signals: Sequence[StoredSignal], now_ns: int) -> list[Path]:
    """Append signals, one part per scanner and date (blocking). Returns the parts written."""
    groups: dict[tuple[str, str], list[StoredSignal]] = {}
    for s in signals:
        groups.setdefault((s.scanner, ns_to_date(s.ts)), []).append(s)
    written = []
    for (scanner, date), rows in sorted(groups.items()):
        pdir = root / SIGNALS_DIR / f"scanner={scanner}" / f"date={date}"
        ensure_dir(pdir)
        table = pa.table(
            {
                **{f: [getattr(r, f) for r in rows] for f in SCHEMA.names if f != "values"},
                "values": [msgspec.json.encode(r.values).decode() for r in rows],
            },
            schema=SCHEMA,
        )
        final = pdir / part_name(min(r.ts for r in rows), max(r.ts for r in rows), new_stamp(now_ns))
        tmp = pdir / temp_name(final.name)
        try:
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(pdir)
        written.append(final)
    return written


def read_signals(
    root: Path,
    *,
    scanner: str | None = None,
    since_ns: int | None = None,
    run_id: str | None = None,
    limit: int = 1000,
) -> list[StoredSignal]:
    """Stored signals, newest bar first, filtered by scanner, ``ts >= since_ns`` and run (blocking)."""
    base = root / SIGNALS_DIR
    files = sorted(
        str(p)
        for p in base.glob(f"scanner={scanner if scanner else '*'}/date=*/part-*.parquet")
        if not p.name.startswith((".", "_"))
    )
    if since_ns is not None:  # prune whole days before ``since``
        day = ns_to_date(since_ns)
        files = [f for f in files if Path(f).parent.name.removeprefix("date=") >= day]
    if not files:
        return []
    con = duckdb.connect(":memory:")
    try:
        conds = ["true"]
        args: dict[str, Any] = {"files": files}
        if since_ns is not None:
            conds.append(f"ts >= {int(since_ns)}")
        if run_id is not None:
            conds.append("run_id = $run_id")
            args["run_id"] = run_id
        sql = (
            f"SELECT {', '.join(SCHEMA.names)} FROM read_parquet($files, union_by_name=true)"
            f" WHERE {' AND '.join(conds)} ORDER BY ts DESC, exchange, symbol, scanned_ns DESC LIMIT {int(limit)}"
        )
        rows = con.sql(sql, params=args).to_arrow_table().to_pylist()
    finally:
        con.close()
    return [
        StoredSignal(**{**r, "values": msgspec.json.decode(r["values"] or "{}"), "snapshot": r["snapshot"] or ""})
        for r in rows
    ]
