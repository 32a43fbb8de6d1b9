"""Kraken spot: the adapter (REST and WebSocket v2 halves; ``ws_v1`` parses recorded v1 sessions).

The package shape is described in :mod:`dccd.sources`.
"""

from __future__ import annotations

from dccd.sources.kraken import common, rest, ws

__all__ = ["KrakenAdapter"]


class KrakenAdapter:
    """Kraken spot REST + WebSocket v2 as an Adapter and StreamAdapter (stateless)."""

    name: str = common.NAME
    rest_url: str = common.REST_URL
    ws_url: str = common.WS_URL
    capabilities = common.CAPABILITIES
    rate_limits = common.RATE_LIMITS
    sequential_trade_ids: bool = True  # WS v2 / REST trade_id: "sequential int" per pair

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
