"""Gap arithmetic: exact missing bar intervals and missing trade-id ranges."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dccd.domain.spans import Span


def missing_bars(
    ts_sorted: Iterable[int],
    span: Span,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> list[tuple[int, int]]:
    """Missing bar intervals ``[first_missing_open, next_present_open)``.

    Args:
        ts_sorted: bar open times, ascending (duplicates allowed).
        span: the bar length.
        start_ns: expected first bar (aligned up); default the first given bar.
        end_ns: exclusive end of the expected range; default after the last bar.

    Returns:
        Half-open ns intervals, ascending, each covering only absent bars.
    """
    out: list[tuple[int, int]] = []
    expect: int | None = span.align_up(start_ns) if start_ns is not None else None
    # Bars opening at or after `stop` are outside the range: gaps are clipped there.
    stop = span.align_up(end_ns) if end_ns is not None else None
    for ts in ts_sorted:
        if expect is None:
            expect = ts
        if ts < expect:
            continue  # duplicate or before the range
        if stop is not None and ts >= stop:
            break
        if ts > expect:
            out.append((expect, ts))
        expect = span.next(span.align(ts))
    if stop is not None and expect is not None and expect < stop:
        out.append((expect, stop))
    return out


def missing_ids(ids_sorted: Iterable[int], first: int | None = None, last: int | None = None) -> list[tuple[int, int]]:
    """Missing inclusive id ranges ``(lo, hi)`` in a sequential id series.

    Args:
        ids_sorted: ids ascending (duplicates allowed).
        first: expected first id (default: the first given).
        last: expected last id (default: the last given).
    """
    out: list[tuple[int, int]] = []
    expect = first
    for i in ids_sorted:
        if expect is None:
            expect = i
        if i < expect:
            continue
        if last is not None and i > last:
            break  # ids past `last` are outside the range: the gap is clipped there
        if i > expect:
            out.append((expect, i - 1))
        expect = i + 1
    if last is not None and expect is not None and expect <= last:
        out.append((expect, last))
    elif last is not None and expect is None:
        out.append((last, last))  # nothing given and no `first`: only `last` is known to be expected
    return out


def merge_ranges(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping/adjacent half-open ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
