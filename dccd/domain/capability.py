"""What an exchange adapter declares it can do, checked before any request."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability


class Transport(StrEnum):
    """How data arrives."""

    REST = "rest"
    WS = "ws"


class History(StrEnum):
    """How far back REST history goes."""

    FULL = "full"  # from listing
    RECENT = "recent"  # a bounded recent window (see ``recent_limit``/``recent_s``)
    SNAPSHOT = "snapshot"  # current state only (books)
    LIVE = "live"  # WebSocket only


class Direction(StrEnum):
    """Order in which an endpoint pages."""

    FORWARD = "forward"
    BACKWARD = "backward"
    NONE = "none"


class Capability(msgspec.Struct, frozen=True):
    """One supported (data type, transport) pair with its limits.

    ``recent_rows`` bounds a RECENT history by rows, counting the bar still in progress
    (Kraken OHLC: 720 bars, so 719 closed ones are fetchable);
    ``recent_s`` bounds it by age in seconds.
    """

    data_type: DataType
    transport: Transport
    history: History
    direction: Direction = Direction.NONE
    spans: tuple[str, ...] = ()
    page_limit: int = 0
    recent_rows: int | None = None
    recent_s: int | None = None
    markets: tuple[str, ...] = ("spot",)


class Capabilities(msgspec.Struct, frozen=True):
    """All declared capabilities of one exchange."""

    exchange: str
    items: tuple[Capability, ...]

    def find(self, data_type: DataType, transport: Transport) -> Capability | None:
        """The capability for (type, transport), or None."""
        for cap in self.items:
            if cap.data_type is data_type and cap.transport is transport:
                return cap
        return None

    def require(
        self,
        data_type: DataType,
        transport: Transport,
        span: Span | None = None,
        market: str = "spot",
    ) -> Capability:
        """Return the capability or raise before any network call.

        Raises:
            NoCapability: type/transport/span/market not declared.
        """
        cap = self.find(data_type, transport)
        if cap is None:
            raise NoCapability(self.exchange, f"{data_type.value} over {transport.value}")
        if span is not None and cap.spans and span.label not in cap.spans:
            raise NoCapability(
                self.exchange,
                f"{data_type.value} span {span.label} over {transport.value} (spans: {' '.join(cap.spans)})",
            )
        if market not in cap.markets:
            raise NoCapability(self.exchange, f"{data_type.value} for {market} markets")
        return cap

    def require_symbol(
        self, data_type: DataType, transport: Transport, span: Span | None, symbol: Symbol
    ) -> Capability:
        """:meth:`require` for one symbol: its market (``perp`` for ``:perp`` symbols, else ``spot``) must be offered.

        Raises:
            NoCapability: type/transport/span not declared, or not for the symbol's market.
        """
        return self.require(data_type, transport, span, "perp" if symbol.is_perp else "spot")
