"""Coinbase Exchange: the adapter (REST and WebSocket halves).

The package shape is described in :mod:`dccd.sources`.
"""

from __future__ import annotations

from dccd.sources.coinbase import common, rest, ws

__all__ = ["CoinbaseAdapter"]


class CoinbaseAdapter:
    """Coinbase Exchange REST + WebSocket as an Adapter and StreamAdapter (stateless)."""

    name: str = common.NAME
    rest_url: str = common.REST_URL
    ws_url: str = common.WS_URL
    capabilities = common.CAPABILITIES
    rate_limits = common.RATE_LIMITS
    sequential_trade_ids: bool = True  # trade_id is contiguous per product (REST and `matches`)

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
    parse_error = staticmethod(rest.parse_error)
    plan_streams = staticmethod(ws.plan_streams)  # StreamAdapter (dccd.sources.stream)
    open_session = staticmethod(ws.open_session)
