"""Backfill end to end: the service against the fake Binance, checked against the fake's own data.

Most tests run over real HTTP on 127.0.0.1 (the fake's Litestar app under
hypercorn); the timing tests (429 Retry-After, weight budget, 418, writer
backpressure) run under ``autojump_clock`` through the fake's socket-free
``mock_transport``, with the fake's clock, the client's wall clock and the
operation's ``now`` all derived from ``trio.current_time()`` so minutes pass
instantly and times are exact.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from dccd.actors import Service, open_service
from prometheus_client import CollectorRegistry

from dccd.domain import Candle, DatasetId, DataType, Span, Symbol
from dccd.domain.ratelimit import RetryPolicy
from dccd.domain.timeutil import NS_PER_MS, NS_PER_S
from dccd.errors import NoCapability
from dccd.storage import Lake, Provenance, RunStore
from tests.e2e.helpers import (
    AGG_TRADES,
    DAY_MS,
    EXCHANGE_INFO,
    HISTORICAL_TRADES,
    JAN1_MS,
    KLINES,
    LISTED_MS,
    MIN_MS,
    OHLC_COLUMNS,
    TRADE_COLUMNS,
    config,
    fake_klines,
    fake_trades,
    iso_ms,
    klines_params,
    parts,
    raw_rows,
    request,
    temp_files,
)
from tests.fake.binance import FakeBinance, Faults, open_fake_binance
from tests.fake.binance_data import FakeMarket

WEEK_END_MS = JAN1_MS + 7 * DAY_MS
WALL0 = 1_706_745_600  # 2024-02-01T00:00Z: the virtual wall clock at trio time 0 (a whole minute)


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    """The fake Binance on 127.0.0.1 with a weight budget that never binds."""
    async with open_fake_binance(weight_limit=10**9) as f:
        yield f


@asynccontextmanager
async def http_service(
    root: Path, fake: FakeBinance, client_options: dict[str, Any] | None = None, **ops: Any
) -> AsyncIterator[Service]:
    """A service whose Binance is the fake over real HTTP (no proactive rate limit)."""
    async with open_service(config(root, fake.url), ops_options=ops or None, client_options=client_options) as svc:
        yield svc


def virtual_wall_ns() -> int:
    """Wall clock (ns) that advances with trio's clock from WALL0."""
    return WALL0 * NS_PER_S + round(trio.current_time() * NS_PER_S)


def virtual_fake(**kwargs: Any) -> FakeBinance:
    """A fake whose clock follows trio's (autojump) clock from WALL0."""
    return FakeBinance(clock=lambda: WALL0 + trio.current_time(), **kwargs)


async def inline_write(fn: Callable[..., Any], *args: Any) -> Any:
    """Writer offload running the write on the Trio thread: a worker thread would let the autojump clock jump."""
    await trio.lowlevel.checkpoint()
    return fn(*args)


@asynccontextmanager
async def virtual_service(root: Path, fake: FakeBinance, rate_limit: float = 0.0, **ops: Any) -> AsyncIterator[Service]:
    """A service talking to ``fake`` through its mock transport, every clock on trio time."""
    ops["writer_options"] = {"offload": inline_write, **ops.get("writer_options", {})}
    async with open_service(
        config(root, "http://binance.fake", rate_limit),
        client_options={"transport": fake.mock_transport(), "wall_clock_ns": virtual_wall_ns, "rand": lambda: 0.0},
        ops_options={"now_ns": virtual_wall_ns, **ops},
    ) as svc:
        yield svc


def week() -> Any:
    """One week of 1m BTC/USDT bars from 2024-01-01."""
    return request(["BTC/USDT"], start="2024-01-01", end="2024-01-08")


# --- exact history over real HTTP ----------------------------------------------------------------


