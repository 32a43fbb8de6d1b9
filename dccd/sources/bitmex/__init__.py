"""BitMEX: the adapter (REST, derivatives and WebSocket halves).

The package shape is described in :mod:`dccd.sources`.
"""

from __future__ import annotations

from dccd.sources.bitmex import common, rest, ws

__all__ = ["BitmexAdapter"]


class BitmexAdapter:
    """BitMEX as an :class:`~dccd.sources.base.Adapter`, a
    :class:`~dccd.sources.base.DerivativesAdapter` and a
    :class:`~dccd.sources.stream.StreamAdapter` (stateless)."""

    name: str = common.NAME
    rest_url: str = common.REST_URL
    ws_url: str = common.WS_URL
    sequential_trade_ids: bool = False  # trdMatchID is a UUID: refill by time (build_trades(start_ns=...))
    capabilities = common.CAPABILITIES
    rate_limits = common.RATE_LIMITS

    symbol_to_native = staticmethod(common.symbol_to_native)
    symbol_from_native = staticmethod(common.symbol_from_native)
    build_symbols = staticmethod(rest.build_symbols)
    parse_symbols = staticmethod(rest.parse_symbols)
    build_perp_symbols = staticmethod(rest.build_perp_symbols)
    parse_perp_symbols = staticmethod(rest.parse_perp_symbols)
    build_ohlc = staticmethod(rest.build_ohlc)
    parse_ohlc = staticmethod(rest.parse_ohlc)
    build_trades = staticmethod(rest.build_trades)
    parse_trades = staticmethod(rest.parse_trades)
    trades_cursor_after = staticmethod(rest.trades_cursor_after)
    build_book = staticmethod(rest.build_book)
    parse_book = staticmethod(rest.parse_book)
    build_funding = staticmethod(rest.build_funding)
    parse_funding = staticmethod(rest.parse_funding)
    build_oi = staticmethod(rest.build_oi)
    parse_oi = staticmethod(rest.parse_oi)
    parse_error = staticmethod(rest.parse_error)
    plan_streams = staticmethod(ws.plan_streams)  # StreamAdapter (dccd.sources.stream)
    open_session = staticmethod(ws.open_session)
