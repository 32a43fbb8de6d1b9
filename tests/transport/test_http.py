"""ExchangeClient: retries, Retry-After, bans, weight limits and error mapping.

Timing is asserted exactly under ``autojump_clock`` with an in-memory httpx
transport (real sockets and a jumping clock do not mix); the real wire is
exercised against the fake Binance on 127.0.0.1 in tests/transport/test_http_wire.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.utils import formatdate

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from dccd.domain.ratelimit import RetryPolicy
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
)
from dccd.sources import RateLimits, Request
from dccd.sources.binance import BinanceAdapter
from dccd.transport.http import ExchangeClient, open_exchange_client
from dccd.transport.ratelimit import WeightLimiter

WALL0 = 1_699_999_980  # wall clock at trio time 0: a whole minute (and whole seconds: HTTP-dates are exact)
REQ = Request("GET", "/api/v3/klines", (("symbol", "BTCUSDT"),), 2, "klines")
OK = httpx.Response(200, content=b"[]")
RETRY = RetryPolicy(attempts=4, base_s=1.0, cap_s=8.0, jitter=0.5, max_rate_limited=3)


class Script:
    """An in-memory exchange answering from a script and logging (trio time, request)."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[], httpx.Response]) -> None:
        self.answers = list(answers)
        self.log: list[tuple[float, httpx.Request]] = []
        self.delay_s = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append((trio.current_time(), request))
        if self.delay_s:
            await trio.sleep(self.delay_s)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer() if callable(answer) else answer

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.log]


@asynccontextmanager
async def client_for(
    script: Script,
    *,
    rate_limit: float = 0.0,
    limiter: WeightLimiter | None = None,
    retry: RetryPolicy = RETRY,
    rest_url: str = "http://binance.test",
    adapter: BinanceAdapter | None = None,
    registry: CollectorRegistry | None = None,
    timeout_s: float = 30.0,
) -> AsyncIterator[ExchangeClient]:
    async with open_exchange_client(
        adapter or BinanceAdapter(),
        rest_url,
        rate_limit,
        limiter=limiter,
        retry=retry,
        timeout_s=timeout_s,
        transport=httpx.MockTransport(script),
        registry=registry or CollectorRegistry(),
        wall_clock_ns=lambda: round((WALL0 + trio.current_time()) * 1e9),
        rand=lambda: 0.0,
    ) as client:
        yield client


def limiter(weight_per_window: int, share: float = 1.0) -> WeightLimiter:
    limits = RateLimits(weight_per_window, 60.0, "x-mbx-used-weight-1m")
    return WeightLimiter("binance", limits, share, guard_s=0.0, wall_clock=lambda: WALL0 + trio.current_time())


# --- retries -------------------------------------------------------------------------------------


async def test_5xx_is_retried_with_exact_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """Two 503s then 200: retries at 1 s and 1+2 s, each logged as a warning with attempt and delay_s."""
    script = Script(httpx.Response(503), httpx.Response(503), OK)
    with capture_logs() as logs:
        async with client_for(script) as client:
            assert await client.fetch(REQ) == b"[]"
    assert script.times == [0.0, 1.0, 3.0]
    retried = [e for e in logs if e["event"] == "request.retried"]
    assert [(e["log_level"], e["attempt"], e["delay_s"], e["endpoint"]) for e in retried] == [
        ("warning", 1, 1.0, "klines"),
        ("warning", 2, 2.0, "klines"),
    ]


async def test_jitter_shortens_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """With u = 0.5 and jitter 0.5 each delay is 3/4 of the exponential one."""
    script = Script(httpx.Response(500), httpx.Response(500), OK)
    async with open_exchange_client(
        BinanceAdapter(), "http://binance.test", 0, transport=httpx.MockTransport(script), retry=RETRY, rand=lambda: 0.5
    ) as client:
        await client.fetch(REQ)
    assert script.times == [0.0, 0.75, 2.25]


async def test_5xx_exhausted_raises_server_error(autojump_clock: trio.testing.MockClock) -> None:
    """After ``attempts`` 5xx answers the error surfaces as ServerError carrying status and body."""
    body = b'{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}'
    script = Script(httpx.Response(502, content=body))
    async with client_for(script) as client:
        with pytest.raises(ServerError, match=r"HTTP 502 code -1001: Internal error") as info:
            await client.fetch(REQ)
    assert info.value.status == 502
    assert script.times == [0.0, 1.0, 3.0, 7.0]


