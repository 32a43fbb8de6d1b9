"""Sans-IO exchange adapters: request specs and parsers, one module per exchange."""

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
