"""Bitfinex v2 public WebSocket, sans-IO (``wss://api-pub.bitfinex.com/ws/2``).

Protocol (SPEC §6): the server greets with ``{"event":"info","version":2}``;
each ``subscribe`` is answered by ``{"event":"subscribed","chanId":N,...}``
and every data message after that is an array keyed by ``chanId`` — the
session keeps the ``chanId`` -> (channel, symbol, span) map. Trailing
elements (the sequence number of ``conf`` flag 65536, ...) are ignored:
Bitfinex appends fields without notice.

- Trades: ``[chanId, [[ID, MTS, AMOUNT, PRICE], ...]]`` is the snapshot of
  recent trades, newest first (emitted ascending, ``snapshot``); afterwards
  each trade arrives twice, as ``te`` (executed) and, 1-2 s later, ``tu``
  (updated). The session emits a trade the first time its id is seen
  (``te``, or ``tu`` if the ``te`` was missed) and drops the repeat, using
  a bounded window of recent ids per channel.
- Candles: the snapshot (newest first) then updates of the bar in progress;
  a bar is emitted as closed once a later bar's update arrives.
- Book (P0): snapshot ``[[PRICE, COUNT, AMOUNT], ...]`` then one level per
  message; COUNT 0 deletes the level (amount 0 in the delta). No time in
  the payload, so ``ts`` is the receive time.
- ``[chanId, "hb"]`` arrives every 15 s per channel: the watchdog allows 45 s.
- ``info`` code 20051 (server restart) asks for a reconnect; 20061
  (maintenance over) requires resubscribing, i.e. a reconnect too.

Limits: at most 25 channel subscriptions per connection (Bitfinex's public
limit is of that order); subscribes are paced 0.1 s apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from dccd.domain.capability import Transport
from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.bitfinex.common import CAPABILITIES, NAME, TIMEFRAMES, symbol_from_native, symbol_to_native
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    HeartbeatReceived,
    Outgoing,
    ReconnectRequested,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
    undecodable_frame,
)

WS_PATH: Final = "/ws/2"
MAX_CHANNELS_PER_CONNECTION: Final = 25
SUBSCRIBE_INTERVAL_S: Final = 0.1
WATCHDOG_S: Final = 45.0  # `hb` every 15 s per channel
BOOK_LEN: Final = "25"
DEDUP_WINDOW: Final = 10_000  # recent trade ids remembered per channel for te/tu
RECONNECT_CODES: Final = frozenset({20051, 20061})
SPANS_BY_TIMEFRAME: Final[dict[str, Span]] = {tf: Span(label) for label, tf in TIMEFRAMES.items()}
_ENCODER = msgspec.json.Encoder()
_decode = msgspec.json.Decoder().decode


def build_subscribe(sub: Subscription) -> str:
    """The ``subscribe`` event of one subscription.

    Raises:
        NoCapability: a data type or span Bitfinex does not stream.
        UnsupportedSymbol: a perpetual.
    """
    if sub.data_type is DataType.OHLC and sub.span is None:
        raise NoCapability(NAME, "ohlc over ws without a span")
    CAPABILITIES.require(sub.data_type, Transport.WS, sub.span)
    native = symbol_to_native(sub.symbol)
    body: dict[str, str]
    if sub.data_type is DataType.TRADES:
        body = {"event": "subscribe", "channel": "trades", "symbol": native}
    elif sub.data_type is DataType.OHLC:
        assert sub.span is not None
        body = {"event": "subscribe", "channel": "candles", "key": f"trade:{TIMEFRAMES[sub.span.label]}:{native}"}
    else:
        body = {"event": "subscribe", "channel": "book", "symbol": native, "prec": "P0", "freq": "F0", "len": BOOK_LEN}
    return _ENCODER.encode(body).decode()


def plan_streams(subscriptions: Sequence[Subscription], origin: str) -> list[WsPlan]:
    """Connections to ``{origin}/ws/2`` of at most 25 channels, subscribes paced 0.1 s apart."""
    subs = sorted(set(subscriptions))
    texts = [build_subscribe(s) for s in subs]
    url = origin.rstrip("/") + WS_PATH
    plans = []
    for at in range(0, len(subs), MAX_CHANNELS_PER_CONNECTION):
        chunk = texts[at : at + MAX_CHANNELS_PER_CONNECTION]
        on_open = tuple(Outgoing(t, k * SUBSCRIBE_INTERVAL_S) for k, t in enumerate(chunk))
        plans.append(WsPlan(url, tuple(subs[at : at + MAX_CHANNELS_PER_CONNECTION]), on_open, watchdog_s=WATCHDOG_S))
    return plans


class _Channel:
    """One subscribed channel: what it carries and its parser state."""

    __slots__ = ("bar", "kind", "seen", "seen_order", "span", "symbol")

    def __init__(self, kind: str, symbol: Symbol | None, span: Span | None = None) -> None:
        self.kind, self.symbol, self.span = kind, symbol, span
        self.seen: set[int] = set()
        self.seen_order: deque[int] = deque()
        self.bar: Candle | None = None

    def first_sight(self, trade_id: int) -> bool:
        """True the first time ``trade_id`` is seen on this channel (te/tu deduplication)."""
        if trade_id in self.seen:
            return False
        self.seen.add(trade_id)
        self.seen_order.append(trade_id)
        if len(self.seen_order) > DEDUP_WINDOW:
            self.seen.discard(self.seen_order.popleft())
        return True


_NUMBER: Final = (int, float)


def _row(value: Any, n: int, path: str) -> list[Any]:
    """``value`` if it is an array starting with ``n`` numbers (Bitfinex may append fields), else ValueError."""
    if type(value) is not list or len(value) < n:
        raise ValueError(f"expected an array of {n} numbers at `{path}`")
    for x in value[:n]:
        if type(x) not in _NUMBER:
            raise ValueError(f"expected an array of {n} numbers at `{path}`")
    return value


class BitfinexSession:
    """Parser state of one connection: the chanId map, te/tu dedup windows, open bars."""

    def __init__(self, plan: WsPlan | None = None) -> None:
        self._channels: dict[int, _Channel] = {}

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events of one frame.

        Raises:
            ProtocolDrift: invalid JSON, or a data array of a subscribed channel with the wrong shape.
        """
        try:
            msg = _decode(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)
        if isinstance(msg, dict):
            return self._event(msg)
        if not isinstance(msg, list) or len(msg) < 2 or not isinstance(msg[0], int):
            return [Unrecognised("<not a channel message>")]
        chan = self._channels.get(msg[0])
        if msg[1] == "hb":
            return [HeartbeatReceived()]
        if chan is None:
            return [Unrecognised("<unknown chanId>")]
        try:
            if chan.kind == "trades":
                return self._trades(chan, msg, recv_ns)
            if chan.kind == "candles":
                return self._candles(chan, msg[1])
            if chan.kind == "book":
                return self._book(chan, msg[1], recv_ns)
        except (ValueError, TypeError) as exc:
            raise ProtocolDrift(NAME, f"ws {chan.kind}", str(exc)) from exc
        return [Unrecognised(chan.kind)]

    # --- events ---

    def _event(self, msg: dict[str, Any]) -> list[StreamEvent]:
        event = msg.get("event")
        if event == "subscribed":
            return self._subscribed(msg)
        if event == "info":
            code = msg.get("code")
            if code in RECONNECT_CODES:
                return [ReconnectRequested(f"info {code}: {msg.get('msg', '')}")]
            return [ControlAck(f"info {code if code is not None else msg.get('version')}")]
        if event == "error":
            return [ControlFailed(str(msg.get("code", "")), str(msg.get("msg", "")))]
        if event == "unsubscribed":
            self._channels.pop(msg.get("chanId"), None)  # type: ignore[arg-type]
            return [ControlAck("unsubscribed")]
        if event in ("pong", "conf"):
            return [ControlAck(str(event))]
        return [Unrecognised(str(event))]

    def _subscribed(self, msg: dict[str, Any]) -> list[StreamEvent]:
        chan_id, kind = msg.get("chanId"), msg.get("channel")
        if not isinstance(chan_id, int) or not isinstance(kind, str):
            raise ProtocolDrift(NAME, "ws subscribed", f"no integer chanId / channel in {msg}")
        symbol: Symbol | None = None
        span: Span | None = None
        try:
            if kind == "candles":
                _, tf, native = str(msg.get("key", "")).split(":", 2)
                span, symbol = SPANS_BY_TIMEFRAME.get(tf), symbol_from_native(native)
                if span is None:
                    raise ProtocolDrift(NAME, "ws subscribed", f"candle timeframe {tf!r} has no dccd span")
            elif isinstance(msg.get("symbol"), str):
                symbol = symbol_from_native(msg["symbol"])
        except (ValueError, UnsupportedSymbol) as exc:
            raise ProtocolDrift(NAME, "ws subscribed", str(exc)) from exc
        self._channels[chan_id] = _Channel(kind, symbol, span)
        return [ControlAck(f"subscribed {kind} {msg.get('key') or msg.get('symbol')}")]

    # --- channels ---

    def _trades(self, chan: _Channel, msg: list[Any], recv_ns: int) -> list[StreamEvent]:
        assert chan.symbol is not None
        if msg[1] in ("te", "tu"):
            row = _row(msg[2] if len(msg) > 2 else None, 4, "$[2]")
            if not chan.first_sight(row[0]):
                return []
            return [TradesReceived(chan.symbol, [self._trade(row, recv_ns)])]
        if isinstance(msg[1], str):
            return [Unrecognised(f"trades {msg[1]}")]  # fte/ftu (funding) and future types
        rows = msg[1]
        if not isinstance(rows, list):
            raise ValueError("expected the trades snapshot array at `$[1]`")
        trades = []
        for i in range(len(rows) - 1, -1, -1):  # newest first on the wire
            row = _row(rows[i], 4, f"$[1][{i}]")
            if chan.first_sight(row[0]):
                trades.append(self._trade(row, recv_ns))
        return [TradesReceived(chan.symbol, trades, snapshot=True)]

    @staticmethod
    def _trade(row: list[Any], recv_ns: int) -> Trade:
        amount = row[2]
        side = "buy" if amount > 0 else "sell" if amount < 0 else None
        return Trade(int(row[1]) * NS_PER_MS, str(row[0]), float(row[3]), float(abs(amount)), side, recv_ns)

    def _candles(self, chan: _Channel, payload: Any) -> list[StreamEvent]:
        assert chan.symbol is not None and chan.span is not None
        if not isinstance(payload, list):
            raise ValueError("expected a candle array at `$[1]`")
        snapshot = bool(payload) and isinstance(payload[0], list)
        rows = payload if snapshot else [payload] if payload else []
        bars = []
        for i, r in enumerate(rows):
            v = _row(r, 6, f"$[1][{i}]" if snapshot else "$[1]")  # [MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]
            bars.append(Candle(int(v[0]) * NS_PER_MS, float(v[1]), float(v[3]), float(v[4]), float(v[2]), float(v[5])))
        bars.sort(key=lambda bar: bar.ts)
        closed = []
        for bar in bars:
            pending = chan.bar
            if pending is not None and bar.ts < pending.ts:
                continue  # an update of a bar already closed
            if pending is not None and bar.ts > pending.ts:
                closed.append(pending)
            chan.bar = bar
        return [CandlesClosed(chan.symbol, chan.span, closed)] if closed else []

    def _book(self, chan: _Channel, payload: Any, recv_ns: int) -> list[StreamEvent]:
        assert chan.symbol is not None
        if not isinstance(payload, list):
            raise ValueError("expected a book array at `$[1]`")
        snapshot = bool(payload) and isinstance(payload[0], list)
        rows = payload if snapshot or not payload else [payload]
        bids: list[tuple[float, float]] = []
        asks: list[tuple[float, float]] = []
        for i, r in enumerate(rows):
            price, count, amount = _row(r, 3, f"$[1][{i}]" if snapshot else "$[1]")[:3]
            # COUNT 0 deletes the level; its AMOUNT is then 1 (bid) or -1 (ask)
            level = (float(price), 0.0 if count == 0 else float(amount if amount > 0 else -amount))
            (bids if amount > 0 else asks).append(level)
        return [BookReceived(chan.symbol, BookSnapshot(recv_ns, bids, asks), snapshot=snapshot or not payload)]


def open_session(plan: WsPlan) -> BitfinexSession:
    """A fresh parser for one connection of ``plan``."""
    return BitfinexSession(plan)
