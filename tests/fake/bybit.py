"""A fake Bybit v5 (REST and public WebSocket) on 127.0.0.1, speaking Bybit's wire format.

REST: ``/v5/market/instruments-info``, ``kline`` (newest first, inclusive
``start``/``end``, the bar in progress included, as Bybit does), ``recent-trade``
(newest first; 60 on spot), ``orderbook``, ``funding/history`` (every 8 h,
newest first; ``startTime`` alone is an error) and ``open-interest``. Unknown
symbols answer HTTP 200 with ``retCode`` 10001; every answer carries ``time``.

WebSocket at ``/v5/public/{spot,linear}``: ``{"op":"subscribe"}`` (at most 10
topics per request on spot), ``{"op":"ping"}`` -> pong, then per push step a
``publicTrade`` frame (trade ``step`` of :mod:`tests.fake.tape`), ``kline``
updates (``confirm`` true once the bar is over) and ``orderbook.50``
(snapshot, then deltas with ``u`` + 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dccd.domain.spans import Span
from tests.fake import tape
from tests.fake.tape_bars import TapeBar, bar_of
from tests.fake.venue import ApiError, FakeRest, FakeWs, WsConnection, bar, open_interest, rate

MIN_MS = 60_000
INTERVALS = {"1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h", "240": "4h",
             "360": "6h", "720": "12h", "D": "1d", "W": "1w", "M": "1M"}  # fmt: skip
OI_INTERVALS = {"5min": "5m", "15min": "15m", "30min": "30m", "1h": "1h", "4h": "4h", "1d": "1d"}
FUNDING_EVERY_MS = 8 * 3600_000


@dataclass(frozen=True)
class Instrument:
    """One listed instrument of the fake."""

    symbol: str
    category: str
    base: str
    quote: str
    listed_ms: int
    contract: str = ""  # LinearPerpetual / LinearFutures on linear
    status: str = "Trading"


LISTED = 1_704_067_200_000  # 2024-01-01T00:00Z
INSTRUMENTS = (
    Instrument("BTCUSDT", "spot", "BTC", "USDT", LISTED),
    Instrument("BTCUSDT", "linear", "BTC", "USDT", LISTED, "LinearPerpetual"),
    Instrument("BTCPERP", "linear", "BTC", "USDC", LISTED, "LinearPerpetual"),
    Instrument("BTC-27DEC24", "linear", "BTC", "USDT", LISTED, "LinearFutures"),
)


def envelope(result: Any, now_ms: int) -> bytes:
    return json.dumps({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms}).encode()


def rejected(code: int, msg: str) -> ApiError:
    """A Bybit business error: HTTP 200 with ``retCode``."""
    return ApiError(200, json.dumps({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": 0}).encode())  # fmt: skip


def opens(span: Span, lo_ms: int, hi_ms: int) -> list[int]:
    """Bar opens (ms) of ``span`` in ``[lo_ms, hi_ms]``, ascending."""
    out, t = [], span.align_up(lo_ms * 1_000_000)
    while t <= hi_ms * 1_000_000:
        out.append(t // 1_000_000)
        t = span.next(t)
    return out


class FakeBybit(FakeRest):
    """Fake Bybit v5 REST state (see the module docstring)."""

    name = "bybit"

    def __init__(self, *, tape_bars: bool = False, **kwargs: Any) -> None:
        """``tape_bars``: spot klines are the aggregates of the trades tape (the one ``publicTrade`` pushes;
        Bybit's own definition) instead of synthetic bars."""
        super().__init__(**kwargs)
        self.tape_bars = tape_bars
        self.instruments = {(i.category, i.symbol): i for i in INSTRUMENTS}
        self.book_u = 0
        self.routes = {
            "/v5/market/instruments-info": self._instruments,
            "/v5/market/kline": self._kline,
            "/v5/market/recent-trade": self._recent_trade,
            "/v5/market/orderbook": self._orderbook,
            "/v5/market/funding/history": self._funding,
            "/v5/market/open-interest": self._open_interest,
        }

    def error_body(self, status: int, message: str) -> bytes:
        if status == 403:
            return b"access too frequent"
        code = 10006 if status == 429 else 10016
        return json.dumps({"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": 0}).encode()

    def _instrument(self, p: Mapping[str, str], *categories: str) -> Instrument:
        cat = p.get("category", "linear")
        if cat not in categories:
            raise rejected(10001, f"params error: category {cat} is not supported")
        inst = self.instruments.get((cat, p.get("symbol", "")))
        if inst is None:
            raise rejected(10001, "params error: symbol invalid")
        return inst

    @staticmethod
    def _limit(p: Mapping[str, str], default: int, maximum: int) -> int:
        raw = p.get("limit", str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise rejected(10001, "params error: limit")
        return int(raw)

    def _instruments(self, p: Mapping[str, str], now_ms: int) -> bytes:
        cat = p.get("category", "")
        items = [
            {"symbol": i.symbol, "baseCoin": i.base, "quoteCoin": i.quote, "status": i.status}
            | ({"contractType": i.contract} if cat != "spot" else {})
            for i in self.instruments.values()
            if i.category == cat
        ]
        return envelope({"category": cat, "list": items, "nextPageCursor": ""}, now_ms)

    def _kline(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._instrument(p, "spot", "linear")
        label = INTERVALS.get(p.get("interval", ""))
        if label is None:
            raise rejected(10001, "params error: interval invalid")
        limit = self._limit(p, 200, 1000)
        span = Span(label)
        lo = max(int(p.get("start", "0")), inst.listed_ms)
        hi = min(int(p.get("end", str(now_ms))), now_ms)
        key = f"{inst.category}:{inst.symbol}:{label}"
        rows = []
        step = span.ns // 1_000_000
        for t in reversed(opens(span, lo, hi)[-limit:]):  # newest first; the open bar included
            if self.tape_bars and inst.category == "spot":
                tb = self.tape_bar(inst.symbol, t, step, now_ms)
                if tb is not None:
                    rows.append([str(t), tb.open, tb.high, tb.low, tb.close, tb.volume, tb.quote_volume])
                continue
            b = bar(key, t)
            rows.append([str(t), b.open, b.high, b.low, b.close, b.volume, b.quote])
        return envelope({"symbol": inst.symbol, "category": inst.category, "list": rows}, now_ms)

    @staticmethod
    def tape_bar(symbol: str, open_ms: int, step_ms: int, now_ms: int) -> TapeBar | None:
        """The bar of the tape trades in ``[open_ms, open_ms + step_ms)`` traded by ``now_ms``."""
        head = (now_ms - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS
        stop = min(tape.first_id_at(open_ms + step_ms), head + 1)
        rows = [(t.price, t.qty) for t in (tape.trade_at(symbol, i) for i in range(tape.first_id_at(open_ms), stop))]
        return bar_of(rows)

    def _recent_trade(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._instrument(p, "spot", "linear")
        limit = self._limit(p, 60 if inst.category == "spot" else 500, 60 if inst.category == "spot" else 1000)
        head = (now_ms - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS
        rows = []
        for tid in range(head, max(-1, head - limit), -1):
            t = tape.trade_at(inst.symbol, tid)
            side = "Sell" if t.is_buyer_maker else "Buy"
            rows.append({"execId": str(2_100_000_000_000_000_000 + tid), "symbol": inst.symbol, "price": t.price,
                         "size": t.qty, "side": side, "time": str(t.time_ms), "isBlockTrade": False, "isRPITrade": False, "seq": str(tid)})  # fmt: skip
        return envelope({"category": inst.category, "list": rows}, now_ms)

    def _orderbook(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._instrument(p, "spot", "linear")
        depth = self._limit(p, 1 if inst.category == "spot" else 25, 1000)
        self.book_u += 1
        bids = [[f"{30000 - k}.5", f"{k + 1}.25"] for k in range(depth)]
        asks = [[f"{30001 + k}.5", f"{k + 2}.75"] for k in range(depth)]
        result = {"s": inst.symbol, "b": bids, "a": asks, "ts": now_ms, "u": self.book_u, "seq": 7 * self.book_u, "cts": now_ms - 1}  # fmt: skip
        return envelope(result, now_ms)

    def _funding(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._instrument(p, "linear")
        limit = self._limit(p, 200, 200)
        if "startTime" in p and "endTime" not in p:
            raise rejected(10001, "params error: endTime is required with startTime")
        lo = max(int(p.get("startTime", "0")), inst.listed_ms)
        hi = min(int(p.get("endTime", str(now_ms))), now_ms)
        first = -(-lo // FUNDING_EVERY_MS) * FUNDING_EVERY_MS
        times = list(range(first, hi + 1, FUNDING_EVERY_MS))[-limit:]
        rows = [{"symbol": inst.symbol, "fundingRate": rate(inst.symbol, t), "fundingRateTimestamp": str(t)} for t in reversed(times)]  # fmt: skip
        return envelope({"category": "linear", "list": rows}, now_ms)

    def _open_interest(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._instrument(p, "linear")
        label = OI_INTERVALS.get(p.get("intervalTime", ""))
        if label is None:
            raise rejected(10001, "params error: intervalTime invalid")
        limit = self._limit(p, 50, 200)
        lo = max(int(p.get("startTime", "0")), inst.listed_ms)
        hi = min(int(p.get("endTime", str(now_ms))), now_ms)
        times = opens(Span(label), lo, hi)[-limit:]
        rows = [{"openInterest": open_interest(inst.symbol, t)[0], "timestamp": str(t)} for t in reversed(times)]
        return envelope({"symbol": inst.symbol, "category": "linear", "list": rows, "nextPageCursor": ""}, now_ms)


# --- WebSocket ---------------------------------------------------------------------------------


class FakeBybitWs(FakeWs):
    """Fake Bybit public WebSocket (see the module docstring)."""

    paths = ("/v5/public/spot", "/v5/public/linear")

    def reply(self, conn: WsConnection, text: str) -> list[str]:
        try:
            req = json.loads(text)
        except ValueError:
            return [json.dumps({"success": False, "ret_msg": "invalid request", "op": ""})]
        op, req_id = req.get("op"), req.get("req_id", "")
        if op == "ping":
            return [json.dumps({"success": True, "ret_msg": "pong", "conn_id": f"c{conn.index}", "req_id": req_id, "op": "ping"})]  # fmt: skip
        args = req.get("args") or []
        if op != "subscribe":
            return [json.dumps({"success": False, "ret_msg": f"error:op {op} not supported", "conn_id": f"c{conn.index}", "req_id": req_id, "op": op})]  # fmt: skip
        if conn.path.endswith("/spot") and len(args) > 10:
            return [json.dumps({"success": False, "ret_msg": "args size >10", "conn_id": f"c{conn.index}", "req_id": req_id, "op": op})]  # fmt: skip
        bad = [a for a in args if a.split(".")[0] not in ("publicTrade", "kline", "orderbook")]
        if bad:
            return [json.dumps({"success": False, "ret_msg": f"error:handler not found,topic:{bad[0]}", "conn_id": f"c{conn.index}", "req_id": req_id, "op": op})]  # fmt: skip
        conn.topics.extend(a for a in args if a not in conn.topics)
        conn.changed.set()
        msg = "subscribe" if conn.path.endswith("/spot") else ""
        return [json.dumps({"success": True, "ret_msg": msg, "conn_id": f"c{conn.index}", "req_id": req_id, "op": op})]

    def frames(self, conn: WsConnection, topic: str, step: int) -> list[str]:
        kind, _, rest = topic.partition(".")
        if kind == "publicTrade":
            t = tape.trade_at(rest, step)
            linear = conn.path.endswith("/linear")
            tid = f"00000000-0000-4000-8000-{step:012d}" if linear else str(2_100_000_000_000_000_000 + step)
            data = [{"T": t.time_ms, "s": rest, "S": "Sell" if t.is_buyer_maker else "Buy", "v": t.qty, "p": t.price,
                     "L": "PlusTick", "i": tid, "BT": False, "seq": 1000 + step}]  # fmt: skip
            return [json.dumps({"topic": topic, "type": "snapshot", "ts": t.time_ms, "data": data})]
        if kind == "kline":
            return self._kline(conn, topic, rest, step)
        if kind == "orderbook":
            return [self._book(conn, topic, rest.split(".")[1], step)]
        return []

    def _kline(self, conn: WsConnection, topic: str, rest: str, step: int) -> list[str]:
        interval, _, symbol = rest.partition(".")
        span = Span(INTERVALS[interval])
        now_ms = tape.trade_time_ms(step)
        opened = span.align(now_ms * 1_000_000) // 1_000_000
        out = []
        prev = conn.state.get(topic)
        if prev is not None and prev != opened:
            out.append(self._kline_frame(topic, symbol, span, prev, True, now_ms))
        conn.state[topic] = opened
        if step % 5 == 0:
            out.append(self._kline_frame(topic, symbol, span, opened, False, now_ms))
        return out

    @staticmethod
    def _kline_frame(topic: str, symbol: str, span: Span, open_ms: int, confirm: bool, now_ms: int) -> str:
        b = bar(f"ws:{symbol}:{span.label}", open_ms)
        end = span.next(open_ms * 1_000_000) // 1_000_000 - 1
        data = [{"start": open_ms, "end": end, "interval": topic.split(".")[1], "open": b.open, "close": b.close,
                 "high": b.high, "low": b.low, "volume": b.volume, "turnover": b.quote, "confirm": confirm, "timestamp": now_ms}]  # fmt: skip
        return json.dumps({"topic": topic, "data": data, "ts": now_ms, "type": "snapshot"})

    @staticmethod
    def _book(conn: WsConnection, topic: str, symbol: str, step: int) -> str:
        u = conn.state[topic] = conn.state.get(topic, 0) + 1
        ts = tape.trade_time_ms(step)
        if u == 1:
            data = {
                "s": symbol,
                "b": [["30000.5", "1.5"], ["29999.5", "2"]],
                "a": [["30001", "0.5"]],
                "u": u,
                "seq": 500 + u,
            }
            return json.dumps({"topic": topic, "type": "snapshot", "ts": ts, "data": data, "cts": ts - 3})
        data = {"s": symbol, "b": [["30000.5", str(step % 3)]], "a": [["30001", "0.75"]], "u": u, "seq": 500 + u}
        return json.dumps({"topic": topic, "type": "delta", "ts": ts, "data": data, "cts": ts - 3})
