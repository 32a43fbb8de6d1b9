"""The archive planner (pure): which archive files to fetch for a backfill range, and what is left to REST.

``--source auto`` (the default) takes every *whole* period (UTC day or month, or
whatever periods the adapter declares: OKX's begin at 16:00 UTC) that lies
inside the requested range, holds nothing stored yet, is at or after the
archive's first day and old enough to be published (its end + the
capability's ``delay_s`` is before now) from the archive; a whole calendar
month that qualifies is one monthly file, other days are daily files. Every
other part of the range (the newest days, partial days at the edges, periods
already partly stored, periods the archive turned out not to have) is left to
REST, which plans only what is missing there. ``--source archive`` uses the
same files and leaves the rest unfetched (a ``partial`` run).

Stored data is described by intervals ``[first_ts, last_ts]`` (one per lake
part, read from part names: no data is read to plan); a period touching any of
them is "partly stored" and left to REST, whose planning is exact; except for
files without exchange trade ids (``synthetic_ids``: Bybit spot, whose REST
serves only the newest trades), which are taken and merged with what is stored.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import msgspec

from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.sources.archive import (
    ArchiveAdapter,
    ArchiveCapability,
    ArchiveFile,
    Granularity,
    archive_capability,
    market_of,
)

NS_PER_S = 1_000_000_000


class ArchivePlan(msgspec.Struct, frozen=True):
    """Files to fetch (ascending coverage) and the ranges ``[lo, hi)`` of the request they do not cover.

    ``merging`` lists the paths of files whose period is partly stored already (only files of a
    capability with ``synthetic_ids``: their rows are merged with the stored ones, see
    :class:`~dccd.sources.archive.ArchiveCapability`).
    """

    files: tuple[ArchiveFile, ...]
    rest: tuple[tuple[int, int], ...]
    merging: tuple[str, ...] = ()

    @property
    def covered_ns(self) -> int:
        """Nanoseconds of the request the files cover."""
        return sum(f.end_ns - f.start_ns for f in self.files)


class _Stored:
    """Stored intervals (inclusive ends), sorted, for "does ``[lo, hi)`` touch any" queries."""

    def __init__(self, intervals: Sequence[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for lo, hi in sorted(intervals):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._los = [m[0] for m in merged]
        self._his = [m[1] for m in merged]

    def touches(self, lo: int, hi: int) -> bool:
        k = bisect.bisect_left(self._his, lo)  # first interval ending at or after lo
        return k < len(self._los) and self._los[k] < hi


def _usable(
    cap: ArchiveCapability | None, lo: int, hi: int, start: int, end: int, now_ns: int, stored: _Stored
) -> bool:
    return (
        cap is not None
        and start <= lo
        and hi <= end
        and lo >= cap.first_ns
        and hi + cap.delay_s * NS_PER_S <= now_ns
        and (cap.synthetic_ids or not stored.touches(lo, hi))
    )


def plan_archive(
    adapter: ArchiveAdapter,
    symbol: Symbol,
    data_type: DataType,
    span: Span | None,
    start_ns: int,
    end_ns: int,
    now_ns: int,
    stored: Sequence[tuple[int, int]] = (),
) -> ArchivePlan:
    """Archive files for ``[start_ns, end_ns)`` and the ranges left to REST (see the module docstring).

    Args:
        stored: intervals ``[first_ts, last_ts]`` (inclusive) already in the lake.
    """
    caps = adapter.archive_capabilities
    market = market_of(symbol)
    monthly = archive_capability(caps, data_type, market, span, Granularity.MONTHLY)
    daily = archive_capability(caps, data_type, market, span, Granularity.DAILY)
    have = _Stored(stored)
    periods: list[tuple[Granularity, int, int]] = []
    cursor = start_ns
    while cursor < end_ns and (monthly is not None or daily is not None):
        if monthly is not None:
            mlo, mhi = adapter.archive_period(Granularity.MONTHLY, cursor)
            if _usable(monthly, mlo, mhi, start_ns, end_ns, now_ns, have):
                periods.append((Granularity.MONTHLY, mlo, mhi))
                cursor = mhi
                continue
            block_end = min(mhi, end_ns)
        else:
            block_end = end_ns
        if daily is None:
            cursor = block_end
            continue
        day = cursor
        while day < block_end:
            dlo, dhi = adapter.archive_period(Granularity.DAILY, day)
            if _usable(daily, dlo, dhi, start_ns, end_ns, now_ns, have):
                periods.append((Granularity.DAILY, dlo, dhi))
            day = dhi
        cursor = max(block_end, day)
    files = tuple(adapter.archive_file(symbol, data_type, span, g, lo) for g, lo, _ in periods)
    merging = tuple(f.path for f in files if have.touches(f.start_ns, f.end_ns))
    return ArchivePlan(files, uncovered(start_ns, end_ns, [(f.start_ns, f.end_ns) for f in files]), merging)


def published_periods(
    adapter: ArchiveAdapter, cap: ArchiveCapability, lo_ns: int, end_ns: int, now_ns: int
) -> list[int]:
    """Starts of the periods of ``cap``'s granularity from the one holding ``max(lo_ns, cap.first_ns)``
    that end by ``end_ns`` and whose files should be published by ``now_ns`` (ascending)."""
    out: list[int] = []
    cursor = max(lo_ns, cap.first_ns)
    while cursor < end_ns:
        plo, phi = adapter.archive_period(cap.granularity, cursor)
        if phi > end_ns or phi + cap.delay_s * NS_PER_S > now_ns:
            break
        out.append(plo)
        cursor = phi
    return out


def uncovered(start_ns: int, end_ns: int, covered: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """The parts of ``[start_ns, end_ns)`` outside the (half-open) ``covered`` intervals, ascending."""
    out: list[tuple[int, int]] = []
    cursor = start_ns
    for lo, hi in sorted(covered):
        if lo > cursor:
            out.append((cursor, min(lo, end_ns)))
        cursor = max(cursor, hi)
        if cursor >= end_ns:
            break
    if cursor < end_ns:
        out.append((cursor, end_ns))
    return tuple((lo, hi) for lo, hi in out if lo < hi)


__all__ = ["ArchivePlan", "plan_archive", "published_periods", "uncovered"]
