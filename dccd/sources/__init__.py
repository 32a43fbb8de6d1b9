"""Sans-IO exchange adapters: request specs and parsers, one package per exchange.

Every exchange package has one shape::

    dccd/sources/<exchange>/
        __init__.py   the adapter class, composing the halves (its only public name)
        common.py     names, hosts, capabilities, symbol mapping: what both halves need
        rest.py       build_*/parse_* of the REST API (Binance: futures.py for USD-M too)
        ws.py         plan_streams/open_session and the session parsing frames into
                      the generic events of :mod:`dccd.sources.stream`

``rest`` and ``ws`` import ``common`` and never each other, so no exchange has
an import cycle (``tests/test_architecture.py`` checks it). Shared by all:
:mod:`~dccd.sources.base` (the protocols, ``decode``), :mod:`~dccd.sources.stream`
(events, ``undecodable_frame``), :mod:`~dccd.sources.paging` (window helpers).
"""

from dccd.sources.base import (
    Adapter,
    DerivativesAdapter,
    FundingPage,
    Listing,
    Market,
    OhlcPage,
    OiPage,
    RateLimits,
    Request,
    TradesPage,
    listing_for,
)
from dccd.sources.registry import ENTRY_POINT_GROUP, get_adapter, list_adapters

__all__ = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "DerivativesAdapter",
    "FundingPage",
    "Listing",
    "Market",
    "OhlcPage",
    "OiPage",
    "RateLimits",
    "Request",
    "TradesPage",
    "get_adapter",
    "list_adapters",
    "listing_for",
]
