"""Bybit, BitMEX and OKX backfills from their archives end to end: real service, real downloader, fakes on 127.0.0.1.

The fake archive (:mod:`tests.fake.archive_venues`) serves each venue's real paths from the shared tape,
thinned (``EVERY``: only tape ids that are multiples of it traded) so a week stays fast; the REST fakes
serve the edges the files do not cover. Expected rows come from the tape, never from dccd's parsers, and
the lake is read raw (every part, no dedup), so a missing or doubled row shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dccd.actors import Service, open_service

from dccd.config import load_config
from dccd.config.schema import Config, ExchangeSettings, Storage
from dccd.domain.timeutil import NS_PER_MS, ns_to_iso
from dccd.ops import parse_backfill
from dccd.sources.archive import archive_origin
from dccd.storage import RunStore
from tests.e2e.helpers import OHLC_COLUMNS, TRADE_COLUMNS, raw_rows
from tests.fake import archive_venues as av
from tests.fake import bitmex as fbm
from tests.fake import bybit as fby
from tests.fake import okx as fok
from tests.fake import tape
from tests.fake.venue import bar, serving

EVERY = 100
DAY_MS = av.DAY_MS
JAN3_MS = av.day_ms("2024-01-03")
Row = tuple[Any, ...]


def taker(is_buyer_maker: bool) -> str:
    return "sell" if is_buyer_maker else "buy"


@asynccontextmanager
async def archive_service(
    root: Path, exchange: str, rest: Any, now_ms: int, **archive: Any
) -> AsyncIterator[tuple[av.FakeVenueArchive, Service]]:
    """The REST fake and the archive fake (clocks at ``now_ms``) on 127.0.0.1, and a service using both."""
    rest.clock = lambda: now_ms / 1000
    async with serving(rest) as served, av.open_fake_venue_archive(clock=lambda: now_ms / 1000, **archive) as files:
        cfg = Config(
            storage=Storage(path=str(root)),
            exchanges={exchange: ExchangeSettings(rest_url=served.url, archive_url=files.url, rate_limit=0.0)},
        )
        async with open_service(cfg, ops_options={"now_ns": lambda: now_ms * NS_PER_MS}) as svc:
            yield files, svc


def request(exchange: str, symbols: list[str], data_type: str, lo_ms: int, hi_ms: int, now_ms: int, span: str | None = None) -> Any:  # fmt: skip
    return parse_backfill(
        exchange, symbols, data_type, known_exchanges=[exchange], span=span,
        start=ns_to_iso(lo_ms * NS_PER_MS), end=ns_to_iso(hi_ms * NS_PER_MS), now_ns=now_ms * NS_PER_MS,
    )  # fmt: skip


# --- Bybit: a past week of spot trades ---------------------------------------------------------------


async def test_bybit_spot_week_lands_exactly_from_the_archive(tmp_path: Path) -> None:
    """Seven daily spot files land every trade once (REST only keeps 60): ids <day>:<n>, values from the tape."""
    lo, hi = JAN3_MS, JAN3_MS + 7 * DAY_MS
    now = hi + 2 * DAY_MS
    async with archive_service(tmp_path, "bybit", fby.FakeBybit(), now, every=EVERY) as (files, svc):
        (rec,) = await svc.backfill(request("bybit", ["BTC/USDT"], "trades", lo, hi, now))
    expected = []
    for d in range(7):
        day_lo = lo + d * DAY_MS
        date = ns_to_iso(day_lo * NS_PER_MS)[:10]
        for n, tid in enumerate(av.tape_ids(day_lo, day_lo + DAY_MS, EVERY), start=1):
            t = tape.trade_at("BTCUSDT", tid)
            expected.append(
                (t.time_ms * NS_PER_MS, f"{date}:{n}", float(t.price), float(t.qty), taker(t.is_buyer_maker))
            )
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, len(expected))
    assert raw_rows(tmp_path, "trades", TRADE_COLUMNS, "ts, id") == sorted(expected)
    assert len(expected) == 7 * 86_400 * 10 // EVERY
    assert files.count("/spot/BTCUSDT/") == 7 and files.count("/trading/", status=None) == 0


async def test_bybit_spot_day_missing_from_the_archive_is_recorded_and_left_to_rest(tmp_path: Path) -> None:
    """A 404 day is recorded (archive_missing) and handed to REST, which keeps only 60 spot trades: partial; the
    other day lands whole."""
    lo, now = JAN3_MS, JAN3_MS + 4 * DAY_MS
    archive = {"every": EVERY, "missing": {"2024-01-04"}}
    async with archive_service(tmp_path, "bybit", fby.FakeBybit(), now, **archive) as (files, svc):
        (rec,) = await svc.backfill(request("bybit", ["BTC/USDT"], "trades", lo, lo + 2 * DAY_MS, now))
    assert rec.state == "partial" and "bybit serves only its last 60 trades" in (rec.error or "")
    events = [(e.kind, e.lo, e.hi) for e in RunStore(tmp_path).events(rec.run_id)]
    assert ("archive_missing", (lo + DAY_MS) * NS_PER_MS, (lo + 2 * DAY_MS) * NS_PER_MS) in events
    day = [r[1] for r in raw_rows(tmp_path, "trades", TRADE_COLUMNS, "ts, id")]
    assert day == [f"2024-01-03:{n}" for n in range(1, 86_400 * 10 // EVERY + 1)]
    assert sorted(files.requests) == [
        (f"/spot/BTCUSDT/BTCUSDT_2024-01-0{d}.csv.gz", s) for d, s in ((3, 200), (4, 404))
    ]


async def test_bybit_linear_day_ids_are_the_execution_ids(tmp_path: Path) -> None:
    """A derivatives day lands with decimal-second times exact and trdMatchID (the REST/WS execId) as id."""
    lo, now = JAN3_MS, JAN3_MS + 3 * DAY_MS
    async with archive_service(tmp_path, "bybit", fby.FakeBybit(), now, every=EVERY) as (files, svc):
        (rec,) = await svc.backfill(request("bybit", ["BTC/USDT:perp"], "trades", lo, lo + DAY_MS, now))
    expected = []
    for tid in av.tape_ids(lo, lo + DAY_MS, EVERY):
        t = tape.trade_at("BTCUSDT", tid)
        expected.append((t.time_ms * NS_PER_MS, fby.linear_exec_id(tid), float(t.price), float(t.qty), taker(t.is_buyer_maker)))  # fmt: skip
    assert (rec.state, rec.rows_written) == ("succeeded", len(expected))
    assert raw_rows(tmp_path, "trades", TRADE_COLUMNS, "ts, id") == expected
    assert files.requests == [("/trading/BTCUSDT/BTCUSDT2024-01-03.csv.gz", 200)]


async def test_a_file_that_does_not_parse_fails_its_run_naming_it(tmp_path: Path) -> None:
    """A day file with a malformed time fails the run with one line naming the file and the value; none of it lands."""
    lo, now = JAN3_MS, JAN3_MS + 4 * DAY_MS
    archive = {"every": EVERY, "garbled": {"2024-01-04"}}
    async with archive_service(tmp_path, "bybit", fby.FakeBybit(), now, **archive) as (_files, svc):
        (rec,) = await svc.backfill(request("bybit", ["BTC/USDT:perp"], "trades", lo, lo + 2 * DAY_MS, now))
    assert rec.state == "failed"
    assert "bybit BTCUSDT2024-01-04.csv.gz: unexpected payload: timestamp '1.7e9' is not decimal seconds" in (
        rec.error or ""
    )
    days = {r[0] // (DAY_MS * NS_PER_MS) for r in raw_rows(tmp_path, "trades", "ts")}
    assert JAN3_MS // DAY_MS + 1 not in days


# --- BitMEX: a past day, one all-symbol file -------------------------------------------------------------


def bitmex_expected(symbol: str, lo_ms: int, hi_ms: int) -> list[Row]:
    out = []
    for k in av.bitmex_keys(lo_ms, hi_ms, EVERY):
        t = tape.trade_at(symbol, k)
        out.append((fbm.trade_ms(k) * NS_PER_MS, f"00000000-0000-4000-8000-{k:012d}", float(t.price), float(t.qty), taker(t.is_buyer_maker)))  # fmt: skip
    return out


async def test_bitmex_day_lands_exactly_for_the_requested_symbol(tmp_path: Path) -> None:
    """One day of XBTUSD from the all-symbol file: only XBTUSD's rows, kdb+ times exact, ids = trdMatchID."""
    lo, now = JAN3_MS, JAN3_MS + 3 * DAY_MS
    async with archive_service(tmp_path, "bitmex", fbm.FakeBitmex(), now, every=EVERY) as (files, svc):
        (rec,) = await svc.backfill(request("bitmex", ["BTC/USD:perp"], "trades", lo, lo + DAY_MS, now))
    expected = bitmex_expected("XBTUSD", lo, lo + DAY_MS)
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, len(expected))
    assert raw_rows(tmp_path, "trades", TRADE_COLUMNS, "ts, id") == expected
    assert files.requests == [("/data/trade/20240103.csv.gz", 200)]


