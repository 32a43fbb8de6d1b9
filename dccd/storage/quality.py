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

With :class:`~dccd.contracts.rules.BatchRules` (the writer passes them unless ``contracts.batch`` is
off) the batch contracts run too: ``ts_units`` (a ts in s, ms or µs that lands in the exchange's life
once rescaled), ``ts_in_life`` (before the exchange existed) and, for bars,
``bar_grid`` (the open time is not on the span's grid) quarantine their rows; ``monotonic_ids``
(a trade id lower than the one before it in time, on an exchange whose ids are sequential) is only
counted (:attr:`GateResult.flags`): which of the two rows is wrong is not known. Each rule belongs to
one contract (:data:`RULE_CONTRACT`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Final, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from dccd.contracts.rules import BatchRules
from dccd.domain import DataType, Span
from dccd.domain.timeutil import NS_PER_DAY, NS_PER_S
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


_SCHEMA_RULES = (
    "required_present", "ts_positive", "ts_units", "ts_in_life", "ts_not_future", "values_finite", "price_positive",
    "amount_non_negative", "volume_non_negative", "side_valid", "rate_finite",
)  # fmt: skip
RULE_CONTRACT: Final[dict[str, str]] = {
    **dict.fromkeys(_SCHEMA_RULES, "schema_units"),
    **dict.fromkeys(("ohlc_low_le_high", "ohlc_high", "ohlc_low"), "ohlc_invariants"),
    "unique_key": "unique_key",
    "bar_grid": "bar_grid",
    "monotonic_ids": "monotonic_ids",
}
"""Gate rule -> the data contract it belongs to (see :data:`dccd.contracts.rules.CONTRACTS`)."""

_SCALES: Final[tuple[tuple[str, int], ...]] = (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000))


def unit_mask(ts: pa.ChunkedArray | pa.Array, lo_ns: int, hi_ns: int) -> pa.ChunkedArray:
    """True where ``ts`` lands in ``[lo_ns, hi_ns]`` once read as s, ms or µs instead of ns (the windows are
    disjoint as ``hi_ns / lo_ns`` < 1000; ns multiplied by 1000 once too often overflows int64 before it
    reaches 2009, so the writer's conversion raises on it instead)."""
    i64 = pa.int64()
    bounds = pc.min_max(ts).as_py()
    if bounds["min"] is None or (bounds["min"] >= lo_ns and bounds["max"] <= hi_ns):  # the usual batch: one pass
        return pc.and_(pc.is_valid(ts), _FALSE)  # all false, shaped like ts
    hits = [
        pc.and_(pc.greater_equal(ts, pa.scalar(-(-lo_ns // k), i64)), pc.less_equal(ts, pa.scalar(hi_ns // k, i64)))
        for _, k in _SCALES
    ]
    return _must(reduce(pc.or_, hits))


def grid_mask(ts: pa.ChunkedArray | pa.Array, span: Span) -> pa.ChunkedArray:
    """True where ``ts`` is a bar open time of ``span`` (:meth:`Span.align` is the identity)."""
    i64 = pa.int64()
    if span.calendar:  # 1M: midnight of the 1st
        midnight = pc.equal(pc.modulo(ts, pa.scalar(NS_PER_DAY, i64)), pa.scalar(0, i64))
        first = pc.equal(pc.day(pc.cast(ts, pa.timestamp("ns"))), pa.scalar(1, i64))
        return _must(pc.and_(midnight, first))
    off = span.align(0) % span.ns  # 1w bars open on Mondays: 4 days after the epoch
    return _must(pc.equal(pc.modulo(pc.subtract(ts, pa.scalar(off, i64)), pa.scalar(span.ns, i64)), pa.scalar(0, i64)))


def _contract_checks(data_type: DataType, rules: BatchRules) -> tuple[list[tuple[str, Check]], list[tuple[str, Check]]]:
    """The batch contracts' row checks: (after ``ts_positive``, at the end)."""
    lo = rules.life_start_ns
    ts_checks: list[tuple[str, Check]] = [
        ("ts_units", lambda t, hi: pc.invert(unit_mask(t["ts"], lo, hi))),
        ("ts_in_life", lambda t, _hi: _must(pc.greater_equal(t["ts"], pa.scalar(lo, pa.int64())))),
    ]
    tail: list[tuple[str, Check]] = []
    span = rules.span
    if data_type is DataType.OHLC and span is not None:
        tail.append(("bar_grid", lambda t, _hi: grid_mask(t["ts"], span)))
    return ts_checks, tail


def _checks(data_type: DataType, rules: BatchRules | None) -> list[tuple[str, Check]]:
    base = RULES[data_type]
    if rules is None:
        return base
    ts_checks, tail = _contract_checks(data_type, rules)
    return [*base[:2], *ts_checks, *base[2:], *tail]  # after required_present and ts_positive


def rule_failures(
    data_type: DataType, table: pa.Table, *, limit_ns: int, rules: BatchRules | None
) -> tuple[pa.ChunkedArray, pa.ChunkedArray] | None:
    """``(ok, rule)`` per row of ``table`` (``rule``: the first rule the row breaks, null when it passes),
    or None when every row passes. ``limit_ns`` is the newest acceptable ts (now + skew)."""
    masks = [(name, check(table, limit_ns)) for name, check in _checks(data_type, rules)]
    ok = _all(*(m for _, m in masks))
    if pc.all(ok).as_py():
        return None
    rule = pa.nulls(table.num_rows, pa.string())
    for name, m in masks:  # first failing rule wins
        rule = pc.if_else(pc.and_(pc.is_null(rule), pc.invert(m)), pa.scalar(name, pa.string()), rule)
    return ok, rule


class GateResult(NamedTuple):
    """Outcome of :func:`gate`."""

    good: pa.Table  # strict lake schema, sorted by ts, natural keys unique
    bad: pa.Table | None  # loose schema plus a ``rule`` column
    reasons: dict[str, int]  # rule -> rows failing it
    flags: dict[str, int] = {}  # noqa: RUF012 - report-only contracts -> rows (never quarantined)


def gate(
    data_type: DataType,
    table: pa.Table,
    *,
    now_ns: int,
    skew_ns: int = DEFAULT_SKEW_NS,
    rules: BatchRules | None = None,
) -> GateResult:
    """Split a batch (loose schema) into rows to write and rows to quarantine.

    Args:
        data_type: the batch's data type.
        table: the batch, columns as in :data:`dccd.storage.schema.LOOSE_SCHEMAS`.
        now_ns: current time; rows newer than ``now_ns + skew_ns`` fail ``ts_not_future``.
        skew_ns: tolerated clock skew.
        rules: the batch contracts' settings for this dataset (None: the gate rules only).
    """
    table = table.combine_chunks()
    if table.num_rows == 0:
        return GateResult(table.cast(SCHEMAS[data_type]), None, {})
    bad_parts: list[pa.Table] = []
    found = rule_failures(data_type, table, limit_ns=now_ns + skew_ns, rules=rules)
    if found is not None:
        ok, rule = found
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
    flags: dict[str, int] = {}
    if rules is not None and rules.monotonic_ids and (descents := id_descents(table)):
        flags["monotonic_ids"] = descents
    return GateResult(table.cast(SCHEMAS[data_type]), bad, reasons, flags)


def id_descents(table: pa.Table) -> int:
    """Trades (sorted by ts) whose integer id is lower than the id before them in (ts, id) order.

    Ids that are not integers are left out (0 when none is).
    """
    if table.num_rows < 2:
        return 0
    try:
        ids = pc.cast(table["id"], pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return 0
    keys = pa.table({"ts": table["ts"], "id": ids}).filter(pc.is_valid(ids))
    if _strictly_increasing(keys["id"]):
        return 0
    keys = keys.sort_by([("ts", "ascending"), ("id", "ascending")])
    return int(pc.sum(pc.less(keys["id"][1:], keys["id"][:-1])).as_py() or 0)


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


def contract_counts(reasons: dict[str, int], flags: dict[str, int]) -> dict[str, int]:
    """Rows per data contract from a gate's quarantine ``reasons`` and report-only ``flags``."""
    out: dict[str, int] = {}
    for rule, n in (*reasons.items(), *flags.items()):
        contract = RULE_CONTRACT.get(rule, rule)
        out[contract] = out.get(contract, 0) + n
    return out
