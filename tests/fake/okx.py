"""A fake OKX v5 (REST and public WebSocket) on 127.0.0.1, speaking OKX's wire format.

REST: ``/api/v5/public/instruments`` (SPOT, SWAP), ``/api/v5/market/candles``
(the latest 1440 bars) and ``history-candles`` (newest first, exclusive
``before``/``after`` cursors; ``before`` alone returns the newest rows, as OKX
does; the bar in progress has ``confirm`` "0"), ``history-trades`` (3 months;
``type=1`` by trade id, ``type=2`` by time), ``books``,
``/api/v5/public/funding-rate-history`` (every 8 h, 3 months) and
``/api/v5/rubik/stat/contracts/open-interest-history`` (the latest 1440
samples). Unknown instruments answer ``{"code":"51001"}`` with HTTP 200.

WebSocket at ``/ws/v5/public`` (books, trades) and ``/ws/v5/business``
(``trades-all``, candles): subscribing a channel on the wrong one is refused
with code 60018, as OKX does; the text ``ping`` gets ``pong``. Books come as a
snapshot then updates, each with OKX's CRC32 checksum and seq ids.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dccd.domain.spans import Span
from tests.fake import tape
from tests.fake.tape_bars import TapeBar, bar_of
from tests.fake.venue import ApiError, FakeRest, FakeWs, WsConnection, bar, open_interest, rate

LISTED = 1_704_067_200_000  # 2024-01-01T00:00Z
TRADE_ID0 = 500_000_000  # OKX trade id of tape trade 0
DAY_MS = 86_400_000
BARS = {"1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1H": "1h", "2H": "2h", "4H": "4h",
        "6Hutc": "6h", "12Hutc": "12h", "1Dutc": "1d", "1Wutc": "1w", "1Mutc": "1M"}  # fmt: skip
INSTRUMENTS = {"BTC-USDT": ("SPOT", "BTC", "USDT"), "ETH-USDT": ("SPOT", "ETH", "USDT"), "BTC-USDT-SWAP": ("SWAP", "BTC", "USDT")}  # fmt: skip
CT_VAL = Decimal("0.01")  # BTC per BTC-USDT-SWAP contract
FUNDING_EVERY_MS = 8 * 3_600_000


def ok(data: Any) -> bytes:
    return json.dumps({"code": "0", "msg": "", "data": data}).encode()


def failed(code: str, msg: str, status: int = 200) -> ApiError:
    return ApiError(status, json.dumps({"code": code, "msg": msg, "data": []}).encode())


def bar_opens(span: Span, lo_ms: int, hi_ms: int) -> list[int]:
    out, t = [], span.align_up(lo_ms * 1_000_000)
    while t <= hi_ms * 1_000_000:
        out.append(t // 1_000_000)
        t = span.next(t)
    return out


def trade_row(inst: str, tid: int) -> dict[str, str]:
    """An OKX trade (``tid`` = tape id) of instrument ``inst``."""
    t = tape.trade_at(inst, tid)
    return {"instId": inst, "tradeId": str(TRADE_ID0 + tid), "px": t.price, "sz": t.qty,
            "side": "sell" if t.is_buyer_maker else "buy", "ts": str(t.time_ms)}  # fmt: skip


def candle_row(inst: str, label: str, open_ms: int, confirm: str) -> list[str]:
    """OKX's 9-column candle row of the synthetic bar (``vol`` in contracts for swaps)."""
    b = bar(f"{inst}:{label}", open_ms)
    if inst.endswith("-SWAP"):
        return [
            str(open_ms),
            b.open,
            b.high,
            b.low,
            b.close,
            str(Decimal(b.volume) / CT_VAL),
            b.volume,
            b.quote,
            confirm,
        ]
    return [str(open_ms), b.open, b.high, b.low, b.close, b.volume, b.quote, b.quote, confirm]


