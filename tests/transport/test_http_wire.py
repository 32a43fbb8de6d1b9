"""ExchangeClient over real HTTP on 127.0.0.1 against the fake Binance (real clock, no timing asserts)."""

from __future__ import annotations

import time

import pytest
import trio

from dccd.domain import Span, Symbol
from dccd.domain.ratelimit import RetryPolicy
from dccd.errors import Banned, ExchangeRejected, ProtocolDrift, RequestTimeout
from dccd.sources import RateLimits
from dccd.sources.binance import BinanceAdapter
from dccd.transport.http import open_exchange_client
from dccd.transport.ratelimit import WeightLimiter
from tests.fake.binance import open_fake_binance

BTC = Symbol("BTC", "USDT")
ADAPTER = BinanceAdapter()
FAST = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05)
LISTED_NS = 1_502_942_400_000 * 1_000_000  # BTCUSDT listing in the fake


async def test_klines_pages_over_the_wire() -> None:
    """Real HTTP klines parse into a full page whose next start follows the last bar; weight is tracked."""
    async with open_fake_binance() as fake, open_exchange_client(ADAPTER, fake.url, 0.8) as client:
        req = ADAPTER.build_ohlc(BTC, Span("1m"), LISTED_NS, LISTED_NS + 10**15, limit=500)
        page = ADAPTER.parse_ohlc(req, await client.fetch(req))
        assert len(page.candles) == 500
        assert page.candles[0].ts == LISTED_NS and page.candles[0].trades == 720
        assert page.next_start_ns == LISTED_NS + 500 * 60 * 10**9
        assert client.limiter.used >= 2
        assert fake.requests[0].params == {
            "symbol": "BTCUSDT",
            "interval": "1m",
            "startTime": "1502942400000",
            "endTime": str((LISTED_NS + 10**15) // 10**6),
            "limit": "500",
        }


async def test_trades_walk_from_a_time_over_the_wire() -> None:
    """The aggTrades lookup then historicalTrades pages give consecutive ids with no overlap."""
    async with open_fake_binance() as fake, open_exchange_client(ADAPTER, fake.url, 0.8) as client:
        start_ns = LISTED_NS + 60 * 10**9 + 1  # just after a trade group at +60 s
        cursor, ids = None, []
        for _ in range(3):
            req = ADAPTER.build_trades(BTC, cursor=cursor, start_ns=start_ns, limit=7)
            page = ADAPTER.parse_trades(req, await client.fetch(req))
            ids += [int(t.id) for t in page.records if t.id is not None]
            assert page.id_gaps == ()
            cursor = page.next_cursor
        assert ids == list(range(ids[0], ids[0] + 14))
        assert ids[0] == (60_000 // 250 + 1) * 3  # first group strictly after +60 s, 3 trades per group
        assert [r.path for r in fake.requests] == ["/api/v3/aggTrades", *["/api/v3/historicalTrades"] * 2]


async def test_5xx_then_success_over_the_wire() -> None:
    """A 503 from the server is retried on a real connection and the next answer is returned."""
    async with (
        open_fake_binance(errors={1: 503}) as fake,
        open_exchange_client(ADAPTER, fake.url, retry=FAST) as client,
    ):
        body = await client.fetch(ADAPTER.build_symbols())
        assert ADAPTER.parse_symbols(ADAPTER.build_symbols(), body).require(BTC).native == "BTCUSDT"
        assert [r.status for r in fake.requests] == [503, 200]


async def test_unknown_symbol_is_rejected_over_the_wire() -> None:
    """The fake's -1121 answer surfaces as ExchangeRejected with Binance's code."""
    async with open_fake_binance() as fake, open_exchange_client(ADAPTER, fake.url) as client:
        req = ADAPTER.build_ohlc(Symbol("NOPE", "USDT"), Span("1m"), 0, 10**15)
        with pytest.raises(ExchangeRejected, match=r"\(HTTP 400\): code -1121: Invalid symbol."):
            await client.fetch(req)


@pytest.mark.parametrize("kind", ["field", "truncated", "empty", "html"])
async def test_malformed_page_is_protocol_drift_naming_endpoint(kind: str) -> None:
    """A malformed 200 page fails loudly as ProtocolDrift naming the klines endpoint."""
    async with open_fake_binance(malformed={1: kind}) as fake, open_exchange_client(ADAPTER, fake.url) as client:
        req = ADAPTER.build_ohlc(BTC, Span("1m"), LISTED_NS, LISTED_NS + 10**13, limit=5)
        body = await client.fetch(req)
        with pytest.raises(ProtocolDrift, match=r"^binance klines: unexpected payload: ") as info:
            ADAPTER.parse_ohlc(req, body)
        assert info.value.endpoint == "klines"


async def test_429_retry_after_over_the_wire() -> None:
    """A 429 with Retry-After is waited out (at least that long) and then succeeds."""
    async with (
        open_fake_binance(too_many={1: "0.3"}) as fake,
        open_exchange_client(ADAPTER, fake.url, retry=FAST) as client,
    ):
        t0 = time.monotonic()
        await client.fetch(ADAPTER.build_symbols())
        assert time.monotonic() - t0 >= 0.3
        assert [r.status for r in fake.requests] == [429, 200]


async def test_418_stops_all_requests_over_the_wire() -> None:
    """After a 418 the caller gets Banned, and another task's call fails too without reaching the server."""
    async with open_fake_binance(bans={1: "60"}) as fake, open_exchange_client(ADAPTER, fake.url) as client:
        outcomes: list[str] = []
        first_done = trio.Event()

        async def call(after: trio.Event | None) -> None:
            if after is not None:
                await after.wait()
            try:
                await client.fetch(ADAPTER.build_symbols())
            except Banned as err:
                outcomes.append(str(err))
            finally:
                first_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, first_done)
            nursery.start_soon(call, None)
        assert len(outcomes) == 2 and all("binance banned this IP for" in o for o in outcomes)
        assert "IP banned until" in outcomes[0]
        assert fake.count() == 1


async def test_slow_answer_times_out_over_the_wire() -> None:
    """An answer slower than the deadline raises RequestTimeout after the retries."""
    async with (
        open_fake_binance(delay_s=1.0) as fake,
        open_exchange_client(ADAPTER, fake.url, retry=RetryPolicy(attempts=2, base_s=0.01), timeout_s=0.2) as client,
    ):
        with pytest.raises(RequestTimeout):
            await client.fetch(ADAPTER.build_symbols())
        assert fake.count() == 2


async def test_weight_limiter_never_exceeds_budget() -> None:
    """Concurrent callers stay within share x budget per window (fake's own count) and never see a 429."""
    window_s, limit, share = 0.5, 100, 0.5
    async with open_fake_binance(weight_limit=limit, window_s=window_s) as fake:
        limits = RateLimits(limit, window_s, "x-mbx-used-weight-1m")
        limiter = WeightLimiter("binance", limits, share, guard_s=0.1)  # loopback latency under load
        async with open_exchange_client(ADAPTER, fake.url, limiter=limiter) as client:
            req = ADAPTER.build_ohlc(BTC, Span("1h"), LISTED_NS, LISTED_NS + 10**14, limit=3)

            async def worker() -> None:
                for _ in range(20):
                    ADAPTER.parse_ohlc(req, await client.fetch(req))

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(worker)
        assert fake.count() == 80 and fake.rejected_429 == 0
        assert 0 < fake.max_used_weight <= limit * share
        assert len(fake.weight_by_window) >= 4  # 160 weight at 50 per window


async def test_generic_ohlc_walk_is_complete_across_a_hole() -> None:
    """Driving only the Adapter protocol, paging 1m bars over a data hole yields every bar once, in order."""
    hole_ms = (1_502_942_400_000 + 7 * 60_000, 1_502_942_400_000 + 12 * 60_000)
    end_ns = LISTED_NS + 30 * 60 * 10**9
    async with open_fake_binance(holes=[hole_ms]) as fake, open_exchange_client(ADAPTER, fake.url, 0) as client:
        start: int | None = LISTED_NS - 10**12  # before the listing: the exchange starts at its first bar
        seen: list[int] = []
        while start is not None and start <= end_ns:
            req = ADAPTER.build_ohlc(BTC, Span("1m"), start, end_ns, limit=4)
            page = ADAPTER.parse_ohlc(req, await client.fetch(req))
            seen += [c.ts for c in page.candles]
            start = page.next_start_ns
    minute = 60 * 10**9
    expected = [LISTED_NS + k * minute for k in range(31) if not 7 <= k < 12]
    assert seen == expected


async def test_generic_trades_walk_is_exactly_once_to_the_head() -> None:
    """Paging trades by cursor from a start time reaches the head with consecutive ids, no overlap."""
    clock_s = LISTED_NS / 10**9 + 10.0  # ten seconds of tape: ids 0..122
    async with (
        open_fake_binance(clock=lambda: clock_s) as fake,
        open_exchange_client(ADAPTER, fake.url, 0) as client,
    ):
        cursor: str | None = None
        ids: list[int] = []
        while True:
            req = ADAPTER.build_trades(BTC, cursor=cursor, start_ns=LISTED_NS + 2 * 10**9, limit=50)
            page = ADAPTER.parse_trades(req, await client.fetch(req))
            ids += [int(t.id) for t in page.records if t.id is not None]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert ids == list(range(24, 123))  # first trade at +2 s is group 8 -> id 24; head = 40 groups * 3 + 2
    assert ADAPTER.trades_cursor_after(page.records[-1]) == "123"
