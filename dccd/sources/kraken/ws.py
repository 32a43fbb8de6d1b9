"""Kraken spot WebSocket v2, sans-IO (``wss://ws.kraken.com/v2``).

v2 is used for live data because its trades carry ``trade_id`` (sequential
per pair, the REST ids too), while v1 trades have no id; v2 also names BTC
and DOGE canonically (``BTC/USD``), stamps messages in RFC 3339 and
checksums book snapshots. A recorded v1 session (``wss://ws.kraken.com``)
still parses: :func:`open_session` picks :mod:`dccd.sources.kraken.ws_v1`
for a plan whose URL does not end in ``/v2``.

Subscriptions: ``{"method":"subscribe","params":{"channel":"trade",
"symbol":[...],"snapshot":true},"req_id":N}``, one message per channel (and
interval / depth), paced 0.1 s apart; ``ohlc`` takes ``interval`` minutes,
``book`` a ``depth``. Acks are ``{"method":"subscribe","success":...}`` per
symbol; failures become :class:`ControlFailed`.

Heartbeat: the server sends ``{"channel":"heartbeat"}`` about once a second
on a connection with subscriptions, so a 10 s watchdog detects a dead feed;
no client ping is needed.

Trades: ``side`` is the taker's; ``type: snapshot`` (the last 50 trades on
subscribe) is marked ``snapshot``. A hole in ``trade_id`` after a reconnect
is refilled over REST from ``trades_cursor_after(last trade)``.

OHLC: updates carry the bar in progress (``interval_begin`` = open time). A
bar is emitted as closed once an update for a later bar of the same symbol
and interval arrives, with the last values seen for it; snapshot rows are
handled the same way, so every bar but the newest is closed at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from dccd.domain.capability import Transport
from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.base import decode
from dccd.sources.isotime import iso_ns
from dccd.sources.kraken.common import CAPABILITIES, INTERVALS, NAME, SPANS_BY_MINUTES, symbol_from_native
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    HeartbeatReceived,
    NativeSymbols,
    Outgoing,
    StreamEvent,
    StreamSession,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
    undecodable_frame,
)

V2_PATH: Final = "/v2"
BOOK_DEPTH: Final = 100  # one of 10 25 100 500 1000
# Not documented by Kraken: a moderate number of symbols per connection and paced subscribes.
MAX_SUBSCRIPTIONS_PER_CONNECTION: Final = 100
SUBSCRIBE_INTERVAL_S: Final = 0.1
WATCHDOG_S: Final = 10.0
_ENCODER = msgspec.json.Encoder()


def ws_symbol(symbol: Symbol) -> str:
    """``BTC/USD`` as WS v2 names it (canonical assets: BTC, DOGE).

    Raises:
        UnsupportedSymbol: a perpetual.
    """
    if symbol.market is not None:
        raise UnsupportedSymbol(NAME, str(symbol), f"is a {symbol.market} market; kraken spot lists spot pairs only")
    return f"{symbol.base}/{symbol.quote}"


def build_subscribe(channel: str, symbols: Sequence[str], req_id: int, **extra: int) -> str:
    """``{"method":"subscribe","params":{"channel":..,"symbol":[..],"snapshot":true,..},"req_id":N}``."""
    params: dict[str, Any] = {"channel": channel, "symbol": list(symbols), **extra, "snapshot": True}
    return _ENCODER.encode({"method": "subscribe", "params": params, "req_id": req_id}).decode()


def _key(sub: Subscription) -> tuple[str, tuple[tuple[str, int], ...]]:
    """(channel, extra params) of one subscription; raises NoCapability for what Kraken does not stream."""
    if sub.data_type is DataType.OHLC and sub.span is None:
        raise NoCapability(NAME, "ohlc over ws without a span")
    CAPABILITIES.require(sub.data_type, Transport.WS, sub.span)
    if sub.data_type is DataType.OHLC:
        assert sub.span is not None
        return "ohlc", (("interval", INTERVALS[sub.span.label]),)
    if sub.data_type is DataType.BOOK:
        return "book", (("depth", BOOK_DEPTH),)
    return "trade", ()


def plan_streams(subscriptions: Sequence[Subscription], origin: str) -> list[WsPlan]:
    """Connections of at most 100 subscriptions on ``{origin}/v2``, one paced subscribe per channel.

    Raises:
        NoCapability: a data type or span Kraken does not stream.
        UnsupportedSymbol: a perpetual.
    """
    subs = sorted(set(subscriptions))
    keys = [_key(s) for s in subs]
    url = origin.rstrip("/") + V2_PATH
    plans = []
    req_id = 1
    for at in range(0, len(subs), MAX_SUBSCRIPTIONS_PER_CONNECTION):
        chunk = list(zip(subs[at : at + MAX_SUBSCRIPTIONS_PER_CONNECTION], keys[at:], strict=False))
        groups: dict[tuple[str, tuple[tuple[str, int], ...]], list[str]] = {}
        for sub, key in chunk:
            groups.setdefault(key, []).append(ws_symbol(sub.symbol))
        messages = []
        for k, ((channel, extra), symbols) in enumerate(groups.items()):
            messages.append(
                Outgoing(build_subscribe(channel, symbols, req_id, **dict(extra)), k * SUBSCRIBE_INTERVAL_S)
            )
            req_id += 1
        plans.append(WsPlan(url, tuple(s for s, _ in chunk), tuple(messages), watchdog_s=WATCHDOG_S))
    return plans


def open_session(plan: WsPlan) -> StreamSession:
    """The v2 parser for ``.../v2`` URLs, else the v1 parser (recorded ``wss://ws.kraken.com`` sessions)."""
    if urlsplit(plan.url).path.rstrip("/").endswith(V2_PATH):
        return KrakenSession(plan)
    from dccd.sources.kraken.ws_v1 import KrakenV1Session

    return KrakenV1Session(plan)


# --- wire views (tagged on `channel`) ------------------------------------------------------------


class _TradeRow(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    side: str
    price: float
    qty: float
    trade_id: int
    timestamp: str


class _OhlcRow(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    interval_begin: str
    interval: int
    trades: int | None = None


class _Level(msgspec.Struct, frozen=True, gc=False):
    price: float
    qty: float


class _BookRow(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    bids: list[_Level] = []
    asks: list[_Level] = []
    timestamp: str | None = None


class _TradeMsg(msgspec.Struct, tag_field="channel", tag="trade", frozen=True, gc=False):
    type: str
    data: list[_TradeRow]


class _OhlcMsg(msgspec.Struct, tag_field="channel", tag="ohlc", frozen=True, gc=False):
    type: str
    data: list[_OhlcRow]


class _BookMsg(msgspec.Struct, tag_field="channel", tag="book", frozen=True, gc=False):
    type: str
    data: list[_BookRow]


class _HeartbeatMsg(msgspec.Struct, tag_field="channel", tag="heartbeat", frozen=True):
    pass


class _StatusMsg(msgspec.Struct, tag_field="channel", tag="status", frozen=True):
    data: list[dict[str, Any]] = []


_Msg = _TradeMsg | _OhlcMsg | _BookMsg | _HeartbeatMsg | _StatusMsg
_DECODER = msgspec.json.Decoder(_Msg)
_decode = _DECODER.decode
_CHANNELS: Final = frozenset(("trade", "ohlc", "book", "heartbeat", "status"))


class _Probe(msgspec.Struct):
    channel: Any = None
    method: Any = None
    success: Any = None
    error: Any = None
    result: Any = None


_probe = msgspec.json.Decoder(_Probe).decode


class KrakenSession:
    """Parser state of one v2 connection: symbol names and the bar in progress per (symbol, interval)."""

    def __init__(self, plan: WsPlan | None = None) -> None:
        self._symbols = NativeSymbols(plan.subscriptions if plan is not None else (), ws_symbol, symbol_from_native)
        self._open_bars: dict[tuple[str, int], Candle] = {}

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events of one frame.

        Raises:
            ProtocolDrift: invalid JSON, or a known message that fails validation.
        """
        try:
            msg = _decode(frame)
        except msgspec.DecodeError:  # ValidationError included
            return self._other(frame)
        try:
            if isinstance(msg, _TradeMsg):
                return self._trades(msg, recv_ns)
            if isinstance(msg, _OhlcMsg):
                return self._ohlc(msg)
            if isinstance(msg, _BookMsg):
                return self._book(msg, recv_ns)
        except (ValueError, UnsupportedSymbol) as exc:
            raise ProtocolDrift(NAME, f"ws {type(msg).__name__[1:-3].lower()}", str(exc)) from exc
        if isinstance(msg, _HeartbeatMsg):
            return [HeartbeatReceived()]
        system = msg.data[0].get("system") if msg.data else None
        return [ControlAck(f"status {system}")]

    def _trades(self, msg: _TradeMsg, recv_ns: int) -> list[StreamEvent]:
        snapshot = msg.type == "snapshot"
        by_symbol: dict[str, list[Trade]] = {}
        for r in msg.data:
            if r.side not in ("buy", "sell"):
                raise ValueError(f"side {r.side!r} is not buy/sell")
            trade = Trade(iso_ns(r.timestamp), str(r.trade_id), r.price, r.qty, r.side, recv_ns)
            by_symbol.setdefault(r.symbol, []).append(trade)
        return [TradesReceived(self._symbols.get(s), t, snapshot) for s, t in by_symbol.items()]

    def _ohlc(self, msg: _OhlcMsg) -> list[StreamEvent]:
        closed: dict[tuple[str, int], list[Candle]] = {}
        for r in sorted(msg.data, key=lambda row: row.interval_begin):
            if r.interval not in SPANS_BY_MINUTES:
                raise ValueError(f"interval {r.interval} is not a Kraken interval")
            bar = Candle(iso_ns(r.interval_begin), r.open, r.high, r.low, r.close, r.volume, None, r.trades)
            key = (r.symbol, r.interval)
            pending = self._open_bars.get(key)
            if pending is not None and bar.ts < pending.ts:
                continue  # a late update of a bar already closed
            if pending is not None and bar.ts > pending.ts:
                closed.setdefault(key, []).append(pending)
            self._open_bars[key] = bar
        return [CandlesClosed(self._symbols.get(s), SPANS_BY_MINUTES[m], c) for (s, m), c in closed.items()]

    def _book(self, msg: _BookMsg, recv_ns: int) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for r in msg.data:
            ts = iso_ns(r.timestamp) if r.timestamp else recv_ns
            book = BookSnapshot(ts, [(lv.price, lv.qty) for lv in r.bids], [(lv.price, lv.qty) for lv in r.asks])
            out.append(BookReceived(self._symbols.get(r.symbol), book, snapshot=msg.type == "snapshot"))
        return out

    def _other(self, frame: bytes | str) -> list[StreamEvent]:
        try:
            probe = _probe(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)
        if probe.channel in _CHANNELS:
            decode(_DECODER, frame, NAME, f"ws {probe.channel}")  # known but refused by the fast path: drift
        if isinstance(probe.method, str):
            if probe.success is False:
                return [ControlFailed(probe.method, str(probe.error or ""))]
            target = probe.result.get("symbol", "") if isinstance(probe.result, dict) else ""
            return [ControlAck(f"{probe.method} {target}".strip())]
        return [Unrecognised(str(probe.channel) if isinstance(probe.channel, str) else "<no channel>")]
