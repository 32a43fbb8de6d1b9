"""Backfills asking for more history than an exchange keeps: stored what is served, the rest reported, never silent.

Each case runs the real service against a fake exchange on 127.0.0.1 whose clock
is pinned, so the horizon of what it still serves is exact: OKX trades (3 months),
Bybit spot trades (its last 60), Kraken bars (its last 720). A run that could not
be served in full ends ``partial`` with one line saying why and how much, and
records the unavailable range as an ``unavailable`` run event; a range served in
full, or one proven empty on the exchange, still succeeds.
"""

from __future__ import annotations

from pathlib import Path

from dccd.domain.timeutil import NS_PER_MS
from dccd.storage import RunStore
from tests.e2e.helpers import TRADE_COLUMNS
from tests.e2e.test_backfill_exchanges import (
    BY_NAME,
    JAN1_MS,
    MIN_MS,
    OHLC_COLUMNS,
    iso,
    okx_trade,
    request,
    sorted_rows,
    venue_service,
)
from tests.fake import tape

DAY_MS = 86_400_000
OKX_NOW_MS = JAN1_MS + 100 * DAY_MS + 30_000  # the fake's tape starts Jan 1; OKX keeps the last 90 days of it
HORIZON_MS = OKX_NOW_MS - 90 * DAY_MS  # the oldest trade the fake OKX still serves


def events(root: Path, run_id: str) -> list[tuple[str, int | None, int | None, str]]:
    """A run's events as (kind, lo, hi, detail)."""
    return [(e.kind, e.lo, e.hi, e.detail) for e in RunStore(root).events(run_id)]


async def test_okx_trades_from_200_days_ago_store_what_okx_serves_and_report_the_rest(tmp_path: Path) -> None:
    """-200d of OKX trades next to a stored minute: the older served minute is fetched, the rest reported partial."""
    oldest = tape.first_id_at(HORIZON_MS)
    oldest_ms = tape.trade_time_ms(oldest)
    end_ms = oldest_ms + 2 * MIN_MS
    start_ms = OKX_NOW_MS - 200 * DAY_MS
    async with venue_service(BY_NAME["okx"], tmp_path, OKX_NOW_MS) as (_, svc):
        (first,) = await svc.backfill(request("okx", "BTC/USDT", "trades", oldest_ms + MIN_MS, end_ms, OKX_NOW_MS))
        (rec,) = await svc.backfill(request("okx", "BTC/USDT", "trades", start_ms, end_ms, OKX_NOW_MS))
    assert (first.state, first.rows_written) == ("succeeded", 600)
    note = (
        f"okx serves only the last 90d of trades (from {iso(oldest_ms)});"
        f" {iso(start_ms)} to {iso(oldest_ms)} unavailable (110d of 110d)"
    )
    assert (rec.state, rec.error, rec.rows_written) == ("partial", note, 600)  # the minute before the stored one
    assert events(tmp_path, rec.run_id) == [("unavailable", start_ms * NS_PER_MS, oldest_ms * NS_PER_MS, note)]
    expected = sorted(okx_trade(k) for k in range(oldest, oldest + 2 * 600))
    assert sorted_rows(tmp_path, "trades", TRADE_COLUMNS) == expected


async def test_okx_trades_before_the_listing_are_proven_empty(tmp_path: Path) -> None:
    """OKX 30 days after the listing: -200d starts at its first trade ever, well inside the horizon, so succeeded."""
    now_ms = JAN1_MS + 30 * DAY_MS
    req = request("okx", "BTC/USDT", "trades", now_ms - 200 * DAY_MS, JAN1_MS + MIN_MS, now_ms)
    async with venue_service(BY_NAME["okx"], tmp_path, now_ms) as (_, svc):
        (rec,) = await svc.backfill(req)
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, 600)
    assert events(tmp_path, rec.run_id) == []
    assert sorted_rows(tmp_path, "trades", TRADE_COLUMNS) == sorted(okx_trade(k) for k in range(600))