async def test_week_of_klines_comes_back_exactly(fake: FakeBinance, tmp_path: Path) -> None:
    """A week of 1m bars is stored once each, none missing at page seams, equal to the fake's own bars."""
    async with http_service(tmp_path, fake) as svc:
        (rec,) = await svc.backfill(week())
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, 10_080)
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, WEEK_END_MS)
    starts = sorted(int(p["startTime"]) for p in klines_params(fake))
    assert starts == [JAN1_MS + k * 1000 * MIN_MS for k in range(11)]  # one request per 1000-bar window
    counters = {k: rec.progress[k] for k in ("done", "total", "unit", "pages", "rows", "page_retries")}
    assert counters == {"done": 10_080, "total": 10_080, "unit": "bars", "pages": 11, "rows": 10_080, "page_retries": 0}


async def test_six_hours_of_trades_come_back_exactly(tmp_path: Path) -> None:
    """Six hours of trades (3 per ms, pages splitting a millisecond) are stored once each, equal to the fake's."""
    end_ms = JAN1_MS + 6 * 3_600_000
    market = FakeMarket("BTCUSDT", "BTC", "USDT", LISTED_MS, every_ms=1000)  # 3 trades/s: 65 pages of 1000
    async with open_fake_binance(weight_limit=10**9, markets=[market]) as fake:
        async with http_service(tmp_path, fake) as svc:
            (rec,) = await svc.backfill(request(["BTC/USDT"], "trades", start="2024-01-01", end="2024-01-01T06:00"))
        expected = fake_trades(fake, JAN1_MS, end_ms)
        assert len(expected) == 6 * 3600 * 3
        assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, len(expected))
        assert raw_rows(tmp_path, "trades", TRADE_COLUMNS, "ts, CAST(id AS BIGINT)") == expected
        assert fake.requests[1].path == AGG_TRADES  # the id lookup for the start time, then the id walk
        walked = [int(r.params["fromId"]) for r in fake.requests if r.path == HISTORICAL_TRADES]
        assert walked == list(range(int(expected[0][1]), int(expected[-1][1]) + 2, 1000))


# --- 429 / weight budget / 418 under autojump --------------------------------------------------------


async def test_429_retry_after_is_waited_exactly_then_the_run_resumes(autojump_clock: Any, tmp_path: Path) -> None:
    """A 429 with Retry-After: 7 pauses every request exactly 7 s; the refused page is re-sent and the week completes."""
    fake = virtual_fake(faults=Faults(too_many={3: "7"}))
    async with virtual_service(tmp_path, fake) as svc:
        (rec,) = await svc.backfill(week())
    assert (rec.state, rec.rows_written) == ("succeeded", 10_080)
    limited = fake.requests[2]
    assert (limited.path, limited.status) == (KLINES, 429)
    (again,) = [r for r in fake.requests[3:] if r.params == limited.params]
    assert (again.status, again.t - limited.t) == (200, 7.0)
    assert not [r for r in fake.requests if limited.t < r.t < limited.t + 7.0]  # nobody sent during the pause
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, WEEK_END_MS)


async def test_weight_budget_binds_over_500_pages(autojump_clock: Any, tmp_path: Path) -> None:
    """500 pages with rate_limit 0.5 of the exchange's live 1000/min stay within 500 weight per minute, never a 429."""
    fake = virtual_fake(weight_limit=1000)
    start_ms = WALL0 * 1000 - 1000 * MIN_MS
    bars = fake_klines(fake, start_ms, WALL0 * 1000)
    # Every other bar is already stored: 500 one-bar gaps, so 500 pages (cheap ones: the budget counts requests).
    Lake(tmp_path).write(week_dataset(), [Candle(*b) for b in bars[::2]], Provenance("binance", "rest"))
    req = request(["BTC/USDT"], start=iso_ms(start_ms), end=iso_ms(WALL0 * 1000), now_ns=virtual_wall_ns())
    async with virtual_service(tmp_path, fake, rate_limit=0.5) as svc:
        (rec,) = await svc.backfill(req)
    assert (rec.state, rec.rows_written) == ("succeeded", 500)
    assert fake.count(KLINES) == 500 and fake.rejected_429 == 0
    assert fake.max_used_weight <= 500  # floor(1000 * 0.5): the budget taken from exchangeInfo
    assert sorted(fake.weight_by_window.values()) == [20, 500, 500]  # 1020 weight over three minutes
    # exchangeInfo + 240 pages fill minute 0; the rest wait for each roll-over plus the 0.6 s guard (1 % of 60 s).
    sent_at = collections.Counter(round(r.t - WALL0, 3) for r in fake.requests)
    assert sent_at == {0.0: 1 + 240, 60.6: 250, 120.6: 10}
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == bars