async def test_bitmex_symbols_one_after_another_share_the_day_file(tmp_path: Path) -> None:
    """Backfills of two symbols, one after the other, each land exactly their own rows of the shared day file."""
    lo, now = JAN3_MS, JAN3_MS + 3 * DAY_MS
    async with archive_service(tmp_path, "bitmex", fbm.FakeBitmex(), now, every=EVERY) as (files, svc):
        for sym in ("BTC/USD:perp", "ETH/USDT:perp"):
            (rec,) = await svc.backfill(request("bitmex", [sym], "trades", lo, lo + DAY_MS, now))
            assert (rec.state, rec.error) == ("succeeded", None)
    assert_bitmex_symbols(tmp_path, lo)
    assert files.count("/data/trade/20240103.csv.gz") == 2  # the first run's cache copy went once written


def assert_bitmex_symbols(root: Path, lo: int) -> None:
    for slug, native in (("BTC-USD-PERP", "XBTUSD"), ("ETH-USDT-PERP", "ETHUSDT")):
        got = [r for r in raw_rows(root, "trades", TRADE_COLUMNS + ", symbol", "ts, id") if r[-1] == slug]
        assert [r[:-1] for r in got] == bitmex_expected(native, lo, lo + DAY_MS)


# --- OKX: trades and candles across the UTC+8 day boundary ------------------------------------------------