async def test_bybit_spot_trades_of_five_minutes_report_what_is_missing(tmp_path: Path) -> None:
    """The last 5 minutes of Bybit spot trades: its 60 newest are served (59 before now), the rest reported partial."""
    now_ms = JAN1_MS + 3_600_000
    start_ms = now_ms - 5 * MIN_MS
    async with venue_service(BY_NAME["bybit"], tmp_path, now_ms) as (_, svc):
        (rec,) = await svc.backfill(request("bybit", "BTC/USDT", "trades", start_ms, now_ms, now_ms))
    oldest_ms = tape.trade_time_ms((now_ms - tape.TAPE_EPOCH_MS) // tape.TAPE_STEP_MS - 59)
    note = (
        f"bybit serves only its last 60 trades (from {iso(oldest_ms)});"
        f" {iso(start_ms)} to {iso(oldest_ms)} unavailable (4m 54s of 5m)"
    )
    assert (rec.state, rec.error, rec.rows_written) == ("partial", note, 59)
    assert events(tmp_path, rec.run_id) == [("unavailable", start_ms * NS_PER_MS, oldest_ms * NS_PER_MS, note)]


KRAKEN_NOW_MS = JAN1_MS + 10 * DAY_MS + 30_000
KRAKEN_FIRST_MS = (KRAKEN_NOW_MS // MIN_MS - 719) * MIN_MS  # the oldest of its last 720 bars (the 720th is open)


async def test_kraken_bars_older_than_its_720_are_all_reported_unavailable(tmp_path: Path) -> None:
    """1,000 Kraken 1m bars all older than its last 720: one request, 0 rows, partial naming 1,000 of 1,000."""
    lo, hi = KRAKEN_FIRST_MS - 2000 * MIN_MS, KRAKEN_FIRST_MS - 1000 * MIN_MS
    async with venue_service(BY_NAME["kraken"], tmp_path, KRAKEN_NOW_MS) as (fake, svc):
        (rec,) = await svc.backfill(request("kraken", "BTC/USD", "ohlc", lo, hi, KRAKEN_NOW_MS, "1m"))
        ohlc_requests = fake.count("/0/public/OHLC")
    note = f"kraken serves only the last 720 bars (from {iso(KRAKEN_FIRST_MS)}); 1,000 of 1,000 bars unavailable"
    hint = "; older bars: backfill --type trades, then --type ohlc --derive-from trades"  # Kraken's trades are full
    assert (rec.state, rec.error, rec.rows_written) == ("partial", note + hint, 0)
    assert events(tmp_path, rec.run_id) == [("unavailable", lo * NS_PER_MS, hi * NS_PER_MS, note)]
    assert ohlc_requests == 1


async def test_kraken_bars_it_serves_succeed_and_stored_old_bars_are_not_unavailable(tmp_path: Path) -> None:
    """Bars inside Kraken's 720 succeed; bars older than them already stored are not reported unavailable."""
    venue = BY_NAME["kraken"]
    lo, hi = KRAKEN_FIRST_MS + 100 * MIN_MS, KRAKEN_FIRST_MS + 200 * MIN_MS
    async with venue_service(venue, tmp_path, KRAKEN_NOW_MS) as (_, svc):
        (served,) = await svc.backfill(request("kraken", "BTC/USD", "ohlc", lo, hi, KRAKEN_NOW_MS, "1m"))
    assert (served.state, served.error, served.rows_written) == ("succeeded", None, 100)
    assert sorted_rows(tmp_path, "ohlc", OHLC_COLUMNS) == [venue.bar(t) for t in range(lo, hi, MIN_MS)]
    # The same bars seen from 150 minutes later, when 50 of them have left Kraken's window: they are stored.
    later_ms = KRAKEN_NOW_MS + 150 * MIN_MS
    async with venue_service(venue, tmp_path, later_ms) as (_, svc):
        (again,) = await svc.backfill(request("kraken", "BTC/USD", "ohlc", lo, hi, later_ms, "1m"))
    assert (again.state, again.error, again.rows_written) == ("succeeded", None, 0)
    assert events(tmp_path, again.run_id) == []
