"""The derivatives protocol, request origins and the shared paging helpers, across every registered adapter."""

from __future__ import annotations

import pytest

from dccd.domain import DataType, Span, Symbol, Transport
from dccd.errors import ProtocolDrift
from dccd.sources import DerivativesAdapter, Request, get_adapter, list_adapters, listing_for
from dccd.sources.paging import bar_window, check_limit, levels, ms_ceil, ms_text_to_ns, time_window

MS = 1_000_000
MIN = 60_000 * MS


@pytest.mark.parametrize("name", list_adapters())
def test_funding_and_oi_are_declared_only_with_the_protocol_and_only_for_perps(name: str) -> None:
    """An adapter declares funding/OI exactly when it implements DerivativesAdapter, and only for perp markets."""
    adapter = get_adapter(name)
    declared = [c for c in adapter.capabilities.items if c.data_type in (DataType.FUNDING, DataType.OI)]
    assert bool(declared) == isinstance(adapter, DerivativesAdapter)
    assert all(c.markets == ("perp",) and c.transport is Transport.REST for c in declared)


@pytest.mark.parametrize("name", ["binance", "bybit", "okx", "bitmex"])
def test_perp_symbols_are_checked_against_the_perp_listing(name: str) -> None:
    """listing_for picks the perpetual table for :perp symbols and the spot table otherwise."""
    adapter = get_adapter(name)
    assert isinstance(adapter, DerivativesAdapter)
    perp_req, perp_parse = listing_for(adapter, Symbol("BTC", "USDT", "perp"))
    spot_req, spot_parse = listing_for(adapter, Symbol("BTC", "USDT"))
    assert (perp_req, spot_req) == (adapter.build_perp_symbols(), adapter.build_symbols())
    assert perp_parse == adapter.parse_perp_symbols and spot_parse == adapter.parse_symbols


def test_request_target_follows_the_origin_unless_rest_url_is_overridden() -> None:
    """A request with an origin goes there from the default host; an override (fake, proxy) serves every path."""
    plain = Request("GET", "/api/v3/klines")
    other = Request("GET", "/fapi/v1/fundingRate", origin="https://fapi.binance.com/")
    assert plain.target("https://api.binance.com", "https://api.binance.com") == "/api/v3/klines"
    assert other.target("https://api.binance.com/", "https://api.binance.com") == "https://fapi.binance.com/fapi/v1/fundingRate"  # fmt: skip
    assert other.target("http://127.0.0.1:9000", "https://api.binance.com") == "/fapi/v1/fundingRate"


def test_bar_windows_hold_at_most_limit_bars() -> None:
    """Windows start at the first bar opening at or after the start and hold at most ``limit`` bars."""
    assert bar_window(Span("1m"), 1, 10 * MIN, 3) == (MIN, 3 * MIN)
    assert bar_window(Span("1m"), 0, 2 * MIN + 5, 100) == (0, 2 * MIN)
    assert bar_window(Span("1M"), 0, 10**19, 2) == (0, 31 * 86400 * 10**9)  # calendar months
    with pytest.raises(ValueError, match="no 1h bar opens"):
        bar_window(Span("1h"), 1, 2, 10)
    with pytest.raises(ValueError, match="is after end"):
        bar_window(Span("1m"), 2, 1, 10)


def test_time_windows_are_whole_milliseconds() -> None:
    """Time windows round the start up and the end down to whole ms, cut to ``limit`` steps."""
    assert time_window(MS + 1, 10**6 * MS, 2, 1000) == (2, 2001)
    assert time_window(0, 5 * MS + 999_999, 100, 1000) == (0, 5)
    assert (ms_ceil(1), check_limit(None, 7, 9)) == (1, 7)
    with pytest.raises(ValueError, match=r"limit must be 1\.\.9, got 10"):
        check_limit(10, 7, 9)


def test_exact_millisecond_strings_and_levels() -> None:
    """Millisecond strings convert exactly; malformed ones and bad levels are drift naming the path."""
    assert ms_text_to_ns("1670608800000", "x", "ep", "$") == 1670608800000 * MS
    for bad in ("1.5e12", "-1", "", "١٢"):
        with pytest.raises(ProtocolDrift, match=r"is not a millisecond timestamp - at `\$\.t`"):
            ms_text_to_ns(bad, "x", "ep", "$.t")
    assert levels([["1.5", "2", "0", "1"]], "x", "ep", "$.b") == [(1.5, 2.0)]
    with pytest.raises(ProtocolDrift, match=r"book level has 1 columns - at `\$.b\[0\]`"):
        levels([["1.5"]], "x", "ep", "$.b")


@pytest.mark.parametrize("name", ["binance", "bybit", "okx", "bitmex", "kraken"])
def test_listing_for_without_a_symbol_picks_the_table_by_perp(name: str) -> None:
    """Without a symbol (the client pool's cached listings) ``perp`` picks the table; spot-only adapters
    always answer with their one table."""
    adapter = get_adapter(name)
    assert listing_for(adapter, perp=True) == listing_for(adapter, Symbol("BTC", "USDT", "perp"))
    assert listing_for(adapter) == listing_for(adapter, Symbol("BTC", "USDT"))
