"""Binance spot WebSocket market streams, sans-IO.

Builds stream names, combined-stream URLs and SUBSCRIBE/UNSUBSCRIBE control
messages (with a planner that respects Binance's per-connection limits), and
parses frames straight from their bytes into the generic events of
:mod:`dccd.sources.stream` (the only event vocabulary: there is no
Binance-specific one).

:func:`plan_streams` and :class:`BinanceSession` are the
:class:`~dccd.sources.stream.StreamAdapter` side; :func:`parse_frame` parses
a frame of any market without a plan.

The parser decodes each frame once with a msgspec tagged union (``e`` is the
tag), inside the combined wrapper ``{"stream": ..., "data": {...}}`` or bare
(``/ws`` raw streams). Anything else takes a slow path that sorts it into a
control reply, an :class:`~dccd.sources.stream.Unrecognised` frame (counted by
the caller) or a :class:`~dccd.errors.ProtocolDrift` carrying msgspec's
``$.path``.

Over 500 lines for one reason: the stream planner (URL and per-connection limits) and the session's
per-frame fast path share the stream-name vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import SPAN_LABELS, Span
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.base import decode
from dccd.sources.binance.common import NAME, WS_URL, symbol_from_native
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    Outgoing,
    ReconnectRequested,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
    undecodable_frame,
)

# Limits from web-socket-streams.md (SPEC §1 WebSocket).
MAX_STREAMS_PER_CONNECTION: Final = 1024
MAX_INCOMING_MSGS_PER_S: Final = 5  # pings, pongs and control messages all count
CONTROL_INTERVAL_S: Final = 0.25  # 4 control messages/s leaves room for our pongs
CONNECTION_LIFETIME_S: Final = 24 * 3600  # the server cuts every connection at 24 h
ROTATE_AFTER_S: Final = CONNECTION_LIFETIME_S - 30 * 60  # open the replacement 30 min early
SERVER_PING_INTERVAL_S: Final = 20
MAX_CONNECTS_PER_5MIN: Final = 300
# Not documented by Binance: conservative sizes so no URL or frame gets refused.
MAX_URL_LEN: Final = 2000
MAX_PARAMS_PER_MESSAGE: Final = 200

KLINE_INTERVALS: Final = SPAN_LABELS  # Binance offers exactly dccd's spans
_STREAM = re.compile(r"^(?:[a-z0-9]+@[A-Za-z0-9_@]+|![A-Za-z0-9_@]+)$")
_MS: Final = 1_000_000


# --- stream names and URLs -------------------------------------------------------------------


def ws_market(symbol: Symbol) -> str:
    """Binance spot market name of a canonical symbol (``BTC/USDT`` -> ``BTCUSDT``).

    Raises:
        UnsupportedSymbol: perpetuals live on the futures host, not this one.
    """
    if symbol.market is not None:
        raise UnsupportedSymbol(NAME, str(symbol), "is not a spot market (spot WebSocket only)")
    return f"{symbol.base}{symbol.quote}"


def trade_stream(market: str) -> str:
    """``<market>@trade``: every trade, id ``t`` consecutive per symbol."""
    return f"{market.lower()}@trade"


def agg_trade_stream(market: str) -> str:
    """``<market>@aggTrade``: aggregate trades, id ``a`` consecutive per symbol."""
    return f"{market.lower()}@aggTrade"


def kline_stream(market: str, interval: str) -> str:
    """``<market>@kline_<interval>``.

    Raises:
        ValueError: not a Binance kline interval.
    """
    if interval not in KLINE_INTERVALS:
        raise ValueError(f"{interval!r} is not a Binance kline interval ({' '.join(KLINE_INTERVALS)})")
    return f"{market.lower()}@kline_{interval}"


def depth_stream(market: str, update_ms: int = 1000) -> str:
    """Diff-depth stream: ``<market>@depth`` (1000 ms) or ``<market>@depth@100ms``.

    Raises:
        ValueError: update speed other than 1000 or 100 ms.
    """
    if update_ms == 1000:
        return f"{market.lower()}@depth"
    if update_ms == 100:
        return f"{market.lower()}@depth@100ms"
    raise ValueError(f"depth update speed must be 1000 or 100 ms, got {update_ms}")


def _check_streams(streams: Sequence[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for name in streams:
        if not isinstance(name, str) or not _STREAM.match(name):
            raise ValueError(f"{name!r} is not a Binance stream name (lowercase symbol, e.g. 'btcusdt@trade')")
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def build_stream_url(streams: Sequence[str], origin: str = WS_URL) -> str:
    """Combined-stream URL ``{origin}/stream?streams=a/b/c`` (bare ``/stream`` when empty).

    Raises:
        ValueError: a malformed stream name.
    """
    names = _check_streams(streams)
    base = f"{origin.rstrip('/')}/stream"
    return f"{base}?streams={'/'.join(names)}" if names else base


def build_raw_url(origin: str = WS_URL, stream: str | None = None) -> str:
    """Raw-stream URL ``{origin}/ws`` or ``{origin}/ws/<stream>`` (frames without wrapper)."""
    base = f"{origin.rstrip('/')}/ws"
    return f"{base}/{_check_streams([stream])[0]}" if stream else base


# --- control messages ------------------------------------------------------------------------


class _Request(msgspec.Struct, frozen=True):
    method: str
    params: list[str] | None
    id: int


_ENCODER = msgspec.json.Encoder()


def _control(method: str, streams: Sequence[str] | None, request_id: int) -> str:
    if not isinstance(request_id, int) or isinstance(request_id, bool) or request_id < 0:
        raise ValueError(f"request id must be an unsigned integer, got {request_id!r}")
    params = None if streams is None else _check_streams(streams)
    if params is not None and not params:
        raise ValueError(f"{method} needs at least one stream")
    return _ENCODER.encode(_Request(method, params, request_id)).decode()


def build_subscribe(streams: Sequence[str], request_id: int) -> str:
    """``{"method":"SUBSCRIBE","params":[...],"id":N}``; the reply is ``{"result":null,"id":N}``."""
    return _control("SUBSCRIBE", streams, request_id)


def build_unsubscribe(streams: Sequence[str], request_id: int) -> str:
    """``{"method":"UNSUBSCRIBE","params":[...],"id":N}``."""
    return _control("UNSUBSCRIBE", streams, request_id)


def build_list_subscriptions(request_id: int) -> str:
    """``LIST_SUBSCRIPTIONS``; the reply's ``result`` is the list of active streams."""
    return _control("LIST_SUBSCRIPTIONS", None, request_id)


