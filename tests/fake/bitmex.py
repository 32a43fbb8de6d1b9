"""A fake BitMEX (REST and realtime WebSocket) on 127.0.0.1, speaking BitMEX's wire format.

REST under ``/api/v1``: ``instrument/active``, ``trade/bucketed`` (buckets
stamped with their **end**, oldest first, ``partial=false`` leaves the open
bucket out, ``null_bins`` carry null prices), ``trade`` (three trades share
every millisecond, so page seams fall inside a millisecond; ``startTime``
plus the ``start`` row offset page through them), ``orderBook/L2``,
``funding`` (every 8 h at 04/12/20 UTC) and ``instrument`` (current open
interest). Errors are ``{"error": {"message", "name"}}``; 429 carries
``Retry-After``.

WebSocket at ``/realtime``: a welcome ``info`` frame, one ack per subscribed
topic (an unknown table is refused with status 400), the text ``ping`` gets
``pong``; ``trade`` sends a ``partial`` then ``insert`` frames,
``tradeBin1m`` inserts each finished bin (a push step is one second of trades), ``orderBookL2_25`` a partial then
``insert``/``update``/``delete`` by level id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dccd.domain.spans import Span
from dccd.domain.timeutil import ns_to_iso, parse_iso_ns
from tests.fake import tape
from tests.fake.tape_bars import TapeBar, bar_of
from tests.fake.venue import ApiError, FakeRest, FakeWs, WsConnection, bar, open_interest, rate

LISTED = 1_704_067_200_000  # 2024-01-01T00:00Z
PER_MS = 3  # trades sharing one millisecond
WS_BATCH = 30  # trades per WebSocket push step (one second of tape)
FUNDING_EVERY_MS = 8 * 3_600_000
FUNDING_OFFSET_MS = 4 * 3_600_000  # 04:00, 12:00, 20:00 UTC
INSTRUMENTS = [
    {
        "symbol": "XBTUSD",
        "rootSymbol": "XBT",
        "underlying": "XBT",
        "quoteCurrency": "USD",
        "typ": "FFWCSX",
        "state": "Open",
        "settlCurrency": "XBt",
    },
    {
        "symbol": "ETHUSDT",
        "rootSymbol": "ETH",
        "underlying": "ETH",
        "quoteCurrency": "USDT",
        "typ": "FFWCSX",
        "state": "Open",
        "settlCurrency": "USDt",
    },
    {
        "symbol": "XBT_USDT",
        "rootSymbol": "XBT",
        "underlying": "XBT",
        "quoteCurrency": "USDT",
        "typ": "IFXXXP",
        "state": "Open",
        "settlCurrency": "USDt",
    },
    {
        "symbol": "XBTZ24",
        "rootSymbol": "XBT",
        "underlying": "XBT",
        "quoteCurrency": "USD",
        "typ": "FFCCSX",
        "state": "Open",
        "settlCurrency": "XBt",
    },
    {
        "symbol": ".BXBT",
        "rootSymbol": "XBT",
        "underlying": "XBT",
        "quoteCurrency": "USD",
        "typ": "MRCXXX",
        "state": "Unlisted",
        "settlCurrency": "",
    },
]
_SYMBOLS = {i["symbol"] for i in INSTRUMENTS}


def iso(ms: int) -> str:
    """BitMEX's timestamp format: ``2024-01-01T00:00:00.000Z``."""
    head, _, frac = ns_to_iso(ms * 1_000_000)[:-1].partition(".")
    return f"{head}.{frac.ljust(3, '0')}Z"