class FakeOkx(FakeRest):
    """Fake OKX v5 REST state (see the module docstring); ``skip_ids`` are tape ids that never traded."""

    name = "okx"

    def __init__(self, *, skip_ids: frozenset[int] = frozenset(), tape_bars: bool = False, **kwargs: Any) -> None:
        """``tape_bars``: spot candles are the aggregates of the trades tape (OKX's own definition) instead of
        synthetic bars."""
        super().__init__(**kwargs)
        self.skip_ids = skip_ids
        self.tape_bars = tape_bars
        self.routes = {
            "/api/v5/public/instruments": self._instruments,
            "/api/v5/market/candles": lambda p, now: self._candles(p, now, 300, recent=True),
            "/api/v5/market/history-candles": lambda p, now: self._candles(p, now, 100, recent=False),
            "/api/v5/market/history-trades": self._history_trades,
            "/api/v5/market/books": self._books,
            "/api/v5/public/funding-rate-history": self._funding,
            "/api/v5/rubik/stat/contracts/open-interest-history": self._open_interest,
        }

    def error_body(self, status: int, message: str) -> bytes:
        if status == 429:
            return b'{"msg":"Too Many Requests","code":"50011"}'
        return json.dumps({"code": "50001", "msg": "Service temporarily unavailable", "data": []}).encode()

    @staticmethod
    def _inst(p: Mapping[str, str], swap_only: bool = False) -> str:
        inst = p.get("instId", "")
        if inst not in INSTRUMENTS or (swap_only and not inst.endswith("-SWAP")):
            raise failed("51001", "Instrument ID does not exist")
        return inst

    @staticmethod
    def _limit(p: Mapping[str, str], maximum: int) -> int:
        raw = p.get("limit", str(min(100, maximum)))
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise failed("51000", "Parameter limit error")
        return int(raw)

    @staticmethod
    def _between(items: list[int], p: Mapping[str, str], lo: str, hi: str) -> list[int]:
        """Items strictly inside the exclusive cursors, then the newest ``limit`` of them, newest first."""
        if hi in p:
            items = [x for x in items if x < int(p[hi])]
        if lo in p:
            items = [x for x in items if x > int(p[lo])]
        return items[::-1]

    def _instruments(self, p: Mapping[str, str], now_ms: int) -> bytes:
        kind = p.get("instType", "")
        rows = []
        for inst, (typ, base, quote) in INSTRUMENTS.items():
            if typ != kind:
                continue
            if typ == "SPOT":
                rows.append(
                    {"instType": typ, "instId": inst, "baseCcy": base, "quoteCcy": quote, "uly": "", "state": "live"}
                )
            else:
                rows.append({"instType": typ, "instId": inst, "baseCcy": "", "quoteCcy": "", "uly": f"{base}-{quote}",
                             "instFamily": f"{base}-{quote}", "ctVal": str(CT_VAL), "ctValCcy": base, "state": "live"})  # fmt: skip
        return ok(rows)

    def _candles(self, p: Mapping[str, str], now_ms: int, maximum: int, *, recent: bool) -> bytes:
        inst = self._inst(p)
        label = BARS.get(p.get("bar", "1m"))
        if label is None:
            raise failed("51000", "Parameter bar error")
        limit = self._limit(p, maximum)
        opens = bar_opens(Span(label), LISTED, now_ms)
        if recent:
            opens = opens[-1440:]
        current = opens[-1] if opens else None
        picked = self._between(opens, p, "before", "after")[:limit]
        if self.tape_bars and not inst.endswith("-SWAP"):
            step = Span(label).ns // 1_000_000
            rows = []
            for t in picked:
                b = self.tape_bar(inst, t, step, now_ms)
                if b is not None:
                    confirm = "0" if t == current else "1"
                    rows.append(
                        [str(t), b.open, b.high, b.low, b.close, b.volume, b.quote_volume, b.quote_volume, confirm]
                    )
            return ok(rows)
        return ok([candle_row(inst, label, t, "0" if t == current else "1") for t in picked])

    def tape_bar(self, inst: str, open_ms: int, step_ms: int, now_ms: int) -> TapeBar | None:
        """The bar of the tape trades (``skip_ids`` left out) in ``[open_ms, open_ms + step_ms)``."""
        head = (now_ms - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS
        stop = min(tape.first_id_at(open_ms + step_ms), head + 1)
        rows = []
        for i in range(tape.first_id_at(open_ms), stop):
            if i not in self.skip_ids:
                t = tape.trade_at(inst, i)
                rows.append((t.price, t.qty))
        return bar_of(rows)

    def _history_trades(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._inst(p)
        limit = self._limit(p, 100)
        head = (now_ms - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS
        oldest = max(0, tape.first_id_at(now_ms - 90 * DAY_MS))
        if p.get("type", "1") == "2":
            if "before" in p:
                raise failed("51000", "Parameter before error")
            hi_id = tape.first_id_at(int(p["after"])) - 1 if "after" in p else head
            ids = [i for i in range(min(hi_id, head), max(oldest, min(hi_id, head) - 10 * limit) - 1, -1)]
        else:
            lo = int(p["before"]) - TRADE_ID0 + 1 if "before" in p else oldest
            hi = int(p["after"]) - TRADE_ID0 - 1 if "after" in p else head
            ids = list(range(min(hi, head), max(lo, oldest) - 1, -1))
            if "before" in p and "after" not in p:
                ids = list(range(head, max(lo, oldest) - 1, -1))  # "before" alone: the latest rows
        rows = [trade_row(inst, i) for i in ids if i not in self.skip_ids][:limit]
        return ok(rows)

    def _books(self, p: Mapping[str, str], now_ms: int) -> bytes:
        self._inst(p)
        depth = self._limit({"limit": p.get("sz", "1")}, 400)
        asks = [[f"{30001 + k}.5", f"{k + 1}.5", "0", str(k + 1)] for k in range(depth)]
        bids = [[f"{30000 - k}.5", f"{k + 2}.5", "0", str(k + 2)] for k in range(depth)]
        return ok([{"asks": asks, "bids": bids, "ts": str(now_ms)}])

    def _funding(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._inst(p, swap_only=True)
        limit = self._limit(p, 400)
        first = max(LISTED, now_ms - 90 * DAY_MS)
        times = list(range(-(-first // FUNDING_EVERY_MS) * FUNDING_EVERY_MS, now_ms + 1, FUNDING_EVERY_MS))
        picked = self._between(times, p, "before", "after")[:limit]
        return ok([{"instType": "SWAP", "instId": inst, "formulaType": "withRate", "fundingRate": "0.0001",
                    "realizedRate": rate(inst, t), "fundingTime": str(t), "method": "current_period"} for t in picked])  # fmt: skip

    def _open_interest(self, p: Mapping[str, str], now_ms: int) -> bytes:
        inst = self._inst(p, swap_only=True)
        label = {"1H": "1h", "2H": "2h", "4H": "4h", "6Hutc": "6h", "12Hutc": "12h", "1Dutc": "1d"}.get(p.get("period", "5m"), p.get("period", "5m"))  # fmt: skip
        limit = self._limit(p, 100)
        times = bar_opens(Span(label), LISTED, now_ms)[-1440:]
        rows = []
        for t in self._between(times, p, "begin", "end")[:limit]:
            coins, usd = open_interest(inst, t)
            rows.append([str(t), str(Decimal(coins) / CT_VAL), coins, usd])
        return ok(rows)


# --- WebSocket ---------------------------------------------------------------------------------

_BUSINESS = ("trades-all", "candle")
_PUBLIC = ("trades", "books")


def okx_checksum(bids: dict[str, str], asks: dict[str, str]) -> int:
    """OKX's signed CRC32 of the interleaved top-25 levels (a second, plain implementation)."""
    b = sorted(bids.items(), key=lambda kv: -float(kv[0]))[:25]
    a = sorted(asks.items(), key=lambda kv: float(kv[0]))[:25]
    parts = []
    for i in range(max(len(b), len(a))):
        if i < len(b):
            parts += [b[i][0], b[i][1]]
        if i < len(a):
            parts += [a[i][0], a[i][1]]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


class FakeOkxWs(FakeWs):
    """Fake OKX public and business WebSocket (see the module docstring)."""

    paths = ("/ws/v5/public", "/ws/v5/business")

    def reply(self, conn: WsConnection, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        try:
            req = json.loads(text)
        except ValueError:
            return [json.dumps({"event": "error", "msg": f"Illegal request: {text}", "code": "60012", "connId": "c"})]
        out = []
        for arg in req.get("args", []):
            ch, inst = arg.get("channel", ""), arg.get("instId", "")
            business = ch.startswith(_BUSINESS)
            if business != conn.path.endswith("business") or not (business or ch in _PUBLIC):
                msg = f"Wrong URL or channel:{ch},instId:{inst} doesn't exist. Please use the correct URL, channel and parameters referring to API document."  # fmt: skip
                out.append(json.dumps({"event": "error", "msg": msg, "code": "60018", "connId": f"c{conn.index}"}))
                continue
            conn.topics.append(f"{ch}|{inst}")
            out.append(json.dumps({"event": req.get("op"), "arg": {"channel": ch, "instId": inst}, "connId": f"c{conn.index}"}))  # fmt: skip
        conn.changed.set()
        return out

    def frames(self, conn: WsConnection, topic: str, step: int) -> list[str]:
        ch, _, inst = topic.partition("|")
        arg = {"channel": ch, "instId": inst}
        if ch in ("trades-all", "trades"):
            return [json.dumps({"arg": arg, "data": [trade_row(inst, step)]})]
        if ch.startswith("candle"):
            label = BARS[ch[6:]]
            opened = Span(label).align(tape.trade_time_ms(step) * 1_000_000) // 1_000_000
            out, prev = [], conn.state.get(topic)
            if prev is not None and prev != opened:
                out.append(json.dumps({"arg": arg, "data": [candle_row(inst, label, prev, "1")]}))
            conn.state[topic] = opened
            if step % 5 == 0:
                out.append(json.dumps({"arg": arg, "data": [candle_row(inst, label, opened, "0")]}))
            return out
        return [self._book(conn, topic, arg, step)]

    @staticmethod
    def _book(conn: WsConnection, topic: str, arg: dict[str, str], step: int) -> str:
        book = conn.state.get(topic)
        ts = str(tape.trade_time_ms(step))
        if book is None:
            book = conn.state[topic] = {"bids": {f"{30000 - k}.5": str(k + 1) for k in range(5)},
                                        "asks": {f"{30001 + k}.5": str(k + 2) for k in range(5)}, "seq": 1000}  # fmt: skip
            data = {"asks": [[p, s, "0", "1"] for p, s in book["asks"].items()],
                    "bids": [[p, s, "0", "1"] for p, s in book["bids"].items()], "ts": ts,
                    "checksum": okx_checksum(book["bids"], book["asks"]), "prevSeqId": -1, "seqId": book["seq"]}  # fmt: skip
            return json.dumps({"arg": arg, "action": "snapshot", "data": [data]})
        price, size = f"{30000 - step % 7}.5", "0" if step % 3 == 0 else str(step % 5 + 1)
        if size == "0":
            book["bids"].pop(price, None)
        else:
            book["bids"][price] = size
        prev, book["seq"] = book["seq"], book["seq"] + 3
        data = {"asks": [], "bids": [[price, size, "0", "1"]], "ts": ts,
                "checksum": okx_checksum(book["bids"], book["asks"]), "prevSeqId": prev, "seqId": book["seq"]}  # fmt: skip
        return json.dumps({"arg": arg, "action": "update", "data": [data]})
