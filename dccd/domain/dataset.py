"""Dataset identity: (exchange, symbol, data type, span) — one folder tree in the lake."""

from __future__ import annotations

import re

import msgspec

from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol

_EXCHANGE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_exchange_name(name: str) -> str:
    """Validate an exchange id (lowercase, path-safe).

    Raises:
        ValueError: not a valid exchange id.
    """
    if not isinstance(name, str) or not _EXCHANGE.fullmatch(name):
        raise ValueError(f"{name!r} is not an exchange name (lowercase letters, digits, _)")
    return name


class DatasetId(msgspec.Struct, frozen=True, order=True):
    """One dataset. ``span`` is set for OHLC only."""

    exchange: str
    symbol: Symbol
    data_type: DataType
    span: Span | None = None

    def __post_init__(self) -> None:
        check_exchange_name(self.exchange)
        if self.data_type is DataType.OHLC and self.span is None:
            raise ValueError("ohlc datasets need a span")
        if self.data_type is not DataType.OHLC and self.span is not None:
            raise ValueError(f"{self.data_type.value} datasets take no span")

    def __str__(self) -> str:
        tail = f":{self.span.label}" if self.span else ""
        return f"{self.exchange}:{self.symbol}:{self.data_type.value}{tail}"
