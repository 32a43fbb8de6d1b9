"""OKX v5 public WebSocket, sans-IO: connection plans and a frame parser.

Endpoints: candles and ``trades-all`` live on ``/ws/v5/business``, books on
``/ws/v5/public`` (candle channels on ``/public`` are refused), so a plan has
up to two connections. ``trades-all`` carries one trade per fill with the
consecutive ``tradeId`` the REST history uses, so holes after a reconnect are
provable and refillable (``sequential_trade_ids``); the aggregated ``trades``
channel of the same shape is parsed too (real sessions recorded it).

OKX has no protocol-level ping and closes a connection idle for 30 s: the
plan sends the text ``ping`` every 20 s and the text ``pong`` is liveness.

Books (``books``: a 400-level snapshot, then 100 ms updates where size ``0``
removes a level) are kept per instrument so each update's CRC32 ``checksum``
over the top 25 levels (``bidPx:bidSz:askPx:askSz:...``) can be verified,
and ``prevSeqId`` is checked against the last ``seqId`` when OKX sends them. A
mismatch, or an update before its snapshot, asks for a reconnect
(:class:`~dccd.sources.stream.ReconnectRequested`) instead of passing a wrong
book on. Candles are emitted only when ``confirm`` is ``"1"``; 7-column rows
(older servers) carry no ``confirm`` and are never taken as closed.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence
from typing import Final

import msgspec

from dccd.domain.records import BookSnapshot, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources.okx.common import BARS, NAME, WS_URL, candle_row, symbol_from_native, symbol_to_native
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

PUBLIC: Final = "/ws/v5/public"
BUSINESS: Final = "/ws/v5/business"
ARGS_PER_REQUEST: Final = 100  # keeps a subscribe far below OKX's 64 KiB request limit
ARGS_PER_CONNECTION: Final = 300
SUBSCRIBE_INTERVAL_S: Final = 0.2
HEARTBEAT_S: Final = 20.0  # OKX drops a connection idle for 30 s
WATCHDOG_S: Final = 45.0
CHECKSUM_LEVELS: Final = 25
_SPAN_OF_BAR: Final = {v: k for k, v in BARS.items()}
_ENCODER = msgspec.json.Encoder()


class _Arg(msgspec.Struct, frozen=True, order=True):
    channel: str
    instId: str


def channel(sub: Subscription) -> tuple[str, _Arg]:
    """``(path, arg)`` of a subscription: the endpoint path and its channel argument.

    Raises:
        NoCapability: a data type or span OKX does not stream.
    """
    inst = symbol_to_native(sub.symbol)
    if sub.data_type is DataType.TRADES:
        return BUSINESS, _Arg("trades-all", inst)
    if sub.data_type is DataType.BOOK:
        return PUBLIC, _Arg("books", inst)
    if sub.data_type is DataType.OHLC:
        bar = BARS.get(sub.span.label) if sub.span else None
        if bar is None:
            raise NoCapability(NAME, f"live ohlc span {sub.span} (spans: {' '.join(BARS)})")
        return BUSINESS, _Arg(f"candle{bar}", inst)
    raise NoCapability(NAME, f"{sub.data_type.value} over ws")


class _Op(msgspec.Struct, frozen=True):
    op: str
    args: list[_Arg]


def _subscribe(args: list[_Arg]) -> str:
    return _ENCODER.encode(_Op("subscribe", args)).decode()


def plan_streams(subscriptions: Sequence[Subscription], origin: str = WS_URL) -> list[WsPlan]:
    """Connections for ``subscriptions``: business (trades, candles) and public (books), 300 channels each.

    Raises:
        NoCapability: see :func:`channel`.
    """
    by_path: dict[str, dict[_Arg, Subscription]] = {}
    for sub in subscriptions:
        path, arg = channel(sub)
        by_path.setdefault(path, {}).setdefault(arg, sub)
    plans = []
    for path in (BUSINESS, PUBLIC):
        args = list(by_path.get(path, {}))
        for at in range(0, len(args), ARGS_PER_CONNECTION):
            chunk = args[at : at + ARGS_PER_CONNECTION]
            messages = tuple(
                Outgoing(_subscribe(chunk[i : i + ARGS_PER_REQUEST]), k * SUBSCRIBE_INTERVAL_S)
                for k, i in enumerate(range(0, len(chunk), ARGS_PER_REQUEST))
            )
            subs = tuple(by_path[path][arg] for arg in chunk)
            plans.append(WsPlan(f"{origin.rstrip('/')}{path}", subs, messages, HEARTBEAT_S, "ping", WATCHDOG_S))
    return plans


# --- frames ----------------------------------------------------------------------------------


class _Envelope(msgspec.Struct, frozen=True):
    event: str | None = None
    arg: _Arg | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent (Raw cannot be Optional)
    code: str = ""
    msg: str = ""


class _WsTrade(msgspec.Struct, frozen=True, gc=False):
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str


class _WsBook(msgspec.Struct, frozen=True, gc=False):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str
    checksum: int | None = None
    seqId: int | None = None
    prevSeqId: int | None = None


_decode_env = msgspec.json.Decoder(_Envelope).decode
_decode_trades = msgspec.json.Decoder(list[_WsTrade]).decode
_decode_rows = msgspec.json.Decoder(list[list[str]]).decode
_decode_books = msgspec.json.Decoder(list[_WsBook]).decode


class _Side:
    """One side of a book: ``"px:sz"`` by price, prices kept sorted (best first) for the checksum."""

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, descending: bool) -> None:
        self.sign = -1.0 if descending else 1.0
        self.keys: list[float] = []  # sign * price, ascending
        self.levels: dict[float, str] = {}

    def load(self, rows: list[list[str]]) -> None:
        """Replace the side with a snapshot's levels."""
        sign = self.sign
        self.levels = {sign * float(r[0]): f"{r[0]}:{r[1]}" for r in rows if float(r[1]) != 0.0}
        self.keys = sorted(self.levels)

    def apply(self, rows: list[list[str]]) -> None:
        """Apply an update: size 0 removes a level."""
        keys, levels, sign = self.keys, self.levels, self.sign
        for row in rows:
            key = sign * float(row[0])
            if float(row[1]) == 0.0:
                if levels.pop(key, None) is not None:
                    del keys[bisect.bisect_left(keys, key)]
            else:
                if key not in levels:
                    bisect.insort(keys, key)
                levels[key] = f"{row[0]}:{row[1]}"

    def top(self, n: int) -> list[str]:
        levels = self.levels
        return [levels[k] for k in self.keys[:n]]