async def test_418_stops_the_run_and_every_request(autojump_clock: Any, tmp_path: Path) -> None:
    """A 418 fails the run naming the page and the ban; no request follows it, not even from a new run."""
    fake = virtual_fake(faults=Faults(bans={4: "60"}))
    async with virtual_service(tmp_path, fake, concurrency=1) as svc:
        (rec,) = await svc.backfill(week())
        banned = fake.requests[3]
        assert banned.status == 418 and fake.count() == 4
        page = "&".join(f"{k}={v}" for k, v in banned.params.items())
        assert rec.state == "failed" and rec.error is not None
        assert rec.error.startswith(
            f"page /api/v3/klines?{page} failed: binance banned this IP for 60s (HTTP 418 on klines"
        )
        (second,) = await svc.backfill(week())  # within the ban: refused locally
        assert second.state == "failed" and "banned this IP" in (second.error or "")
    assert fake.count() == 4
    assert rec.rows_written == 2000  # the two pages answered before the ban are kept
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, JAN1_MS + 2000 * MIN_MS)


# --- failures keep what was written ------------------------------------------------------------------


FAST_RETRY = {"retry": RetryPolicy(base_s=0.01)}  # the default policy's 5 attempts, without seconds of backoff


async def test_malformed_page_is_retried_and_counted(tmp_path: Path) -> None:
    """A truncated and then a malformed answer of the same page are asked again; the run succeeds, retries counted."""
    registry = CollectorRegistry()
    async with open_fake_binance(weight_limit=10**9, malformed={5: "truncated", 6: "field"}) as fake:
        options = {**FAST_RETRY, "registry": registry}
        async with http_service(tmp_path, fake, options, concurrency=1) as svc:
            (rec,) = await svc.backfill(week())
        assert [r.params["startTime"] for r in fake.requests[4:7]] == [str(JAN1_MS + 3000 * MIN_MS)] * 3
        assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, WEEK_END_MS)
    assert (rec.state, rec.error, rec.rows_written, rec.progress["page_retries"]) == ("succeeded", None, 10_080, 2)
    labels = {"exchange": "binance", "endpoint": "klines", "reason": "ProtocolDrift"}
    assert registry.get_sample_value("dccd_exchange_retries_total", labels) == 2


async def test_week_completes_in_one_run_through_5pc_truncated_and_5pc_malformed_answers(tmp_path: Path) -> None:
    """With 5 % of klines answers truncated and 5 % malformed, a week is stored exactly in one run, retries counted."""
    rates = {"truncated": 0.05, "field": 0.05}
    async with open_fake_binance(weight_limit=10**9, malformed_rate=rates) as fake:
        async with http_service(tmp_path, fake, FAST_RETRY) as svc:
            (rec,) = await svc.backfill(week())
        assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, WEEK_END_MS)
        corrupted = sorted(kind for _, kind in fake.corrupted)
    assert corrupted == ["field", "truncated"]  # both kinds were served (requests 5 and 13 of this run)
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, 10_080)
    assert (rec.progress["pages"], rec.progress["page_retries"]) == (11, 2)


