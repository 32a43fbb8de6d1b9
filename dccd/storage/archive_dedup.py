"""Rows of an archive file minus what the lake already stores in the file's period (blocking; a worker thread).

Two rules, by whether the file's rows carry the exchange's ids:

- :func:`dedup_by_key`: the natural key (trades: ``id``; other types: ``ts``), as every other source.
- :func:`dedup_counted`: files without exchange trade ids (Bybit spot numbers its rows per file, so
  dccd gives them ``<day>:<n>``), merged into a period a stream stored in part: rows are matched on
  ``(ts, price, amount, side)`` **by count**, so a trade the stream stored is not stored again and two
  trades alike in all four (one taker order filling two makers at one price and size) stay two.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dccd.domain.records import DataType
from dccd.storage.lake import Lake


def dedup_by_key(lake: Lake, data_type: DataType, table: pa.Table, ds: Any, lo: int, hi: int) -> pa.Table:
    """``table`` minus the rows whose natural key is stored in ``[lo, hi)`` (trades: id; others: ts)."""
    stored = lake.read_table(ds, lo, hi).table
    if not stored.num_rows:
        return table
    column = "id" if data_type is DataType.TRADES else "ts"
    keep = pc.invert(pc.is_in(table[column], value_set=stored[column].combine_chunks()))
    return table.filter(keep)


def dedup_counted(lake: Lake, data_type: DataType, table: pa.Table, ds: Any, lo: int, hi: int) -> pa.Table:
    """``table`` (rows with synthetic ids) minus as many rows per (ts, price, amount, side) as ``[lo, hi)``
    stores: a trade a stream stored (with its exchange id) is not stored again, and two trades alike in
    all four (one taker order filling two makers at one price and size) stay two. Rows keep file order."""
    stored = lake.read_table(ds, lo, hi).table
    if not stored.num_rows:
        return table
    import duckdb  # only for a merge: not at every service's start

    keys = ("ts", "price", "amount", "side")
    con = duckdb.connect()
    try:
        con.register("a", table.select(list(keys)).append_column("_row", pa.array(range(table.num_rows), pa.int64())))
        con.register("s", stored.select(list(keys)))
        rows: pa.Table = con.sql(
            "SELECT _row FROM (SELECT *, row_number() OVER (PARTITION BY ts, price, amount, side ORDER BY _row) AS rn"
            " FROM a) x LEFT JOIN (SELECT ts, price, amount, side, count(*) AS c FROM s GROUP BY ALL) y"
            " ON x.ts = y.ts AND x.price = y.price AND x.amount = y.amount AND x.side IS NOT DISTINCT FROM y.side"
            " WHERE rn > coalesce(c, 0) ORDER BY _row"
        ).to_arrow_table()
    finally:
        con.close()
    return table.take(rows.column("_row"))


__all__ = ["dedup_by_key", "dedup_counted"]
