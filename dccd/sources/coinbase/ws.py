"""Coinbase Exchange WebSocket feed, sans-IO (``wss://ws-feed.exchange.coinbase.com``).

Subscription rules (SPEC §2a): the server disconnects a client that has not
subscribed within **5 s**, so each plan sends its one ``subscribe`` message
at once (``delay_s`` 0). Channels:

- ``matches`` for trades: ``match`` messages, plus one ``last_match`` (the
  newest trade before subscribing, marked ``snapshot``). ``side`` is the
  maker's, so events carry the opposite (taker) side. ``trade_id`` is
  contiguous per product and shared with REST, so a hole after a reconnect is
  refilled with :func:`dccd.sources.coinbase.build_trades` by id.
- ``level2_batch`` for the book (``snapshot`` then ``l2update`` changes,
  50 ms batches); ``level2`` itself needs authentication since 2023, and both
  carry the same message shapes, so the parser reads either (the 2021
  recording is ``level2``).
- ``heartbeat`` for every product: one message a second per product keeps
  the connection observably alive even for a quiet product, so the watchdog
  fires after 10 s of silence. No client ping is needed.

There is no candle channel on this feed: OHLC over WS raises NoCapability.
Frames are decoded once with a msgspec tagged union on ``type``; ``ticker``,
``status`` and other unused types become :class:`Unrecognised`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from dccd.domain.records import BookSnapshot, DataType, Trade
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.base import decode
from dccd.sources.coinbase.common import NAME, TAKER_SIDE, symbol_from_native, symbol_to_native
from dccd.sources.isotime import iso_ns
from dccd.sources.stream import (
    BookReceived,
    ControlAck,
    ControlFailed,
    HeartbeatReceived,
    NativeSymbols,
    Outgoing,
    StreamEvent,
    Subscription,
    TradesReceived,
    Unrecognised,
    WsPlan,
    undecodable_frame,
)

CHANNELS: Final[dict[DataType, str]] = {DataType.TRADES: "matches", DataType.BOOK: "level2_batch"}
# Not a documented limit: keeps one subscribe message and one connection's traffic moderate.
MAX_PRODUCTS_PER_CONNECTION: Final = 100
WATCHDOG_S: Final = 10.0  # `heartbeat` arrives every second per product
_ENCODER = msgspec.json.Encoder()


def build_subscribe(channels: dict[str, list[str]]) -> str:
    """``{"type":"subscribe","channels":[{"name":..,"product_ids":[..]},..]}``."""
    body = {"type": "subscribe", "channels": [{"name": n, "product_ids": p} for n, p in channels.items()]}
    return _ENCODER.encode(body).decode()


def plan_streams(subscriptions: Sequence[Subscription], origin: str) -> list[WsPlan]:
    """Connections of at most 100 products, each subscribing once, right after opening.

    Raises:
        NoCapability: OHLC (the feed has no candles) or another unstreamed type.
        UnsupportedSymbol: a perpetual.
    """
    products: dict[str, list[Subscription]] = {}
    for sub in sorted(set(subscriptions)):
        if sub.data_type not in CHANNELS:
            why = " (the Exchange feed has no candle channel)" if sub.data_type is DataType.OHLC else ""
            raise NoCapability(NAME, f"{sub.data_type.value} over ws{why}")
        products.setdefault(symbol_to_native(sub.symbol), []).append(sub)
    natives = list(products)
    plans = []
    for at in range(0, len(natives), MAX_PRODUCTS_PER_CONNECTION):
        chunk = natives[at : at + MAX_PRODUCTS_PER_CONNECTION]
        channels: dict[str, list[str]] = {}
        for native in chunk:
            for sub in products[native]:
                channels.setdefault(CHANNELS[sub.data_type], []).append(native)
        channels["heartbeat"] = chunk
        subs = tuple(s for native in chunk for s in products[native])
        plans.append(WsPlan(origin.rstrip("/"), subs, (Outgoing(build_subscribe(channels)),), watchdog_s=WATCHDOG_S))
    return plans


# --- wire views (tagged on `type`) ---------------------------------------------------------------


class _Match(msgspec.Struct, tag_field="type", tag="match", frozen=True, gc=False):
    trade_id: int
    side: str
    size: str
    price: str
    product_id: str
    time: str


class _LastMatch(_Match, tag="last_match", frozen=True, gc=False):
    pass


class _L2Update(msgspec.Struct, tag_field="type", tag="l2update", frozen=True, gc=False):
    product_id: str
    changes: list[tuple[str, str, str]]
    time: str


class _L2Snapshot(msgspec.Struct, tag_field="type", tag="snapshot", frozen=True, gc=False):
    product_id: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    time: str | None = None


class _Heartbeat(msgspec.Struct, tag_field="type", tag="heartbeat", frozen=True, gc=False):
    product_id: str = ""
    last_trade_id: int | None = None


class _Subscriptions(msgspec.Struct, tag_field="type", tag="subscriptions", frozen=True):
    channels: Any = None


class _Error(msgspec.Struct, tag_field="type", tag="error", frozen=True):
    message: str = ""
    reason: str = ""


_Msg = _Match | _LastMatch | _L2Update | _L2Snapshot | _Heartbeat | _Subscriptions | _Error
_DECODER = msgspec.json.Decoder(_Msg)
_decode = _DECODER.decode
_TYPES: Final = frozenset(("match", "last_match", "l2update", "snapshot", "heartbeat", "subscriptions", "error"))


class _Probe(msgspec.Struct):
    type: Any = None


_probe = msgspec.json.Decoder(_Probe).decode


class CoinbaseSession:
    """Parser state of one feed connection (product id -> symbol)."""

    def __init__(self, plan: WsPlan | None = None) -> None:
        # a product we did not subscribe to (a replay) is named from its id
        self._symbols = NativeSymbols(
            plan.subscriptions if plan is not None else (), symbol_to_native, symbol_from_native
        )

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events of one frame.

        Raises:
            ProtocolDrift: invalid JSON, or a known message that fails validation.
        """
        try:
            msg = _decode(frame)
        except msgspec.DecodeError:  # ValidationError included: unknown type or drift
            return self._other(frame)
        try:
            return self._convert(msg, recv_ns)
        except (ValueError, UnsupportedSymbol) as exc:  # a non-numeric price, a bad time or product id
            raise ProtocolDrift(NAME, "ws", f"{exc} in a {type(msg).__name__[1:]} message") from exc

    def _convert(self, msg: _Msg, recv_ns: int) -> list[StreamEvent]:
        if isinstance(msg, _Match):  # _LastMatch included
            side = TAKER_SIDE.get(msg.side)
            if side is None:
                raise ValueError(f"side {msg.side!r} is not buy/sell")
            trade = Trade(iso_ns(msg.time), str(msg.trade_id), float(msg.price), float(msg.size), side, recv_ns)
            return [TradesReceived(self._symbols.get(msg.product_id), [trade], isinstance(msg, _LastMatch))]
        if isinstance(msg, _L2Update):
            bids, asks = [], []
            for side_name, price, size in msg.changes:
                level = (float(price), float(size))
                if side_name == "buy":
                    bids.append(level)
                elif side_name == "sell":
                    asks.append(level)
                else:
                    raise ValueError(f"change side {side_name!r} is not buy/sell")
            book = BookSnapshot(iso_ns(msg.time), bids, asks)
            return [BookReceived(self._symbols.get(msg.product_id), book, snapshot=False)]
        if isinstance(msg, _L2Snapshot):
            ts = iso_ns(msg.time) if msg.time else recv_ns
            bids = [(float(p), float(q)) for p, q in msg.bids]
            asks = [(float(p), float(q)) for p, q in msg.asks]
            return [BookReceived(self._symbols.get(msg.product_id), BookSnapshot(ts, bids, asks), snapshot=True)]
        if isinstance(msg, _Heartbeat):
            return [HeartbeatReceived()]
        if isinstance(msg, _Subscriptions):
            return [ControlAck("subscriptions")]
        return [ControlFailed(msg.message or "error", msg.reason)]

    def _other(self, frame: bytes | str) -> list[StreamEvent]:
        try:
            probe = _probe(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME)
        if probe.type in _TYPES:
            decode(_DECODER, frame, NAME, f"ws {probe.type}")  # known but refused by the fast path: drift
        return [Unrecognised(str(probe.type) if isinstance(probe.type, str) else "<no type>")]


def open_session(plan: WsPlan) -> CoinbaseSession:
    """A fresh parser for one connection of ``plan``."""
    return CoinbaseSession(plan)
