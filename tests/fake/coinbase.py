"""A fake Coinbase Exchange on 127.0.0.1: REST (``/products...``) and the WebSocket feed, real wire format.

Trade tape: product trade ``i`` (ids from 1, contiguous unless listed in
``missing_ids``) is :func:`tests.fake.tape.trade_at` ``i`` with a
microsecond part added to its time; ``side`` is the **maker's** side
(``sell`` when the buyer was the taker). REST ``/trades`` pages newest first
with ``after``/``limit`` and the ``CB-BEFORE``/``CB-AFTER`` headers;
``/candles`` serves :func:`synthetic_bar` rows ``[time, low, high, open,
close, volume]`` newest first, rejects more than 300 bars and unknown
granularities like Coinbase, skips ``bar_holes`` and can add the documented
bar before ``start`` (``bar_before_start``); ``/book?level=2`` a small book.

The WS feed (``/``) answers ``subscribe`` with ``subscriptions`` (or an
``error`` for unknown products), sends ``last_match`` and level-2 snapshots on
subscribe, then per tape trade a ``match``, an ``l2update`` and, every
``heartbeat_every`` trades, a ``heartbeat`` per product. With
``WsFaults(subscribe_within_s=5)`` it closes a connection that has not
subscribed within 5 s, as Coinbase does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dccd.domain.timeutil import civil_from_days, parse_iso_ns
from tests.fake.exchange import (
    ApiError,
    FakeRest,
    FakeWs,
    Reply,
    WsSession,
    cents,
    dec,
    dumps,
    loads,
    synthetic_bar,
    tape_head,
)
from tests.fake.tape import TAPE_EPOCH_MS, first_id_at, trade_at
from tests.fake.tape_bars import TapeBar, bar_of

PRODUCTS: tuple[tuple[str, str, str, str], ...] = (
    ("BTC-USD", "BTC", "USD", "online"),
    ("ETH-BTC", "ETH", "BTC", "online"),
    ("OLD-USD", "OLD", "USD", "delisted"),
)
GRANULARITIES = (60, 300, 900, 3600, 21600, 86400)


def iso_us(us: int) -> str:
    """Microseconds since the epoch as Coinbase's ``2021-04-17T16:43:30.244075Z``."""
    days, rem = divmod(us, 86_400_000_000)
    y, m, d = civil_from_days(days)
    secs, frac = divmod(rem, 1_000_000)
    return f"{y:04d}-{m:02d}-{d:02d}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{frac:06d}Z"


def trade_time_us(trade_id: int) -> int:
    """Time of product trade ``trade_id`` in µs (tape ms plus a µs part)."""
    return trade_at("X", trade_id).time_ms * 1000 + trade_id * 7919 % 1000


def trade_row(product: str, trade_id: int) -> dict[str, Any]:
    """One REST trade row (``side`` = the maker's side)."""
    t = trade_at(product, trade_id)
    side = "buy" if t.is_buyer_maker else "sell"
    return {
        "trade_id": trade_id,
        "side": side,
        "size": t.qty,
        "price": t.price,
        "time": iso_us(trade_time_us(trade_id)),
    }