class _Book:
    __slots__ = ("asks", "bids", "seq")

    def __init__(self) -> None:
        self.bids, self.asks = _Side(descending=True), _Side(descending=False)
        self.seq: int | None = None

    def checksum(self) -> int:
        """OKX's signed CRC32 of the interleaved top 25 bids and asks (``bidPx:bidSz:askPx:askSz:...``)."""
        bids, asks = self.bids.top(CHECKSUM_LEVELS), self.asks.top(CHECKSUM_LEVELS)
        n = min(len(bids), len(asks))
        parts = [x for pair in zip(bids[:n], asks[:n], strict=True) for x in pair]
        parts += bids[n:] or asks[n:]  # one side may be shorter: the longer one goes on alone
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc


class OkxSession:
    """Parser state of one connection: symbols of its plan and the books being kept."""

    def __init__(self, plan: WsPlan) -> None:
        self._symbols = NativeSymbols(plan.subscriptions, symbol_to_native, symbol_from_native)
        self._books: dict[str, _Book] = {}

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events of one frame (see the module docstring).

        Raises:
            ProtocolDrift: invalid JSON or a known channel that fails validation.
        """
        if frame in ("pong", b"pong"):
            return [ControlAck("pong")]
        try:
            env = _decode_env(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)
        if env.event is not None:
            return [_event(env)]
        if env.arg is None or not env.data:
            return [Unrecognised("<unknown object>")]
        ch, inst = env.arg.channel, env.arg.instId
        symbol = self._symbols.find(inst)
        if symbol is None:
            return [Unrecognised(f"{ch}:{inst}")]
        try:
            if ch in ("trades-all", "trades"):
                return [_trades(symbol, _decode_trades(env.data), recv_ns)]
            if ch.startswith("candle"):
                return _candles(symbol, ch, _decode_rows(env.data))
            if ch == "books":
                return self._book(symbol, inst, env.action, _decode_books(env.data))
        except msgspec.ValidationError as exc:
            raise ProtocolDrift(NAME, ch, str(exc)) from exc
        except ValueError as exc:  # a price that is not a number, an unknown side
            raise ProtocolDrift(NAME, ch, f"bad value: {exc}") from exc
        return [Unrecognised(ch)]

    def _book(self, symbol: Symbol, inst: str, action: str | None, books: list[_WsBook]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for data in books:
            snapshot = action == "snapshot"
            state = _Book() if snapshot else self._books.get(inst)
            if state is None:
                return [ReconnectRequested(f"okx books {inst}: update before snapshot")]
            if not snapshot and data.prevSeqId is not None and state.seq is not None and data.prevSeqId != state.seq:
                del self._books[inst]
                return [ReconnectRequested(f"okx books {inst}: prevSeqId {data.prevSeqId} != seqId {state.seq}")]
            if snapshot:
                state.bids.load(data.bids)
                state.asks.load(data.asks)
            else:
                state.bids.apply(data.bids)
                state.asks.apply(data.asks)
            state.seq = data.seqId
            if data.checksum is not None and state.checksum() != data.checksum:
                self._books.pop(inst, None)
                return [ReconnectRequested(f"okx books {inst}: checksum mismatch")]
            self._books[inst] = state
            bids = [(float(r[0]), float(r[1])) for r in data.bids]
            asks = [(float(r[0]), float(r[1])) for r in data.asks]
            ts = int(data.ts) * NS_PER_MS
            out.append(BookReceived(symbol, BookSnapshot(ts, bids, asks, data.seqId), snapshot))
        return out


def _event(env: _Envelope) -> StreamEvent:
    if env.event in ("subscribe", "unsubscribe"):
        arg = f" {env.arg.channel}:{env.arg.instId}" if env.arg else ""
        return ControlAck(f"{env.event}{arg}")
    if env.event == "error":
        return ControlFailed(env.code, env.msg)
    if env.event == "notice":  # e.g. 64008: the connection will close for a service upgrade
        return ReconnectRequested(f"okx notice {env.code}: {env.msg}")
    return ControlAck(env.event or "")


def _trades(symbol: Symbol, rows: list[_WsTrade], recv_ns: int) -> TradesReceived:
    trades = []
    for r in rows:
        if r.side not in ("buy", "sell"):
            raise ValueError(f"side {r.side!r} is not buy/sell")
        trades.append(Trade(int(r.ts) * NS_PER_MS, r.tradeId, float(r.px), float(r.sz), r.side, recv_ns))
    return TradesReceived(symbol, trades)


def _candles(symbol: Symbol, ch: str, rows: list[list[str]]) -> list[StreamEvent]:
    label = _SPAN_OF_BAR.get(ch[len("candle") :])
    if label is None:
        return [Unrecognised(ch)]
    swap = symbol.is_perp
    closed = []
    for i, row in enumerate(rows):
        candle, _ = candle_row(row, swap, ch, f"$.data[{i}]")
        if len(row) >= 9 and row[8] == "1":  # a 7-column row cannot say it is final
            closed.append(candle)
    return [CandlesClosed(symbol, Span(label), closed)] if closed else []


def open_session(plan: WsPlan) -> OkxSession:
    """A fresh parser for one connection of ``plan``."""
    return OkxSession(plan)
