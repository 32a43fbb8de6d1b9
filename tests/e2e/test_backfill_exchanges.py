"""Backfill end to end through the real service for every other exchange, checked against each fake's own data.

Each case serves a fake exchange on 127.0.0.1 (rate limit 0), pins the fake's
clock and the service's ``now`` to one fixed instant, runs
``open_service(...).backfill(...)`` and reads the lake raw with DuckDB (every
part, no deduplication) so a missing or duplicated row shows. Expected rows
come from the fakes' generators (:mod:`tests.fake.tape`, ``synthetic_bar``,
:mod:`tests.fake.venue`), never from dccd's parsers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from dccd.actors import Service, open_service

from dccd.domain import Symbol
from dccd.domain.timeutil import NS_PER_MS, parse_iso_ns
from dccd.errors import NoCapability
from dccd.ops import BackfillRequest, parse_backfill
from dccd.sources import get_adapter
from dccd.storage import RunStore
from tests.e2e.helpers import OHLC_COLUMNS, TRADE_COLUMNS, config, raw_rows
from tests.fake import binance_futures as fbn
from tests.fake import bitfinex as fbf
from tests.fake import bitmex as fbm
from tests.fake import bybit as fby
from tests.fake import coinbase as fcb
from tests.fake import kraken as fkr
from tests.fake import okx as fok
from tests.fake import tape
from tests.fake.exchange import dec, open_rest, synthetic_bar
from tests.fake.venue import bar, open_interest, rate, serving

MIN_MS = 60_000
JAN1_MS = parse_iso_ns("2024-01-01") // NS_PER_MS
WEEK_END_MS = JAN1_MS + 7 * 86_400_000
OHLC_NOW_MS = WEEK_END_MS + 30 * MIN_MS  # 2024-01-08T00:30Z: the week is closed, the fakes know it
TRADES_LO_MS, TRADES_HI_MS = JAN1_MS + 3_600_000, JAN1_MS + 2 * 3_600_000  # 01:00 .. 02:00
TRADES_NOW_MS = TRADES_HI_MS + 30_000  # the head is just past the hour: backward walks stay short
FUNDING_COLUMNS = "ts, rate, mark_price"
OI_COLUMNS = "ts, open_interest, open_interest_value"

Row = tuple[Any, ...]


def f2(cents: int) -> float:
    """A 2-decimal price as the exchange's string parses."""
    return float(dec(cents, 2))


def taker(is_buyer_maker: bool) -> str:
    """The taker's side of a tape trade."""
    return "sell" if is_buyer_maker else "buy"


# --- per-exchange expectations (from the fakes' generators) ----------------------------------------


def coinbase_bar(t: int) -> Row:
    o, h, lo, c, v, _ = synthetic_bar("BTC-USD:60", t)
    return (t * NS_PER_MS, f2(o), f2(h), f2(lo), f2(c), float(dec(v, 5)), None, None)


def kraken_bar(t: int) -> Row:
    o, h, lo, c, v, n = synthetic_bar("XBTUSD:1", t)
    return (t * NS_PER_MS, f2(o), f2(h), f2(lo), f2(c), float(dec(v, 8)), None, n)


def bitfinex_bar(t: int) -> Row:
    o, h, lo, c, v, _ = synthetic_bar("tBTCUST:1m", t)
    return (t * NS_PER_MS, o / 100, h / 100, lo / 100, c / 100, v / 1e5, None, None)


def bybit_bar(t: int) -> Row:
    b = bar("spot:BTCUSDT:1m", t)
    return (t * NS_PER_MS, *map(float, (b.open, b.high, b.low, b.close, b.volume, b.quote)), None)


def okx_bar(t: int) -> Row:
    b = bar("BTC-USDT:1m", t)
    return (t * NS_PER_MS, *map(float, (b.open, b.high, b.low, b.close, b.volume, b.quote)), None)


def bitmex_bar(t: int) -> Row:
    b = bar("XBT_USDT:1m", t)
    return (t * NS_PER_MS, *map(float, (b.open, b.high, b.low, b.close, b.volume, b.quote)), b.trades)


def coinbase_trade(k: int) -> Row:
    t = tape.trade_at("BTC-USD", k)
    return (fcb.trade_time_us(k) * 1000, str(k), float(t.price), float(t.qty), taker(t.is_buyer_maker))


def kraken_trade(k: int) -> Row:
    t = tape.trade_at("XBTUSD", k)
    return (fkr.trade_time_us(k) * 1000, str(k + 1), float(t.price), float(t.qty), taker(t.is_buyer_maker))