class ControlMessage(msgspec.Struct, frozen=True):
    """A control message to send ``delay_s`` after the connection opened."""

    id: int
    text: str
    streams: tuple[str, ...]
    delay_s: float


class ConnectionPlan(msgspec.Struct, frozen=True):
    """One connection: its URL, every stream it carries and the SUBSCRIBEs to send."""

    url: str
    streams: tuple[str, ...]
    subscribes: tuple[ControlMessage, ...]


def plan_connections(
    streams: Sequence[str],
    *,
    origin: str = WS_URL,
    max_streams: int = MAX_STREAMS_PER_CONNECTION,
    max_url_len: int = MAX_URL_LEN,
    max_params: int = MAX_PARAMS_PER_MESSAGE,
    interval_s: float = CONTROL_INTERVAL_S,
    first_request_id: int = 1,
) -> list[ConnectionPlan]:
    """Split streams across connections and pace the SUBSCRIBEs each one needs.

    Each connection carries at most ``max_streams`` streams. As many as fit in
    ``max_url_len`` go in the combined URL; the rest are subscribed in messages
    of at most ``max_params`` streams, ``interval_s`` apart (Binance allows 5
    incoming messages/s per connection, pongs included). Request ids are unique
    across the plan. Duplicate stream names are dropped.

    Raises:
        ValueError: a malformed stream name, or limits outside Binance's.
    """
    if not 1 <= max_streams <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"max_streams must be 1..{MAX_STREAMS_PER_CONNECTION}, got {max_streams}")
    if max_params < 1 or interval_s < 1 / MAX_INCOMING_MSGS_PER_S:
        raise ValueError(f"need max_params >= 1 and interval_s >= {1 / MAX_INCOMING_MSGS_PER_S}s")
    names = _check_streams(streams)
    base = f"{origin.rstrip('/')}/stream"
    plans: list[ConnectionPlan] = []
    request_id = first_request_id
    for start in range(0, len(names), max_streams):
        chunk = names[start : start + max_streams]
        url, n_url = base, 0
        for name in chunk:
            candidate = f"{url}{'/' if n_url else '?streams='}{name}"
            if len(candidate) > max_url_len:
                break
            url, n_url = candidate, n_url + 1
        rest = chunk[n_url:]
        messages = []
        for k, at in enumerate(range(0, len(rest), max_params)):
            part = rest[at : at + max_params]
            messages.append(ControlMessage(request_id, build_subscribe(part, request_id), tuple(part), k * interval_s))
            request_id += 1
        plans.append(ConnectionPlan(url, tuple(chunk), tuple(messages)))
    return plans


