"""Kraken spot WebSocket v1 frames (``wss://ws.kraken.com``), for recorded sessions.

dccd streams from v2 (:mod:`dccd.sources.kraken.ws`); this parser reads v1
traffic such as the 2021 recording, through the same generic events:

- events are objects: ``systemStatus`` (its ``connectionID`` exceeds 2**63,
  msgspec reads it as an exact int), ``subscriptionStatus``, ``heartbeat``,
  ``pong``, ``error``;
- data are arrays ``[channelID, payload..., channelName, pair]``: ``trade``
  rows ``[price, volume, time, side, orderType, misc]`` have **no trade id**
  (id None) and a decimal-seconds string time (parsed exactly); ``book-N``
  payloads are a snapshot ``{"as", "bs"}`` or updates ``{"a"}``/``{"b"}``
  (one or two dicts, with a ``c`` checksum), stamped with the newest level
  time; ``ohlc-N`` rows ``[time, etime, o, h, l, c, vwap, volume, count]``
  describe the bar ending at ``etime`` and close like v2 bars, when a later
  bar starts; ``spread``/``ticker`` are not used.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from dccd.domain.records import BookSnapshot, Candle, Trade
from dccd.domain.timeutil import NS_PER_S, decimal_seconds_to_ns
from dccd.errors import ProtocolDrift, UnsupportedSymbol
from dccd.sources.kraken.common import NAME, SIDES, SPANS_BY_MINUTES, symbol_from_native
from dccd.sources.stream import (
    BookReceived,
    CandlesClosed,
    ControlAck,
    ControlFailed,
    HeartbeatReceived,
    NativeSymbols,
    StreamEvent,
    TradesReceived,
    Unrecognised,
    WsPlan,
    undecodable_frame,
)

_decode = msgspec.json.Decoder().decode
_UNUSED: Final = frozenset(("spread", "ticker"))


def _seconds_ns(text: str) -> int:
    """``"1618678133.365913"`` to ns, exactly (a fast path for the one shape v1 sends)."""
    whole, dot, frac = text.partition(".")
    if whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii() and len(frac) <= 9)):
        return int(whole) * NS_PER_S + (int(frac.ljust(9, "0")) if frac else 0)
    return decimal_seconds_to_ns(text)


def _levels(rows: Any, path: str, times: bool) -> tuple[list[tuple[float, float]], int]:
    """(price, amount) levels of ``[[price, volume, time, ("r")], ...]`` and, if ``times``, the newest level time."""
    if type(rows) is not list:
        raise ValueError(f"expected a list of levels at `{path}`")
    out, newest = [], 0
    for i, row in enumerate(rows):
        if (
            type(row) is not list
            or len(row) < 3
            or type(row[0]) is not str
            or type(row[1]) is not str
            or type(row[2]) is not str
        ):
            raise ValueError(f"expected [price, volume, time, ...] strings at `{path}[{i}]`")
        out.append((float(row[0]), float(row[1])))
        if times:
            ts = _seconds_ns(row[2])
            if ts > newest:
                newest = ts
    return out, newest


class KrakenV1Session:
    """Parser state of one v1 connection: open bars per (pair, channel)."""

    def __init__(self, plan: WsPlan | None = None) -> None:
        self._symbols = NativeSymbols((), str, symbol_from_native)
        self._open_bars: dict[tuple[str, str], Candle] = {}

    def parse(self, frame: bytes | str, recv_ns: int) -> list[StreamEvent]:
        """Events of one frame.

        Raises:
            ProtocolDrift: invalid JSON, or a data array that does not have the v1 shape.
        """
        try:
            msg = _decode(frame)
        except msgspec.DecodeError as exc:
            return undecodable_frame(exc, NAME, "ws v1")
        if isinstance(msg, dict):
            return self._event(msg)
        if not isinstance(msg, list) or len(msg) < 4 or not isinstance(msg[-2], str) or not isinstance(msg[-1], str):
            return [Unrecognised("<not a v1 message>")]
        channel, pair, payloads = msg[-2], msg[-1], msg[1:-2]
        try:
            if channel == "trade":
                return self._trades(pair, payloads, recv_ns)
            if channel.startswith("book-"):
                return self._book(pair, payloads, recv_ns)
            if channel.startswith("ohlc-"):
                return self._ohlc(pair, channel, payloads)
        except (ValueError, TypeError, UnsupportedSymbol) as exc:
            raise ProtocolDrift(NAME, f"ws v1 {channel}", str(exc)) from exc
        return [Unrecognised(channel if channel in _UNUSED else channel.split("-")[0])]

    def _event(self, msg: dict[str, Any]) -> list[StreamEvent]:
        event = msg.get("event")
        if event == "heartbeat":
            return [HeartbeatReceived()]
        if event == "systemStatus":
            return [ControlAck(f"systemStatus {msg.get('status')}")]
        if event == "subscriptionStatus" and msg.get("status") == "error":
            return [ControlFailed(str(msg.get("pair", "subscribe")), str(msg.get("errorMessage", "")))]
        if event == "subscriptionStatus":
            return [ControlAck(f"{msg.get('status')} {msg.get('channelName')} {msg.get('pair')}")]
        if event == "pong":
            return [ControlAck("pong")]
        if event == "error":
            return [ControlFailed("error", str(msg.get("errorMessage", "")))]
        return [Unrecognised(str(event))]

    def _trades(self, pair: str, payloads: list[Any], recv_ns: int) -> list[StreamEvent]:
        trades = []
        for i, row in enumerate(payloads[0] if payloads else ()):
            if not isinstance(row, list) or len(row) < 4 or not all(isinstance(x, str) for x in row[:4]):
                raise ValueError(f"expected [price, volume, time, side, ...] strings at `$[1][{i}]`")
            side = SIDES.get(row[3])
            if side is None:
                raise ValueError(f"side {row[3]!r} is not b/s at `$[1][{i}][3]`")
            trades.append(Trade(_seconds_ns(row[2]), None, float(row[0]), float(row[1]), side, recv_ns))
        return [TradesReceived(self._symbols.get(pair), trades)]

    def _book(self, pair: str, payloads: list[Any], recv_ns: int) -> list[StreamEvent]:
        first = payloads[0] if payloads else None
        if isinstance(first, dict) and ("as" in first or "bs" in first):
            asks, _ = _levels(first.get("as", []), "$[1].as", times=False)
            bids, _ = _levels(first.get("bs", []), "$[1].bs", times=False)
            return [BookReceived(self._symbols.get(pair), BookSnapshot(recv_ns, bids, asks), snapshot=True)]
        bids, asks, ts = [], [], 0
        for k, part in enumerate(payloads):
            if not isinstance(part, dict):
                raise ValueError(f"expected a book update object at `$[{k + 1}]`")
            for key, into in (("a", asks), ("b", bids)):
                if key in part:
                    levels, newest = _levels(part[key], f"$[{k + 1}].{key}", times=True)
                    into.extend(levels)
                    ts = max(ts, newest)
        return [BookReceived(self._symbols.get(pair), BookSnapshot(ts or recv_ns, bids, asks), snapshot=False)]

    def _ohlc(self, pair: str, channel: str, payloads: list[Any]) -> list[StreamEvent]:
        row = payloads[0] if payloads else None
        minutes = int(channel[5:])
        if minutes not in SPANS_BY_MINUTES:
            raise ValueError(f"interval {minutes} is not a Kraken interval")
        if not isinstance(row, list) or len(row) < 9 or not all(isinstance(x, str) for x in row[:8]):
            raise ValueError("expected [time, etime, open, high, low, close, vwap, volume, count] at `$[1]`")
        open_ns = _seconds_ns(row[1]) - minutes * 60 * NS_PER_S  # etime is the bar's end
        bar = Candle(
            open_ns, float(row[2]), float(row[3]), float(row[4]), float(row[5]), float(row[7]), None, int(row[8])
        )
        key = (pair, channel)
        pending = self._open_bars.get(key)
        if pending is not None and bar.ts < pending.ts:
            return []
        self._open_bars[key] = bar
        if pending is not None and bar.ts > pending.ts:
            return [CandlesClosed(self._symbols.get(pair), SPANS_BY_MINUTES[minutes], [pending])]
        return []