def bitfinex_trade(k: int) -> Row:
    t = tape.trade_at("BTCUST", k)
    return (fbf.trade_mts(k) * NS_PER_MS, str(k * 8 + 1), float(t.price), float(t.qty), taker(t.is_buyer_maker))


def bitmex_trade(k: int) -> Row:
    t = tape.trade_at("XBT_USDT", k)
    tid = f"00000000-0000-4000-8000-{k:012d}"
    return (fbm.trade_ms(k) * NS_PER_MS, tid, float(t.price), float(t.qty), taker(t.is_buyer_maker))


def okx_trade(k: int) -> Row:
    t = tape.trade_at("BTC-USDT", k)
    return (t.time_ms * NS_PER_MS, str(fok.TRADE_ID0 + k), float(t.price), float(t.qty), taker(t.is_buyer_maker))


@dataclass(frozen=True)
class Venue:
    """One fake exchange and what its data is."""

    name: str
    fake: Callable[..., Any]  # FakeRest factory (clock=...)
    serve: Callable[[Any], AbstractAsyncContextManager[Any]]
    spot: str
    bar: Callable[[int], Row]
    trade: Callable[[int], Row] | None = None
    trades_per_s: int = 10

    def expected_trades(self, lo_ms: int, hi_ms: int) -> list[Row]:
        """The fake's trades with time in ``[lo_ms, hi_ms)``, as lake rows."""
        assert self.trade is not None
        first = (lo_ms - JAN1_MS) // 1000 * self.trades_per_s - 100
        last = (hi_ms - JAN1_MS) // 1000 * self.trades_per_s + 100
        rows = (self.trade(k) for k in range(max(first, 0), last))
        return sorted(r for r in rows if lo_ms * NS_PER_MS <= r[0] < hi_ms * NS_PER_MS)


VENUES = [
    Venue("coinbase", fcb.FakeCoinbase, open_rest, "BTC/USD", coinbase_bar, coinbase_trade),
    Venue("kraken", fkr.FakeKraken, open_rest, "BTC/USD", kraken_bar, kraken_trade),
    Venue("bitfinex", fbf.FakeBitfinex, open_rest, "BTC/USDT", bitfinex_bar, bitfinex_trade, 30),
    Venue("bybit", fby.FakeBybit, serving, "BTC/USDT", bybit_bar),
    Venue("okx", fok.FakeOkx, serving, "BTC/USDT", okx_bar, okx_trade),
    Venue("bitmex", fbm.FakeBitmex, serving, "BTC/USDT", bitmex_bar, bitmex_trade, 30),
]
BY_NAME = {v.name: v for v in VENUES}


@asynccontextmanager
async def venue_service(venue: Venue, root: Path, now_ms: int) -> AsyncIterator[tuple[Any, Service]]:
    """The fake (its clock fixed at ``now_ms``) on 127.0.0.1 and a service whose ``now`` is the same instant."""
    fake = venue.fake(clock=lambda: now_ms / 1000)
    async with venue.serve(fake) as served:
        url = served.url
        ops = {"now_ns": lambda: now_ms * NS_PER_MS}
        async with open_service(config(root, url, exchanges=(venue.name,)), ops_options=ops) as svc:
            yield fake, svc


def request(
    venue: str, symbol: str, data_type: str, lo_ms: int, hi_ms: int, now_ms: int, span: str | None = None
) -> BackfillRequest:
    """A validated backfill request of ``[lo_ms, hi_ms)``."""
    return parse_backfill(
        venue,
        [symbol],
        data_type,
        known_exchanges=[venue],
        span=span,
        start=iso(lo_ms),
        end=iso(hi_ms),
        now_ns=now_ms * NS_PER_MS,
    )


def iso(ms: int) -> str:
    """ISO-8601 of a ms timestamp (exact, for start/end and the clamp warning)."""
    from dccd.domain.timeutil import ns_to_iso

    return ns_to_iso(ms * NS_PER_MS)


def sorted_rows(root: Path, data_type: str, columns: str) -> list[Row]:
    """Every stored row of ``data_type`` (raw, duplicates kept), sorted as the expectations are."""
    return sorted(raw_rows(root, data_type, columns))