# --- frame parser ----------------------------------------------------------------------------
# Private views of the wire schema; field names are Binance's one-letter keys.


class _TradeMsg(msgspec.Struct, tag_field="e", tag="trade", frozen=True, gc=False):
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool


class _AggTradeMsg(msgspec.Struct, tag_field="e", tag="aggTrade", frozen=True, gc=False):
    s: str
    a: int
    p: str
    q: str
    f: int
    last: int = msgspec.field(name="l")
    T: int
    m: bool


class _Kline(msgspec.Struct, frozen=True, gc=False):
    t: int
    i: str
    o: str
    c: str
    h: str
    low: str = msgspec.field(name="l")
    v: str
    n: int
    x: bool
    q: str


class _KlineMsg(msgspec.Struct, tag_field="e", tag="kline", frozen=True, gc=False):
    s: str
    k: _Kline


class _DepthMsg(msgspec.Struct, tag_field="e", tag="depthUpdate", frozen=True, gc=False):
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]


class _ShutdownMsg(msgspec.Struct, tag_field="e", tag="serverShutdown", frozen=True, gc=False):
    E: int


_Data = _TradeMsg | _AggTradeMsg | _KlineMsg | _DepthMsg | _ShutdownMsg
_TAGS: Final = frozenset({"trade", "aggTrade", "kline", "depthUpdate", "serverShutdown"})


class _Combined(msgspec.Struct, frozen=True, gc=False):
    stream: str
    data: _Data


class _Probe(msgspec.Struct):
    """Loose view of any JSON object frame, for the slow path only."""

    stream: Any = None
    data: Any = None
    e: Any = None
    id: Any = None
    result: Any = msgspec.UNSET
    error: Any = None
    code: Any = None
    msg: Any = None


_COMBINED = msgspec.json.Decoder(_Combined)
_RAW = msgspec.json.Decoder(_Data)
_decode_combined = _COMBINED.decode
_decode_probe = msgspec.json.Decoder(_Probe).decode


def _control_reply(probe: _Probe) -> StreamEvent:
    rid = probe.id if isinstance(probe.id, int | str) and not isinstance(probe.id, bool) else None
    if probe.result is not msgspec.UNSET and probe.error is None and probe.code is None:
        result = "" if probe.result is None else f" {_ENCODER.encode(probe.result).decode()}"
        return ControlAck(f"id {rid}{result}")
    # Documented as {"code":2,"msg":...}; live servers wrap it: {"error":{"code":2,"msg":...},"id":1}.
    err = probe.error if isinstance(probe.error, dict) else {"code": probe.code, "msg": probe.msg}
    code = err.get("code")
    return ControlFailed(str(code if isinstance(code, int) else None), f"{err.get('msg', '')} (request id {rid})")


# --- the StreamAdapter side: plans and sessions emitting generic events ----------------------

HEARTBEAT_S: Final = 60.0  # our protocol ping (Binance counts it against the 5 msgs/s; once a minute is nothing)
WATCHDOG_S: Final = 90.0  # a quiet @trade stream of an illiquid pair can idle for a minute
BOOK_UPDATE_MS: Final = 100


def stream_name(sub: Subscription) -> str:
    """The Binance stream carrying one subscription.

    Trades use ``@trade`` (ids ``t`` equal ``historicalTrades`` ids, so REST can
    refill a hole id for id), OHLC ``@kline_<span>``, books ``@depth@100ms``.

    Raises:
        UnsupportedSymbol: a symbol that is not a spot market.
        NoCapability: a data type Binance spot does not stream, or OHLC without a span.
    """
    market = ws_market(sub.symbol)
    if sub.data_type is DataType.TRADES:
        return trade_stream(market)
    if sub.data_type is DataType.OHLC:
        if sub.span is None:
            raise NoCapability(NAME, "ohlc over ws without a span")
        return kline_stream(market, sub.span.label)
    if sub.data_type is DataType.BOOK:
        return depth_stream(market, BOOK_UPDATE_MS)
    raise NoCapability(NAME, f"{sub.data_type.value} over ws")


