"""The sans-IO WebSocket side of an adapter: plans, per-connection sessions, generic events.

A stream connection actor is exchange-agnostic::

    plans = adapter.plan_streams(subscriptions, origin=ws_url)       # connections to open
    for plan in plans:                                               # one connection actor each
        session = adapter.open_session(plan)                         # fresh parser state per connection
        on connect: send plan.on_open messages (paced by delay_s)
        every frame: for ev in session.parse(frame, recv_ns): handle(ev)
        heartbeat: send plan.heartbeat_message every plan.heartbeat_s (None = protocol pings only)
        watchdog: no data frame for plan.watchdog_s -> reconnect

Sessions turn frames into the generic events below; exchange schemas never
leak past them. Trade ids that are sequential per symbol (``Trade.id`` as a
decimal string) let the actor detect holes and refill them over REST
(``StreamAdapter.sequential_trade_ids``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol, runtime_checkable

import msgspec

from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import ProtocolDrift, UnsupportedSymbol


class Subscription(msgspec.Struct, frozen=True, order=True):
    """One live feed: a data type of one symbol (OHLC with its span)."""

    symbol: Symbol
    data_type: DataType
    span: Span | None = None


class Outgoing(msgspec.Struct, frozen=True):
    """A text message to send after the connection opens, ``delay_s`` after opening."""

    text: str
    delay_s: float = 0.0


class WsPlan(msgspec.Struct, frozen=True):
    """One connection to open and what to say on it."""

    url: str
    subscriptions: tuple[Subscription, ...]
    on_open: tuple[Outgoing, ...] = ()
    heartbeat_s: float | None = None
    heartbeat_message: str | None = None
    watchdog_s: float = 30.0
    rotate_after_s: float | None = None


class TradesReceived(msgspec.Struct, frozen=True, gc=False):
    """Trades of one symbol from one frame (ascending by id/time)."""

    symbol: Symbol
    trades: list[Trade]
    snapshot: bool = False  # True for an initial "recent trades" snapshot (Bitfinex, Kraken)


class CandlesClosed(msgspec.Struct, frozen=True, gc=False):
    """Bars the exchange marked final (never an in-progress bar)."""

    symbol: Symbol
    span: Span
    candles: list[Candle]


class BookReceived(msgspec.Struct, frozen=True, gc=False):
    """A full book (``snapshot``) or a delta (amount 0 removes a level).

    ``first_seq``/``last_seq`` are the exchange's update ids when it gives them,
    so the actor can check continuity and resync.
    """

    symbol: Symbol
    book: BookSnapshot
    snapshot: bool
    first_seq: int | None = None
    last_seq: int | None = None


class ControlAck(msgspec.Struct, frozen=True):
    """A subscribe/unsubscribe/pong reply from the exchange."""

    detail: str = ""


class ControlFailed(msgspec.Struct, frozen=True):
    """The exchange refused a control message (bad symbol, limit, ...)."""

    code: str
    message: str


class HeartbeatReceived(msgspec.Struct, frozen=True):
    """An exchange heartbeat (counts as liveness, carries no data)."""


class ReconnectRequested(msgspec.Struct, frozen=True):
    """The exchange announced it will close or asked us to reconnect."""

    reason: str


class Unrecognised(msgspec.Struct, frozen=True):
    """A frame we do not use; counted per ``key``."""

    key: str


StreamEvent = (
    TradesReceived
    | CandlesClosed
    | BookReceived
    | ControlAck
    | ControlFailed
    | HeartbeatReceived
    | ReconnectRequested
    | Unrecognised
)


NOT_AN_OBJECT: Final = "<not an object>"


def undecodable_frame(exc: msgspec.DecodeError, exchange: str, endpoint: str = "ws") -> list[StreamEvent]:
    """What it means that a typed envelope decoder refused a frame: the twin of :func:`dccd.sources.base.decode`.

    Every session decodes a frame with its exchange's envelope view and hands
    a refusal here, so the hot path pays nothing for it::

        try:
            env = _decode_env(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)

    A frame that is JSON but not the envelope's shape (an array, a bare
    string) is something the exchange may send and we do not use: an
    :class:`Unrecognised` event, not an error.

    Raises:
        ProtocolDrift: the frame is not JSON.
    """
    if isinstance(exc, msgspec.ValidationError):
        return [Unrecognised(NOT_AN_OBJECT)]
    raise ProtocolDrift(exchange, endpoint, f"invalid JSON: {exc}") from exc


class NativeSymbols:
    """Exchange names -> canonical symbols for one connection, memoised.

    Seeded with the plan's subscriptions; a name seen on the wire that is not
    in the plan (a replay, a server-side alias) is mapped once with
    ``from_native`` and remembered.
    """

    def __init__(
        self,
        subscriptions: Iterable[Subscription],
        to_native: Callable[[Symbol], str],
        from_native: Callable[[str], Symbol],
    ) -> None:
        self._by_native: dict[str, Symbol] = {to_native(s.symbol): s.symbol for s in subscriptions}
        self._from_native = from_native

    def get(self, native: str) -> Symbol:
        """The symbol of ``native``; raises UnsupportedSymbol if it cannot be mapped."""
        symbol = self._by_native.get(native)
        if symbol is None:
            symbol = self._by_native[native] = self._from_native(native)
        return symbol

    def find(self, native: str) -> Symbol | None:
        """Like :meth:`get`, but None for a name that cannot be mapped."""
        try:
            return self.get(native)
        except UnsupportedSymbol:
            return None


@runtime_checkable
class StreamSession(Protocol):
    """Parser state of one connection (channel ids, partial snapshots, ...)."""

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events in one frame; raises ProtocolDrift on a payload that fails validation."""
        ...


@runtime_checkable
class StreamAdapter(Protocol):
    """The WebSocket half of an exchange adapter."""

    name: str
    ws_url: str
    sequential_trade_ids: bool

    def plan_streams(self, subscriptions: Sequence[Subscription], origin: str) -> list[WsPlan]:
        """Connections covering ``subscriptions`` within the exchange's per-connection limits.

        Raises:
            NoCapability: a data type/span the exchange does not stream.
            UnsupportedSymbol: a symbol that cannot be mapped.
        """
        ...

    def open_session(self, plan: WsPlan) -> StreamSession:
        """A fresh parser for one connection of ``plan``."""
        ...
