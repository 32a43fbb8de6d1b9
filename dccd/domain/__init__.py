"""Pure domain model: symbols, spans, records, capabilities, time and gap arithmetic.

No I/O, no Trio, no logging here.
"""

from dccd.domain.capability import Capabilities, Capability, Direction, History, Transport
from dccd.domain.dataset import DatasetId, check_exchange_name
from dccd.domain.gaps import merge_ranges, missing_bars, missing_ids
from dccd.domain.records import (
    NATURAL_KEYS,
    RECORD_TYPES,
    BookLevel,
    BookSnapshot,
    Candle,
    DataType,
    Funding,
    OpenInterest,
    Record,
    Trade,
)
from dccd.domain.spans import SPAN_CHOICES, SPAN_LABELS, Span
from dccd.domain.symbols import Symbol

__all__ = [
    "NATURAL_KEYS",
    "RECORD_TYPES",
    "SPAN_CHOICES",
    "SPAN_LABELS",
    "BookLevel",
    "BookSnapshot",
    "Candle",
    "Capabilities",
    "Capability",
    "DataType",
    "DatasetId",
    "Direction",
    "Funding",
    "History",
    "OpenInterest",
    "Record",
    "Span",
    "Symbol",
    "Trade",
    "Transport",
    "check_exchange_name",
    "merge_ranges",
    "missing_bars",
    "missing_ids",
]
