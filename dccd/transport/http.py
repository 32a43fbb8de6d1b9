"""HTTP to exchanges: one pooled httpx client per exchange, retries, rate limits, error mapping.

``fetch`` sends one adapter :class:`~dccd.sources.base.Request` and returns the
body bytes of a successful answer, or raises from :mod:`dccd.errors`:

====================  ==================================================================
answer                what happens
====================  ==================================================================
2xx                   ``adapter.parse_error`` finds no error -> body returned
429 (or RateLimited   every caller of this exchange pauses; this call sleeps exactly
from parse_error)     ``Retry-After`` (seconds or HTTP-date) and retries; after
                      ``max_rate_limited`` of them -> RateLimited
418 / ban             the shared limiter refuses all requests until the ban ends ->
                      Banned (the caller decides to stop the run)
5xx, network error,   jittered exponential backoff, ``attempts`` tries in total, then
timeout               ServerError / ConnectFailed / RequestTimeout
other 4xx             ExchangeRejected(code, message) at once (retrying cannot help)
====================  ==================================================================

httpx exceptions are mapped to dccd errors here and nowhere else. A malformed
page is not detected here but by the adapter's parser (ProtocolDrift), so a
bad page always fails loudly and never reads as an empty success.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final
from weakref import WeakKeyDictionary

import httpx
import structlog
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from dccd import __version__
from dccd.domain.ratelimit import RetryPolicy, backoff_delay_s, parse_retry_after
from dccd.errors import (
    Banned,
    ConfigError,
    ConnectFailed,
    DccdError,
    ExchangeRejected,
    ProtocolDrift,
    RateLimited,
    RequestTimeout,
    ServerError,
    TransientError,
)
from dccd.sources.base import Adapter, Request
from dccd.transport.ratelimit import LimitStateStore, WeightLimiter, shared_limiter

_log = structlog.get_logger("dccd.transport.http")

TRANSPORT_REGISTRY: Final = CollectorRegistry(auto_describe=True)
"""Dedicated registry for transport metrics when the caller passes none (never the global default)."""


class HttpMetrics:
    """Prometheus series of outbound exchange requests (``dccd_exchange_*``; inbound API ones are ``dccd_http_*``).

    ``errors`` counts failed answers by class: ``timeout``, ``connect``, ``5xx``, ``4xx``, ``429``, ``418``
    (a ban, whatever its status) and ``malformed`` (the exchange's error parser found a drifted payload).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["exchange", "endpoint"]
        self.requests = Counter(
            "dccd_exchange_requests",
            "Requests sent to exchanges, by answer status",
            [*labels, "status"],
            registry=registry,
        )
        self.weight = Counter("dccd_exchange_request_weight", "Request weight spent", labels, registry=registry)
        self.rate_limited = Counter("dccd_exchange_rate_limited", "429 / rate-limit answers", labels, registry=registry)
        self.retries = Counter(
            "dccd_exchange_retries", "Retries after failures", [*labels, "reason"], registry=registry
        )
        self.bans = Counter("dccd_exchange_bans", "IP bans (418)", ["exchange"], registry=registry)
        self.used_weight = Gauge(
            "dccd_exchange_used_weight", "Exchange-reported used weight", ["exchange"], registry=registry
        )
        self.errors = Counter(
            "dccd_exchange_request_errors",
            "Failed exchange requests by class (timeout, connect, 5xx, 4xx, 429, 418, malformed)",
            [*labels, "class"],
            registry=registry,
        )


_METRICS: WeakKeyDictionary[CollectorRegistry, HttpMetrics] = WeakKeyDictionary()


def http_metrics(registry: CollectorRegistry | None = None) -> HttpMetrics:
    """The transport metrics of ``registry`` (default :data:`TRANSPORT_REGISTRY`), created on first use."""
    reg = TRANSPORT_REGISTRY if registry is None else registry
    metrics = _METRICS.get(reg)
    if metrics is None:
        metrics = _METRICS[reg] = HttpMetrics(reg)
    return metrics


def _error_class(status: int, err: DccdError | None, banned: bool) -> str | None:
    """The ``dccd_exchange_request_errors`` class of an answer, None for a success.

    An error code in a 2xx body counts by its meaning: transient as ``5xx``, a rejection as ``4xx``.
    """
    if status == 429 or isinstance(err, RateLimited):
        return "429"
    if banned or isinstance(err, Banned):
        return "418"
    if status >= 500 or isinstance(err, TransientError):
        return "5xx"
    if isinstance(err, ProtocolDrift):
        return "malformed"
    if status >= 300 or err is not None:  # a rejection, or a redirect (never followed)
        return "4xx"
    return None


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()


class ExchangeClient:
    """Sends adapter requests to one exchange; safe to share between tasks. Use :func:`open_exchange_client`."""

    def __init__(
        self,
        adapter: Adapter,
        http: httpx.AsyncClient,
        limiter: WeightLimiter,
        *,
        retry: RetryPolicy,
        timeout_s: float,
        metrics: HttpMetrics,
        wall_clock_ns: Callable[[], int],
        rand: Callable[[], float],
    ) -> None:
        self.adapter = adapter
        self.exchange = adapter.name
        self.limiter = limiter
        self._http = http
        self._retry = retry
        self._timeout_s = timeout_s
        self._metrics = metrics
        self._wall_clock_ns = wall_clock_ns
        self._rand = rand

    @property
    def base_url(self) -> str:
        """The origin (and prefix) requests are sent to."""
        return str(self._http.base_url).rstrip("/")

    async def fetch(self, request: Request) -> bytes:
        """Send ``request`` and return the body of a successful answer (see the module table).

        Raises:
            Banned, RateLimited, ServerError, ConnectFailed, RequestTimeout, ExchangeRejected.
        """
        body, _ = await self.fetch_with_time(request)
        return body

    async def fetch_with_time(self, request: Request) -> tuple[bytes, int]:
        """Like :meth:`fetch`, plus the wall-clock time (ns) the answer arrived (for book snapshots)."""
        attempt = 0
        limited = 0
        while True:
            window = await self.limiter.acquire(request.weight)
            try:
                response = await self._send(request)
            except (ConnectFailed, RequestTimeout) as lost:
                self._error(request, "timeout" if isinstance(lost, RequestTimeout) else "connect")
                attempt += 1
                await self._backoff(request, attempt, lost)
                continue
            recv_ns = self._wall_clock_ns()
            self._account(request, response, window)
            status, body = response.status_code, response.content
            err = self.adapter.parse_error(status, body)
            self._error(request, _error_class(status, err, status in self.limiter.limits.ban_statuses))
            if status == 429 or isinstance(err, RateLimited):
                limited += 1
                default = err.retry_after_s if isinstance(err, RateLimited) else None
                await self._rate_limited(request, response, err, limited, default)
                continue
            if status in self.limiter.limits.ban_statuses or isinstance(err, Banned):
                await self._banned(request, response, err)
            if status >= 500 or (status < 400 and isinstance(err, TransientError)):
                attempt += 1
                failure = err if isinstance(err, TransientError) else ServerError(status, self._detail(err, body))
                await self._backoff(request, attempt, failure)
                continue
            if status >= 300:
                if isinstance(err, DccdError):
                    raise err
                if status < 400:  # redirects are not followed: an API never moves silently
                    message = f"unexpected redirect to {response.headers.get('location', '?')}"
                else:
                    message = _snippet(body) or response.reason_phrase
                raise ExchangeRejected(self.exchange, None, message, status=status)
            if err is not None:
                raise err
            return body, recv_ns

    async def _send(self, request: Request) -> httpx.Response:
        where = f"{self.exchange} {request.endpoint or request.path}"
        with trio.move_on_after(self._timeout_s) as scope:
            try:
                # A request may name another host of the exchange (Binance USD-M); an override serves all paths.
                url = request.target(self.base_url, self.adapter.rest_url)
                return await self._http.request(request.method, url, params=request.params)
            except httpx.TimeoutException as exc:
                raise RequestTimeout(f"{where}: {type(exc).__name__} (no answer in time)") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
                raise ConnectFailed(f"{where}: {type(exc).__name__}: {exc}") from exc
        assert scope.cancelled_caught
        raise RequestTimeout(f"{where}: no complete answer within {self._timeout_s:g}s")

    def _account(self, request: Request, response: httpx.Response, window: int) -> None:
        ep = request.endpoint or request.path
        self._metrics.requests.labels(self.exchange, ep, str(response.status_code)).inc()
        self._metrics.weight.labels(self.exchange, ep).inc(request.weight)
        header = self.limiter.limits.used_weight_header
        raw = response.headers.get(header) if header else None
        if raw is not None and raw.strip().isdigit():
            used = int(raw)
            self.limiter.observe(used, window)
            self._metrics.used_weight.labels(self.exchange).set(used)

    def _error(self, request: Request, cls: str | None) -> None:
        if cls is not None:
            self._metrics.errors.labels(self.exchange, request.endpoint or request.path, cls).inc()

    def _detail(self, err: DccdError | None, body: bytes) -> str:
        if isinstance(err, ExchangeRejected):
            return f"code {err.code}: {err.message}"
        return str(err) if err is not None else _snippet(body)

    def _retry_after(self, response: httpx.Response, default: float | None, fallback: float) -> float:
        now_s = self._wall_clock_ns() / 1e9
        parsed = parse_retry_after(response.headers.get("retry-after"), now_s)
        if parsed is not None:
            return parsed
        return default if default is not None else fallback

    async def _rate_limited(
        self, request: Request, response: httpx.Response, err: DccdError | None, count: int, default: float | None
    ) -> None:
        # Without Retry-After, wait for the weight window to roll over (that is when Binance forgives).
        fallback = max(self.limiter.until_next_window(), self.limiter.limits.default_retry_after_s)
        delay = self._retry_after(response, default, fallback)
        detail = self._detail(err, response.content)
        self._metrics.rate_limited.labels(self.exchange, request.endpoint).inc()
        if count > self._retry.max_rate_limited:
            raise RateLimited(delay, f"{self.exchange} {request.endpoint}: {detail}")
        until = trio.current_time() + delay  # the record below may take a worker thread: sleep to the deadline
        await self.limiter.pause(delay, detail)
        _log.warning(
            "request.rate_limited",
            exchange=self.exchange,
            endpoint=request.endpoint,
            status=response.status_code,
            retry_after_s=delay,
            count=count,
            detail=detail,
        )
        await trio.sleep_until(until)

    async def _banned(self, request: Request, response: httpx.Response, err: DccdError | None) -> None:
        default = err.retry_after_s if isinstance(err, Banned) else None
        delay = self._retry_after(response, default, self.limiter.limits.default_ban_s)
        detail = f"(HTTP {response.status_code} on {request.endpoint}: {self._detail(err, response.content)})"
        await self.limiter.ban(delay, detail)
        self._metrics.bans.labels(self.exchange).inc()
        _log.warning("exchange.banned", exchange=self.exchange, endpoint=request.endpoint, retry_after_s=delay)
        raise Banned(self.exchange, delay, detail)

    async def backoff(self, request: Request, attempt: int, err: DccdError) -> None:
        """Count, log and sleep before retrying ``request`` after a failure its caller detected (a malformed page).

        Uses the same policy, metric (``dccd_exchange_retries``, reason = the error's class) and log
        line as the retries done here; a ProtocolDrift also counts in ``dccd_exchange_request_errors``
        as ``malformed``.

        Raises:
            DccdError: ``err`` itself once try number ``attempt`` was the policy's last.
        """
        if isinstance(err, ProtocolDrift):
            self._error(request, "malformed")
        await self._backoff(request, attempt, err)

    async def _backoff(self, request: Request, attempt: int, err: DccdError) -> None:
        if attempt >= self._retry.attempts:
            raise err
        delay = backoff_delay_s(attempt, self._retry, self._rand())
        reason = type(err).__name__
        self._metrics.retries.labels(self.exchange, request.endpoint, reason).inc()
        _log.warning(
            "request.retried",
            exchange=self.exchange,
            endpoint=request.endpoint,
            attempt=attempt,
            delay_s=delay,
            error=str(err),
        )
        await trio.sleep(delay)


def check_rest_url(exchange: str, rest_url: str) -> str:
    """Validate an ``http(s)://host[:port][/prefix]`` origin; returns it without a trailing slash.

    Raises:
        ConfigError: naming ``exchanges.<exchange>.rest_url``.
    """
    try:
        url = httpx.URL(rest_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"exchanges.{exchange}.rest_url", f"{rest_url!r} is not a URL ({exc})") from exc
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise ConfigError(
            f"exchanges.{exchange}.rest_url", f"{rest_url!r} must be http(s)://host[:port][/prefix] (no query)"
        )
    return rest_url.rstrip("/")


@asynccontextmanager
async def open_exchange_client(
    adapter: Adapter,
    rest_url: str | None = None,
    rate_limit: float = 0.8,
    *,
    limiter: WeightLimiter | None = None,
    retry: RetryPolicy | None = None,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 10.0,
    max_connections: int = 10,
    http2: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    registry: CollectorRegistry | None = None,
    wall_clock_ns: Callable[[], int] = time.time_ns,
    rand: Callable[[], float] = random.random,
    limit_state: LimitStateStore | None = None,
) -> AsyncIterator[ExchangeClient]:
    """Open the HTTP client of one exchange (open one per exchange and share it between actors).

    Args:
        adapter: the exchange's adapter (paths, weights, error bodies, budget).
        rest_url: origin plus optional prefix; default the adapter's real host.
        rate_limit: share (0..1] of the published budget; 0 = no proactive limit.
        limiter: a limiter to share; default the run-wide one of (exchange, rest_url).
        retry: attempts and backoff for 5xx / network errors / timeouts.
        timeout_s: deadline for one whole attempt (connect, send, read the body).
        transport: an httpx transport to use instead of the network (tests).
        registry: Prometheus registry for the transport counters (created there on first use);
            default :data:`TRANSPORT_REGISTRY`, never the global default registry.
        wall_clock_ns: wall clock (ns) for HTTP-date ``Retry-After`` and receive times.
        rand: uniform [0, 1) source for backoff jitter.
        limit_state: where the run-wide limiter records 429 pauses and 418 bans and restores them
            from at its first request (so a restarted process honours them); None keeps them in memory.

    Raises:
        ConfigError: bad ``rest_url`` or ``rate_limit``.
    """
    url = check_rest_url(adapter.name, rest_url or adapter.rest_url)
    if not 0.0 <= rate_limit <= 1.0:
        raise ConfigError(f"exchanges.{adapter.name}.rate_limit", f"must be between 0 and 1, got {rate_limit}")
    if limiter is None:
        limiter = shared_limiter(
            adapter.name,
            url,
            adapter.rate_limits,
            rate_limit,
            wall_clock=lambda: wall_clock_ns() / 1e9,
            state=limit_state,
            now_ns=wall_clock_ns,
        )
    http = httpx.AsyncClient(
        base_url=url,
        http2=http2,
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": f"dccd/{__version__}", "Accept": "application/json"},
        follow_redirects=False,
    )
    client = ExchangeClient(
        adapter,
        http,
        limiter,
        retry=retry or RetryPolicy(),
        timeout_s=timeout_s,
        metrics=http_metrics(registry),
        wall_clock_ns=wall_clock_ns,
        rand=rand,
    )
    async with http:
        yield client