def trade_ms(k: int) -> int:
    """Time of trade ``k``: three trades per millisecond, a millisecond every 100 ms of tape."""
    return tape.TAPE_EPOCH_MS + (k // PER_MS) * tape.TAPE_STEP_MS


def trade_row(symbol: str, k: int) -> dict[str, Any]:
    """BitMEX's trade ``k`` (values from the shared tape; ``trdMatchID`` a UUID made from ``k``)."""
    t = tape.trade_at(symbol, k)
    qty = float(t.qty)
    return {"timestamp": iso(trade_ms(k)), "symbol": symbol, "side": "Sell" if t.is_buyer_maker else "Buy",
            "size": round(qty * 100_000), "price": float(t.price), "tickDirection": "ZeroPlusTick",
            "trdMatchID": f"00000000-0000-4000-8000-{k:012d}", "grossValue": 1, "homeNotional": qty,
            "foreignNotional": qty * float(t.price), "trdType": "Regular"}  # fmt: skip


def bin_row(symbol: str, label: str, open_ms: int, null: bool = False) -> dict[str, Any]:
    """The bucket of the bar opening at ``open_ms``, stamped with its end."""
    span = Span(label)
    end = span.next(open_ms * 1_000_000) // 1_000_000
    if null:
        return {"timestamp": iso(end), "symbol": symbol, "open": None, "high": None, "low": None, "close": None,
                "trades": 0, "volume": 0, "vwap": None, "lastSize": None, "turnover": 0, "homeNotional": None, "foreignNotional": None}  # fmt: skip
    b = bar(f"{symbol}:{label}", open_ms)
    return {"timestamp": iso(end), "symbol": symbol, "open": float(b.open), "high": float(b.high), "low": float(b.low),
            "close": float(b.close), "trades": b.trades, "volume": 1000, "vwap": float(b.close), "lastSize": 10,
            "turnover": 1, "homeNotional": float(b.volume), "foreignNotional": float(b.quote)}  # fmt: skip


def error(status: int, message: str, name: str = "HTTPError") -> ApiError:
    return ApiError(status, json.dumps({"error": {"message": message, "name": name}}).encode())


class FakeBitmex(FakeRest):
    """Fake BitMEX REST state (see the module docstring)."""

    name = "bitmex"

    def __init__(self, *, null_bins: frozenset[int] = frozenset(), tape_bars: bool = False, **kwargs: Any) -> None:
        """``tape_bars``: buckets are the aggregates of the ``/trade`` tape (BitMEX's own definition; a bucket
        without trades is a null bin) instead of synthetic bars."""
        super().__init__(**kwargs)
        self.null_bins = null_bins
        self.tape_bars = tape_bars
        self.routes = {
            "/api/v1/instrument/active": lambda p, now: json.dumps(INSTRUMENTS).encode(),
            "/api/v1/trade/bucketed": self._bucketed,
            "/api/v1/trade": self._trades,
            "/api/v1/orderBook/L2": self._book,
            "/api/v1/funding": self._funding,
            "/api/v1/instrument": self._instrument,
        }

    @staticmethod
    def tape_bar(symbol: str, open_ms: int, step_ms: int, now_ms: int) -> TapeBar | None:
        """The bar of the tape trades in ``[open_ms, open_ms + step_ms)`` (3 per tape millisecond)."""

        def first_k(ms: int) -> int:
            return max(0, -((tape.TAPE_EPOCH_MS - ms) // tape.TAPE_STEP_MS) * PER_MS)

        stop = min(first_k(open_ms + step_ms), first_k(now_ms + 1))
        return bar_of([(t.price, t.qty) for t in (tape.trade_at(symbol, k) for k in range(first_k(open_ms), stop))])

    def _tape_bin(self, symbol: str, label: str, open_ms: int, now_ms: int) -> dict[str, Any]:
        step = Span(label).ns // 1_000_000
        b = self.tape_bar(symbol, open_ms, step, now_ms)
        if b is None:
            return bin_row(symbol, label, open_ms, null=True)
        return {"timestamp": iso(open_ms + step), "symbol": symbol, "open": float(b.open), "high": float(b.high),
                "low": float(b.low), "close": float(b.close), "trades": b.trades, "volume": 1000,
                "vwap": float(b.vwap), "lastSize": 10, "turnover": 1, "homeNotional": float(b.volume),
                "foreignNotional": float(b.quote_volume)}  # fmt: skip

    def error_body(self, status: int, message: str) -> bytes:
        if status == 429:
            return json.dumps({"error": {"message": "Rate limit exceeded, retry in 1 seconds.", "name": "RateLimitError"}}).encode()  # fmt: skip
        return json.dumps({"error": {"message": message, "name": "HTTPError"}}).encode()

    @staticmethod
    def _symbol(p: Mapping[str, str]) -> str:
        symbol = p.get("symbol", "")
        if symbol not in _SYMBOLS:
            raise error(400, "Invalid symbol.")
        return symbol

    @staticmethod
    def _count(p: Mapping[str, str], maximum: int) -> tuple[int, int]:
        count, start = p.get("count", "100"), p.get("start", "0")
        if not count.isdigit() or not 1 <= int(count) <= maximum:
            raise error(400, f"'count' must be between 1 and {maximum}", "ValidationError")
        return int(count), int(start)

    @staticmethod
    def _time(p: Mapping[str, str], name: str, default: int) -> int:
        return parse_iso_ns(p[name]) // 1_000_000 if name in p else default

    def _bucketed(self, p: Mapping[str, str], now_ms: int) -> bytes:
        symbol = self._symbol(p)
        label = p.get("binSize", "")
        if label not in ("1m", "5m", "1h", "1d"):
            raise error(400, "binSize must be one of 1m, 5m, 1h, 1d", "ValidationError")
        count, start = self._count(p, 1000)
        span = Span(label)
        lo, hi = self._time(p, "startTime", LISTED), min(self._time(p, "endTime", now_ms), now_ms)
        step = span.ns // 1_000_000
        rows: list[dict[str, Any]] = []
        t = span.align_up(max(lo, LISTED + step) * 1_000_000) // 1_000_000  # t: the bucket end
        while t <= hi and len(rows) < start + count:
            if self.tape_bars:
                rows.append(self._tape_bin(symbol, label, t - step, now_ms))
            else:
                rows.append(bin_row(symbol, label, t - step, (t - step) in self.null_bins))
            t += step
        return json.dumps(rows[start:]).encode()

    def _trades(self, p: Mapping[str, str], now_ms: int) -> bytes:
        symbol = self._symbol(p)
        count, start = self._count(p, 1000)
        lo = self._time(p, "startTime", 0)
        first = max(0, -((tape.TAPE_EPOCH_MS - lo) // tape.TAPE_STEP_MS) * PER_MS)
        head = (now_ms - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS * PER_MS + PER_MS - 1
        ks = range(first + start, min(head, first + start + count - 1) + 1)
        return json.dumps([trade_row(symbol, k) for k in ks]).encode()

    def _book(self, p: Mapping[str, str], now_ms: int) -> bytes:
        symbol = self._symbol(p)
        depth = int(p.get("depth", "25")) or 5
        sells = [{"symbol": symbol, "id": 8_800_000_000 - k, "side": "Sell", "size": 100 * (k + 1), "price": 30001.5 + k, "timestamp": iso(now_ms - k)} for k in reversed(range(depth))]  # fmt: skip
        buys = [{"symbol": symbol, "id": 8_800_010_000 + k, "side": "Buy", "size": 200 * (k + 1), "price": 30000.5 - k, "timestamp": iso(now_ms - 10)} for k in range(depth)]  # fmt: skip
        return json.dumps(sells + buys).encode()

    def _funding(self, p: Mapping[str, str], now_ms: int) -> bytes:
        symbol = self._symbol(p)
        count, start = self._count(p, 500)
        lo, hi = self._time(p, "startTime", LISTED), min(self._time(p, "endTime", now_ms), now_ms)
        first = -(-(max(lo, LISTED) - FUNDING_OFFSET_MS) // FUNDING_EVERY_MS) * FUNDING_EVERY_MS + FUNDING_OFFSET_MS
        times = list(range(first, hi + 1, FUNDING_EVERY_MS))[start : start + count]
        return json.dumps([{"timestamp": iso(t), "symbol": symbol, "fundingInterval": "2000-01-01T08:00:00.000Z",
                            "fundingRate": float(rate(symbol, t)), "fundingRateDaily": 3 * float(rate(symbol, t))} for t in times]).encode()  # fmt: skip

    def _instrument(self, p: Mapping[str, str], now_ms: int) -> bytes:
        symbol = self._symbol(p)
        settle = next(i["settlCurrency"] for i in INSTRUMENTS if i["symbol"] == symbol)
        contracts, _ = open_interest(symbol, now_ms)
        row = {"symbol": symbol, "timestamp": iso(now_ms), "openInterest": int(float(contracts)), "openValue": 123_456_789_000, "settlCurrency": settle}  # fmt: skip
        return json.dumps([row]).encode()


# --- WebSocket ---------------------------------------------------------------------------------


class FakeBitmexWs(FakeWs):
    """Fake BitMEX realtime WebSocket (see the module docstring)."""

    paths = ("/realtime",)

    def welcome(self, conn: WsConnection) -> list[str]:
        return [json.dumps({"info": "Welcome to the BitMEX Realtime API.", "version": "2024-01-01T00:00:00.000Z",
                            "timestamp": iso(tape.TAPE_EPOCH_MS), "docs": "https://www.bitmex.com/app/wsAPI", "limit": {"remaining": 39}})]  # fmt: skip

    def reply(self, conn: WsConnection, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        req = json.loads(text)
        out = []
        for arg in req.get("args", []):
            table = arg.split(":")[0]
            if table not in ("trade", "tradeBin1m", "orderBookL2_25"):
                out.append(json.dumps({"status": 400, "error": f"Unknown table: {table}", "meta": {}, "request": req}))
                continue
            conn.topics.append(arg)
            out.append(json.dumps({"success": True, "subscribe": arg, "request": req}))
        conn.changed.set()
        return out

    def frames(self, conn: WsConnection, topic: str, step: int) -> list[str]:
        table, _, symbol = topic.partition(":")
        if table == "trade":  # one frame per second of tape: BitMEX batches trades in its inserts
            action = "insert" if conn.state.setdefault(topic, False) else "partial"
            conn.state[topic] = True
            rows = [trade_row(symbol, k) for k in range(step * WS_BATCH, (step + 1) * WS_BATCH)]
            return [json.dumps({"table": "trade", "action": action, "data": rows})]
        if table == "tradeBin1m":
            opened = Span("1m").align(trade_ms(step * WS_BATCH) * 1_000_000) // 1_000_000
            prev, conn.state[topic] = conn.state.get(topic), opened
            if prev is None or prev == opened:
                return []
            return [json.dumps({"table": "tradeBin1m", "action": "insert", "data": [bin_row(symbol, "1m", prev)]})]
        return [self._book(conn, topic, symbol, step)]

    @staticmethod
    def _book(conn: WsConnection, topic: str, symbol: str, step: int) -> str:
        if topic not in conn.state:
            conn.state[topic] = True
            data = [{"symbol": symbol, "id": 100 + k, "side": "Sell" if k < 2 else "Buy", "size": 10 * (k + 1), "price": 30002.0 - k} for k in range(4)]  # fmt: skip
            return json.dumps({"table": "orderBookL2_25", "action": "partial", "keys": ["symbol", "id", "side"], "filter": {"symbol": symbol}, "data": data})  # fmt: skip
        if step % 3 == 1:
            return json.dumps({"table": "orderBookL2_25", "action": "update", "data": [{"symbol": symbol, "id": 102, "side": "Buy", "size": step}]})  # fmt: skip
        if step % 3 == 2:
            return json.dumps({"table": "orderBookL2_25", "action": "insert", "data": [{"symbol": symbol, "id": 1000 + step, "side": "Buy", "size": 5, "price": 29990.0 - step}]})  # fmt: skip
        return json.dumps({"table": "orderBookL2_25", "action": "delete", "data": [{"symbol": symbol, "id": 1000 + step - 1, "side": "Buy"}]})  # fmt: skip
