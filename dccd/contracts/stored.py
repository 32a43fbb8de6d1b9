"""The contracts over one stored dataset, in DuckDB SQL (windows, joins) or pyarrow.compute (row rules).

Each function takes the dataset's rows (deduplicated, sorted by ts, registered as the DuckDB view ``t``)
and returns the flagged rows as an Arrow table (``ts`` plus the example fields; see
:func:`dccd.contracts.report.by_day`). No function loops over rows in Python.

DuckDB 2.0.1 fails on two window functions over one ``PARTITION BY`` with different orders followed by a
filter (../shared/notes/ANALYTICS.md): every query here windows without ``PARTITION BY`` (one dataset per
query) and each window level has one ordering.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from dccd.contracts.rules import BatchRules, ContractRules
from dccd.domain import DatasetId, DataType, Span
from dccd.domain.timeutil import NS_PER_DAY
from dccd.storage import quality

# Columns that must agree between two stored copies of one natural key (recv_ts and optional
# exchange extras such as quote_volume may legitimately differ between a REST and a WS copy).
AGREE: dict[DataType, tuple[str, ...]] = {
    DataType.TRADES: ("ts", "price", "amount", "side"),
    DataType.OHLC: ("open", "high", "low", "close", "volume"),
    DataType.BOOK: ("amount",),
    DataType.FUNDING: ("rate",),
    DataType.OI: ("open_interest",),
}
KEYS: dict[DataType, tuple[str, ...]] = {
    DataType.TRADES: ("id",),
    DataType.OHLC: ("ts",),
    DataType.BOOK: ("ts", "side", "price"),
    DataType.FUNDING: ("ts",),
    DataType.OI: ("ts",),
}
ROW_CONTRACTS = ("schema_units", "ohlc_invariants", "bar_grid")


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object] | None = None) -> pa.Table:
    table: pa.Table = con.sql(sql, params=params).to_arrow_table()
    return table


def row_rules(ds: DatasetId, table: pa.Table, rules: ContractRules, limit_ns: int) -> dict[str, pa.Table]:
    """``schema_units``, ``ohlc_invariants`` and ``bar_grid``: the writer's row rules re-run on stored rows
    (a foreign or imported part, or a rule tightened since the write). Each flagged row carries its ``rule``."""
    batch = BatchRules(rules.life_start_ns(ds.exchange), ds.span)
    found = quality.rule_failures(ds.data_type, table, limit_ns=limit_ns, rules=batch)
    if found is None:
        return {c: _no_rows() for c in ROW_CONTRACTS}
    ok, rule = found
    failed = pc.invert(ok)
    bad = table.filter(failed).append_column("rule", pc.filter(rule, failed))
    out = {}
    for name in ROW_CONTRACTS:
        names = pa.array([r for r, c in quality.RULE_CONTRACT.items() if c == name], pa.string())
        out[name] = bad.filter(pc.is_in(bad["rule"], value_set=names))
    return out


def _no_rows() -> pa.Table:
    return pa.table({"ts": pa.array([], pa.int64())})


def key_conflicts(con: duckdb.DuckDBPyConnection, ds: DatasetId, files: list[str]) -> pa.Table:
    """``unique_key``: natural keys stored more than once with different values (across parts, or inside a
    foreign part); exact copies are fine, reads keep one. One dccd part cannot repeat a key (the gate)."""
    dt = ds.data_type
    agree = ", ".join(AGREE[dt])
    key = KEYS[dt]
    shown = ", ".join(key) if "ts" in key else "min(ts) AS ts, " + ", ".join(key)
    where = "WHERE id IS NOT NULL" if dt is DataType.TRADES else ""  # a trade without id is keyed by all its values
    sql = f"""
        SELECT {shown}, count(*) AS copies, count(DISTINCT row({agree})) AS variants
        FROM read_parquet($files, hive_partitioning=false, union_by_name=true) {where}
        GROUP BY {", ".join(key)} HAVING count(DISTINCT row({agree})) > 1 ORDER BY 1
    """
    return _arrow(con, sql, {"files": files})


def id_descents(con: duckdb.DuckDBPyConnection, table: pa.Table) -> pa.Table:
    """``monotonic_ids``: trades whose integer id is lower than the id before them in (ts, id) order.

    The count comes from pyarrow first (:func:`dccd.storage.quality.id_descents`: no sort when the ids
    already rise); only a dataset with descents runs the SQL that lists them.
    """
    if quality.id_descents(table) == 0:
        return _no_rows()
    return _arrow(
        con,
        """
        WITH s AS (SELECT ts, id, TRY_CAST(id AS BIGINT) AS i FROM t WHERE TRY_CAST(id AS BIGINT) IS NOT NULL),
        w AS (SELECT ts, id, i, lag(i) OVER o AS prev_i, lag(ts) OVER o AS prev_ts, lag(id) OVER o AS prev_id
              FROM s WINDOW o AS (ORDER BY ts, i))
        SELECT ts, id, prev_ts, prev_id FROM w WHERE i < prev_i ORDER BY ts, i
        """,
    )


def bad_ticks(con: duckdb.DuckDBPyConnection, ds: DatasetId, rules: ContractRules, table: pa.Table) -> pa.Table:
    """``bad_tick``: a price (trades) or close (bars) off the median of the ``window`` rows around it by more
    than ``k`` x their MAD and more than ``min_rel`` of the median (a Hampel filter with a floor).

    Rows are numbered in the read's order (ts, then the key) by pyarrow, so DuckDB orders by one integer.
    One windowed median finds the rows past the ``min_rel`` floor; only those (none on clean data) get their
    window's MAD, by a range join back to their rows.
    """
    bt = rules.bad_tick
    half = bt.window // 2
    trades = ds.data_type is DataType.TRADES
    price = "price" if trades else "close"
    rn = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), table.num_rows))
    cols = {"rn": rn, "ts": table["ts"], "p": table[price]}
    if trades:
        cols["id"] = table["id"]
    con.register("tn", pa.table(cols))
    ident = "id" if trades else "NULL"
    candidates = _arrow(
        con,
        f"""SELECT rn, ts, id, p, med FROM (
                SELECT rn, ts, {ident} AS id, p, median(p) OVER w AS med
                FROM tn WINDOW w AS (ORDER BY rn ROWS BETWEEN {half} PRECEDING AND {half} FOLLOWING))
            WHERE abs(p - med) > $min_rel * med""",
        {"min_rel": bt.min_rel},
    )
    if candidates.num_rows == 0:
        return _no_rows()
    con.register("c", candidates)
    return _arrow(
        con,
        f"""
        WITH d AS (SELECT c.rn, any_value(c.ts) AS ts, any_value(c.id) AS id, any_value(c.p) AS p,
                          any_value(c.med) AS med, median(abs(n.p - c.med)) AS mad
                   FROM c JOIN tn AS n ON n.rn BETWEEN c.rn - {half} AND c.rn + {half} GROUP BY c.rn)
        SELECT ts, {"id, " if trades else ""}p AS {price}, med AS median, mad FROM d
        WHERE abs(p - med) > $k * mad ORDER BY ts
        """,
        {"k": bt.k},
    )


def stale(con: duckdb.DuckDBPyConnection, ds: DatasetId, rules: ContractRules) -> pa.Table:
    """``stale_feed``: silences longer than ``stale.after`` between two trades, on a day the symbol traded
    at least ``liquid_per_hour`` × 24 times; silences a declared maintenance window explains are allowed."""
    found = _arrow(
        con,
        f"""
        WITH g AS (SELECT ts, lead(ts) OVER (ORDER BY ts) AS next_ts FROM t),
        d AS (SELECT ts // {NS_PER_DAY} AS day, count(*) AS trades FROM t GROUP BY 1)
        SELECT g.ts, g.next_ts, (g.next_ts - g.ts) / 1e9 AS silent_s, d.trades AS trades_that_day
        FROM g JOIN d ON d.day = g.ts // {NS_PER_DAY}
        WHERE g.next_ts - g.ts > $after AND d.trades >= $liquid * 24 ORDER BY g.ts
        """,
        {"after": rules.stale_after_ns, "liquid": rules.liquid_per_hour},
    )
    windows = rules.windows(ds)
    if not windows or found.num_rows == 0:
        return found
    keep = [_longest_outside(a, b, windows) > rules.stale_after_ns for a, b in _pairs(found)]  # per silence
    return found.filter(pa.array(keep, pa.bool_()))


def _pairs(found: pa.Table) -> list[tuple[int, int]]:
    return list(zip(found["ts"].to_pylist(), found["next_ts"].to_pylist(), strict=True))


def _longest_outside(a: int, b: int, windows: list[tuple[int, int]]) -> int:
    """Longest part of ``[a, b)`` outside every window."""
    longest, cur = 0, a
    for lo, hi in sorted(windows):
        if hi <= cur or lo >= b:
            continue
        longest = max(longest, min(lo, b) - cur)
        cur = max(cur, hi)
    return max(longest, b - cur)


def merged(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching windows joined, sorted."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(windows):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def bar_counts(con: duckdb.DuckDBPyConnection, ds: DatasetId, rules: ContractRules) -> pa.Table:
    """``bar_count``: per UTC day from the first stored bar to the last, bars expected on the span's grid
    (outside declared maintenance windows) against bars stored; a day missing more than ``max_missing``
    is flagged with ``n`` = missing bars and its first missing open time."""
    span = ds.span
    assert span is not None
    step, off = span.ns, span.align(0) % span.ns
    on_grid = f"(ts - {off}) % {step} = 0"
    per_day = _arrow(con, f"SELECT ts // {NS_PER_DAY} AS day, count(*) AS n FROM t WHERE {on_grid} GROUP BY 1")
    bounds = con.execute(f"SELECT min(ts), max(ts) FROM t WHERE {on_grid}").fetchall()[0]
    if bounds[0] is None:
        return _no_rows()
    first, last = int(bounds[0]), int(bounds[1])
    holes = _arrow(
        con,
        f"""SELECT ts + {step} AS lo, nxt AS hi FROM (SELECT ts, lead(ts) OVER (ORDER BY ts) AS nxt FROM t
            WHERE {on_grid}) WHERE nxt - ts > {step} ORDER BY ts""",
    )
    stored = dict(zip(per_day["day"].to_pylist(), per_day["n"].to_pylist(), strict=True))
    windows = merged(rules.windows(ds))
    hole_list = list(zip(holes["lo"].to_pylist(), holes["hi"].to_pylist(), strict=True))
    rows: dict[str, list[int | None]] = {k: [] for k in ("ts", "n", "expected", "stored", "first_missing")}
    for day in range(first // NS_PER_DAY, last // NS_PER_DAY + 1):  # one step per day, not per bar
        lo, hi = max(day * NS_PER_DAY, first), min((day + 1) * NS_PER_DAY, last + step)
        expected = span.count(lo, hi) - sum(span.count(max(lo, a), min(hi, b)) for a, b in windows if a < hi and b > lo)
        have = stored.get(day, 0)
        missing = expected - have
        if missing > rules.bar_max_missing:
            rows["ts"].append(day * NS_PER_DAY)
            rows["n"].append(missing)
            rows["expected"].append(expected)
            rows["stored"].append(have)
            rows["first_missing"].append(_first_missing(hole_list, lo, hi, windows, span))
    return pa.table({k: pa.array(v, pa.int64()) for k, v in rows.items()})


def _first_missing(
    holes: list[tuple[int, int]], lo: int, hi: int, windows: list[tuple[int, int]], span: Span
) -> int | None:
    for a, b in holes:
        if b <= lo or a >= hi:
            continue
        t = span.align_up(max(a, lo))
        while t < min(b, hi):
            inside = next((w for w in windows if w[0] <= t < w[1]), None)
            if inside is None:
                return t
            t = span.align_up(inside[1])
    return None


def bars_vs_trades(con: duckdb.DuckDBPyConnection, span: Span, rel_tol: float) -> tuple[pa.Table, int]:
    """``bars_vs_trades``: the stored bars (view ``t``) against bars rebuilt from the stored trades (view
    ``tr``) over the bars the trades cover entirely; returns the mismatches and the bars compared.

    Open and close are the first and last trade by (ts, id); high, low and volume must agree within
    ``rel_tol``; a native trade count must equal the trades stored. A bar with volume but no trade, and
    trades with no bar, are mismatches too.
    """
    step, off = span.ns, span.align(0) % span.ns
    lo_hi = con.execute("SELECT min(ts), max(ts) FROM tr").fetchall()[0]
    if lo_hi[0] is None:
        return _no_rows(), 0
    lo, hi = span.align_up(int(lo_hi[0])), span.align(int(lo_hi[1]))  # bars wholly inside the trades' range
    if lo >= hi:
        return _no_rows(), 0
    bar = f"((ts - {off}) // {step}) * {step} + {off}"
    near = "abs({a} - {b}) <= $tol * greatest(abs({a}), abs({b}))"
    same = (
        " AND ".join(near.format(a=f"b.{x}", b=f"a.{x}") for x in ("open", "high", "low", "close"))
        + " AND "
        + near.format(a="b.volume", b="coalesce(a.volume, 0)")
    )
    sql = f"""
        WITH a AS (SELECT {bar} AS ts, arg_min(price, (ts, TRY_CAST(id AS BIGINT), id)) AS open, max(price) AS high,
                          min(price) AS low, arg_max(price, (ts, TRY_CAST(id AS BIGINT), id)) AS close,
                          sum(amount) AS volume, count(*) AS n
                   FROM tr WHERE ts >= {lo} AND ts < {hi} GROUP BY 1),
        b AS (SELECT ts, open, high, low, close, volume, trades FROM t WHERE ts >= {lo} AND ts < {hi})
        SELECT coalesce(b.ts, a.ts) AS ts,
               b.open AS bar_open, a.open AS trades_open, b.high AS bar_high, a.high AS trades_high,
               b.low AS bar_low, a.low AS trades_low, b.close AS bar_close, a.close AS trades_close,
               b.volume AS bar_volume, a.volume AS trades_volume, b.trades AS bar_trades, a.n AS trades
        FROM b FULL OUTER JOIN a ON a.ts = b.ts
        WHERE NOT coalesce(
            (a.ts IS NULL AND b.volume = 0)
            OR (b.ts IS NOT NULL AND a.ts IS NOT NULL AND {same} AND (b.trades IS NULL OR b.trades = a.n)), false)
        ORDER BY 1
    """
    compared = con.execute(f"SELECT count(*) FROM t WHERE ts >= {lo} AND ts < {hi}").fetchall()[0][0]
    return _arrow(con, sql, {"tol": rel_tol}), int(compared)


def cross_deviation(con: duckdb.DuckDBPyConnection, max_rel: float) -> pa.Table:
    """``cross_exchange``: bars whose close is off the median close of the other exchanges (view ``o``:
    ``ts, close, exchange``) at the same open time by more than ``max_rel``."""
    return _arrow(
        con,
        """
        WITH m AS (SELECT ts, median(close) AS others, count(*) AS exchanges, string_agg(exchange, ',' ORDER BY
                   exchange) AS names FROM o GROUP BY ts)
        SELECT t.ts, t.close, m.others AS others_median, m.names AS others
        FROM t JOIN m ON m.ts = t.ts WHERE abs(t.close - m.others) > $max_rel * m.others ORDER BY t.ts
        """,
        {"max_rel": max_rel},
    )


__all__ = [
    "AGREE",
    "KEYS",
    "ROW_CONTRACTS",
    "bad_ticks",
    "bar_counts",
    "bars_vs_trades",
    "cross_deviation",
    "id_descents",
    "key_conflicts",
    "merged",
    "row_rules",
    "stale",
]
