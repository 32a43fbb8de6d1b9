"""Validation of path and query parameters, before anything touches the lake or the service.

Each function turns raw text into a typed value or raises a 400
:class:`~dccd.web.errors.ApiProblem` naming the parameter. Path parameters
that end up in lake paths (type, exchange, symbol, span) are only ever used
in their parsed form: a known adapter name, a :class:`Symbol` rebuilt from
its parts, a :class:`DataType`, a :class:`Span`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from dccd.config import shown
from dccd.domain import DataType, Span, Symbol
from dccd.domain.capability import Capabilities, Transport
from dccd.domain.spans import SPAN_CHOICES
from dccd.domain.timeutil import int64_problem, parse_iso_ns
from dccd.errors import ConfigError
from dccd.sources.registry import list_adapters

from .errors import ApiProblem

FORMATS: tuple[str, ...] = ("json", "jsonl", "columns", "csv", "parquet", "arrow")
_NS = re.compile(r"[0-9]{1,19}")
MAX_LIMIT = 1000


def bad(field: str, message: str) -> ApiProblem:
    """A 400 error for ``field``."""
    return ApiProblem(400, field, message)


def exchange(name: str | None, field: str = "exchange") -> str:
    """A known adapter name (the only exchange text ever used in a path)."""
    known = list_adapters()
    if not name:
        raise bad(field, f"required ({' '.join(known)})")
    if name not in known:
        raise bad(field, f"{name!r} is not a known exchange ({' '.join(known)})")
    return name


def symbol(text: str | None, field: str = "symbol") -> Symbol:
    """A symbol written ``BTC/USDT`` (query parameters)."""
    if not text:
        raise bad(field, "required (e.g. BTC/USDT)")
    try:
        return Symbol.parse(text)
    except ValueError as exc:
        raise bad(field, str(exc)) from None


def symbol_slug(text: str, field: str = "symbol") -> Symbol:
    """A symbol written as its slug ``BTC-USDT`` (path parameters); case-insensitive."""
    try:
        return Symbol.from_slug(text.upper())
    except ValueError:
        raise bad(
            field, f"{text!r} is not a symbol slug (expected BASE-QUOTE or BASE-QUOTE-PERP, e.g. BTC-USDT)"
        ) from None


def data_type(text: str, field: str = "type") -> DataType:
    """A lake data type."""
    try:
        return DataType.parse(text)
    except ValueError as exc:
        raise bad(field, str(exc)) from None


def span_for(dtype: DataType, text: str | None, field: str = "span") -> Span | None:
    """The span an OHLC read needs; other types take none."""
    if dtype is DataType.OHLC:
        if not text:
            raise bad(field, f"ohlc needs a span ({SPAN_CHOICES})")
        try:
            return Span.parse(text)
        except ValueError as exc:
            raise bad(field, str(exc)) from None
    if text:
        raise bad(field, f"only ohlc takes a span, not {dtype.value}")
    return None


def timestamp(text: str | None, field: str) -> int | None:
    """An ISO-8601 date/datetime (UTC unless an offset is given) or integer nanoseconds, within int64."""
    if text is None or text == "":
        return None
    if _NS.fullmatch(text):
        ns = int(text)
    else:
        try:
            ns = parse_iso_ns(text)
        except ValueError as exc:
            # parse_iso_ns names the text in full: past ISO length it is just not ISO (and must not be echoed whole)
            what = str(exc) if len(text) <= 40 else f"{shown(text)} is not an ISO-8601 date or datetime"
            raise bad(field, f"{what} (use ISO-8601 like 2024-01-01T00:00Z, or integer ns)") from None
    problem = int64_problem(ns)
    if problem is not None:
        raise bad(field, f"{shown(text)} {problem}")
    return ns


def window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``[start, end)`` in ns; end must be after start."""
    start_ns, end_ns = timestamp(start, "start"), timestamp(end, "end")
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise bad("end", f"{end!r} is not after start {start!r}")
    return start_ns, end_ns


def choice(text: str | None, field: str, choices: Sequence[str], default: str | None = None) -> str | None:
    """One of ``choices`` (or ``default`` when absent)."""
    if text is None or text == "":
        return default
    if text not in choices:
        raise bad(field, f"{text!r} is not one of: {' '.join(choices)}")
    return text


def limit(text: str | None, default: int = 50) -> int:
    """A row limit between 1 and :data:`MAX_LIMIT`."""
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise bad("limit", f"{text!r} is not a number between 1 and {MAX_LIMIT}")
    return int(text)


def live_capability(
    capabilities: Callable[[str], Capabilities], name: str, dtype: DataType, span: Span | None, sym: Symbol
) -> None:
    """The exchange must declare the live (WebSocket) feed being asked for (``capabilities``: the service's lookup).

    Raises:
        NoCapability: not declared (answered as a 400 naming it).
    """
    try:
        capabilities(name).require_symbol(dtype, Transport.WS, span, sym)
    except ConfigError as exc:
        raise bad("exchange", exc.message) from None