async def test_okx_trades_across_the_beijing_boundary_land_exactly(tmp_path: Path) -> None:
    """A range around OKX's 16:00 UTC day: the whole Beijing day from its file (split over two UTC partitions),
    the edges before and after from REST, every trade once."""
    boundary = JAN3_MS + 16 * 3_600_000
    lo, hi = boundary - 10 * 60_000, boundary + DAY_MS + 10 * 60_000
    now = hi + 2 * DAY_MS
    async with archive_service(tmp_path, "okx", fok.FakeOkx(), now, every=EVERY, bilingual={"2024-01-04"}) as (files, svc):  # fmt: skip
        (rec,) = await svc.backfill(request("okx", ["BTC/USDT"], "trades", lo, hi, now))
    expected = [
        (tape.trade_time_ms(i) * NS_PER_MS, str(fok.TRADE_ID0 + i), float(t.price), float(t.qty), taker(t.is_buyer_maker))
        for i in [*range(tape.first_id_at(lo), tape.first_id_at(boundary)),
                  *av.tape_ids(boundary, boundary + DAY_MS, EVERY),
                  *range(tape.first_id_at(boundary + DAY_MS), tape.first_id_at(hi))]
        for t in [tape.trade_at("BTC-USDT", i)]
    ]  # fmt: skip
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, len(expected))
    assert raw_rows(tmp_path, "trades", TRADE_COLUMNS, "ts, id") == expected
    assert files.requests == [("/cdn/okex/traderecords/trades/daily/20240104/BTC-USDT-trades-2024-01-04.zip", 200)]
    by_date = {p.parent.name for p in (tmp_path / "trades").rglob("*.parquet")}
    assert by_date == {"date=2024-01-03", "date=2024-01-04"}  # the Beijing day's rows split at UTC midnight


async def test_okx_1m_candles_of_a_beijing_day_from_the_archive(tmp_path: Path) -> None:
    """A Beijing day of 1m bars comes from one candle file and equals the REST fake's bars."""
    lo = JAN3_MS - 8 * 3_600_000
    now = lo + 3 * DAY_MS
    async with archive_service(tmp_path, "okx", fok.FakeOkx(), now) as (files, svc):
        (rec,) = await svc.backfill(request("okx", ["BTC/USDT"], "ohlc", lo, lo + DAY_MS, now, "1m"))
    expected = []
    for t in range(lo, lo + DAY_MS, 60_000):
        b = bar("BTC-USDT:1m", t)
        expected.append((t * NS_PER_MS, *map(float, (b.open, b.high, b.low, b.close, b.volume, b.quote)), None))
    assert (rec.state, rec.rows_written) == ("succeeded", 1440)
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == expected
    assert files.requests == [("/cdn/okex/traderecords/candlesticks/daily/20240103/BTC-USDT-candlesticks-2024-01-03.zip", 200)]  # fmt: skip
    assert RunStore(tmp_path).events(rec.run_id) == []


@pytest.mark.parametrize("exchange", ["bybit", "bitmex", "okx"])
def test_archive_url_override_from_config_and_env(exchange: str, tmp_path: Path) -> None:
    """``exchanges.<name>.archive_url`` and ``DCCD_<NAME>_ARCHIVE_URL`` set the origin; else the real host."""
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"exchanges:\n  {exchange}: {{archive_url: 'http://127.0.0.1:9/from-yaml'}}\n")
    assert archive_origin(load_config(cfg_file, env={}))(exchange) == "http://127.0.0.1:9/from-yaml"
    env = {f"DCCD_{exchange.upper()}_ARCHIVE_URL": "http://127.0.0.1:9/from-env"}
    assert archive_origin(load_config(cfg_file, env=env))(exchange) == "http://127.0.0.1:9/from-env"
    real = {"bybit": "https://public.bybit.com", "bitmex": "https://public.bitmex.com", "okx": "https://static.okx.com"}
    assert archive_origin(load_config(None, env={}))(exchange) == real[exchange]