async def test_malformed_page_fails_the_run_naming_it_and_keeps_earlier_parts(tmp_path: Path) -> None:
    """A 4th page malformed at every attempt fails the run naming it; the 3 pages before it are stored intact."""
    attempts = RetryPolicy().attempts
    malformed = {n: "truncated" for n in range(5, 5 + attempts)}
    async with open_fake_binance(weight_limit=10**9, malformed=malformed) as fake:
        async with http_service(tmp_path, fake, FAST_RETRY, concurrency=1) as svc:
            (rec,) = await svc.backfill(week())
        bad = fake.requests[4]
        page = "&".join(f"{k}={v}" for k, v in bad.params.items())
        assert bad.params["startTime"] == str(JAN1_MS + 3000 * MIN_MS) and fake.count() == 4 + attempts
        assert {r.params["startTime"] for r in fake.requests[4:]} == {bad.params["startTime"]}
        assert (rec.state, rec.rows_written, rec.progress["page_retries"]) == ("failed", 3000, attempts - 1)
        assert rec.error is not None
        assert rec.error.startswith(
            f"page /api/v3/klines?{page} failed: binance klines: unexpected payload: invalid JSON"
        )
        assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, JAN1_MS + 3000 * MIN_MS)
    assert temp_files(tmp_path) == []
    assert Lake(tmp_path).read_table(week_dataset()).table.num_rows == 3000


def week_dataset() -> DatasetId:
    """The dataset of these tests: Binance BTC/USDT 1m bars."""
    return DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span("1m"))


# --- backpressure ----------------------------------------------------------------------------------


async def _run_with_writer(root: Path, write_s: float) -> tuple[list[float], int, int]:
    """Backfill 24 pages through a writer taking ``write_s`` per 1000-row part.

    Returns the times the fake received the klines requests, the most rows held
    in memory by the writer at any sample (queued batches plus accepted but
    unwritten rows), and its deepest input queue.
    """

    async def offload(fn: Callable[..., Any], *args: Any) -> Any:
        await trio.sleep(write_s)  # the disk's time, on trio's clock
        return fn(*args)

    fake = virtual_fake(faults=Faults(delay_s=0.01))
    start_ms = WALL0 * 1000 - 24_000 * MIN_MS
    req = request(["BTC/USDT"], start=iso_ms(start_ms), end=iso_ms(WALL0 * 1000), now_ns=virtual_wall_ns())
    writer_options = {"max_rows": 1000, "high": 2, "low": 1, "offload": offload}
    held: list[int] = []
    depth: list[int] = []
    async with virtual_service(root, fake, writer_options=writer_options) as svc:
        (run_id,) = await svc.start_backfill(req)
        writer = svc.supervisor.handle(f"writer:{run_id}")

        async def sample() -> None:
            while True:
                st = writer.statistics()
                held.append(st.accepted_rows - st.written_rows + 1000 * st.queue_depth)  # a batch is one page
                depth.append(st.queue_depth)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            rec = await svc.wait_run(run_id)
            nursery.cancel_scope.cancel()
    assert (rec.state, rec.rows_written) == ("succeeded", 24_000)
    assert raw_rows(root, "ohlc", "count(*)", "1") == [(24_000,)]
    return [r.t for r in fake.requests if r.path == KLINES], max(held), max(depth)


async def test_slow_writer_slows_the_requests_and_memory_stays_bounded(autojump_clock: Any, tmp_path: Path) -> None:
    """A 0.5 s/part writer cuts the request rate the fake sees ~100x; the rows the writer holds stay bounded."""
    fast, fast_held, _ = await _run_with_writer(tmp_path / "fast", 0.0)
    slow, slow_held, slow_depth = await _run_with_writer(tmp_path / "slow", 0.5)
    fast_rate, slow_rate = 23 / (fast[-1] - fast[0]), 23 / (slow[-1] - slow[0])
    assert len(fast) == len(slow) == 24
    assert fast_rate >= 100 * slow_rate
    # Requests never run ahead of the 0.5 s writes by more than the 6 pages the writer may hold.
    assert all(slow[k] - slow[0] >= 0.5 * (k - 6) for k in range(24))
    # The queue closes at high (2) and the 4 pages in flight past the gate may still land: depth <= 5,
    # plus the part being written: at most 6 of the 24 pages are ever held, however slow the disk.
    assert slow_depth <= 2 - 1 + 4 and slow_held <= 6 * 1000 and fast_held <= 6 * 1000