async def test_network_errors_become_connect_failed(autojump_clock: trio.testing.MockClock) -> None:
    """Connection errors are retried, then raised as ConnectFailed chained to the httpx error."""
    script = Script(httpx.ConnectError("refused"))
    async with client_for(script, retry=RetryPolicy(attempts=2, base_s=1.0, jitter=0.5)) as client:
        with pytest.raises(ConnectFailed, match="binance klines: ConnectError: refused") as info:
            await client.fetch(REQ)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert script.times == [0.0, 1.0]


async def test_network_error_then_success(autojump_clock: trio.testing.MockClock) -> None:
    """A dropped connection followed by an answer returns the answer after one backoff."""
    script = Script(httpx.RemoteProtocolError("server disconnected"), OK)
    async with client_for(script) as client:
        assert await client.fetch(REQ) == b"[]"
    assert script.times == [0.0, 1.0]


async def test_slow_answer_times_out_exactly(autojump_clock: trio.testing.MockClock) -> None:
    """An answer slower than timeout_s is abandoned at the deadline, retried, then RequestTimeout."""
    script = Script(OK)
    script.delay_s = 100.0
    async with client_for(script, retry=RetryPolicy(attempts=2, base_s=1.0, jitter=0.5), timeout_s=5.0) as client:
        with pytest.raises(RequestTimeout, match=r"binance klines: no complete answer within 5s"):
            await client.fetch(REQ)
    assert script.times == [0.0, 6.0]
    assert trio.current_time() == 11.0


async def test_httpx_timeout_becomes_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    """httpx's own read timeout maps to RequestTimeout chained to it."""
    script = Script(httpx.ReadTimeout("read"))
    async with client_for(script, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(RequestTimeout) as info:
            await client.fetch(REQ)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


# --- 429 / 418 -----------------------------------------------------------------------------------


async def test_429_waits_exactly_retry_after_seconds(autojump_clock: trio.testing.MockClock) -> None:
    """A 429 with Retry-After: 7 is retried exactly 7 s later, without using the 5xx retry budget."""
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), OK)
    with capture_logs() as logs:
        async with client_for(script, retry=RetryPolicy(attempts=1, max_rate_limited=3)) as client:
            assert await client.fetch(REQ) == b"[]"
    assert script.times == [0.0, 7.0]
    assert [(e["event"], e["retry_after_s"]) for e in logs] == [("request.rate_limited", 7.0)]


async def test_429_waits_until_http_date(autojump_clock: trio.testing.MockClock) -> None:
    """A Retry-After HTTP-date 12 s ahead of the wall clock delays the retry by exactly 12 s."""
    date = formatdate(WALL0 + 12, usegmt=True)
    script = Script(httpx.Response(429, headers={"Retry-After": date}), OK)
    async with client_for(script) as client:
        await client.fetch(REQ)
    assert script.times == [0.0, 12.0]


async def test_429_pauses_every_caller(autojump_clock: trio.testing.MockClock) -> None:
    """After a 429, a second caller of the same exchange sends nothing until Retry-After has passed."""
    script = Script(httpx.Response(429, headers={"Retry-After": "10"}), OK)
    async with client_for(script) as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.fetch, REQ)
        await trio.sleep(1)
        await client.fetch(REQ)
    assert script.times == [0.0, 10.0, 10.0]


async def test_429_without_retry_after_waits_for_window(autojump_clock: trio.testing.MockClock) -> None:
    """Without Retry-After the client waits for the weight window to roll over."""
    script = Script(httpx.Response(429), OK)
    async with client_for(script, limiter=limiter(6000)) as client:
        await trio.sleep(15)
        await client.fetch(REQ)
    assert script.times == [15.0, 60.0]  # WALL0 is a whole minute: the window ends at trio time 60


async def test_endless_429_raises_rate_limited(autojump_clock: trio.testing.MockClock) -> None:
    """More than max_rate_limited 429s in one fetch raise RateLimited with the last Retry-After."""
    body = b'{"code":-1003,"msg":"Too many requests; current request has limited."}'
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}, content=body))
    async with client_for(script) as client:
        with pytest.raises(RateLimited, match=r"retry after 2s binance klines: code -1003: Too many requests") as info:
            await client.fetch(REQ)
    assert info.value.retry_after_s == 2.0
    assert script.times == [0.0, 2.0, 4.0, 6.0]