class FakeCoinbase(FakeRest):
    """Fake Coinbase Exchange REST (see the module docstring)."""

    log_name = "tests.fake.coinbase"

    def __init__(
        self,
        *,
        missing_ids: Sequence[tuple[int, int]] = (),
        bar_holes: Sequence[tuple[int, int]] = (),
        bar_before_start: bool = False,
        tape_bars: bool = False,
        **kwargs: Any,
    ) -> None:
        """``tape_bars``: ``/candles`` are the aggregates of the ``/trades`` tape (Coinbase's own definition: no
        candle for a period without trades) instead of synthetic bars."""
        super().__init__(**kwargs)
        self.tape_bars = tape_bars
        self.missing_ids = list(missing_ids)  # inclusive id ranges the exchange never had
        self.bar_holes = list(bar_holes)  # [lo_ms, hi_ms) without bars
        self.bar_before_start = bar_before_start

    def error_body(self, status: int) -> bytes:
        return dumps({"message": "Slow rate limit exceeded" if status == 429 else "Internal server error"})

    def tape_bar(self, product: str, open_ms: int, step_ms: int, now_ms: int) -> TapeBar | None:
        """The bar of the tape trades (ids from 1, missing ids left out) in ``[open_ms, open_ms + step_ms)``."""
        first, stop = max(1, first_id_at(open_ms)), min(first_id_at(open_ms + step_ms), tape_head(now_ms) + 1)
        rows = []
        for i in range(first, stop):
            if not self.missing(i):
                t = trade_at(product, i)
                rows.append((t.price, t.qty))
        return bar_of(rows)

    def missing(self, trade_id: int) -> bool:
        return any(lo <= trade_id <= hi for lo, hi in self.missing_ids)

    def route(self, path: str, params: Mapping[str, str], now_ms: int) -> Reply:
        parts = path.strip("/").split("/")
        if parts == ["products"]:
            rows = [
                {"id": i, "base_currency": b, "quote_currency": q, "status": s, "trading_disabled": False}
                for i, b, q, s in PRODUCTS
            ]
            return Reply(200, dumps(rows))
        if len(parts) != 3 or parts[0] != "products":
            raise ApiError(404, {"message": "NotFound"})
        if parts[1] not in {p[0] for p in PRODUCTS}:
            raise ApiError(404, {"message": "NotFound"})
        if parts[2] == "trades":
            return self._trades(parts[1], params, now_ms)
        if parts[2] == "candles":
            return self._candles(parts[1], params, now_ms)
        if parts[2] == "book":
            return self._book(parts[1], params, now_ms)
        raise ApiError(404, {"message": "NotFound"})

    def _trades(self, product: str, params: Mapping[str, str], now_ms: int) -> Reply:
        limit = int(params.get("limit", "1000"))
        if not 1 <= limit <= 1000:
            raise ApiError(400, {"message": "Invalid limit"})
        head = tape_head(now_ms)
        after = params.get("after")
        top = head if after is None else min(head, int(after) - 1)
        rows: list[dict[str, Any]] = []
        tid = top
        while tid >= 1 and len(rows) < limit:
            if not self.missing(tid):
                rows.append(trade_row(product, tid))
            tid -= 1
        headers = {"CB-BEFORE": str(rows[0]["trade_id"]), "CB-AFTER": str(rows[-1]["trade_id"])} if rows else {}
        return Reply(200, dumps(rows), headers)

    def _candles(self, product: str, params: Mapping[str, str], now_ms: int) -> Reply:
        gran = int(params.get("granularity", "0") or 0)
        if gran not in GRANULARITIES:
            raise ApiError(400, {"message": "Unsupported granularity"})
        step = gran * 1000
        end = parse_iso_ns(params["end"]) // 1_000_000 if "end" in params else now_ms
        start = parse_iso_ns(params["start"]) // 1_000_000 if "start" in params else end - 299 * step
        first, last = -(-start // step) * step, min(end, now_ms) // step * step
        if (end - start) // step + 1 > 300:
            msg = "granularity too small for the requested time range. Count of aggregations requested exceeds 300"
            raise ApiError(400, {"message": msg})
        if self.bar_before_start:
            first -= step
        rows = []
        for t in range(last, max(first, TAPE_EPOCH_MS) - 1, -step):
            if any(lo <= t < hi for lo, hi in self.bar_holes):
                continue
            if self.tape_bars:
                b = self.tape_bar(product, t, step, now_ms)
                if b is not None:
                    rows.append(f"[{t // 1000},{b.low},{b.high},{b.open},{b.close},{b.volume}]")
                continue
            o, h, lo, c, v, _ = synthetic_bar(f"{product}:{gran}", t)
            rows.append(f"[{t // 1000},{dec(lo, 2)},{dec(h, 2)},{dec(o, 2)},{dec(c, 2)},{dec(v, 5)}]")
        return Reply(200, ("[" + ",".join(rows) + "]").encode())

    def _book(self, product: str, params: Mapping[str, str], now_ms: int) -> Reply:
        mid = cents(trade_at(product, max(1, tape_head(now_ms))).price)
        bids = [[dec(mid - 1 - i, 2), dec(1000 + i, 5), 1 + i % 3] for i in range(50)]
        asks = [[dec(mid + 1 + i, 2), dec(2000 + i, 5), 1 + i % 2] for i in range(50)]
        body = {
            "bids": bids,
            "asks": asks,
            "sequence": 1000 + tape_head(now_ms),
            "auction_mode": False,
            "auction": None,
            "time": iso_us(now_ms * 1000),
        }
        return Reply(200, dumps(body))


class FakeCoinbaseWs(FakeWs):
    """Fake Coinbase Exchange WebSocket feed (see the module docstring)."""

    def __init__(self, *, heartbeat_every: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat_every = heartbeat_every

    def accepts(self, path: str) -> bool:
        return path in ("", "/")

    def reply(self, session: WsSession, text: str) -> list[str]:
        msg = loads(text)
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            return [self._error("Failed to subscribe", "type is not subscribe")]
        default = msg.get("product_ids") or []
        wanted: dict[str, list[str]] = {}
        for ch in msg.get("channels") or []:
            name, products = (
                (ch, default) if isinstance(ch, str) else (ch.get("name"), ch.get("product_ids") or default)
            )
            wanted.setdefault(str(name), []).extend(products)
        known = {p[0] for p in PRODUCTS}
        for products in wanted.values():
            for product in products:
                if product not in known:
                    return [self._error("Failed to subscribe", f"{product} is not a valid product")]
        out = []
        for name, products in wanted.items():
            subs = session.subs.setdefault(name, [])
            for product in products:
                if msg["type"] == "unsubscribe":
                    subs[:] = [p for p in subs if p != product]
                elif product not in subs:
                    subs.append(product)
                    out.extend(self._on_subscribe(name, product))
        channels = [{"name": n, "product_ids": p} for n, p in session.subs.items() if p]
        return [dumps({"type": "subscriptions", "channels": channels}).decode(), *out]

    @staticmethod
    def _error(message: str, reason: str) -> str:
        return dumps({"type": "error", "message": message, "reason": reason}).decode()

    def _on_subscribe(self, channel: str, product: str) -> list[str]:
        last = self.start_id() - 1
        if channel == "matches" and last >= 1:
            return [self._match(product, last, "last_match")]
        if channel in ("level2", "level2_batch"):
            mid = cents(trade_at(product, max(1, last)).price)
            bids = [[dec(mid - 1 - i, 2), dec(500 + i, 5)] for i in range(5)]
            asks = [[dec(mid + 1 + i, 2), dec(700 + i, 5)] for i in range(5)]
            return [dumps({"type": "snapshot", "product_id": product, "bids": bids, "asks": asks}).decode()]
        return []

    @staticmethod
    def _match(product: str, trade_id: int, kind: str = "match") -> str:
        row = trade_row(product, trade_id)
        return (
            f'{{"type":"{kind}","trade_id":{trade_id},"maker_order_id":"m-{trade_id:08x}","taker_order_id":"t-{trade_id:08x}",'
            f'"side":"{row["side"]}","size":"{row["size"]}","price":"{row["price"]}","product_id":"{product}",'
            f'"sequence":{trade_id * 3},"time":"{row["time"]}"}}'
        )

    def frames(self, session: WsSession, trade_id: int) -> list[str]:
        out = [self._match(p, trade_id) for p in session.subs.get("matches", ())]
        for product in [*session.subs.get("level2_batch", ()), *session.subs.get("level2", ())]:
            t = trade_at(product, trade_id)
            side = "buy" if t.is_buyer_maker else "sell"
            change = [[side, t.price, t.qty]]
            time = iso_us(trade_time_us(trade_id))
            out.append(dumps({"type": "l2update", "product_id": product, "changes": change, "time": time}).decode())
        if trade_id % self.heartbeat_every == 0:
            for product in session.subs.get("heartbeat", ()):
                hb = {
                    "type": "heartbeat",
                    "last_trade_id": trade_id,
                    "product_id": product,
                    "sequence": trade_id * 3 + 1,
                }
                out.append(dumps(hb | {"time": iso_us(trade_time_us(trade_id))}).decode())
        return out
