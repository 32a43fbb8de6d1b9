"""A fake Binance spot REST exchange for tests: real HTTP on 127.0.0.1, real wire format.

Serves ``/api/v3/klines``, ``aggTrades``, ``historicalTrades``, ``trades``,
``depth`` and ``exchangeInfo`` from deterministic synthetic data
(:mod:`tests.fake.binance_data`), charges Binance's request weights, answers
with ``X-MBX-USED-WEIGHT-1M``, answers 429 (then 418 if configured) when a
window's budget is exceeded, and records the most weight used in any window.
Faults are injected by request number (1-based, counting every request)::

    async with open_fake_binance(errors={1: 503}, too_many={2: "3"}, malformed={4: "field"}) as fake:
        ...  # fake.url, fake.requests, fake.max_used_weight

``source="shared"`` serves the trade tape of :mod:`tests.fake.tape` (the one
the fake WebSocket pushes) instead of the synthetic one.

The app is a Litestar app served by ``hypercorn.trio.serve`` inside the
caller's Trio run (measured ~500-850 req/s with an in-process httpx client,
see tests/bench/bench_fake_binance.py). A WebSocket side can be added later as
one more route handler in :meth:`FakeBinance.route_handlers` on the same server.
:meth:`FakeBinance.mock_transport` serves the same logic to an httpx client
without sockets, for tests that assert exact times under ``autojump_clock``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from litestar import Litestar, Response, get
from litestar import Request as LitestarRequest
from litestar.handlers import BaseRouteHandler

from dccd.domain.spans import SPAN_LABELS, Span
from tests.fake.binance_data import FakeMarket, SharedTape, Tape

DEFAULT_MARKETS: tuple[FakeMarket, ...] = (
    FakeMarket("BTCUSDT", "BTC", "USDT", listed_ms=1_502_942_400_000),  # 2017-08-17T04:00Z
    FakeMarket("ETHBTC", "ETH", "BTC", listed_ms=1_500_004_800_000, price_units=5_000_000),
    FakeMarket("OLDUSDT", "OLD", "USDT", listed_ms=1_600_000_000_000, status="BREAK", price_units=100_000_000),
)
PATHS = (
    "/api/v3/klines",
    "/api/v3/aggTrades",
    "/api/v3/historicalTrades",
    "/api/v3/trades",
    "/api/v3/depth",
    "/api/v3/exchangeInfo",
)
_FIXED_WEIGHT = {PATHS[0]: 2, PATHS[1]: 4, PATHS[2]: 25, PATHS[3]: 25, PATHS[5]: 20}


def depth_weight(limit: int) -> int:
    """Binance's /api/v3/depth weight tiers."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