async def test_418_bans_every_caller_without_sending(autojump_clock: trio.testing.MockClock) -> None:
    """A 418 raises Banned; later callers fail at once without a request until the ban ends."""
    body = b'{"code":-1003,"msg":"Way too much request weight used; IP banned until 1700000120000."}'
    script = Script(httpx.Response(418, headers={"Retry-After": "120"}, content=body), OK)
    async with client_for(script) as client:
        with pytest.raises(
            Banned, match=r"binance banned this IP for 120s \(HTTP 418 on klines: code -1003: Way"
        ) as info:
            await client.fetch(REQ)
        assert info.value.retry_after_s == 120.0
        await trio.sleep(100)
        with pytest.raises(Banned, match="banned this IP for 20s"):
            await client.fetch(REQ)
        assert len(script.log) == 1
        await trio.sleep(20)
        assert await client.fetch(REQ) == b"[]"
    assert script.times == [0.0, 120.0]


async def test_418_wakes_waiting_caller_to_fail(autojump_clock: trio.testing.MockClock) -> None:
    """A caller waiting for weight when the ban lands fails at that moment, having sent nothing."""
    script = Script(httpx.Response(418, headers={"Retry-After": "300"}))
    script.delay_s = 5.0
    heavy = Request("GET", "/api/v3/klines", (), 10, "klines")
    failed_at: list[float] = []

    async def second(client: ExchangeClient) -> None:
        await trio.sleep(1)
        with pytest.raises(Banned):
            await client.fetch(heavy)  # the window is full until t=60
        failed_at.append(trio.current_time())

    async with client_for(script, limiter=limiter(10)) as client, trio.open_nursery() as nursery:
        nursery.start_soon(second, client)
        with pytest.raises(Banned):
            await client.fetch(heavy)
    assert failed_at == [5.0]
    assert len(script.log) == 1


async def test_418_without_retry_after_uses_default_ban(autojump_clock: trio.testing.MockClock) -> None:
    """A ban without Retry-After lasts the adapter's default (120 s for Binance)."""
    script = Script(httpx.Response(418))
    async with client_for(script) as client:
        with pytest.raises(Banned) as info:
            await client.fetch(REQ)
    assert info.value.retry_after_s == 120.0
    assert client.limiter.banned_for() == 120.0


# --- weight limits -------------------------------------------------------------------------------


async def test_weight_budget_delays_to_next_window(autojump_clock: trio.testing.MockClock) -> None:
    """With 10 weight per minute, two weight-4 requests go now and the third at the next window."""
    script = Script(OK)
    req = Request("GET", "/x", (), 4, "x")
    async with client_for(script, limiter=limiter(10)) as client:
        for _ in range(3):
            await client.fetch(req)
    assert script.times == [0.0, 0.0, 60.0]


async def test_rate_limit_share_scales_budget(autojump_clock: trio.testing.MockClock) -> None:
    """rate_limit 0.5 of 10 weight/min leaves 5: one weight-4 request per minute."""
    script = Script(OK)
    req = Request("GET", "/x", (), 4, "x")
    async with client_for(script, limiter=limiter(10, share=0.5)) as client:
        for _ in range(3):
            await client.fetch(req)
    assert script.times == [0.0, 60.0, 120.0]


async def test_used_weight_header_is_the_truth(autojump_clock: trio.testing.MockClock) -> None:
    """When the exchange reports the window's budget used (other processes), the next request waits."""
    script = Script(httpx.Response(200, headers={"X-MBX-USED-WEIGHT-1M": "10"}, content=b"[]"), OK)
    req = Request("GET", "/x", (), 1, "x")
    async with client_for(script, limiter=limiter(10)) as client:
        await client.fetch(req)
        assert client.limiter.used == 10
        await client.fetch(req)
    assert script.times == [0.0, 60.0]


async def test_rate_limit_zero_never_waits(autojump_clock: trio.testing.MockClock) -> None:
    """rate_limit 0 turns proactive limiting off: 50 requests far over budget all go at once."""
    script = Script(OK)
    heavy = Request("GET", "/x", (), 1000, "x")
    async with client_for(script, rate_limit=0.0) as client:
        for _ in range(50):
            await client.fetch(heavy)
    assert set(script.times) == {0.0} and len(script.log) == 50


