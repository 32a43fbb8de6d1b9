"""A fake Binance USD-M futures host (``fapi``) on 127.0.0.1: contract table, funding rates, open interest.

``/fapi/v1/exchangeInfo`` lists a perpetual and a quarterly contract;
``/fapi/v1/fundingRate`` answers ascending from ``startTime`` (both bounds
inclusive, at most ``limit``), prints every 8 h whose early ones carry an
empty ``markPrice`` as Binance's old prints do; ``/futures/data/openInterestHist``
keeps 30 days and, like Binance, answers an over-full window with its newest
``limit`` samples. Errors are ``{"code": -1121, "msg": "Invalid symbol."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dccd.domain.spans import Span
from tests.fake.venue import ApiError, FakeRest, open_interest, rate

LISTED = 1_704_067_200_000  # 2024-01-01T00:00Z
MARK_PRICE_FROM = LISTED + 2 * 86_400_000  # earlier prints have an empty markPrice
FUNDING_EVERY_MS = 8 * 3_600_000
PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
CONTRACTS = [
    {
        "symbol": "BTCUSDT",
        "pair": "BTCUSDT",
        "contractType": "PERPETUAL",
        "status": "TRADING",
        "baseAsset": "BTC",
        "quoteAsset": "USDT",
    },
    {
        "symbol": "BTCUSDT_240329",
        "pair": "BTCUSDT",
        "contractType": "CURRENT_QUARTER",
        "status": "TRADING",
        "baseAsset": "BTC",
        "quoteAsset": "USDT",
    },
]


def mark_price(t: int) -> str:
    return "" if t < MARK_PRICE_FROM else f"{42000 + (t // FUNDING_EVERY_MS) % 1000}.12345678"


def invalid(msg: str = "Invalid symbol.", code: int = -1121) -> ApiError:
    return ApiError(400, json.dumps({"code": code, "msg": msg}).encode())


class FakeBinanceFutures(FakeRest):
    """Fake ``fapi.binance.com`` (see the module docstring)."""

    name = "binance_futures"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routes = {
            "/fapi/v1/exchangeInfo": lambda p, now: json.dumps(
                {"timezone": "UTC", "serverTime": now, "symbols": CONTRACTS}
            ).encode(),
            "/fapi/v1/fundingRate": self._funding,
            "/futures/data/openInterestHist": self._oi,
        }

    def error_body(self, status: int, message: str) -> bytes:
        return json.dumps({"code": -1003 if status == 429 else -1001, "msg": message}).encode()

    @staticmethod
    def _symbol(p: Mapping[str, str]) -> str:
        if p.get("symbol") != "BTCUSDT":
            raise invalid()
        return "BTCUSDT"

    @staticmethod
    def _limit(p: Mapping[str, str], default: int, maximum: int) -> int:
        raw = p.get("limit", str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise invalid("Data sent for parameter 'limit' is not valid.", -1130)
        return int(raw)

    def _funding(self, p: Mapping[str, str], now_ms: int) -> bytes:
        symbol = self._symbol(p)
        limit = self._limit(p, 100, 1000)
        lo, hi = max(int(p.get("startTime", "0")), LISTED), min(int(p.get("endTime", str(now_ms))), now_ms)
        first = -(-lo // FUNDING_EVERY_MS) * FUNDING_EVERY_MS
        times = list(range(first, hi + 1, FUNDING_EVERY_MS))[:limit]
        rows = [{"symbol": symbol, "fundingRate": rate(symbol, t), "fundingTime": t, "markPrice": mark_price(t)} for t in times]  # fmt: skip
        return json.dumps(rows).encode()

    def _oi(self, p: Mapping[str, str], now_ms: int) -> bytes:
        symbol = self._symbol(p)
        period = p.get("period", "")
        if period not in PERIODS:
            raise invalid("Invalid period.", -1120)
        limit = self._limit(p, 30, 500)
        span = Span(period)
        lo = max(int(p.get("startTime", "0")), now_ms - 30 * 86_400_000, LISTED)
        hi = min(int(p.get("endTime", str(now_ms))), now_ms)
        times, t = [], span.align_up(lo * 1_000_000)
        while t <= hi * 1_000_000:
            times.append(t // 1_000_000)
            t = span.next(t)
        rows = []
        for t in times[-limit:]:  # an over-full window answers its newest samples
            coins, value = open_interest(symbol, t)
            rows.append({"symbol": symbol, "sumOpenInterest": coins, "sumOpenInterestValue": value, "timestamp": t})
        return json.dumps(rows).encode()
