"""BitMEX realtime WebSocket, sans-IO: connection plans and a frame parser.

One connection at ``/realtime`` carries ``trade:SYM``, ``tradeBin{1m,5m,1h,1d}:SYM``
and ``orderBookL2_25:SYM``. BitMEX welcomes a connection with an ``info``
frame, acknowledges every subscribed topic separately (``{"success": true,
"subscribe": "trade:XBTUSD"}``) and reports refusals as ``{"status": 4xx,
"error": ...}`` (429 carries ``meta.retryAfter``). The text ``ping`` is
answered with ``pong``; the plan sends one every 15 s.

Tables arrive as ``{"table", "action", "data"}``: a ``partial`` first (a
snapshot; for trades the latest trade, marked ``snapshot``), then ``insert``
(and for books ``update``/``delete``). Trade bins are pushed once complete and
stamped with their **end**: bars are emitted at their open time. Trades carry
UUID ids (``sequential_trade_ids`` is False): after a reconnect the stream
actor records the hole as a gap bounded by the last trade kept and the first
new one (a backfill over that time range can repair it; reads dedup by id).

``orderBookL2`` updates and deletes name a level by ``id`` only, so the
session keeps ``id -> (side, price)`` per symbol from the partial and the
inserts; messages that arrive before a symbol's partial are dropped, as
BitMEX documents, and an update for an unknown id asks for a reconnect.
Book sizes are contracts; trade amounts and bar volumes are ``homeNotional``
(base currency), as over REST.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import msgspec

from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import parse_iso_ns
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources.bitmex.common import BIN_SIZES, NAME, WS_URL, symbol_from_native, symbol_to_native
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    NativeSymbols,
    Outgoing,
    ReconnectRequested,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
    undecodable_frame,
)

T = TypeVar("T")

PATH: Final = "/realtime"
BOOK_TABLE: Final = "orderBookL2_25"
ARGS_PER_REQUEST: Final = 20
ARGS_PER_CONNECTION: Final = 200
SUBSCRIBE_INTERVAL_S: Final = 0.1
HEARTBEAT_S: Final = 15.0
WATCHDOG_S: Final = 40.0
_BOOK_TABLES: Final = frozenset({"orderBookL2", "orderBookL2_25"})
_SIDES: Final = {"Buy": "buy", "Sell": "sell"}
_ENCODER = msgspec.json.Encoder()


def topic(sub: Subscription) -> str:
    """BitMEX subscription argument ``table:SYMBOL``.

    Raises:
        NoCapability: a data type or bin size BitMEX does not stream.
    """
    native = symbol_to_native(sub.symbol)
    if sub.data_type is DataType.TRADES:
        return f"trade:{native}"
    if sub.data_type is DataType.BOOK:
        return f"{BOOK_TABLE}:{native}"
    if sub.data_type is DataType.OHLC:
        if sub.span is None or sub.span.label not in BIN_SIZES:
            raise NoCapability(NAME, f"live ohlc span {sub.span} (spans: {' '.join(BIN_SIZES)})")
        return f"tradeBin{sub.span.label}:{native}"
    raise NoCapability(NAME, f"{sub.data_type.value} over ws")


class _Op(msgspec.Struct, frozen=True):
    op: str
    args: list[str]


def plan_streams(subscriptions: Sequence[Subscription], origin: str = WS_URL) -> list[WsPlan]:
    """Connections for ``subscriptions`` (200 topics each), subscribing 20 topics per request.

    Raises:
        NoCapability: see :func:`topic`.
    """
    topics: dict[str, Subscription] = {}
    for sub in subscriptions:
        topics.setdefault(topic(sub), sub)
    names = list(topics)
    plans = []
    for at in range(0, len(names), ARGS_PER_CONNECTION):
        chunk = names[at : at + ARGS_PER_CONNECTION]
        messages = tuple(
            Outgoing(
                _ENCODER.encode(_Op("subscribe", chunk[i : i + ARGS_PER_REQUEST])).decode(), k * SUBSCRIBE_INTERVAL_S
            )
            for k, i in enumerate(range(0, len(chunk), ARGS_PER_REQUEST))
        )
        subs = tuple(topics[n] for n in chunk)
        plans.append(WsPlan(f"{origin.rstrip('/')}{PATH}", subs, messages, HEARTBEAT_S, "ping", WATCHDOG_S))
    return plans


# --- frames ----------------------------------------------------------------------------------


class _Filter(msgspec.Struct, frozen=True):
    symbol: str | None = None


class _Envelope(msgspec.Struct, frozen=True):
    table: str | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent (Raw cannot be Optional)
    filter: _Filter | None = None
    info: str | None = None
    success: bool | None = None
    subscribe: str | None = None
    unsubscribe: str | None = None
    status: int | None = None
    error: str | None = None


class _WsTrade(msgspec.Struct, frozen=True, gc=False):
    timestamp: str
    symbol: str
    side: str | None
    price: float
    trdMatchID: str
    homeNotional: float | None = None
    size: float | None = None


class _WsBin(msgspec.Struct, frozen=True, gc=False):
    timestamp: str
    symbol: str
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    trades: int | None = None
    homeNotional: float | None = None
    foreignNotional: float | None = None


class _WsLevel(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    id: int
    side: str
    size: float | None = None
    price: float | None = None
    timestamp: str | None = None


_decode_env = msgspec.json.Decoder(_Envelope).decode
_decode_trades = msgspec.json.Decoder(list[_WsTrade]).decode
_decode_bins = msgspec.json.Decoder(list[_WsBin]).decode
_decode_levels = msgspec.json.Decoder(list[_WsLevel]).decode


class BitmexSession:
    """Parser state of one connection: symbols seen and the L2 level ids of each book."""

    def __init__(self, plan: WsPlan) -> None:
        self._symbols = NativeSymbols(plan.subscriptions, symbol_to_native, symbol_from_native)
        self._levels: dict[str, dict[int, tuple[str, float]]] = {}  # symbol -> id -> (side, price)

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events of one frame (see the module docstring).

        Raises:
            ProtocolDrift: invalid JSON or a known table that fails validation.
        """
        if frame in ("pong", b"pong"):
            return [ControlAck("pong")]
        try:
            env = _decode_env(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)
        if env.table is None:
            return [_control(env)]
        table = env.table
        try:
            if table == "trade":
                return self._trades(_decode_trades(env.data), env.action == "partial", recv_ns)
            if table.startswith("tradeBin") and table[8:] in BIN_SIZES:
                return self._bins(Span(table[8:]), _decode_bins(env.data))
            if table in _BOOK_TABLES:
                symbol = env.filter.symbol if env.filter else None
                return self._book(env.action or "", _decode_levels(env.data), symbol, recv_ns)
        except msgspec.ValidationError as exc:
            raise ProtocolDrift(NAME, table, str(exc)) from exc
        except ValueError as exc:  # an unparseable timestamp
            raise ProtocolDrift(NAME, table, f"bad value: {exc}") from exc
        return [Unrecognised(table)]

    def _trades(self, rows: list[_WsTrade], snapshot: bool, recv_ns: int) -> list[StreamEvent]:
        by_symbol: dict[str, list[Trade]] = {}
        for r in rows:
            amount = r.homeNotional if r.homeNotional is not None else r.size
            if amount is None:
                raise ValueError(f"trade {r.trdMatchID} has neither homeNotional nor size")
            trade = Trade(parse_iso_ns(r.timestamp), r.trdMatchID, r.price, amount, _SIDES.get(r.side or ""), recv_ns)
            by_symbol.setdefault(r.symbol, []).append(trade)
        return self._per_symbol(by_symbol, lambda sym, items: TradesReceived(sym, items, snapshot))

    def _bins(self, span: Span, rows: list[_WsBin]) -> list[StreamEvent]:
        by_symbol: dict[str, list[Candle]] = {}
        for r in rows:
            if r.open is None or r.high is None or r.low is None or r.close is None or r.homeNotional is None:
                continue  # a bin without a price is a missing bar, never 0.0
            opened = parse_iso_ns(r.timestamp) - span.ns  # BitMEX stamps the bin's end
            candle = Candle(opened, r.open, r.high, r.low, r.close, r.homeNotional, r.foreignNotional, r.trades)
            by_symbol.setdefault(r.symbol, []).append(candle)
        return self._per_symbol(by_symbol, lambda sym, items: CandlesClosed(sym, span, items))

    def _per_symbol(
        self, groups: dict[str, list[T]], make: Callable[[Symbol, list[T]], StreamEvent]
    ) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for native, items in groups.items():
            symbol = self._symbols.find(native)
            out.append(make(symbol, items) if symbol is not None else Unrecognised(f"symbol:{native}"))
        return out

    def _book(self, action: str, rows: list[_WsLevel], filtered: str | None, recv_ns: int) -> list[StreamEvent]:
        groups: dict[str, list[_WsLevel]] = {}
        if action == "partial" and filtered is not None:
            groups[filtered] = []  # an empty book still resets the symbol
        for r in rows:
            groups.setdefault(r.symbol, []).append(r)
        out: list[StreamEvent] = []
        for native, levels in groups.items():
            symbol = self._symbols.find(native)
            if symbol is None:
                out.append(Unrecognised(f"symbol:{native}"))
                continue
            if action == "partial":
                self._levels[native] = {}
            ids = self._levels.get(native)
            if ids is None:
                continue  # before the partial: BitMEX says to drop these
            bids: list[tuple[float, float]] = []
            asks: list[tuple[float, float]] = []
            ts: int | None = None
            for r in levels:
                if action in ("partial", "insert"):
                    if r.price is None or r.size is None:
                        raise ValueError(f"{action} of level {r.id} without price or size")
                    ids[r.id] = (r.side, r.price)
                    side, price, size = r.side, r.price, r.size
                else:
                    known = ids.get(r.id)
                    if known is None:
                        del self._levels[native]
                        return [ReconnectRequested(f"bitmex {native}: {action} of unknown level id {r.id}")]
                    side, price = known
                    size = 0.0 if action == "delete" else (r.size if r.size is not None else 0.0)
                    if action == "delete":
                        del ids[r.id]
                (bids if side == "Buy" else asks).append((price, size))
                if r.timestamp is not None:
                    ts = max(ts or 0, parse_iso_ns(r.timestamp))
            out.append(
                BookReceived(symbol, BookSnapshot(recv_ns if ts is None else ts, bids, asks), action == "partial")
            )
        return out


def _control(env: _Envelope) -> StreamEvent:
    if env.info is not None:
        return ControlAck(env.info)
    if env.success:
        return ControlAck(env.subscribe or env.unsubscribe or "")
    if env.error is not None:
        return ControlFailed(str(env.status) if env.status is not None else "error", env.error)
    return Unrecognised("<unknown object>")


def open_session(plan: WsPlan) -> BitmexSession:
    """A fresh parser for one connection of ``plan``."""
    return BitmexSession(plan)