# --- (1) a week of 1m bars, exactly once -------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES, ids=lambda v: v.name)
async def test_week_of_1m_bars_exactly_once(venue: Venue, tmp_path: Path) -> None:
    """A week of 1m bars (Kraken: its clamped last 720) is stored once each, equal to the fake's; a rerun writes 0."""
    req = request(venue.name, venue.spot, "ohlc", JAN1_MS, WEEK_END_MS, OHLC_NOW_MS, "1m")
    with structlog.testing.capture_logs() as logs:
        async with venue_service(venue, tmp_path, OHLC_NOW_MS) as (fake, svc):
            (rec,) = await svc.backfill(req)
            seen = fake.count()
            (again,) = await svc.backfill(req)
            second_requests = fake.count() - seen
    lo = JAN1_MS
    state, note, events, probes = "succeeded", None, [], 0
    if venue.name == "kraken":  # RECENT 720 bars: the run stores what Kraken still serves and says it is partial
        lo = OHLC_NOW_MS - 719 * MIN_MS
        clamps = [(e["requested"], e["earliest"]) for e in logs if e["event"] == "backfill.clamped"]
        assert clamps == [(iso(JAN1_MS), iso(lo))] * 2  # each run says so
        state, probes = "partial", 1  # the rerun asks Kraken once where its bars begin
        note = f"kraken serves only the last 720 bars (from {iso(lo)}); 9,391 of 10,080 bars unavailable"
        events = [("unavailable", JAN1_MS * NS_PER_MS, lo * NS_PER_MS, note)]
        note += "; older bars: backfill --type trades, then --type ohlc --derive-from trades"  # the run's error
    else:
        assert not [e for e in logs if e["event"] == "backfill.clamped"]
    expected = [venue.bar(t) for t in range(lo, WEEK_END_MS, MIN_MS)]
    assert (rec.state, rec.error, rec.rows_written) == (state, note, len(expected))
    assert [(e.kind, e.lo, e.hi, e.detail) for e in RunStore(tmp_path).events(rec.run_id)] == events
    assert sorted_rows(tmp_path, "ohlc", OHLC_COLUMNS) == expected
    assert (again.state, again.error, again.rows_written) == (state, note, 0)
    assert second_requests == probes  # the listing is cached and no bar is asked for again


# --- (2) an hour of trades, exactly once ---------------------------------------------------------


TRADE_VENUES = [v for v in VENUES if v.trade is not None]


@pytest.mark.parametrize("venue", TRADE_VENUES, ids=lambda v: v.name)
async def test_hour_of_trades_exactly_once(venue: Venue, tmp_path: Path) -> None:
    """An hour of trades is stored once each (page seams, same-time groups), equal to the fake's tape."""
    req = request(venue.name, venue.spot, "trades", TRADES_LO_MS, TRADES_HI_MS, TRADES_NOW_MS)
    async with venue_service(venue, tmp_path, TRADES_NOW_MS) as (_, svc):
        (rec,) = await svc.backfill(req)
        (again,) = await svc.backfill(req)
    assert (again.state, again.error, again.rows_written) == ("succeeded", None, 0)
    expected = venue.expected_trades(TRADES_LO_MS, TRADES_HI_MS)
    assert len(expected) == 3600 * venue.trades_per_s
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, len(expected))
    assert sorted_rows(tmp_path, "trades", TRADE_COLUMNS) == expected


