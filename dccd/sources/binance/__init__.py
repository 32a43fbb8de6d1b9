"""Binance: the adapter (spot REST, USD-M futures from ``fapi.binance.com``, and spot WebSocket halves).

The package shape is described in :mod:`dccd.sources`.
"""

from __future__ import annotations

from dccd.sources.binance import common, futures, rest, ws

__all__ = ["BinanceAdapter"]


class BinanceAdapter:
    """Binance spot REST as an :class:`~dccd.sources.base.Adapter` (stateless)."""

    name: str = common.NAME
    rest_url: str = common.REST_URL
    capabilities = common.CAPABILITIES
    rate_limits = common.RATE_LIMITS
    sequential_trade_ids: bool = True  # historicalTrades / @trade ids are consecutive per symbol
    ws_url: str = common.WS_URL  # StreamAdapter (dccd.sources.stream), sans-IO in .ws
    plan_streams = staticmethod(ws.plan_streams)
    open_session = staticmethod(ws.open_session)

    symbol_to_native = staticmethod(common.symbol_to_native)
    symbol_from_native = staticmethod(common.symbol_from_native)
    build_symbols = staticmethod(rest.build_symbols)
    parse_symbols = staticmethod(rest.parse_symbols)
    build_ohlc = staticmethod(rest.build_ohlc)
    parse_ohlc = staticmethod(rest.parse_ohlc)
    build_trades = staticmethod(rest.build_trades)
    parse_trades = staticmethod(rest.parse_trades)
    trades_cursor_after = staticmethod(rest.trades_cursor_after)
    build_book = staticmethod(rest.build_book)
    parse_book = staticmethod(rest.parse_book)
    parse_error = staticmethod(rest.parse_error)  # fapi error bodies have the same shape

    # DerivativesAdapter (dccd.sources.base): USD-M perpetuals on https://fapi.binance.com
    build_perp_symbols = staticmethod(futures.build_perp_symbols)
    parse_perp_symbols = staticmethod(futures.parse_perp_symbols)
    build_funding = staticmethod(futures.build_funding)
    parse_funding = staticmethod(futures.parse_funding)
    build_oi = staticmethod(futures.build_oi)
    parse_oi = staticmethod(futures.parse_oi)
