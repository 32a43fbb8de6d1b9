"""Bybit v5 public WebSocket, sans-IO: connection plans and a frame parser.

One connection per category (``/v5/public/spot``, ``/v5/public/linear``),
topics ``publicTrade.{S}``, ``kline.{interval}.{S}`` and ``orderbook.50.{S}``.
Spot accepts at most 10 topics per subscribe request, so subscribes go out
in requests of 10, paced 0.1 s apart. Bybit drops a connection that neither
pings nor receives data for 10 minutes and recommends ``{"op":"ping"}`` every
20 s: the plan carries that heartbeat, and the pong counts as liveness.

Frames: ``{"topic", "type", "ts", "data"}``; ``data`` is decoded once the
topic is known (kept raw until then). Only klines with ``confirm: true`` are
closed bars. Trade ids (``i``) are numeric on spot but UUIDs on linear and
not consecutive, so ``sequential_trade_ids`` is False: a reconnect leaves a
hole the stream actor records (Bybit has no REST trade history to fill it).
Book frames carry Bybit's update id ``u`` as ``first_seq``/``last_seq``; a
``snapshot`` (also re-sent by Bybit after a service restart, with ``u`` = 1)
replaces the book.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources.bybit.common import INTERVALS, NAME, WS_URL, category, symbol_to_native
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    Outgoing,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
    undecodable_frame,
)

BOOK_DEPTH: Final = 50
TOPICS_PER_REQUEST: Final = 10  # the spot limit; linear takes the same for simplicity
TOPICS_PER_CONNECTION: Final = 200  # keeps one subscribe burst short and the args well under 21,000 chars
SUBSCRIBE_INTERVAL_S: Final = 0.1
HEARTBEAT_S: Final = 20.0
WATCHDOG_S: Final = 60.0  # a pong arrives every 20 s, so 60 s of silence is a dead link
PING: Final = '{"op":"ping"}'
_SPAN_OF_INTERVAL: Final = {v: k for k, v in INTERVALS.items()}
_SIDES: Final = {"Buy": "buy", "Sell": "sell"}
_ENCODER = msgspec.json.Encoder()


def topic(sub: Subscription) -> str:
    """Bybit topic of a subscription.

    Raises:
        NoCapability: a data type or span Bybit does not stream.
        UnsupportedSymbol: an inverse perpetual.
    """
    native = symbol_to_native(sub.symbol)
    if sub.data_type is DataType.TRADES:
        return f"publicTrade.{native}"
    if sub.data_type is DataType.BOOK:
        return f"orderbook.{BOOK_DEPTH}.{native}"
    if sub.data_type is DataType.OHLC:
        interval = INTERVALS.get(sub.span.label) if sub.span else None
        if interval is None:
            raise NoCapability(NAME, f"live ohlc span {sub.span} (spans: {' '.join(INTERVALS)})")
        return f"kline.{interval}.{native}"
    raise NoCapability(NAME, f"{sub.data_type.value} over ws")


class _Subscribe(msgspec.Struct, frozen=True):
    req_id: str
    op: str
    args: list[str]


def plan_streams(subscriptions: Sequence[Subscription], origin: str = WS_URL) -> list[WsPlan]:
    """Connections for ``subscriptions``: one per category, at most 200 topics each.

    Raises:
        NoCapability, UnsupportedSymbol: see :func:`topic`.
    """
    by_cat: dict[str, dict[str, Subscription]] = {}
    for sub in subscriptions:
        by_cat.setdefault(category(sub.symbol), {}).setdefault(topic(sub), sub)
    plans = []
    for cat, topics in by_cat.items():
        names = list(topics)
        for at in range(0, len(names), TOPICS_PER_CONNECTION):
            chunk = names[at : at + TOPICS_PER_CONNECTION]
            messages = tuple(
                Outgoing(
                    _ENCODER.encode(_Subscribe(str(k + 1), "subscribe", chunk[i : i + TOPICS_PER_REQUEST])).decode(),
                    k * SUBSCRIBE_INTERVAL_S,
                )
                for k, i in enumerate(range(0, len(chunk), TOPICS_PER_REQUEST))
            )
            subs = tuple(topics[name] for name in chunk)
            url = f"{origin.rstrip('/')}/v5/public/{cat}"
            plans.append(WsPlan(url, subs, messages, HEARTBEAT_S, PING, WATCHDOG_S))
    return plans


# --- frames ----------------------------------------------------------------------------------


class _Envelope(msgspec.Struct, frozen=True):
    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent (Raw cannot be Optional)
    op: str | None = None
    success: bool | None = None
    ret_msg: str = ""


class _WsTrade(msgspec.Struct, frozen=True, gc=False):
    T: int
    S: str
    v: str
    p: str
    i: str


class _WsKline(msgspec.Struct, frozen=True, gc=False):
    start: int
    open: str
    close: str
    high: str
    low: str
    volume: str
    turnover: str
    confirm: bool


class _WsBook(msgspec.Struct, frozen=True, gc=False):
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: int


_decode_env = msgspec.json.Decoder(_Envelope).decode
_decode_trades = msgspec.json.Decoder(list[_WsTrade]).decode
_decode_klines = msgspec.json.Decoder(list[_WsKline]).decode
_decode_book = msgspec.json.Decoder(_WsBook).decode


class BybitSession:
    """Parser state of one connection: the topic symbols of its plan."""

    def __init__(self, plan: WsPlan) -> None:
        self._symbols: dict[str, Symbol] = {symbol_to_native(s.symbol): s.symbol for s in plan.subscriptions}

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events of one frame (see the module docstring).

        Raises:
            ProtocolDrift: invalid JSON or a known topic that fails validation.
        """
        try:
            env = _decode_env(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)
        if env.topic is None:
            return [_control(env)]
        kind, _, rest = env.topic.partition(".")
        symbol = self._symbols.get(rest.rpartition(".")[2])
        if symbol is None or not env.data:
            return [Unrecognised(env.topic)]
        try:
            if kind == "publicTrade":
                return [_trades(symbol, _decode_trades(env.data), recv_ns)]
            if kind == "kline":
                return _klines(symbol, rest.partition(".")[0], _decode_klines(env.data))
            if kind == "orderbook":
                return [_book(symbol, env, _decode_book(env.data), recv_ns)]
        except msgspec.ValidationError as exc:
            raise ProtocolDrift(NAME, env.topic, str(exc)) from exc
        except ValueError as exc:  # a price that is not a number, an unknown side
            raise ProtocolDrift(NAME, env.topic, f"bad value: {exc}") from exc
        return [Unrecognised(kind)]