def plan_streams(subscriptions: Sequence[Subscription], origin: str = WS_URL) -> list[WsPlan]:
    """Connections for ``subscriptions`` (:func:`plan_connections` keeps Binance's limits).

    Raises:
        UnsupportedSymbol, NoCapability: see :func:`stream_name`.
    """
    by_name: dict[str, Subscription] = {}
    for sub in subscriptions:
        by_name.setdefault(stream_name(sub), sub)
    return [
        WsPlan(
            url=p.url,
            subscriptions=tuple(by_name[name] for name in p.streams),
            on_open=tuple(Outgoing(m.text, m.delay_s) for m in p.subscribes),
            heartbeat_s=HEARTBEAT_S,
            watchdog_s=WATCHDOG_S,
            rotate_after_s=float(ROTATE_AFTER_S),
        )
        for p in plan_connections(list(by_name), origin=origin)
    ]


class _TradeFast(msgspec.Struct, tag_field="e", tag="trade", frozen=True, gc=False):
    s: str
    t: int
    p: float
    q: float
    T: int
    m: bool


class _TradeEnvelope(msgspec.Struct, frozen=True, gc=False):
    stream: str
    data: _TradeFast


# Prices arrive as decimal strings; strict=False has msgspec convert them while decoding (correctly rounded,
# equal to float()). It would also take "t":"5" for an int: tolerated on this one view, used only where every
# frame is expected to be a trade; anything it refuses goes through the strict general path.
_decode_trade = msgspec.json.Decoder(_TradeEnvelope, strict=False).decode