async def test_default_limiter_uses_binance_budget(autojump_clock: trio.testing.MockClock) -> None:
    """The default limiter is 80 % of 6000 weight/min: 2400 klines requests fit, the next waits."""
    script = Script(OK)
    async with client_for(script, rate_limit=0.8) as client:
        assert client.limiter.budget == 4800
        for _ in range(2401):
            await client.fetch(REQ)
    assert script.times.count(script.times[0]) == 2400 and script.times[-1] > script.times[0]


# --- errors and configuration --------------------------------------------------------------------


async def test_4xx_error_body_raises_exchange_rejected_once(autojump_clock: trio.testing.MockClock) -> None:
    """A 400 with Binance's error body raises ExchangeRejected(code, msg) without any retry."""
    script = Script(httpx.Response(400, content=b'{"code":-1121,"msg":"Invalid symbol."}'))
    async with client_for(script) as client:
        with pytest.raises(ExchangeRejected) as info:
            await client.fetch(REQ)
    assert (info.value.code, info.value.message, info.value.status) == (-1121, "Invalid symbol.", 400)
    assert len(script.log) == 1


async def test_4xx_unknown_body_and_redirect(autojump_clock: trio.testing.MockClock) -> None:
    """A non-JSON 4xx or a redirect is rejected with the body snippet / the target, never returned as data."""
    script = Script(httpx.Response(403, content=b"WAF: forbidden"), httpx.Response(301, headers={"location": "/moved"}))
    async with client_for(script) as client:
        with pytest.raises(ExchangeRejected, match=r"\(HTTP 403\): code None: WAF: forbidden"):
            await client.fetch(REQ)
        with pytest.raises(ExchangeRejected, match=r"\(HTTP 301\): code None: unexpected redirect to /moved"):
            await client.fetch(REQ)


class ErrorIn200Adapter(BinanceAdapter):
    """An exchange reporting errors with HTTP 200 bodies (Kraken-style)."""

    @staticmethod
    def parse_error(status: int, body: bytes) -> DccdError | None:
        if b"Rate limit" in body:
            return RateLimited(3.0, "EAPI:Rate limit exceeded")
        if b"EQuery" in body:
            return ExchangeRejected("binance", "EQuery", "Invalid asset pair", status=status)
        return None


async def test_errors_in_200_bodies_are_honoured(autojump_clock: trio.testing.MockClock) -> None:
    """A 200 whose body the adapter reads as RateLimited waits and retries; a rejection raises."""
    limited = httpx.Response(200, content=b'{"error":["EAPI:Rate limit exceeded"]}')
    rejected = httpx.Response(200, content=b'{"error":["EQuery:Invalid asset pair"]}')
    script = Script(limited, OK, rejected)
    async with client_for(script, adapter=ErrorIn200Adapter()) as client:
        assert await client.fetch(REQ) == b"[]"
        with pytest.raises(ExchangeRejected, match="code EQuery: Invalid asset pair"):
            await client.fetch(REQ)
    assert script.times == [0.0, 3.0, 3.0]


async def test_rest_url_prefix_and_query(autojump_clock: trio.testing.MockClock) -> None:
    """rest_url is an origin plus prefix; the adapter's real path and params are appended."""
    script = Script(OK)
    async with client_for(script, rest_url="http://proxy.test:8080/binance/") as client:
        assert client.base_url == "http://proxy.test:8080/binance"
        await client.fetch(REQ)
    assert str(script.log[0][1].url) == "http://proxy.test:8080/binance/api/v3/klines?symbol=BTCUSDT"


@pytest.mark.parametrize(
    ("rest_url", "rate_limit", "message"),
    [
        ("ftp://x.test", 0.8, r"exchanges.binance.rest_url: 'ftp://x.test' must be http\(s\)://host"),
        ("http://x.test?a=1", 0.8, "no query"),
        ("http://x.test", 1.5, "exchanges.binance.rate_limit: must be between 0 and 1, got 1.5"),
    ],
)
async def test_bad_config_is_config_error(rest_url: str, rate_limit: float, message: str) -> None:
    """A bad rest_url or rate_limit fails at open with a one-line error naming the key."""
    with pytest.raises(ConfigError, match=message):
        async with open_exchange_client(BinanceAdapter(), rest_url, rate_limit):
            pass


async def test_clients_of_one_exchange_share_a_limiter() -> None:
    """Two clients of the same exchange and URL draw from one limiter; another URL gets its own."""
    transport = httpx.MockTransport(Script(OK))
    async with (
        open_exchange_client(BinanceAdapter(), "http://a.test", 0.8, transport=transport) as one,
        open_exchange_client(BinanceAdapter(), "http://a.test/", 0.8, transport=transport) as two,
        open_exchange_client(BinanceAdapter(), "http://b.test", 0.8, transport=transport) as other,
    ):
        assert one.limiter is two.limiter
        assert other.limiter is not one.limiter