async def test_okx_whole_beijing_month_of_candles_from_its_monthly_file(tmp_path: Path) -> None:
    """A range holding a whole Beijing month takes it from the monthly candle file (one request instead of
    ~30), the days around it from daily files and the partial edges from REST; every bar equals the fake's."""
    lo, hi = av.day_ms("2024-02-20"), av.day_ms("2024-04-05")
    now = av.day_ms("2024-04-20")
    async with archive_service(tmp_path, "okx", fok.FakeOkx(), now) as (files, svc):
        (rec,) = await svc.backfill(request("okx", ["BTC/USDT"], "ohlc", lo, hi, now, "1m"))
    assert rec.state == "succeeded", rec.error
    expected = []
    for t in range(lo, hi, 60_000):
        b = bar("BTC-USDT:1m", t)
        expected.append((t * NS_PER_MS, *map(float, (b.open, b.high, b.low, b.close, b.volume, b.quote)), None))
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == expected
    got = [p for p, s in files.requests if s == 200]
    monthly = [p for p in got if "/monthly/" in p]
    assert monthly == ["/cdn/okex/traderecords/candlesticks/monthly/202403/BTC-USDT-candlesticks-2024-03.zip"]
    assert len(got) - len(monthly) == 9 + 4  # Beijing days Feb 21-29 and Apr 1-4; REST the two partial edges
    assert rec.progress["archive_results"] == {"verified": 14}


async def test_bybit_spot_day_partly_stored_by_a_stream_is_merged_not_doubled(tmp_path: Path) -> None:
    """A spot day a live stream stored in part (exchange ids) is still taken from its file, whose rows carry
    no exchange id: the trades the stream stored are matched on (ts, price, amount, side) and not stored
    again, the others land with their file ids; a second run asks nothing (the file's rows are written)."""
    from dccd.domain import DatasetId, DataType, Symbol
    from dccd.storage import Lake
    from dccd.storage.writer import Provenance

    lo, now = JAN3_MS, JAN3_MS + 3 * DAY_MS
    ids = list(av.tape_ids(lo, lo + DAY_MS, EVERY))
    live = [tid for tid in ids if lo + 6 * 3_600_000 <= tape.trade_at("BTCUSDT", tid).time_ms < lo + 12 * 3_600_000]
    trades = [tape.trade_at("BTCUSDT", tid) for tid in live]
    table = pa.table(
        {
            "ts": [t.time_ms * NS_PER_MS for t in trades],
            "id": [str(2_100_000_000_000_000_000 + tid) for tid in live],  # the stream's execIds
            "price": [float(t.price) for t in trades],
            "amount": [float(t.qty) for t in trades],
            "side": [taker(t.is_buyer_maker) for t in trades],
            "recv_ts": [t.time_ms * NS_PER_MS + 5_000_000 for t in trades],
        }
    )
    ds = DatasetId("bybit", Symbol.parse("BTC/USDT"), DataType.TRADES, None)
    Lake(tmp_path).write_table(ds, table, Provenance("bybit", "ws"))
    async with archive_service(tmp_path, "bybit", fby.FakeBybit(), now, every=EVERY) as (files, svc):
        (rec,) = await svc.backfill(request("bybit", ["BTC/USDT"], "trades", lo, lo + DAY_MS, now))
        assert (rec.state, rec.error) == ("succeeded", None)
        assert rec.rows_written == len(ids) - len(live) and 0 < len(live) < len(ids)
        (again,) = await svc.backfill(request("bybit", ["BTC/USDT"], "trades", lo, lo + DAY_MS, now))
        assert (again.state, again.rows_written) == ("succeeded", 0)
    assert files.requests == [("/spot/BTCUSDT/BTCUSDT_2024-01-03.csv.gz", 200)]  # once: the re-run asks nothing
    rows = raw_rows(tmp_path, "trades", TRADE_COLUMNS, "ts, id")
    assert len(rows) == len(ids) == len({r[0] for r in rows})  # every trade once
    streamed = {r[1] for r in rows if not r[1].startswith("2024-01-03:")}
    assert streamed == {str(2_100_000_000_000_000_000 + tid) for tid in live}
    expected = sorted((tape.trade_at("BTCUSDT", t).time_ms * NS_PER_MS) for t in ids)
    assert [r[0] for r in rows] == expected
