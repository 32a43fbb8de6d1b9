"""The report of a contract check: per dataset, per contract, per UTC day, counts and first examples.

Findings arrive as Arrow tables of flagged rows (a ``ts`` column plus the example fields, and an optional
``n`` column when one row stands for several violations, e.g. a day's missing bars); :func:`by_day` folds
them into :class:`DayCount` entries with pyarrow.compute, one Python step per day, never per row.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from dccd.domain.timeutil import NS_PER_DAY, ns_to_date, ns_to_iso

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
_TS_FIELDS = frozenset({"ts", "prev_ts", "next_ts", "from", "to", "first_missing"})


class DayCount(msgspec.Struct, frozen=True):
    """One contract's violations on one UTC day, with the first examples (in ts order)."""

    day: str
    count: int
    examples: list[dict[str, Any]]


class ContractResult(msgspec.Struct, frozen=True):
    """One contract over one dataset: ``status`` is ``pass``, ``fail`` or ``skipped`` (``note`` says why)."""

    contract: str
    status: str
    violations: int = 0
    days: list[DayCount] = msgspec.field(default_factory=list)
    note: str = ""


class SkippedFile(msgspec.Struct, frozen=True):
    """A part the check could not read (it was left out, as reads leave it out)."""

    path: str
    reason: str


class DatasetReport(msgspec.Struct, frozen=True):
    """Every contract run over one dataset."""

    dataset: str
    exchange: str
    symbol: str
    type: str
    span: str | None
    rows: int
    first: str | None
    last: str | None
    violations: int
    contracts: list[ContractResult]
    skipped_files: list[SkippedFile] = msgspec.field(default_factory=list)

    @property
    def failed(self) -> dict[str, int]:
        """Contract -> violations, for the contracts that failed."""
        return {c.contract: c.violations for c in self.contracts if c.status == FAIL}


class CheckReport(msgspec.Struct, frozen=True):
    """A whole check; ``ok`` when no contract failed and no part was unreadable."""

    ok: bool
    violations: int
    rows: int
    datasets: list[DatasetReport]
    checked_at: str
    elapsed_s: float
    start: str | None = None
    end: str | None = None
    as_of: str | None = None


def _shown(name: str, value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if name in _TS_FIELDS and isinstance(value, int):
        return ns_to_iso(value)
    return value


def by_day(found: pa.Table, examples: int) -> list[DayCount]:
    """Fold flagged rows (sorted or not) into per-day counts with the first ``examples`` rows of each day.

    ``found`` has ``ts`` (ns) and, optionally, ``n`` (violations the row stands for; default 1).
    """
    if found.num_rows == 0:
        return []
    found = found.sort_by("ts")
    days = pc.divide(found["ts"], pa.scalar(NS_PER_DAY, pa.int64()))
    weights = found["n"] if "n" in found.column_names else pa.repeat(pa.scalar(1, pa.int64()), found.num_rows)
    runs = pc.run_end_encode(days.combine_chunks() if isinstance(days, pa.ChunkedArray) else days)
    ends = runs.run_ends.to_pylist()
    out, start = [], 0
    for end, day in zip(ends, runs.values.to_pylist(), strict=True):
        count = int(pc.sum(weights.slice(start, end - start)).as_py() or 0)
        rows = found.slice(start, min(examples, end - start)).to_pylist()
        shown = [{k: _shown(k, v) for k, v in row.items() if k != "n"} for row in rows]
        out.append(DayCount(ns_to_date(day * NS_PER_DAY), count, shown))
        start = end
    return out


def result(contract: str, found: pa.Table, examples: int, note: str = "") -> ContractResult:
    """A :class:`ContractResult` from flagged rows (none: ``pass``)."""
    days = by_day(found, examples)
    total = sum(d.count for d in days)
    return ContractResult(contract, FAIL if total else PASS, total, days, note)


def skipped(contract: str, note: str) -> ContractResult:
    """A contract that does not apply here, and why."""
    return ContractResult(contract, SKIPPED, note=note)
