"""Gap arithmetic against brute-force oracles: missing bars, missing ids, merged ranges."""

from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dccd.domain.gaps import merge_ranges, missing_bars, missing_ids
from dccd.domain.spans import Span
from dccd.domain.timeutil import parse_iso_ns

FAST = settings(max_examples=150, deadline=None)
GRID = 40  # bars on the test grid
ORIGIN = parse_iso_ns("2023-11-27")  # a Monday and a month-aligned neighbourhood for 1w / 1M


def runs(missing: list[int], span: Span) -> list[tuple[int, int]]:
    """Group sorted missing opens into [first, next-after-last) intervals."""
    out: list[tuple[int, int]] = []
    for o in missing:
        if out and out[-1][1] == o:
            out[-1] = (out[-1][0], span.next(o))
        else:
            out.append((o, span.next(o)))
    return out


@st.composite
def bar_cases(draw: st.DrawFn) -> tuple[Span, list[int], int | None, int | None]:
    """A span, sorted present opens (with duplicates) on a grid, and optional unaligned start/end bounds."""
    span = Span.parse(draw(st.sampled_from(["1m", "1h", "1d", "3d", "1w", "1M"])))
    first = span.align(ORIGIN)
    grid = [span.add(first, k) for k in range(GRID)]
    present = sorted(draw(st.lists(st.sampled_from(grid), max_size=GRID)))
    start = end = None
    if draw(st.booleans()):
        k = draw(st.integers(0, GRID - 2))
        start = grid[k] + draw(st.sampled_from([0, 1, (grid[k + 1] - grid[k]) // 2]))
    if draw(st.booleans()):
        k = draw(st.integers(0, GRID - 2))
        end = grid[k] + draw(st.sampled_from([0, 1, (grid[k + 1] - grid[k]) - 1]))
    return span, present, start, end


def oracle_bars(span: Span, present: list[int], start: int | None, end: int | None) -> list[tuple[int, int]]:
    """Expected opens are those in [align_up(start) or first present, end or after last present)."""
    if start is None and not present:
        return []
    lo = span.align_up(start) if start is not None else present[0]
    expected, t = [], lo
    limit = end if end is not None else (span.next(present[-1]) if present else lo)
    while t < limit:
        expected.append(t)
        t = span.next(t)
    have = set(present)
    return runs([o for o in expected if o not in have], span)


@FAST
@given(bar_cases())
@example((Span.parse("1m"), [0, 60_000_000_000 * 5], 0, 60_000_000_000 * 3))
@example((Span.parse("1M"), [parse_iso_ns("2024-03-01")], parse_iso_ns("2024-01-15"), None))
def test_missing_bars_matches_brute_force(case: tuple[Span, list[int], int | None, int | None]) -> None:
    """missing_bars equals the brute-force set difference over the bar grid, 1w and 1M included."""
    span, present, start, end = case
    assert missing_bars(present, span, start, end) == oracle_bars(span, present, start, end)


def test_missing_bars_clips_at_end() -> None:
    """A bar stored past end_ns does not stretch the gap beyond end_ns."""
    m = Span.parse("1m")
    minute = 60_000_000_000
    assert missing_bars([0, 10 * minute], m, 0, 3 * minute) == [(minute, 3 * minute)]
    assert missing_bars([0, minute], m, 0, 2 * minute + 1) == [(2 * minute, 3 * minute)]


def test_missing_bars_months() -> None:
    """Month gaps are whole calendar months."""
    m = Span.parse("1M")
    have = [parse_iso_ns("2024-01-01"), parse_iso_ns("2024-04-01")]
    assert missing_bars(have, m) == [(parse_iso_ns("2024-02-01"), parse_iso_ns("2024-04-01"))]


@st.composite
def id_cases(draw: st.DrawFn) -> tuple[list[int], int | None, int | None]:
    """Sorted ids (with duplicates) from 0..60 and optional first/last bounds."""
    ids = sorted(draw(st.lists(st.integers(0, 60), max_size=60)))
    first = draw(st.none() | st.integers(0, 60))
    last = draw(st.none() | st.integers(0, 60))
    return ids, first, last


def oracle_ids(ids: list[int], first: int | None, last: int | None) -> list[tuple[int, int]]:
    """Inclusive runs of ids in [first or min, last or max] that are absent."""
    lo = first if first is not None else (ids[0] if ids else None)
    hi = last if last is not None else (ids[-1] if ids else None)
    if hi is None:
        return []
    if lo is None:
        lo = hi  # nothing known but `last`
    have = set(ids)
    out: list[tuple[int, int]] = []
    for i in range(lo, hi + 1):
        if i in have:
            continue
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


@FAST
@given(id_cases())
@example(([1, 2, 9], 1, 5))
def test_missing_ids_matches_brute_force(case: tuple[list[int], int | None, int | None]) -> None:
    """missing_ids equals the brute-force inclusive runs of absent ids."""
    ids, first, last = case
    assert missing_ids(ids, first, last) == oracle_ids(ids, first, last)


def test_missing_ids_values() -> None:
    """Spot values: interior gap, leading gap from `first`, trailing gap to `last`."""
    assert missing_ids([1, 2, 5, 6, 9]) == [(3, 4), (7, 8)]
    assert missing_ids([5, 6], first=2, last=8) == [(2, 4), (7, 8)]
    assert missing_ids([], first=3, last=4) == [(3, 4)]


@FAST
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(1, 10)).map(lambda t: (t[0], t[0] + t[1])), max_size=15))
def test_merge_ranges_matches_brute_force(ranges: list[tuple[int, int]]) -> None:
    """merge_ranges covers exactly the union, sorted, with no overlapping or touching neighbours."""
    merged = merge_ranges(ranges)
    covered = {x for lo, hi in ranges for x in range(lo, hi)}
    assert {x for lo, hi in merged for x in range(lo, hi)} == covered
    assert all(lo < hi for lo, hi in merged)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))
