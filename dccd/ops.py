"""Operation requests shared by the CLI, the HTTP API and the scheduler.

Raw user input (strings) becomes a validated :class:`BackfillRequest` or
:class:`StreamRequest` here, once, with one-line errors naming the bad field,
so every interface rejects bad input the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from dccd.config import resolve_end, resolve_start, shown
from dccd.domain.records import DataType
from dccd.domain.spans import SPAN_CHOICES, Span
from dccd.domain.symbols import Symbol

STREAM_TYPES = (DataType.TRADES, DataType.OHLC, DataType.BOOK)


class InvalidRequest(ValueError):
    """Bad operation input; ``str(err)`` is ``<field>: <what was wrong>``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class BackfillRequest(msgspec.Struct, frozen=True):
    """Backfill history of one data type for some symbols of one exchange.

    ``start``: ISO date/datetime, ``-30d``, ``last`` (resume after what is
    stored) or ``origin`` (first data the exchange has); None = ``last``.
    ``end``: ISO, ``-1h`` or ``now`` (None).
    """

    exchange: str
    symbols: tuple[Symbol, ...]
    data_type: DataType
    span: Span | None = None
    start: str | None = None
    end: str | None = None
    job_id: str | None = None
    derive_from: str | None = None  # "trades": OHLC bars built from the stored trades, not fetched


DERIVE_SOURCES = ("trades",)


class StreamRequest(msgspec.Struct, frozen=True):
    """Record live data of one type for some symbols of one exchange."""

    exchange: str
    symbols: tuple[Symbol, ...]
    data_type: DataType
    span: Span | None = None
    job_id: str | None = None


def _exchange(name: str, known: Sequence[str]) -> str:
    if not isinstance(name, str) or name not in known:
        raise InvalidRequest("exchange", f"{shown(name)} is not a known exchange ({' '.join(known)})")
    return name


def _symbols(raw: Sequence[str]) -> tuple[Symbol, ...]:
    if isinstance(raw, str) or not raw:
        raise InvalidRequest("symbols", "give at least one symbol like BTC/USDT")
    out: list[Symbol] = []
    for i, text in enumerate(raw):
        try:
            sym = Symbol.parse(text)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"symbols[{i}]", str(exc)) from None
        if sym in out:
            raise InvalidRequest(f"symbols[{i}]", f"{shown(text)} is listed twice")
        out.append(sym)
    return tuple(out)


def _type_span(data_type: str, span: str | None, allowed: Sequence[DataType]) -> tuple[DataType, Span | None]:
    try:
        dtype = DataType.parse(data_type)
    except ValueError as exc:
        raise InvalidRequest("type", str(exc)) from None
    if dtype not in allowed:
        raise InvalidRequest("type", f"{dtype.value!r} is not supported here ({' '.join(t.value for t in allowed)})")
    if dtype is DataType.OHLC:
        if not span:
            raise InvalidRequest("span", f"ohlc needs a span ({SPAN_CHOICES})")
        try:
            return dtype, Span.parse(span)
        except ValueError as exc:
            raise InvalidRequest("span", str(exc)) from None
    if span:
        raise InvalidRequest("span", f"only ohlc takes a span, not {dtype.value}")
    return dtype, None


def parse_backfill(
    exchange: str,
    symbols: Sequence[str],
    data_type: str,
    *,
    known_exchanges: Sequence[str],
    span: str | None = None,
    start: str | None = None,
    end: str | None = None,
    now_ns: int | None = None,
    job_id: str | None = None,
    derive_from: str | None = None,
) -> BackfillRequest:
    """Validate raw backfill input.

    ``start``/``end`` must resolve (as of ``now_ns``, default the wall clock) to moments between
    2009-01-03 and a day from now: an absurd time is refused here, never handed to a run.

    Raises:
        InvalidRequest: the first bad field, e.g. ``span: '7m' is not a span (...)``.
    """
    name = _exchange(exchange, known_exchanges)
    syms = _symbols(symbols)
    dtype, sp = _type_span(data_type, span, tuple(DataType))
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        start_v = resolve_start(start, now_ns)
    except ValueError as exc:
        raise InvalidRequest("start", str(exc)) from None
    try:
        end_v = resolve_end(end, now_ns)
    except ValueError as exc:
        raise InvalidRequest("end", str(exc)) from None
    if isinstance(start_v, int) and end_v <= start_v:
        raise InvalidRequest("end", f"{end or 'now'!r} is not after start {start!r}")
    if derive_from is not None:
        if derive_from not in DERIVE_SOURCES:
            raise InvalidRequest("derive_from", f"{shown(derive_from)} is not a source to derive from (trades)")
        if dtype is not DataType.OHLC:
            raise InvalidRequest("derive_from", f"only ohlc bars are derived, not {dtype.value}")
    return BackfillRequest(name, syms, dtype, sp, start, end, job_id, derive_from=derive_from)


def parse_stream(
    exchange: str,
    symbols: Sequence[str],
    data_type: str,
    *,
    known_exchanges: Sequence[str],
    span: str | None = None,
    job_id: str | None = None,
) -> StreamRequest:
    """Validate raw stream input.

    Raises:
        InvalidRequest: the first bad field.
    """
    name = _exchange(exchange, known_exchanges)
    syms = _symbols(symbols)
    dtype, sp = _type_span(data_type, span, STREAM_TYPES)
    return StreamRequest(name, syms, dtype, sp, job_id)