async def test_metrics_count_requests_weight_and_429s(autojump_clock: trio.testing.MockClock) -> None:
    """Requests by status, spent weight, 429s and retries land on the registry passed in."""
    registry = CollectorRegistry()
    script = Script(
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(500),
        httpx.Response(200, headers={"X-MBX-USED-WEIGHT-1M": "42"}, content=b"[]"),
    )
    async with client_for(script, registry=registry) as client:
        await client.fetch(REQ)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"exchange": "binance", **labels})

    assert value("dccd_exchange_requests_total", endpoint="klines", status="429") == 1
    assert value("dccd_exchange_requests_total", endpoint="klines", status="500") == 1
    assert value("dccd_exchange_requests_total", endpoint="klines", status="200") == 1
    assert value("dccd_exchange_request_weight_total", endpoint="klines") == 6
    assert value("dccd_exchange_rate_limited_total", endpoint="klines") == 1
    assert value("dccd_exchange_retries_total", endpoint="klines", reason="ServerError") == 1
    assert value("dccd_exchange_used_weight") == 42
    assert value("dccd_exchange_request_errors_total", endpoint="klines", **{"class": "429"}) == 1
    assert value("dccd_exchange_request_errors_total", endpoint="klines", **{"class": "5xx"}) == 1


async def test_request_errors_are_counted_by_class(autojump_clock: trio.testing.MockClock) -> None:
    """Timeouts, refused connections, 4xx, transient codes in 200 bodies and bans each count in their class."""
    registry = CollectorRegistry()
    script = Script(
        httpx.ReadTimeout("read"),
        httpx.ConnectError("refused"),
        OK,
        httpx.Response(403, content=b"forbidden"),
        httpx.Response(418, headers={"Retry-After": "60"}),
    )
    async with client_for(script, registry=registry) as client:
        assert await client.fetch(REQ) == b"[]"
        with pytest.raises(ExchangeRejected):
            await client.fetch(REQ)
        with pytest.raises(Banned):
            await client.fetch(REQ)

    def errors(cls: str) -> float | None:
        labels = {"exchange": "binance", "endpoint": "klines", "class": cls}
        return registry.get_sample_value("dccd_exchange_request_errors_total", labels)

    assert [errors(c) for c in ("timeout", "connect", "4xx", "418", "5xx", "429")] == [1, 1, 1, 1, None, None]


async def test_a_malformed_page_the_caller_found_counts_as_malformed(autojump_clock: trio.testing.MockClock) -> None:
    """backoff() with a ProtocolDrift (a 200 page that did not parse): one malformed error and one retry."""
    registry = CollectorRegistry()
    async with client_for(Script(OK), registry=registry) as client:
        await client.backoff(REQ, 1, ProtocolDrift("binance", "klines", "truncated page"))
    labels = {"exchange": "binance", "endpoint": "klines"}
    assert registry.get_sample_value("dccd_exchange_request_errors_total", {**labels, "class": "malformed"}) == 1
    assert registry.get_sample_value("dccd_exchange_retries_total", {**labels, "reason": "ProtocolDrift"}) == 1


async def test_fetch_with_time_returns_receive_time(autojump_clock: trio.testing.MockClock) -> None:
    """fetch_with_time stamps the answer with the wall clock at receipt (for book snapshots)."""
    script = Script(OK)
    async with client_for(script) as client:
        await trio.sleep(2.5)
        body, recv_ns = await client.fetch_with_time(REQ)
    assert (body, recv_ns) == (b"[]", (WALL0 + 2.5) * 10**9)


async def test_limiter_adopts_live_budget(autojump_clock: trio.testing.MockClock) -> None:
    """update() with exchangeInfo's budget rescales the share: 0.5 of 20 lets two weight-4 requests through."""
    script = Script(OK)
    req = Request("GET", "/x", (), 4, "x")
    lim = limiter(10, share=0.5)
    lim.update(RateLimits(20, 60.0, "x-mbx-used-weight-1m"))
    assert lim.budget == 10
    async with client_for(script, limiter=lim) as client:
        for _ in range(3):
            await client.fetch(req)
    assert script.times == [0.0, 0.0, 60.0]