def _control(env: _Envelope) -> StreamEvent:
    if env.op in ("ping", "pong"):
        return ControlAck("pong")
    if env.op is None or env.success is None:
        return Unrecognised("<unknown object>")
    if env.success:
        return ControlAck(env.op)
    return ControlFailed(env.op, env.ret_msg)


def _trades(symbol: Symbol, rows: list[_WsTrade], recv_ns: int) -> TradesReceived:
    trades = []
    for r in rows:
        side = _SIDES.get(r.S)
        if side is None:
            raise ValueError(f"side {r.S!r} is not Buy/Sell")
        trades.append(Trade(r.T * NS_PER_MS, r.i, float(r.p), float(r.v), side, recv_ns))
    return TradesReceived(symbol, trades)


def _klines(symbol: Symbol, interval: str, rows: list[_WsKline]) -> list[StreamEvent]:
    label = _SPAN_OF_INTERVAL.get(interval)
    if label is None:
        return [Unrecognised(f"kline.{interval}")]
    closed = []
    for r in rows:
        if r.confirm:
            o, h, lo, c = float(r.open), float(r.high), float(r.low), float(r.close)
            closed.append(Candle(r.start * NS_PER_MS, o, h, lo, c, float(r.volume), float(r.turnover)))
    return [CandlesClosed(symbol, Span(label), closed)] if closed else []


def _book(symbol: Symbol, env: _Envelope, book: _WsBook, recv_ns: int) -> BookReceived:
    ts = env.ts * NS_PER_MS if env.ts is not None else recv_ns
    bids = [(float(p), float(q)) for p, q in book.b]
    asks = [(float(p), float(q)) for p, q in book.a]
    snap = BookSnapshot(ts, bids, asks, book.u)
    return BookReceived(symbol, snap, env.type == "snapshot", book.u, book.u)


def open_session(plan: WsPlan) -> BybitSession:
    """A fresh parser for one connection of ``plan``."""
    return BybitSession(plan)