async def test_bybit_spot_trades_are_recent_only(tmp_path: Path) -> None:
    """Bybit declares spot trades RECENT (its last 60): an hour-old window fetches one page, keeps none, is partial."""
    req = request("bybit", "BTC/USDT", "trades", TRADES_LO_MS, TRADES_HI_MS, TRADES_NOW_MS)
    with structlog.testing.capture_logs() as logs:
        async with venue_service(BY_NAME["bybit"], tmp_path, TRADES_NOW_MS) as (fake, svc):
            (rec,) = await svc.backfill(req)
    oldest = tape.trade_time_ms((TRADES_NOW_MS - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS - 59)  # the 60th newest
    note = (
        f"bybit serves only its last 60 trades (from {iso(oldest)});"
        f" {iso(TRADES_LO_MS)} to {iso(TRADES_HI_MS)} unavailable (1h of 1h)"
    )
    assert (rec.state, rec.error, rec.rows_written) == ("partial", note, 0)
    assert [r.path for r in fake.requests] == ["/v5/market/instruments-info", "/v5/market/recent-trade"]
    clamps = [(e["requested"], e["earliest"], e["reason"]) for e in logs if e["event"] == "backfill.clamped"]
    assert clamps == [(iso(TRADES_LO_MS), iso(oldest), "bybit serves only its last 60 trades")]
    with pytest.raises(NoCapability):  # and no cursor can resume it
        get_adapter("bybit").build_trades(Symbol.parse("BTC/USDT"), cursor="1")


# --- (3) funding and open interest of a perpetual ------------------------------------------------


FUNDING_NOW_MS = OHLC_NOW_MS
OI_LO_MS = WEEK_END_MS - 86_400_000  # the last day of the week, 5m samples


def bybit_funding() -> list[Row]:
    return [(t * NS_PER_MS, float(rate("BTCUSDT", t)), None) for t in range(JAN1_MS, WEEK_END_MS, 8 * 3_600_000)]


def okx_funding() -> list[Row]:
    return [(t * NS_PER_MS, float(rate("BTC-USDT-SWAP", t)), None) for t in range(JAN1_MS, WEEK_END_MS, 8 * 3_600_000)]


def bitmex_funding() -> list[Row]:
    first = JAN1_MS + fbm.FUNDING_OFFSET_MS
    return [(t * NS_PER_MS, float(rate("XBTUSD", t)), None) for t in range(first, WEEK_END_MS, 8 * 3_600_000)]


def binance_funding() -> list[Row]:
    rows = []
    for t in range(JAN1_MS, WEEK_END_MS, 8 * 3_600_000):
        mark = fbn.mark_price(t)
        rows.append((t * NS_PER_MS, float(rate("BTCUSDT", t)), float(mark) if mark else None))
    return rows


def five_minutes() -> range:
    """The 5m open-interest sample times of the last day of the week."""
    return range(OI_LO_MS, WEEK_END_MS, 5 * MIN_MS)


def bybit_oi() -> list[Row]:
    return [(t * NS_PER_MS, float(open_interest("BTCUSDT", t)[0]), None) for t in five_minutes()]


def okx_oi() -> list[Row]:
    return [(t * NS_PER_MS, *map(float, open_interest("BTC-USDT-SWAP", t))) for t in five_minutes()]


def binance_oi() -> list[Row]:
    return [(t * NS_PER_MS, *map(float, open_interest("BTCUSDT", t))) for t in five_minutes()]


def bitmex_oi() -> list[Row]:
    contracts, _ = open_interest("XBTUSD", FUNDING_NOW_MS)
    return [(FUNDING_NOW_MS * NS_PER_MS, float(int(float(contracts))), 123_456_789_000 / 1e8)]


BINANCE_FUTURES = Venue("binance", fbn.FakeBinanceFutures, serving, "BTC/USDT", bybit_bar)
PERPS: list[tuple[Venue, str, Callable[[], list[Row]], Callable[[], list[Row]]]] = [
    (BY_NAME["bybit"], "BTC/USDT:perp", bybit_funding, bybit_oi),
    (BY_NAME["okx"], "BTC/USDT:perp", okx_funding, okx_oi),
    (BY_NAME["bitmex"], "BTC/USD:perp", bitmex_funding, bitmex_oi),
    (BINANCE_FUTURES, "BTC/USDT:perp", binance_funding, binance_oi),
]


@pytest.mark.parametrize(("venue", "symbol", "funding", "oi"), PERPS, ids=[p[0].name for p in PERPS])
async def test_perp_funding_and_oi_exactly_once(
    venue: Venue,
    symbol: str,
    funding: Callable[[], list[Row]],
    oi: Callable[[], list[Row]],
    tmp_path: Path,
) -> None:
    """A week of funding prints and a day of 5m open interest (BitMEX: its one snapshot) equal the fake's, once each."""
    fund_req = request(venue.name, symbol, "funding", JAN1_MS, WEEK_END_MS, FUNDING_NOW_MS)
    oi_req = request(venue.name, symbol, "oi", OI_LO_MS, WEEK_END_MS, FUNDING_NOW_MS)
    async with venue_service(venue, tmp_path, FUNDING_NOW_MS) as (_, svc):
        (fund,) = await svc.backfill(fund_req)
        (ois,) = await svc.backfill(oi_req)
    assert (fund.state, fund.error, fund.rows_written) == ("succeeded", None, len(funding()))
    assert sorted_rows(tmp_path, "funding", FUNDING_COLUMNS) == funding()
    assert (ois.state, ois.error, ois.rows_written) == ("succeeded", None, len(oi()))
    assert sorted_rows(tmp_path, "oi", OI_COLUMNS) == oi()
