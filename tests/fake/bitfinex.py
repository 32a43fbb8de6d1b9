"""A fake Bitfinex v2 on 127.0.0.1: public REST (``/v2/...``) and WebSocket (``/ws/2``), real wire format.

Trade tape of a pair: tape trade ``k`` has the global id ``k * 8 + pair
index`` (increasing, not consecutive per pair, like Bitfinex's ids) and
three consecutive trades share each millisecond, so page seams split
same-millisecond trades. AMOUNT is positive when the taker bought.
``/trades/{SYM}/hist`` and ``/candles/trade:{TF}:{SYM}/hist`` take
``start``/``end`` (inclusive ms), ``limit`` (max 10000, else the documented
``["error",10020,"limit: invalid"]`` with HTTP 500) and ``sort`` (1
ascending, default newest first); candles of an unknown symbol are ``[]``
(as on Bitfinex). ``/book/{SYM}/P0?len=`` serves 1, 25 or 100 levels a side.

WS (``/ws/2``): ``info`` greeting, ``subscribed`` with a fresh ``chanId`` per
channel (``error`` 10300 for unknown symbols), trade snapshots (newest
first), then per tape trade ``te`` at once and ``tu`` for the trade
``tu_lag`` ids earlier, candle snapshots and updates of the bar in progress,
book snapshots and one-level updates, and ``[chanId,"hb"]`` every
``heartbeat_every`` tape trades.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fake.exchange import ApiError, FakeRest, FakeWs, Reply, WsSession, cents, dumps, loads, synthetic_bar
from tests.fake.tape import TAPE_EPOCH_MS, trade_at
from tests.fake.tape_bars import TapeBar, bar_of

PAIRS: tuple[str, ...] = ("BTCUSD", "BTCUST", "ETHUSD", "AAVE:USD", "TESTBTC:TESTUSD")
TIMEFRAMES = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000, "3h": 10_800_000, "4h": 14_400_000, "6h": 21_600_000, "12h": 43_200_000, "1D": 86_400_000}  # fmt: skip
PER_MS = 3  # trades sharing one millisecond
STEP_MS = 100
RATELIMIT = b'["error",11010,"ratelimit: error"]'


def trade_mts(k: int) -> int:
    """Millisecond of tape trade ``k`` (3 trades per ms, 100 ms apart)."""
    return TAPE_EPOCH_MS + k // PER_MS * STEP_MS


def trade_row(pair: str, k: int) -> list[Any]:
    """``[ID, MTS, AMOUNT, PRICE]`` of tape trade ``k`` of ``pair``."""
    t = trade_at(pair, k)
    amount = -float(t.qty) if t.is_buyer_maker else float(t.qty)
    return [k * 8 + PAIRS.index(pair), trade_mts(k), amount, float(t.price)]


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    return default if not raw else int(raw)


class FakeBitfinex(FakeRest):
    """Fake Bitfinex public REST (see the module docstring)."""

    log_name = "tests.fake.bitfinex"

    def __init__(self, *, tape_bars: bool = False, **kwargs: Any) -> None:
        """``tape_bars``: candles are the aggregates of the trades tape (Bitfinex's own definition: no candle
        for a period without trades) instead of synthetic bars."""
        super().__init__(**kwargs)
        self.tape_bars = tape_bars

    @staticmethod
    def tape_bar(pair: str, open_ms: int, step_ms: int, now_ms: int) -> TapeBar | None:
        """The bar of the tape trades in ``[open_ms, open_ms + step_ms)`` (3 per tape millisecond)."""

        def first_k(ms: int) -> int:
            return max(0, -(-(ms - TAPE_EPOCH_MS) // STEP_MS) * PER_MS)

        stop = min(first_k(open_ms + step_ms), first_k(now_ms + 1))
        rows = [(t.price, t.qty) for t in (trade_at(pair, k) for k in range(first_k(open_ms), stop))]
        return bar_of(rows)

    def error_body(self, status: int) -> bytes:
        return RATELIMIT if status == 429 else b'["error",20060,"maintenance"]'

    def route(self, path: str, params: Mapping[str, str], now_ms: int) -> Reply:
        parts = path.strip("/").split("/")
        if path == "/v2/conf/pub:list:pair:exchange":
            return Reply(200, dumps([list(PAIRS)]))
        limit = _int(params, "limit", 120)
        if not 1 <= limit <= 10_000:
            raise ApiError(500, ["error", 10020, "limit: invalid"])
        if len(parts) == 4 and parts[:2] == ["v2", "trades"] and parts[3] == "hist":
            return self._trades(parts[2], params, limit, now_ms)
        if len(parts) == 4 and parts[:2] == ["v2", "candles"] and parts[3] == "hist":
            return self._candles(parts[2], params, limit, now_ms)
        if len(parts) == 4 and parts[:2] == ["v2", "book"]:
            return self._book(parts[2], parts[3], params, now_ms)
        raise ApiError(404, ["error", 10020, "path: invalid"])

    def _trades(self, symbol: str, params: Mapping[str, str], limit: int, now_ms: int) -> Reply:
        pair = symbol[1:]
        if not symbol.startswith("t") or pair not in PAIRS:
            raise ApiError(500, ["error", 10020, "symbol: invalid"])
        head = max(-1, (now_ms - TAPE_EPOCH_MS) // STEP_MS * PER_MS + PER_MS - 1)
        start, end = _int(params, "start", 0), min(_int(params, "end", now_ms), now_ms)
        lo = max(0, -(-(start - TAPE_EPOCH_MS) // STEP_MS) * PER_MS)
        hi = min(head, max(-1, (end - TAPE_EPOCH_MS) // STEP_MS * PER_MS + PER_MS - 1))
        ks = range(lo, hi + 1) if params.get("sort") == "1" else range(hi, lo - 1, -1)
        return Reply(200, dumps([trade_row(pair, k) for k in ks[:limit]]))

    def _candles(self, key: str, params: Mapping[str, str], limit: int, now_ms: int) -> Reply:
        kind, _, rest = key.partition(":")
        tf, _, symbol = rest.partition(":")
        if kind != "trade" or tf not in TIMEFRAMES:
            raise ApiError(500, ["error", 10020, "time_frame: invalid"])
        if symbol[1:] not in PAIRS:
            return Reply(200, b"[]")  # Bitfinex answers an unknown symbol with no candles
        step = TIMEFRAMES[tf]
        start = max(_int(params, "start", 0), TAPE_EPOCH_MS)
        end = min(_int(params, "end", now_ms), now_ms)
        first, last = -(-start // step) * step, end // step * step
        opens = range(first, last + 1, step) if params.get("sort") == "1" else range(last, first - 1, -step)
        rows = []
        if self.tape_bars:
            for t in opens:
                b = self.tape_bar(symbol[1:], t, step, now_ms)
                if b is not None:
                    rows.append([t, float(b.open), float(b.close), float(b.high), float(b.low), float(b.volume)])
                if len(rows) == limit:
                    break
            return Reply(200, dumps(rows))
        for t in opens[:limit]:
            o, h, lo, c, v, _ = synthetic_bar(f"{symbol}:{tf}", t)
            rows.append([t, o / 100, c / 100, h / 100, lo / 100, v / 1e5])
        return Reply(200, dumps(rows))

    def _book(self, symbol: str, prec: str, params: Mapping[str, str], now_ms: int) -> Reply:
        length = _int(params, "len", 25)
        if prec != "P0" or length not in (1, 25, 100) or symbol[1:] not in PAIRS:
            raise ApiError(500, ["error", 10020, "len: invalid" if length not in (1, 25, 100) else "symbol: invalid"])
        mid = cents(trade_at(symbol[1:], max(0, (now_ms - TAPE_EPOCH_MS) // STEP_MS * PER_MS)).price)
        bids = [[(mid - 1 - i) / 100, 1 + i % 3, 0.5 + i] for i in range(length)]
        asks = [[(mid + 1 + i) / 100, 1 + i % 2, -(0.25 + i)] for i in range(length)]
        return Reply(200, dumps(bids + asks))


class FakeBitfinexWs(FakeWs):
    """Fake Bitfinex v2 public WebSocket (see the module docstring)."""

    def __init__(self, *, heartbeat_every: int = 15, tu_lag: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat_every, self.tu_lag = heartbeat_every, tu_lag
        self._next_chan = 1000

    def accepts(self, path: str) -> bool:
        return path == "/ws/2"

    def greeting(self, session: WsSession) -> list[str]:
        return ['{"event":"info","version":2,"serverId":"fake","platform":{"status":1}}']

    def reply(self, session: WsSession, text: str) -> list[str]:
        msg = loads(text)
        if not isinstance(msg, dict) or msg.get("event") != "subscribe":
            return [dumps({"event": "error", "msg": "unknown event", "code": 10000}).decode()]
        channel = msg.get("channel")
        if channel == "candles":
            parts = str(msg.get("key", "")).split(":", 2)
            symbol = parts[2] if len(parts) == 3 and parts[0] == "trade" and parts[1] in TIMEFRAMES else ""
        else:
            symbol = str(msg.get("symbol", ""))
        if channel not in ("trades", "candles", "book") or not symbol.startswith("t") or symbol[1:] not in PAIRS:
            return [
                dumps(
                    {"event": "error", "msg": "symbol: invalid", "code": 10300, "channel": channel, "symbol": symbol}
                ).decode()
            ]
        self._next_chan += 1
        chan = self._next_chan
        session.subs[chan] = msg
        ack = {
            "event": "subscribed",
            "channel": channel,
            "chanId": chan,
            **{k: v for k, v in msg.items() if k not in ("event", "channel")},
        }
        if channel != "candles":
            ack["pair"] = symbol[1:]
        return [dumps(ack).decode(), *self._snapshot(chan, msg)]

    def _snapshot(self, chan: int, msg: dict[str, Any]) -> list[str]:
        last = self.start_id() - 1
        if msg["channel"] == "trades":
            pair = msg["symbol"][1:]
            return [dumps([chan, [trade_row(pair, k) for k in range(last, max(-1, last - 30), -1)]]).decode()]
        if msg["channel"] == "candles":
            _, tf, symbol = msg["key"].split(":", 2)
            step = TIMEFRAMES[tf]
            now_bar = trade_mts(max(0, last)) // step * step
            return [dumps([chan, [self._bar(symbol, tf, now_bar - i * step) for i in range(3)]]).decode()]
        mid = cents(trade_at(msg["symbol"][1:], max(0, last)).price)
        levels = [[(mid - 1 - i) / 100, 1, 1.0 + i] for i in range(5)] + [
            [(mid + 1 + i) / 100, 1, -(2.0 + i)] for i in range(5)
        ]
        return [dumps([chan, levels]).decode()]

    @staticmethod
    def _bar(symbol: str, tf: str, open_ms: int) -> list[float]:
        o, h, lo, c, v, _ = synthetic_bar(f"{symbol}:{tf}", open_ms)
        return [open_ms, o / 100, c / 100, h / 100, lo / 100, v / 1e5]

    def frames(self, session: WsSession, trade_id: int) -> list[str]:
        k, out = trade_id, []
        for chan, msg in list(session.subs.items()):
            if msg["channel"] == "trades":
                pair = msg["symbol"][1:]
                out.append(dumps([chan, "te", trade_row(pair, k)]).decode())
                if k - self.tu_lag >= 0:
                    out.append(dumps([chan, "tu", trade_row(pair, k - self.tu_lag)]).decode())
            elif msg["channel"] == "candles":
                _, tf, symbol = msg["key"].split(":", 2)
                step = TIMEFRAMES[tf]
                out.append(dumps([chan, self._bar(symbol, tf, trade_mts(k) // step * step)]).decode())
            else:
                t = trade_at(msg["symbol"][1:], k)
                count = 0 if k % 4 == 0 else 1
                amount = (1 if t.is_buyer_maker else -1) if count == 0 else float(t.qty)
                out.append(dumps([chan, [float(t.price), count, amount]]).decode())
            if k % self.heartbeat_every == 0:
                out.append(f'[{chan},"hb"]')
        return out