class BinanceSession:
    """Parser of one connection: frames -> generic :mod:`dccd.sources.stream` events.

    Combined-stream frames (``{"stream": ..., "data": {...}}``) take the fast
    path: one decode with a tagged union; on a trades-only connection trade
    frames take a narrower one still (one decode, one :class:`Trade`). Raw
    (``/ws``) frames, control replies, unknown frames and drift take a slow
    path that sorts them. Frames of a market this connection did not
    subscribe are :class:`~dccd.sources.stream.Unrecognised`, unless
    ``any_market`` maps every market name (``BTCUSDT`` -> ``BTC/USDT``).
    """

    def __init__(self, subscriptions: Sequence[Subscription], *, any_market: bool = False) -> None:
        self._symbols: dict[str, Symbol] = {ws_market(s.symbol): s.symbol for s in subscriptions}
        self._trades_only = bool(subscriptions) and all(s.data_type is DataType.TRADES for s in subscriptions)
        self._any_market = any_market

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events in one frame.

        Args:
            frame: the message as received (text or bytes).
            recv_ns: local receive time, ns UTC; stored as ``recv_ts`` on trades.

        Raises:
            ProtocolDrift: invalid JSON, or a known event that fails validation
                (the message names msgspec's ``$.path``).
        """
        if self._trades_only:
            try:
                fast = _decode_trade(frame)
            except msgspec.DecodeError:
                pass  # a control reply, another event or drift: the general path decides
            else:
                t = fast.data
                symbol = self._symbols.get(t.s)
                if symbol is not None:
                    side = "sell" if t.m else "buy"  # m = buyer is maker, so the taker sold
                    return [TradesReceived(symbol, [Trade(t.T * _MS, str(t.t), t.p, t.q, side, recv_ns)])]
        try:
            env = _decode_combined(frame)
        except msgspec.DecodeError:  # ValidationError included: not a data frame we know
            return self._other(frame, recv_ns)
        d = env.data
        if type(d) is _TradeMsg and (symbol := self._symbols.get(d.s)) is not None:  # the hot path, inline
            try:
                price, qty = float(d.p), float(d.q)
            except ValueError as exc:
                raise ProtocolDrift(NAME, env.stream, f"bad number: {exc}") from exc
            # m = buyer is maker, so the taker sold.
            return [TradesReceived(symbol, [Trade(d.T * _MS, str(d.t), price, qty, "sell" if d.m else "buy", recv_ns)])]
        return self._events(d, env.stream, recv_ns)

    def _events(self, d: _Data, stream: str, recv_ns: int) -> list[StreamEvent]:
        """Generic events of one decoded Binance event (``stream`` names it in errors; empty for raw frames).

        Trades and aggregate trades give :class:`TradesReceived`, a closed kline
        :class:`CandlesClosed` (a bar still in progress gives nothing: liveness
        only, never stored), a diff-depth event a :class:`BookReceived` delta
        with its update ids, ``serverShutdown`` :class:`ReconnectRequested`.
        """
        # ``type(d) is`` rather than isinstance: this is the per-frame path, and Struct isinstance costs more.
        if type(d) is _ShutdownMsg:
            return [ReconnectRequested("serverShutdown")]
        market: str = d.s  # type: ignore[union-attr]  # every other event names its market
        symbol = self._symbols.get(market) or self._learn(market)
        if symbol is None:
            return [Unrecognised(stream or market)]
        try:
            if type(d) is _TradeMsg:  # m = buyer is maker, so the taker sold
                trade = Trade(d.T * _MS, str(d.t), float(d.p), float(d.q), "sell" if d.m else "buy", recv_ns)
                return [TradesReceived(symbol, [trade])]
            if type(d) is _AggTradeMsg:
                trade = Trade(d.T * _MS, str(d.a), float(d.p), float(d.q), "sell" if d.m else "buy", recv_ns)
                return [TradesReceived(symbol, [trade])]
            if type(d) is _KlineMsg:
                k = d.k
                if not k.x:
                    return []
                candle = Candle(
                    k.t * _MS, float(k.o), float(k.h), float(k.low), float(k.c), float(k.v), float(k.q), k.n
                )
                return [CandlesClosed(symbol, Span(k.i), [candle])]
            if type(d) is _DepthMsg:
                bids = [(float(p), float(q)) for p, q in d.b]
                asks = [(float(p), float(q)) for p, q in d.a]
                return [BookReceived(symbol, BookSnapshot(d.E * _MS, bids, asks, d.u), False, d.U, d.u)]
        except ValueError as exc:  # a price that is not a number, an interval that is not a span
            raise ProtocolDrift(NAME, stream or "ws", f"bad number: {exc}") from exc
        raise AssertionError(f"unhandled Binance event {type(d).__name__}")  # _Data has no other member

    def _learn(self, market: str) -> Symbol | None:
        """The symbol of a market this connection did not subscribe: mapped and remembered if ``any_market``."""
        if not self._any_market:
            return None
        try:
            symbol = self._symbols[market] = symbol_from_native(market)
        except UnsupportedSymbol:
            return None
        return symbol

    def _other(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Slow path: raw frames, control replies, unknown frames, drift."""
        try:
            probe = _decode_probe(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)
        if isinstance(probe.stream, str):
            e = probe.data.get("e") if isinstance(probe.data, dict) else None
            if e not in _TAGS:
                return [Unrecognised(probe.stream)]
            return self._reparse(frame, recv_ns, _COMBINED, probe.stream)
        if probe.e is not None:
            if probe.e not in _TAGS:
                return [Unrecognised(str(probe.e))]
            return self._reparse(frame, recv_ns, _RAW, "")
        if probe.result is not msgspec.UNSET or probe.error is not None or probe.code is not None:
            return [_control_reply(probe)]
        return [Unrecognised("<unknown object>")]

    def _reparse(self, frame: bytes | str, recv_ns: int, decoder: Any, stream: str) -> list[StreamEvent]:
        msg = decode(decoder, frame, NAME, stream or "ws")  # a known event the fast path refused: drift
        data = msg.data if isinstance(msg, _Combined) else msg
        return self._events(data, stream, recv_ns)


def open_session(plan: WsPlan) -> BinanceSession:
    """A fresh parser for one connection of ``plan``."""
    return BinanceSession(plan.subscriptions)


_ANY_MARKET: Final = BinanceSession((), any_market=True)


# Events in one frame of any market, without a plan (tools, tests, benchmarks): the contract of
# BinanceSession.parse, every market name mapped to its symbol (one that cannot be mapped is Unrecognised).
parse_frame: Final = _ANY_MARKET.parse