# --- only what is missing is fetched ----------------------------------------------------------------


async def test_rerun_fetches_nothing_and_last_fetches_only_the_tail(fake: FakeBinance, tmp_path: Path) -> None:
    """Re-running a finished range sends no klines request and writes nothing; --start last starts after the last bar."""
    async with http_service(tmp_path, fake) as svc:
        await svc.backfill(week())
        files = parts(tmp_path)
        seen = len(fake.requests)
        (again,) = await svc.backfill(week())
        assert (again.state, again.rows_written) == ("succeeded", 0)
        assert klines_params(fake, seen) == [] and parts(tmp_path) == files
        seen = len(fake.requests)
        (tail,) = await svc.backfill(request(["BTC/USDT"], start="last", end="2024-01-09"))
    assert (tail.state, tail.rows_written) == ("succeeded", 1440)
    assert [p["startTime"] for p in klines_params(fake, seen)] == [str(WEEK_END_MS), str(WEEK_END_MS + 1000 * MIN_MS)]
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, WEEK_END_MS + DAY_MS)


async def test_deleted_part_is_repaired_by_requesting_only_its_window(fake: FakeBinance, tmp_path: Path) -> None:
    """With the middle of three parts deleted, re-running the week requests exactly the missing days."""
    day2, day5 = JAN1_MS + 2 * DAY_MS, JAN1_MS + 5 * DAY_MS
    async with http_service(tmp_path, fake) as svc:
        for lo, hi in (("2024-01-01", "2024-01-03"), ("2024-01-03", "2024-01-06"), ("2024-01-06", "2024-01-08")):
            (rec,) = await svc.backfill(request(["BTC/USDT"], start=lo, end=hi))
            assert rec.state == "succeeded"
        middle = [p for p in parts(tmp_path) if p.name.startswith(f"part-{day2 * NS_PER_MS:019d}-")]
        assert len(middle) == 1 and len(parts(tmp_path)) == 3
        middle[0].unlink()
        seen = len(fake.requests)
        (repair,) = await svc.backfill(week())
    assert (repair.state, repair.rows_written) == ("succeeded", 3 * 1440)
    windows = sorted((int(p["startTime"]), int(p["endTime"])) for p in klines_params(fake, seen))
    bounds = [day2 + k * 1000 * MIN_MS for k in range(5)] + [day5]
    assert windows == [(lo, hi - MIN_MS) for lo, hi in itertools.pairwise(bounds)]
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, WEEK_END_MS)


async def test_exchange_hole_is_recorded_as_a_gap_and_not_requested_again(tmp_path: Path) -> None:
    """Bars the exchange lacks become one 'gap' event with the hole's exact bounds; the next run skips them."""
    hole = (JAN1_MS + 4100 * MIN_MS, JAN1_MS + 4310 * MIN_MS)  # inside the window [4000, 5000) min
    async with open_fake_binance(weight_limit=10**9, holes=[hole]) as fake:
        async with http_service(tmp_path, fake) as svc:
            (first,) = await svc.backfill(week())
            seen = len(fake.requests)
            (second,) = await svc.backfill(week())
        runs = RunStore(tmp_path)
        gaps = [(e.kind, e.lo, e.hi) for e in runs.events(first.run_id)]
        assert gaps == [("gap", hole[0] * NS_PER_MS, hole[1] * NS_PER_MS)]
        assert (first.state, first.rows_written) == ("succeeded", 10_080 - 210)
        assert (second.state, second.rows_written) == ("succeeded", 0)
        assert klines_params(fake, seen) == [] and runs.events(second.run_id) == []
        assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, WEEK_END_MS)


