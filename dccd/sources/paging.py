"""Helpers shared by adapters: window narrowing, request read-back, exact ms strings.

Newest-first endpoints (Bybit klines, OKX candles, funding histories) answer a
``[start, end]`` window with *some* ``limit`` records of it, and which end they
fill from is not always documented. The adapters therefore never ask for more
than one answer can carry: :func:`bar_window` and :func:`time_window` narrow a
request to at most ``limit`` bars (or ``limit`` prints at the finest cadence),
so every page holds its whole window, and the next page starts right after
the window whatever the answer's order.
"""

from __future__ import annotations

from collections.abc import Sequence

from dccd.domain.spans import Span
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import ProtocolDrift
from dccd.sources.base import Request, number


def ms_ceil(ns: int) -> int:
    """Smallest whole millisecond at or after ``ns``."""
    return -(-ns // NS_PER_MS)


def ms_floor(ns: int) -> int:
    """Largest whole millisecond at or before ``ns``."""
    return ns // NS_PER_MS


def check_limit(limit: int | None, default: int, maximum: int) -> int:
    """``limit`` (or ``default``) after checking it is within 1..``maximum``.

    Raises:
        ValueError: outside 1..maximum.
    """
    value = default if limit is None else limit
    if not 1 <= value <= maximum:
        raise ValueError(f"limit must be 1..{maximum}, got {value}")
    return value


def check_range(start_ns: int, end_ns: int) -> None:
    """Raises ValueError when ``start_ns > end_ns``."""
    if start_ns > end_ns:
        raise ValueError(f"start {start_ns} is after end {end_ns}")


def bar_window(span: Span, start_ns: int, end_ns: int, limit: int) -> tuple[int, int]:
    """Open times ``(first, last)`` of the at most ``limit`` bars opening first in ``[start_ns, end_ns]``.

    Raises:
        ValueError: ``start_ns > end_ns``, or no bar of ``span`` opens in the range.
    """
    check_range(start_ns, end_ns)
    first = span.align_up(start_ns)
    if first > end_ns:
        raise ValueError(f"no {span.label} bar opens in [{start_ns}, {end_ns}]")
    return first, min(span.align(end_ns), span.add(first, limit - 1))


def time_window(start_ns: int, end_ns: int, limit: int, step_ms: int) -> tuple[int, int]:
    """Whole-ms bounds ``(first_ms, last_ms)`` of ``[start_ns, end_ns]`` cut to ``limit`` steps of ``step_ms``.

    Used for series with no fixed grid (funding prints): with at most one
    record per ``step_ms``, a window of ``limit * step_ms`` fits one answer.

    Raises:
        ValueError: ``start_ns > end_ns``.
    """
    check_range(start_ns, end_ns)
    first = ms_ceil(start_ns)
    return first, max(first, min(ms_floor(end_ns), first + limit * step_ms - 1))


def int_param(request: Request, name: str) -> int:
    """Integer query parameter ``name`` of a request this adapter built.

    Raises:
        ValueError: the request has no such parameter (not built by the adapter).
    """
    value = request.param(name)
    if value is None:
        raise ValueError(f"request to {request.endpoint} has no {name!r} parameter")
    return int(value)


def ms_text_to_ns(text: str, exchange: str, endpoint: str, path: str) -> int:
    """A decimal millisecond string (``"1670608800000"``) as exact ns.

    Raises:
        ProtocolDrift: not a plain non-negative integer, naming ``path``.
    """
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        raise ProtocolDrift(exchange, endpoint, f"{text!r} is not a millisecond timestamp - at `{path}`")
    return int(text) * NS_PER_MS


def levels(rows: Sequence[Sequence[str]], exchange: str, endpoint: str, path: str) -> list[tuple[float, float]]:
    """Book levels ``[[price, amount, ...], ...]`` as float pairs (extra columns ignored).

    Raises:
        ProtocolDrift: a level with fewer than two columns or a non-numeric
            value, naming ``path[i][j]``.
    """
    out: list[tuple[float, float]] = []
    for i, row in enumerate(rows):
        if len(row) < 2:
            raise ProtocolDrift(exchange, endpoint, f"book level has {len(row)} columns - at `{path}[{i}]`")
        out.append((number(row[0], exchange, endpoint, f"{path}[{i}][0]"), number(row[1], exchange, endpoint, f"{path}[{i}][1]")))  # fmt: skip
    return out
