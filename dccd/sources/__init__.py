"""Sans-IO exchange adapters: request specs and parsers, one module per exchange."""

from dccd.sources.base import Adapter, Listing, Market, OhlcPage, RateLimits, Request, TradesPage
from dccd.sources.registry import ENTRY_POINT_GROUP, get_adapter, list_adapters

__all__ = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "Listing",
    "Market",
    "OhlcPage",
    "RateLimits",
    "Request",
    "TradesPage",
    "get_adapter",
    "list_adapters",
]