async def test_origin_is_found_by_one_probe(fake: FakeBinance, tmp_path: Path) -> None:
    """--start origin asks once for the first bar (startTime=0, limit=1), then pages from the listing: 3 requests."""
    async with http_service(tmp_path, fake) as svc:
        (rec,) = await svc.backfill(request(["BTC/USDT"], start="origin", end=iso_ms(LISTED_MS + DAY_MS)))
    assert (rec.state, rec.rows_written) == ("succeeded", 1440)
    probe, *pages = klines_params(fake)
    assert (probe["startTime"], probe["limit"]) == ("0", "1")
    assert [p["startTime"] for p in pages] == [str(LISTED_MS), str(LISTED_MS + 1000 * MIN_MS)]
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, LISTED_MS, LISTED_MS + DAY_MS)


async def test_start_before_the_listing_probes_instead_of_paging_empty_windows(
    fake: FakeBinance, tmp_path: Path
) -> None:
    """A start 7.5 months before the listing costs one empty window and one probe, recorded as one gap, never again."""
    req = request(["BTC/USDT"], start="2017-01-01", end=iso_ms(LISTED_MS + DAY_MS))
    async with http_service(tmp_path, fake) as svc:
        (rec,) = await svc.backfill(req)
        seen = len(fake.requests)
        (again,) = await svc.backfill(req)
    assert (rec.state, rec.rows_written, again.rows_written) == ("succeeded", 1440, 0)
    jan1 = 1_483_228_800_000  # 2017-01-01T00:00Z
    empty, probe, *pages = klines_params(fake)[:seen]
    assert (empty["startTime"], probe["startTime"], probe["limit"]) == (str(jan1), str(jan1 + 1000 * MIN_MS), "1")
    assert [p["startTime"] for p in pages] == [str(LISTED_MS), str(jan1 + 329_000 * MIN_MS)]  # the window grid
    gaps = [(e.kind, e.lo, e.hi) for e in RunStore(tmp_path).events(rec.run_id)]
    assert gaps == [("gap", jan1 * NS_PER_MS, LISTED_MS * NS_PER_MS)]
    assert klines_params(fake, seen) == []
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == fake_klines(fake, LISTED_MS, LISTED_MS + DAY_MS)


# --- early failures ----------------------------------------------------------------------------------


async def test_unknown_symbol_fails_before_any_paging(fake: FakeBinance, tmp_path: Path) -> None:
    """A symbol Binance does not list fails its run after the listing request alone; other symbols proceed."""
    async with http_service(tmp_path, fake) as svc:
        nope, btc = await svc.backfill(request(["NOPE/USDT", "BTC/USDT"], start="2024-01-01", end="2024-01-01T01:00"))
    assert (nope.state, nope.error) == ("failed", "binance: symbol NOPE/USDT is not listed (3 markets listed)")
    assert (btc.state, btc.rows_written) == ("succeeded", 60)
    assert fake.count(EXCHANGE_INFO) == 1 and [p["symbol"] for p in klines_params(fake)] == ["BTCUSDT"]


@pytest.mark.parametrize(
    ("exchange", "symbol", "data_type", "span", "message"),
    [
        ("binance", "BTC/USDT", "funding", None, "binance does not offer funding for spot markets"),
        ("coinbase", "BTC/USD", "ohlc", "3m", "coinbase does not offer ohlc span 3m over rest (spans: "),
    ],
)
async def test_no_capability_fails_before_any_request_or_run(
    fake: FakeBinance, tmp_path: Path, exchange: str, symbol: str, data_type: str, span: str | None, message: str
) -> None:
    """A type, market or span the adapter does not declare raises NoCapability before any request or run."""
    req = request([symbol], data_type, span=span, start="2024-01-01", end="2024-01-02", exchange=exchange)
    async with open_service(config(tmp_path, fake.url, exchanges=("binance", "coinbase"))) as svc:
        with pytest.raises(NoCapability) as info:
            await svc.start_backfill(req)
    assert str(info.value).startswith(message)
    assert fake.count() == 0 and RunStore(tmp_path).list_runs() == []
