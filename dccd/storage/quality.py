"""Quality gates: vectorised checks on each batch before it is written.

Every row either passes (and is written) or fails exactly one named rule (the
first one it breaks, in the order listed by :data:`RULES`) and goes to the
quarantine with that rule name. Nothing is dropped silently, and bad rows never
block the good ones.

Rules: ``required_present`` (non-nullable columns are set), ``ts_positive``,
``ts_not_future`` (``ts <= now + skew``), ``price_positive``,
``amount_non_negative``, ``volume_non_negative``, ``ohlc_low_le_high``,
``ohlc_high`` (high >= max(open, close)), ``ohlc_low`` (low <= min(open, close)),
``side_valid``, ``values_finite`` (no NaN/inf prices or amounts), ``rate_finite`` and ``unique_key`` (a later row in the same batch
has the same natural key: the last one wins, earlier ones are quarantined).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Final, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from dccd.domain import DataType
from dccd.domain.timeutil import NS_PER_S
from dccd.storage.schema import ORDER_COLUMNS, SCHEMAS, TRADE_COMPOSITE

DEFAULT_SKEW_NS: Final[int] = 300 * NS_PER_S
RULE_COLUMN: Final[str] = "rule"

Check = Callable[[pa.Table, int], pa.ChunkedArray]


# Typed scalars: pyarrow converting an untyped Python scalar tries to import dateutil
# on every call (~0.1 ms each), which would dominate small batches.
_FALSE, _TRUE = pa.scalar(False, pa.bool_()), pa.scalar(True, pa.bool_())


def _zero(col: pa.ChunkedArray) -> pa.Scalar:
    return pa.scalar(0, col.type)


def _must(cond: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(cond, _FALSE)  # a null comparison (null or NaN input) fails


def _opt(cond: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(cond, _TRUE)  # a null optional column passes


def _all(*conds: pa.ChunkedArray) -> pa.ChunkedArray:
    return reduce(pc.and_, conds)


def _present(dt: DataType) -> Check:
    required = [f.name for f in SCHEMAS[dt] if not f.nullable]
    return lambda t, _now: _all(*(pc.is_valid(t[c]) for c in required))


def _gt0(*cols: str) -> Check:
    return lambda t, _now: _all(*(_must(pc.greater(t[c], _zero(t[c]))) for c in cols))


def _ge0(must: tuple[str, ...], opt: tuple[str, ...] = ()) -> Check:
    return lambda t, _now: _all(
        *(_must(pc.greater_equal(t[c], _zero(t[c]))) for c in must),
        *(_opt(pc.greater_equal(t[c], _zero(t[c]))) for c in opt),
    )


def _side(allowed: tuple[str, ...], nullable: bool) -> Check:
    values = pa.array(allowed)
    if nullable:
        return lambda t, _now: pc.or_(pc.is_null(t["side"]), pc.is_in(t["side"], value_set=values))
    return lambda t, _now: _must(pc.is_in(t["side"], value_set=values))


def _finite(must: tuple[str, ...], opt: tuple[str, ...] = ()) -> Check:
    return lambda t, _now: _all(*(_must(pc.is_finite(t[c])) for c in must), *(_opt(pc.is_finite(t[c])) for c in opt))


def _common(dt: DataType) -> list[tuple[str, Check]]:
    return [
        ("required_present", _present(dt)),
        ("ts_positive", lambda t, _now: _must(pc.greater(t["ts"], _zero(t["ts"])))),
        ("ts_not_future", lambda t, now: _must(pc.less_equal(t["ts"], pa.scalar(now, pa.int64())))),
    ]


RULES: Final[dict[DataType, list[tuple[str, Check]]]] = {
    DataType.TRADES: [
        *_common(DataType.TRADES),
        ("values_finite", _finite(("price", "amount"))),
        ("price_positive", _gt0("price")),
        ("amount_non_negative", _ge0(("amount",))),
        ("side_valid", _side(("buy", "sell"), nullable=True)),
    ],
    DataType.OHLC: [
        *_common(DataType.OHLC),
        ("values_finite", _finite(("open", "high", "low", "close", "volume"), ("quote_volume",))),
        ("price_positive", _gt0("open", "high", "low", "close")),
        ("volume_non_negative", _ge0(("volume",), ("quote_volume", "trades"))),
        ("ohlc_low_le_high", lambda t, _now: _must(pc.less_equal(t["low"], t["high"]))),
        ("ohlc_high", lambda t, _now: _must(pc.greater_equal(t["high"], pc.max_element_wise(t["open"], t["close"])))),
        ("ohlc_low", lambda t, _now: _must(pc.less_equal(t["low"], pc.min_element_wise(t["open"], t["close"])))),
    ],
    DataType.BOOK: [
        *_common(DataType.BOOK),
        ("side_valid", _side(("bid", "ask"), nullable=False)),
        ("price_positive", _gt0("price")),
        ("amount_non_negative", _ge0(("amount",))),
    ],
    DataType.FUNDING: [
        *_common(DataType.FUNDING),
        ("rate_finite", lambda t, _now: _must(pc.is_finite(t["rate"]))),
        ("price_positive", lambda t, _now: _opt(pc.greater(t["mark_price"], _zero(t["mark_price"])))),
    ],
    DataType.OI: [
        *_common(DataType.OI),
        ("amount_non_negative", _ge0(("open_interest",), ("open_interest_value",))),
    ],
}


class GateResult(NamedTuple):
    """Outcome of :func:`gate`."""

    good: pa.Table  # strict lake schema, sorted by ts, natural keys unique
    bad: pa.Table | None  # loose schema plus a ``rule`` column
    reasons: dict[str, int]  # rule -> rows failing it


def gate(data_type: DataType, table: pa.Table, *, now_ns: int, skew_ns: int = DEFAULT_SKEW_NS) -> GateResult:
    """Split a batch (loose schema) into rows to write and rows to quarantine.

    Args:
        data_type: the batch's data type.
        table: the batch, columns as in :data:`dccd.storage.schema.LOOSE_SCHEMAS`.
        now_ns: current time; rows newer than ``now_ns + skew_ns`` fail ``ts_not_future``.
        skew_ns: tolerated clock skew.
    """
    table = table.combine_chunks()
    if table.num_rows == 0:
        return GateResult(table.cast(SCHEMAS[data_type]), None, {})
    masks = [(name, check(table, now_ns + skew_ns)) for name, check in RULES[data_type]]
    ok = _all(*(m for _, m in masks))
    bad_parts: list[pa.Table] = []
    if not pc.all(ok).as_py():
        rule = pa.nulls(table.num_rows, pa.string())
        for name, m in masks:  # first failing rule wins
            rule = pc.if_else(pc.and_(pc.is_null(rule), pc.invert(m)), pa.scalar(name, pa.string()), rule)
        failed = pc.invert(ok)
        bad_parts.append(table.filter(failed).append_column(RULE_COLUMN, pc.filter(rule, failed)))
        table = table.filter(ok)
    dup = _duplicates(data_type, table)  # in input order: the last row of a key is the newest
    if dup is not None:
        keep, drop = dup
        bad_parts.append(
            table.take(drop).append_column(
                RULE_COLUMN, pc.fill_null(pa.nulls(len(drop), pa.string()), pa.scalar("unique_key", pa.string()))
            )
        )
        table = table.take(keep)
    if not _ts_sorted(table):
        table = table.sort_by("ts")
    bad = pa.concat_tables(bad_parts) if bad_parts else None
    reasons: dict[str, int] = {}
    if bad is not None:
        for item in pc.value_counts(bad[RULE_COLUMN]).to_pylist():
            reasons[item["values"]] = item["counts"]
    return GateResult(table.cast(SCHEMAS[data_type]), bad, reasons)


def _ts_sorted(table: pa.Table) -> bool:
    ts = table["ts"]
    return len(ts) < 2 or bool(pc.all(pc.greater_equal(ts[1:], ts[:-1])).as_py())


def _strictly_increasing(col: pa.ChunkedArray) -> bool:
    return len(col) < 2 or bool(pc.all(_must(pc.greater(col[1:], col[:-1]))).as_py())


def _duplicates(data_type: DataType, table: pa.Table) -> tuple[pa.Array, pa.Array] | None:
    """``(keep, drop)`` row indices (ascending) when natural keys repeat, else None; the last row of a key is kept."""
    if data_type is not DataType.BOOK and data_type is not DataType.TRADES:
        return None if _strictly_increasing(table["ts"]) else _slow_duplicates(table.select(["ts"]))
    if data_type is DataType.TRADES:
        ids = table["id"]
        if ids.null_count == 0:
            if _strictly_increasing(ids):
                return None
            try:  # numeric ids of varying width are not lexically ordered
                if _strictly_increasing(pc.cast(ids, pa.int64())):
                    return None
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        no_id = pc.is_null(ids)
        keys = pa.table(
            {"id": ids, **{c: pc.if_else(no_id, table[c], pa.scalar(None, table[c].type)) for c in TRADE_COMPOSITE}}
        )
        return _slow_duplicates(keys)
    return _slow_duplicates(table.select(list(ORDER_COLUMNS[data_type])))


def _slow_duplicates(keys: pa.Table) -> tuple[pa.Array, pa.Array] | None:
    """Sort by key (stable), mark each row equal to its successor; keep the last of each run."""
    order = pc.sort_indices(keys, sort_keys=[(c, "ascending") for c in keys.column_names])
    sk = keys.take(order)
    same = _all(*(_eq_null(sk[c][:-1], sk[c][1:]) for c in keys.column_names))
    if not pc.any(same).as_py():
        return None
    drop = pc.filter(order[:-1], same)
    keep = pc.filter(order, pc.invert(pa.concat_arrays([same.combine_chunks(), pa.array([False], pa.bool_())])))
    keep = pc.take(keep, pc.sort_indices(keep))  # back to input order
    drop = pc.take(drop, pc.sort_indices(drop))
    return keep, drop


def _eq_null(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Equality where null == null (SQL ``IS NOT DISTINCT FROM``)."""
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.or_(both_null, _must(pc.equal(a, b)))