@dataclass
class Faults:
    """Injected misbehaviour, keyed by request number (1-based); mutable while serving."""

    errors: dict[int, int] = field(default_factory=dict)  # n -> HTTP status (5xx: Binance -1001 body)
    too_many: dict[int, str] = field(default_factory=dict)  # n -> 429 with this Retry-After value
    bans: dict[int, str] = field(default_factory=dict)  # n -> 418; banned for Retry-After seconds from then
    malformed: dict[int, str] = field(default_factory=dict)  # n -> "field" | "truncated" | "empty" | "html"
    # kind -> share of 200 answers (of ``malformed_paths``) corrupted that way, chosen by a hash of the request
    # number: deterministic, spread like random draws, independent of each other's kinds.
    malformed_rate: dict[str, float] = field(default_factory=dict)
    malformed_paths: tuple[str, ...] = ("/api/v3/klines",)
    slow: dict[int, float] = field(default_factory=dict)  # n -> extra response delay (s)
    delay_s: float = 0.0  # delay of every response
    ban_after_429s: int | None = None  # weight-limit 429s in one window before an automatic 418
    ban_s: float = 120.0  # length of an automatic ban


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the fake saw it (``t`` on the fake's clock, seconds)."""

    n: int
    t: float
    method: str
    path: str
    params: dict[str, str]
    status: int
    weight: int
    used_weight: int


@dataclass(frozen=True)
class FakeResponse:
    """What the fake answers, before the transport front-end sends it."""

    status: int
    body: bytes
    headers: dict[str, str]
    media_type: str = "application/json"
    delay_s: float = 0.0


class ApiError(Exception):
    """A Binance error answer ``{"code": ..., "msg": ...}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status

    def body(self) -> bytes:
        return json.dumps({"code": self.code, "msg": self.msg}).encode()


def _int(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 20:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    value = _int(params, "limit", default)
    assert value is not None
    if not 1 <= value <= maximum:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    return value


def _rows(items: Sequence[str]) -> bytes:
    return ("[" + ",".join(items) + "]").encode()


class FakeBinance:
    """Fake Binance spot REST state: markets, weight windows, faults and the request log.

    Args:
        markets: the listed markets (``exchangeInfo``); unknown symbols get -1121.
        holes: ``[lo_ms, hi_ms)`` intervals with no bars and no trades (synthetic source).
        weight_limit: REQUEST_WEIGHT budget per window; ``window_s`` its length
            (60 s on Binance; shorter in tests, the header keeps its ``-1M`` name).
        clock: Unix seconds; decides "now" (head of the tape, open bar) and windows.
        faults: injected misbehaviour (mutable while serving).
        source: ``"synthetic"`` (:class:`~tests.fake.binance_data.Tape`: several
            trades per ms, holes) or ``"shared"`` (the :mod:`tests.fake.tape`
            trades the fake WebSocket pushes, so REST can fill a live gap value for value).
    """

    def __init__(
        self,
        *,
        markets: Sequence[FakeMarket] = DEFAULT_MARKETS,
        holes: Sequence[tuple[int, int]] = (),
        weight_limit: int = 6000,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        source: str = "synthetic",
    ) -> None:
        if source == "shared":  # the tape the fake WebSocket pushes (tests.fake.tape); it has no holes
            if holes:
                raise ValueError("holes need the synthetic source (the shared tape has none)")
            self.tapes: dict[str, Tape] = {m.native: SharedTape(m.native, m.base, m.quote, m.status) for m in markets}
        elif source == "synthetic":
            self.tapes = {m.native: Tape(m, holes) for m in markets}
        else:
            raise ValueError(f"unknown data source {source!r} (synthetic, shared)")
        self.weight_limit = weight_limit
        self.window_s = window_s
        self.clock = clock
        self.faults = faults or Faults()
        self.url = ""
        self.requests: list[LoggedRequest] = []
        self.weight_by_window: dict[int, int] = {}
        self.rejected_429 = 0
        self.corrupted: list[tuple[int, str]] = []  # (request number, malformation) of every corrupted 200 answer
        self._n = 0
        self._window_429s: dict[int, int] = {}
        self._banned_until = -math.inf
        self._routes: dict[str, Callable[[Mapping[str, str], int], bytes]] = {
            PATHS[0]: self._klines,
            PATHS[1]: self._agg_trades,
            PATHS[2]: self._historical_trades,
            PATHS[3]: self._recent_trades,
            PATHS[4]: self._depth,
            PATHS[5]: self._exchange_info,
        }

    # --- observation helpers for tests ---

    @property
    def max_used_weight(self) -> int:
        """Most weight accepted in any one window."""
        return max(self.weight_by_window.values(), default=0)

    def count(self, path: str | None = None) -> int:
        """Requests received (to ``path`` if given)."""
        return sum(1 for r in self.requests if path is None or r.path == path)

    # --- the exchange ---

    def handle(self, method: str, path: str, query: Sequence[tuple[str, str]]) -> FakeResponse:
        """Answer one request exactly as the fake exchange would (no I/O)."""
        self._n += 1
        n, now = self._n, self.clock()
        params = dict(query)
        weight = self._weight(path, params)
        resp, counted = self._respond(n, now, method, path, params, weight)
        delay = self.faults.delay_s + self.faults.slow.get(n, 0.0)
        window = math.floor(now / self.window_s)
        used = self.weight_by_window.get(window, 0)
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        self.requests.append(LoggedRequest(n, now, method, path, params, resp.status, weight if counted else 0, used))
        return FakeResponse(resp.status, resp.body, resp.headers, resp.media_type, delay)

    def _weight(self, path: str, params: Mapping[str, str]) -> int:
        if path == PATHS[4]:
            raw = params.get("limit", "100")
            return depth_weight(int(raw)) if raw.isdigit() else 5
        return _FIXED_WEIGHT.get(path, 1)

    def _ban(self, now: float, seconds: float, retry_after: str) -> FakeResponse:
        self._banned_until = max(self._banned_until, now + seconds)
        until_ms = int(self._banned_until * 1000)
        msg = f"Way too much request weight used; IP banned until {until_ms}. Please use WebSocket Streams for live updates to avoid bans."
        return FakeResponse(418, ApiError(-1003, msg).body(), {"Retry-After": retry_after})

    def _respond(
        self, n: int, now: float, method: str, path: str, params: dict[str, str], weight: int
    ) -> tuple[FakeResponse, bool]:
        f = self.faults
        if now < self._banned_until:
            return self._ban(now, 0.0, str(math.ceil(self._banned_until - now))), False
        if n in f.bans:
            return self._ban(now, float(f.bans[n]), f.bans[n]), False
        if n in f.too_many:
            body = ApiError(-1003, "Too many requests; current request has limited.").body()
            return FakeResponse(429, body, {"Retry-After": f.too_many[n]}), False
        if n in f.errors:
            status = f.errors[n]
            msg = "Internal error; unable to process your request. Please try again."
            return FakeResponse(status, ApiError(-1001, msg, status).body(), {}), False
        route = self._routes.get(path)
        if route is None or method != "GET":
            return FakeResponse(404, b"", {}, "text/plain"), False
        window = math.floor(now / self.window_s)
        used = self.weight_by_window.get(window, 0)
        if used + weight > self.weight_limit:
            self.rejected_429 += 1
            self._window_429s[window] = self._window_429s.get(window, 0) + 1
            if f.ban_after_429s is not None and self._window_429s[window] >= f.ban_after_429s:
                return self._ban(now, f.ban_s, str(math.ceil(f.ban_s))), False
            retry = math.ceil((window + 1) * self.window_s - now)
            msg = (
                f"Too much request weight used; current limit is {self.weight_limit} request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API."
            )
            return FakeResponse(429, ApiError(-1003, msg).body(), {"Retry-After": str(retry)}), False
        self.weight_by_window[window] = used + weight
        try:
            body = route(params, int(now * 1000))
        except ApiError as err:
            return FakeResponse(err.status, err.body(), {}), True
        kind = f.malformed.get(n) or _drawn(n, path, f)
        if kind is not None:
            self.corrupted.append((n, kind))
            return _corrupt(body, kind), True
        return FakeResponse(200, body, {}), True

    def _tape(self, params: Mapping[str, str]) -> Tape:
        native = params.get("symbol")
        if not native:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        tape = self.tapes.get(native)
        if tape is None:
            raise ApiError(-1121, "Invalid symbol.")
        return tape

    def _klines(self, params: Mapping[str, str], now_ms: int) -> bytes:
        tape = self._tape(params)
        interval = params.get("interval", "")
        if interval not in SPAN_LABELS:
            raise ApiError(-1120, "Invalid interval.")
        span = Span(interval)
        limit = _limit(params, 500, 1000)
        opens = tape.bar_opens(span, _int(params, "startTime"), _int(params, "endTime"), limit, now_ms)
        return _rows([tape.kline_json(span, t, now_ms) for t in opens])

    def _agg_trades(self, params: Mapping[str, str], now_ms: int) -> bytes:
        tape = self._tape(params)
        limit = _limit(params, 500, 1000)
        last = tape.last_group_at(now_ms)
        from_id, start, end = _int(params, "fromId"), _int(params, "startTime"), _int(params, "endTime")
        if end is not None:
            last = min(last, tape.last_group_at(end))
        if from_id is not None:
            first = from_id
        elif start is not None:
            first = tape.first_group_at(start)
        else:
            first = max(0, last - limit + 1)
        return _rows([tape.agg_json(g) for g in range(first, min(last, first + limit - 1) + 1)])

    def _historical_trades(self, params: Mapping[str, str], now_ms: int) -> bytes:
        tape = self._tape(params)
        limit = _limit(params, 500, 1000)
        head = tape.head_id(now_ms)
        from_id = _int(params, "fromId")
        first = max(0, head - limit + 1) if from_id is None else from_id
        return _rows(tape.trades_json(first, min(head, first + limit - 1)))

    def _recent_trades(self, params: Mapping[str, str], now_ms: int) -> bytes:
        tape = self._tape(params)
        limit = _limit(params, 500, 1000)
        head = tape.head_id(now_ms)
        return _rows(tape.trades_json(max(0, head - limit + 1), head))

    def _depth(self, params: Mapping[str, str], now_ms: int) -> bytes:
        tape = self._tape(params)
        return tape.depth_json(now_ms, _limit(params, 100, 5000)).encode()

    def _exchange_info(self, params: Mapping[str, str], now_ms: int) -> bytes:
        wanted: list[str] | None = None
        if params.get("symbol"):
            wanted = [params["symbol"]]
        elif params.get("symbols"):
            try:
                wanted = list(json.loads(params["symbols"]))
            except ValueError:
                raise ApiError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if wanted is not None and any(w not in self.tapes for w in wanted):
            raise ApiError(-1121, "Invalid symbol.")
        symbols = [
            {"symbol": t.market.native, "status": t.market.status, "baseAsset": t.market.base, "baseAssetPrecision": 8}
            | {"quoteAsset": t.market.quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "filters": []}
            for t in self.tapes.values()
            if wanted is None or t.market.native in wanted
        ]
        limits = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ]
        info = {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }
        return json.dumps(info).encode()

    # --- front-ends ---

    def mock_transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake without sockets (sleeps on Trio's clock)."""

        async def handler(request: httpx.Request) -> httpx.Response:
            query = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
            resp = self.handle(request.method, request.url.path, query)
            if resp.delay_s:
                await trio.sleep(resp.delay_s)
            headers = {"content-type": resp.media_type, **resp.headers}
            return httpx.Response(resp.status, headers=headers, content=resp.body)

        return httpx.MockTransport(handler)

    def route_handlers(self) -> list[BaseRouteHandler]:
        """Litestar handlers of the fake (a WebSocket handler can be appended here)."""

        @get(path=list(PATHS))
        async def rest(request: LitestarRequest[Any, Any, Any]) -> Response[bytes]:
            query = parse_qsl(request.scope["query_string"].decode("ascii"), keep_blank_values=True)
            resp = self.handle(request.method, request.url.path, query)
            if resp.delay_s:
                await trio.sleep(resp.delay_s)
            return Response(resp.body, status_code=resp.status, headers=resp.headers, media_type=resp.media_type)

        return [rest]

    def app(self) -> Litestar:
        """The Litestar app of this fake."""
        return Litestar(self.route_handlers(), logging_config=None, openapi_config=None)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on an ephemeral 127.0.0.1 port until cancelled; ``started(url)``."""
        cfg = HypercornConfig()
        cfg.bind = ["127.0.0.1:0"]
        cfg.errorlog = logging.getLogger("tests.fake.binance")
        cfg.accesslog = None
        cfg.graceful_timeout = 0.1
        cfg.keep_alive_timeout = 60.0
        async with trio.open_nursery() as nursery:
            app: Any = self.app()  # Litestar is an ASGI app; hypercorn's annotation is narrower
            binds = await nursery.start(lambda task_status: hypercorn_serve(app, cfg, task_status=task_status))
            self.url = binds[0]
            task_status.started(self.url)


def _drawn(n: int, path: str, faults: Faults) -> str | None:
    """The malformation a rate fault assigns to request ``n``: a hash of ``n`` in [0, 1) against cumulative shares."""
    if not faults.malformed_rate or path not in faults.malformed_paths:
        return None
    u = ((n * 2654435761 + 97) % 2**32) / 2**32
    acc = 0.0
    for kind, share in faults.malformed_rate.items():
        acc += share
        if u < acc:
            return kind
    return None


def _corrupt(body: bytes, kind: str) -> FakeResponse:
    """A 200 answer that is not a valid page of the endpoint."""
    if kind == "truncated":
        return FakeResponse(200, body[: max(1, len(body) // 2)], {})
    if kind == "empty":
        return FakeResponse(200, b"", {})
    if kind == "html":
        return FakeResponse(200, b"<html><body>502 Bad Gateway</body></html>", {}, "text/html")
    if kind != "field":
        raise ValueError(f"unknown malformation {kind!r} (field, truncated, empty, html)")
    doc = json.loads(body)
    if isinstance(doc, list) and doc and isinstance(doc[0], list):
        doc[0][1] = "n/a"  # klines: a price that is not a number
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict):
        key = "price" if "price" in doc[0] else "p"
        doc[0][key] = "n/a"
    elif isinstance(doc, dict) and "lastUpdateId" in doc:
        doc["lastUpdateId"] = "soon"
    elif isinstance(doc, dict) and "symbols" in doc:
        doc["symbols"] = "none"
    else:
        doc = [1]
    return FakeResponse(200, json.dumps(doc).encode(), {})


def http_date(unix_s: float) -> str:
    """An RFC 9110 HTTP-date (for Retry-After faults)."""
    return formatdate(unix_s, usegmt=True)


_FAKE_ARGS = frozenset({"markets", "holes", "weight_limit", "window_s", "clock", "source"})


@asynccontextmanager
async def open_fake_binance(**kwargs: Any) -> AsyncIterator[FakeBinance]:
    """Run a fake Binance on 127.0.0.1 for the duration of the block; ``fake.url`` is its origin.

    Keyword arguments: ``markets``, ``holes``, ``weight_limit``, ``window_s``,
    ``clock``, ``source`` (see :class:`FakeBinance`) and any :class:`Faults` field.
    """
    fake_args = {k: kwargs.pop(k) for k in list(kwargs) if k in _FAKE_ARGS}
    fake = FakeBinance(**fake_args, faults=Faults(**kwargs))
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
