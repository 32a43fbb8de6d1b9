"""A fake Kraken spot exchange on 127.0.0.1: REST (``/0/public/...``) and WebSocket v2, real wire format.

Every REST answer is ``{"error": [...], "result": {...}}`` with HTTP 200, errors
included (``EQuery:Unknown asset pair``; inject ``EGeneral:Too many
requests`` with ``RestFaults(bodies={n: (200, TOO_MANY)})``). Results are
keyed by the internal pair name (``XXBTZUSD``) whatever altname was asked.

Trade tape of a pair: tape trade ``k`` (:func:`tests.fake.tape.trade_at`)
has ``trade_id = k + 1``; trades come in groups of 3 sharing one
microsecond timestamp (one taker order filling three makers), so page seams
fall inside same-time groups. ``/Trades`` pages ascending after ``since``
(exclusive; nanoseconds, or seconds when small) up to ``count`` rows, times
as float-seconds JSON numbers, ``last`` the nanosecond time of the last row.
``/OHLC`` returns at most the 720 most recent bars after ``since``, the last
one still open, and ``last`` = the last committed bar. ``missing_ids`` are
trade ids Kraken never had.

WS v2 (``/v2``): a ``status`` greeting, per-symbol subscribe acks (errors for
unknown pairs), trade snapshots (last 50) and updates, OHLC snapshots and
updates of the bar in progress, book snapshots and updates, and a
``heartbeat`` every ``heartbeat_every`` tape trades.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tests.fake.coinbase import iso_us
from tests.fake.exchange import ApiError, FakeRest, FakeWs, Reply, WsSession, cents, dec, dumps, loads, synthetic_bar
from tests.fake.tape import TAPE_EPOCH_MS, trade_at
from tests.fake.tape_bars import TapeBar, bar_of

# (result key, altname, wsname v1, WS v2 symbol, status)
PAIRS: tuple[tuple[str, str, str, str, str], ...] = (
    ("XXBTZUSD", "XBTUSD", "XBT/USD", "BTC/USD", "online"),
    ("XETHZUSD", "ETHUSD", "ETH/USD", "ETH/USD", "online"),
    ("XXDGZUSD", "XDGUSD", "XDG/USD", "DOGE/USD", "online"),
    ("OLDUSD", "OLDUSD", "OLD/USD", "OLD/USD", "delisted"),
)
INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
GROUP = 3  # trades sharing one timestamp
GROUP_STEP_US = 300_000
TOO_MANY = b'{"error":["EGeneral:Too many requests"]}'
_BY_ALT = {p[1]: p for p in PAIRS} | {p[0]: p for p in PAIRS}
_BY_WS = {p[3]: p for p in PAIRS}


def trade_time_us(k: int, step_us: int = GROUP_STEP_US) -> int:
    """Time (µs) of tape trade ``k``: groups of 3 share it, ``step_us`` (300 ms) apart plus a sub-100 ms part."""
    g = k // GROUP
    return TAPE_EPOCH_MS * 1000 + g * step_us + g * 1_234_567 % 100_000


def first_k_after(since_us: int, step_us: int = GROUP_STEP_US) -> int:
    """Smallest tape index whose time is strictly after ``since_us``."""
    g = max(0, (since_us - TAPE_EPOCH_MS * 1000) // step_us - 1)
    while trade_time_us(g * GROUP, step_us) <= since_us:
        g += 1
    return g * GROUP


def head_k(now_ms: int, step_us: int = GROUP_STEP_US) -> int:
    """Last tape index traded at or before ``now_ms`` (-1 before the tape starts)."""
    k = first_k_after(now_ms * 1000, step_us)
    return k - 1


class FakeKraken(FakeRest):
    """Fake Kraken REST (see the module docstring)."""

    log_name = "tests.fake.kraken"

    def __init__(
        self,
        *,
        missing_ids: Sequence[tuple[int, int]] = (),
        step_us: int = GROUP_STEP_US,
        tape_bars: bool = False,
        **kwargs: Any,
    ) -> None:
        """``step_us``: tape time between trade groups (REST only; a sparser tape makes months of trades
        cheap). ``tape_bars``: ``/OHLC`` bars are the aggregates of the ``/Trades`` tape (Kraken's own
        definition) instead of synthetic ones."""
        super().__init__(**kwargs)
        self.missing_ids = list(missing_ids)
        self.step_us = step_us
        self.tape_bars = tape_bars

    def tape_bar(self, altname: str, open_ms: int, step_ms: int) -> TapeBar | None:
        """The bar of the REST tape trades in ``[open_ms, open_ms + step_ms)`` (ids Kraken never had left out)."""
        k, stop = (
            first_k_after(open_ms * 1000 - 1, self.step_us),
            first_k_after((open_ms + step_ms) * 1000 - 1, self.step_us),
        )
        rows = []
        for i in range(k, stop):
            if not any(lo <= i + 1 <= hi for lo, hi in self.missing_ids):
                t = trade_at(altname, i)
                rows.append((t.price, t.qty))
        return bar_of(rows)

    def error_body(self, status: int) -> bytes:
        return TOO_MANY if status == 429 else b'{"error":["EService:Unavailable"]}'

    def route(self, path: str, params: Mapping[str, str], now_ms: int) -> Reply:
        if path == "/0/public/AssetPairs":
            result: dict[str, Any] = {}
            for key, alt, wsname, _, status in PAIRS:
                base, quote = wsname.split("/")
                result[key] = {
                    "altname": alt,
                    "wsname": wsname,
                    "base": "X" + base,
                    "quote": "Z" + quote,
                    "status": status,
                }
            result["XBTUSD.d"] = {"altname": "XBTUSD.d", "base": "XXBT", "quote": "ZUSD"}  # dark pool: no wsname
            return Reply(200, dumps({"error": [], "result": result}))
        handler = {"/0/public/Trades": self._trades, "/0/public/OHLC": self._ohlc, "/0/public/Depth": self._depth}.get(
            path
        )
        if handler is None:
            raise ApiError(404, {"error": ["EGeneral:Unknown method"]})
        pair = _BY_ALT.get(params.get("pair", ""))
        if pair is None:
            raise ApiError(200, {"error": ["EQuery:Unknown asset pair"]})
        return handler(pair, params, now_ms)

    def _trades(self, pair: tuple[str, ...], params: Mapping[str, str], now_ms: int) -> Reply:
        count = int(params.get("count", "1000"))
        if not 1 <= count <= 1000:
            raise ApiError(200, {"error": ["EGeneral:Invalid arguments:count"]})
        since = int(params.get("since", "0") or 0)
        since_us = since * 1_000_000 if since < 10**12 else since // 1000
        k, head = first_k_after(since_us, self.step_us), head_k(now_ms, self.step_us)
        rows: list[str] = []
        while k <= head and len(rows) < count:
            tid = k + 1
            if not any(lo <= tid <= hi for lo, hi in self.missing_ids):
                t, us = trade_at(pair[1], k), trade_time_us(k, self.step_us)
                side = "s" if t.is_buyer_maker else "b"
                rows.append(f'["{t.price}","{t.qty}",{us // 1_000_000}.{us % 1_000_000:06d},"{side}","l","",{tid}]')
            k += 1
        last = trade_time_us(k - 1, self.step_us) * 1000 if rows else since_us * 1000
        body = f'{{"error":[],"result":{{"{pair[0]}":[{",".join(rows)}],"last":"{last}"}}}}'
        return Reply(200, body.encode())

    def _ohlc(self, pair: tuple[str, ...], params: Mapping[str, str], now_ms: int) -> Reply:
        interval = int(params.get("interval", "1"))
        if interval not in INTERVALS:
            raise ApiError(200, {"error": ["EGeneral:Invalid arguments"]})
        step = interval * 60_000
        current = now_ms // step * step
        since_ms = int(params.get("since", "0") or 0) * 1000
        first = max(since_ms // step * step + step, current - 719 * step, TAPE_EPOCH_MS // step * step)
        rows = []
        for t in range(first, current + 1, step):
            if self.tape_bars:
                b = self.tape_bar(pair[1], t, step if t < current else now_ms + 1 - t)  # the open bar: up to now
                if b is not None:
                    rows.append(
                        f'[{t // 1000},"{b.open}","{b.high}","{b.low}","{b.close}","{b.vwap}","{b.volume}",{b.trades}]'
                    )
                continue
            o, h, lo, c, v, n = synthetic_bar(f"{pair[1]}:{interval}", t)
            vwap = (o + c) // 2
            rows.append(
                f'[{t // 1000},"{dec(o, 2)}","{dec(h, 2)}","{dec(lo, 2)}","{dec(c, 2)}","{dec(vwap, 2)}","{dec(v, 8)}",{n}]'
            )
        body = f'{{"error":[],"result":{{"{pair[0]}":[{",".join(rows)}],"last":{(current - step) // 1000}}}}}'
        return Reply(200, body.encode())

    def _depth(self, pair: tuple[str, ...], params: Mapping[str, str], now_ms: int) -> Reply:
        count = int(params.get("count", "100"))
        mid = cents(trade_at(pair[1], max(0, head_k(now_ms))).price)
        asks = [[dec(mid + 1 + i, 2), dec(1000 + i, 3), now_ms // 1000 - i] for i in range(count)]
        bids = [[dec(mid - 1 - i, 2), dec(2000 + i, 3), now_ms // 1000 - i] for i in range(count)]
        return Reply(200, dumps({"error": [], "result": {pair[0]: {"asks": asks, "bids": bids}}}))


class FakeKrakenWs(FakeWs):
    """Fake Kraken WS v2 (see the module docstring)."""

    def __init__(self, *, heartbeat_every: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat_every = heartbeat_every

    def accepts(self, path: str) -> bool:
        return path == "/v2"

    def greeting(self, session: WsSession) -> list[str]:
        data = [
            {
                "api_version": "v2",
                "connection_id": 10_000_000_000_000_000_000 + session.index,
                "system": "online",
                "version": "2.0.0",
            }
        ]
        return [dumps({"channel": "status", "type": "update", "data": data}).decode()]

    def reply(self, session: WsSession, text: str) -> list[str]:
        msg = loads(text)
        if not isinstance(msg, dict) or "method" not in msg:
            return [dumps({"error": "Malformed request", "success": False}).decode()]
        req_id, method = msg.get("req_id"), msg["method"]
        if method == "ping":
            return [dumps({"method": "pong", "req_id": req_id, "time_in": "x", "time_out": "x"}).decode()]
        params = msg.get("params") or {}
        channel = params.get("channel")
        out = []
        for name in params.get("symbol") or []:
            ack: dict[str, Any] = {"method": method, "req_id": req_id, "time_in": "2024-01-01T00:00:00.000000Z"}
            if name not in _BY_WS or channel not in ("trade", "ohlc", "book"):
                out.append(
                    dumps(
                        ack | {"error": f"Currency pair not supported {name}", "success": False, "symbol": name}
                    ).decode()
                )
                continue
            key: tuple[Any, ...] = (
                channel,
                name,
                params.get("interval", 1) if channel == "ohlc" else params.get("depth", 10),
            )
            session.subs[key] = True
            out.append(
                dumps(
                    ack | {"result": {"channel": channel, "symbol": name, "snapshot": True}, "success": True}
                ).decode()
            )
            if params.get("snapshot", True):
                out.extend(self._snapshot(session, key))
        return out

    @staticmethod
    def _trade_row(name: str, k: int) -> dict[str, Any]:
        t = trade_at(_BY_WS[name][1], k)
        side = "sell" if t.is_buyer_maker else "buy"
        return {
            "symbol": name,
            "side": side,
            "price": float(t.price),
            "qty": float(t.qty),
            "ord_type": "limit",
            "trade_id": k + 1,
            "timestamp": iso_us(trade_time_us(k)),
        }

    def _bar(self, name: str, interval: int, open_us: int, upto_k: int) -> dict[str, Any]:
        step_us = interval * 60_000_000
        o, h, lo, c, v, n = synthetic_bar(f"{_BY_WS[name][1]}:ws{interval}", open_us // 1000)
        row = {"symbol": name, "open": o / 100, "high": h / 100, "low": lo / 100, "close": c / 100, "trades": n}
        return (
            row
            | {
                "volume": v / 1e5,
                "vwap": (o + c) / 200,
                "interval_begin": iso_us(open_us),
                "interval": interval,
                "timestamp": iso_us(open_us + step_us),
            }
            | {"upto": upto_k}
        )

    def _snapshot(self, session: WsSession, key: tuple[Any, ...]) -> list[str]:
        channel, name, extra = key
        last = self.start_id() - 1
        if channel == "trade":
            rows = [self._trade_row(name, k) for k in range(max(0, last - 49), last + 1)]
            return [dumps({"channel": "trade", "type": "snapshot", "data": rows}).decode()]
        if channel == "ohlc":
            step_us = extra * 60_000_000
            now_bar = trade_time_us(max(0, last)) // step_us * step_us
            rows = [self._bar(name, extra, now_bar - i * step_us, last) for i in (2, 1, 0)]
            for r in rows:
                r.pop("upto")
            return [dumps({"channel": "ohlc", "type": "snapshot", "data": rows}).decode()]
        mid = cents(trade_at(_BY_WS[name][1], max(0, last)).price)
        bids = [{"price": (mid - 1 - i) / 100, "qty": 1.0 + i} for i in range(extra)]
        asks = [{"price": (mid + 1 + i) / 100, "qty": 2.0 + i} for i in range(extra)]
        data = [{"symbol": name, "bids": bids, "asks": asks, "checksum": 12345}]
        return [dumps({"channel": "book", "type": "snapshot", "data": data}).decode()]

    def frames(self, session: WsSession, trade_id: int) -> list[str]:
        k, out = trade_id, []
        for channel, name, extra in list(session.subs):
            if channel == "trade":
                out.append(dumps({"channel": "trade", "type": "update", "data": [self._trade_row(name, k)]}).decode())
            elif channel == "ohlc":
                step_us = extra * 60_000_000
                row = self._bar(name, extra, trade_time_us(k) // step_us * step_us, k)
                row.pop("upto")
                out.append(
                    dumps({"channel": "ohlc", "type": "update", "timestamp": row["timestamp"], "data": [row]}).decode()
                )
            else:
                t = trade_at(_BY_WS[name][1], k)
                level = [{"price": float(t.price), "qty": float(t.qty)}]
                data = [
                    {"symbol": name, "bids": level, "asks": [], "checksum": k, "timestamp": iso_us(trade_time_us(k))}
                ]
                out.append(dumps({"channel": "book", "type": "update", "data": data}).decode())
        if session.subs and trade_id % self.heartbeat_every == 0:
            out.append('{"channel":"heartbeat"}')
        return out
