"""Bars derived from stored trades (``--derive-from trades``) end to end, against the fakes' own bars.

Each case serves a fake exchange whose bars are the aggregates of its own trade
tape (Binance ``source="shared"``, the others ``tape_bars=True``), backfills an
hour of its trades over REST through the real service, derives the 1m bars of
that hour and reads the lake raw (every part, no deduplication). Expected bars
come from the fake's generator, never from dccd.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import trio
from click.testing import CliRunner
from dccd.actors import Service, open_service

from dccd.cli.main import cli
from dccd.config import Config, ExchangeSettings, Storage
from dccd.domain import Candle, DatasetId, DataType, Span, Symbol
from dccd.domain.timeutil import NS_PER_MS, ns_to_iso, parse_iso_ns
from dccd.ops import parse_backfill, parse_stream
from dccd.storage import Lake, Provenance, RunStore
from dccd.storage.derive import reconcile
from dccd.storage.writer import PROVENANCE_KEY
from tests.e2e.helpers import OHLC_COLUMNS, config, raw_rows
from tests.fake import bitfinex as fbf
from tests.fake import bitmex as fbm
from tests.fake import bybit as fby
from tests.fake import coinbase as fcb
from tests.fake import kraken as fkr
from tests.fake import okx as fok
from tests.fake import tape
from tests.fake.binance import FakeBinance
from tests.fake.exchange import open_rest
from tests.fake.tape_bars import TapeBar
from tests.fake.venue import running, serving

MIN_MS = 60_000
JAN1_MS = parse_iso_ns("2024-01-01") // NS_PER_MS
LO_MS, HI_MS = JAN1_MS + 3_600_000, JAN1_MS + 3_600_000 + 20 * 60_000  # 01:00 .. 01:20
NOW_MS = HI_MS + 30_000
BARS = (HI_MS - LO_MS) // 60_000

Row = tuple[Any, ...]


def row(t_ms: int, b: TapeBar | tape.TapeCandle | None) -> Row:
    """A fake's bar as the lake row a derived bar must equal (all fields: derived bars have them all)."""
    assert b is not None, f"the fake has no bar at {t_ms}"
    nums = (b.open, b.high, b.low, b.close, b.volume, b.quote_volume)
    return (t_ms * NS_PER_MS, *map(float, nums), b.trades)


@dataclass(frozen=True)
class Case:
    """A fake whose bars come from its trade tape, and that bar as a lake row."""

    name: str
    symbol: str
    fake: Callable[[Callable[[], float]], Any]
    bar: Callable[[Any, int], Row]
    serve: Callable[[Any], Any] = open_rest


CASES = [
    Case(
        "binance",
        "BTC/USDT",
        lambda clock: FakeBinance(source="shared", clock=clock, weight_limit=10**9),
        lambda _fake, t: row(t, tape.candle_at("BTCUSDT", MIN_MS, t)),
    ),
    Case(
        "kraken",
        "BTC/USD",
        lambda clock: fkr.FakeKraken(clock=clock, tape_bars=True),
        lambda fake, t: row(t, fake.tape_bar("XBTUSD", t, MIN_MS)),
    ),
    Case(
        "coinbase",
        "BTC/USD",
        lambda clock: fcb.FakeCoinbase(clock=clock, tape_bars=True),
        lambda fake, t: row(t, fake.tape_bar("BTC-USD", t, MIN_MS, NOW_MS)),
    ),
    Case(
        "bitfinex",
        "BTC/USDT",
        lambda clock: fbf.FakeBitfinex(clock=clock, tape_bars=True),
        lambda fake, t: row(t, fake.tape_bar("BTCUST", t, MIN_MS, NOW_MS)),
    ),
    Case(
        "okx",
        "BTC/USDT",
        lambda clock: fok.FakeOkx(clock=clock, tape_bars=True),
        lambda fake, t: row(t, fake.tape_bar("BTC-USDT", t, MIN_MS, NOW_MS)),
        serving,
    ),
    Case(
        "bitmex",
        "BTC/USDT",
        lambda clock: fbm.FakeBitmex(clock=clock, tape_bars=True),
        lambda fake, t: row(t, fake.tape_bar("XBT_USDT", t, MIN_MS, NOW_MS)),
        serving,
    ),
]


@asynccontextmanager
async def service(case: Case, root: Path, now_ms: int) -> AsyncIterator[tuple[Any, Service]]:
    """The fake (clock fixed at ``now_ms``) on 127.0.0.1 and a service whose ``now`` is the same instant."""
    fake = case.fake(lambda: now_ms / 1000)
    async with case.serve(fake) as served:
        ops = {"now_ns": lambda: now_ms * NS_PER_MS}
        async with open_service(config(root, served.url, exchanges=(case.name,)), ops_options=ops) as svc:
            yield fake, svc


def req(case: Case, data_type: str, lo_ms: int, hi_ms: int, now_ms: int, **kw: Any) -> Any:
    span = "1m" if data_type == "ohlc" else None
    return parse_backfill(
        case.name,
        [case.symbol],
        data_type,
        known_exchanges=[case.name],
        span=span,
        start=ns_to_iso(lo_ms * NS_PER_MS),
        end=ns_to_iso(hi_ms * NS_PER_MS),
        now_ns=now_ms * NS_PER_MS,
        **kw,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_derived_1m_bars_equal_the_fakes_bars(case: Case, tmp_path: Path) -> None:
    """20 minutes of trades over REST, then --derive-from trades: 20 bars equal to the fake's, provenance derived,
    a rerun derives nothing, and the fake's own bars (fetched over REST) reconcile with no difference."""
    async with service(case, tmp_path, NOW_MS) as (fake, svc):
        (trades,) = await svc.backfill(req(case, "trades", LO_MS, HI_MS, NOW_MS))
        assert trades.state == "succeeded", trades.error
        (rec,) = await svc.backfill(req(case, "ohlc", LO_MS, HI_MS, NOW_MS, derive_from="trades"))
        (again,) = await svc.backfill(req(case, "ohlc", LO_MS, HI_MS, NOW_MS, derive_from="trades"))
        expected = [case.bar(fake, t) for t in range(LO_MS, HI_MS, MIN_MS)]
    assert (rec.state, rec.error, rec.rows_written) == ("succeeded", None, BARS)
    assert rec.progress["derived_from"] == "trades" and rec.progress["empty_periods"] == 0
    rest_root = tmp_path / "rest"  # the fake's bars as it serves them, fetched by a plain OHLC backfill
    async with service(case, rest_root, NOW_MS) as (_, svc):
        (fetched,) = await svc.backfill(req(case, "ohlc", LO_MS, HI_MS, NOW_MS))
    assert (fetched.state, fetched.rows_written) == ("succeeded", BARS), fetched.error
    served = raw_rows(rest_root, "ohlc", OHLC_COLUMNS)
    derived = raw_rows(tmp_path, "ohlc", OHLC_COLUMNS)
    # every field the exchange publishes (the others are null in its bars) equals the derived one, exactly
    assert len(served) == len(derived) == BARS
    for got, want in zip(derived, served, strict=True):
        assert tuple(g if w is not None else None for g, w in zip(got, want, strict=True)) == want
    assert (again.state, again.rows_written) == ("succeeded", 0)
    assert raw_rows(tmp_path, "ohlc", OHLC_COLUMNS) == expected
    (part,) = (tmp_path / "ohlc").rglob("part-*.parquet")
    prov = json.loads(pq.read_metadata(part).metadata[PROVENANCE_KEY])
    assert (prov["source"], prov["transport"], prov["run_id"]) == (case.name, "derived", rec.run_id)


async def test_kraken_month_of_1m_bars_beyond_720_comes_from_trades(tmp_path: Path) -> None:
    """Kraken serves only its last 720 bars: a January of 1m OHLC over REST is partial and says to derive;
    a January of trades over REST (a sparse tape: 3 trades a minute), then derived, gives all 44,640 bars,
    each equal to the bar of the fake's trades, with no gap in the inventory."""
    feb1 = parse_iso_ns("2024-02-01") // NS_PER_MS
    now_ms = feb1 + 86_400_000
    fake = fkr.FakeKraken(clock=lambda: now_ms / 1000, step_us=60_000_000, tape_bars=True)
    case = Case("kraken", "BTC/USD", lambda _clock: fake, lambda f, t: row(t, f.tape_bar("XBTUSD", t, MIN_MS)))
    async with service(case, tmp_path, now_ms) as (_, svc):
        (rest,) = await svc.backfill(req(case, "ohlc", JAN1_MS, feb1, now_ms))
        (trades,) = await svc.backfill(req(case, "trades", JAN1_MS, feb1, now_ms))
        (rec,) = await svc.backfill(req(case, "ohlc", JAN1_MS, feb1, now_ms, derive_from="trades"))
    assert rest.state == "partial"
    assert rest.error is not None and rest.error.endswith(
        "older bars: backfill --type trades, then --type ohlc --derive-from trades"
    )
    assert (trades.state, trades.rows_written) == ("succeeded", 31 * 1440 * 3)
    assert (rec.state, rec.rows_written) == ("succeeded", 31 * 1440)
    ds = DatasetId("kraken", Symbol.parse("BTC/USD"), DataType.OHLC, Span.parse("1m"))
    (inv,) = Lake(tmp_path).inventory(ds)
    assert (inv.rows, inv.first_ts, inv.last_ts, inv.missing) == (
        31 * 1440,
        JAN1_MS * NS_PER_MS,
        (feb1 - MIN_MS) * NS_PER_MS,
        0,
    )
    stored = raw_rows(tmp_path, "ohlc", OHLC_COLUMNS)
    assert stored == [case.bar(fake, t) for t in range(JAN1_MS, feb1, MIN_MS)]
    report = reconcile(tmp_path, ds, JAN1_MS * NS_PER_MS, feb1 * NS_PER_MS, runs=RunStore(tmp_path))
    assert (report.compared, report.diffs, report.only_derived, report.only_stored) == (31 * 1440, [], [], [])


async def test_reconcile_reports_each_planted_differing_bar_field_with_both_values(tmp_path: Path) -> None:
    """The fake Binance's own 1m bars (REST) reconcile with the bars of its trades; a bar planted with a
    different volume and trade count is reported field by field, both values, and `dccd reconcile` exits 1."""
    case = CASES[0]
    async with service(case, tmp_path, NOW_MS) as (_, svc):
        (trades,) = await svc.backfill(req(case, "trades", LO_MS, HI_MS, NOW_MS))
        (bars,) = await svc.backfill(req(case, "ohlc", LO_MS, HI_MS, NOW_MS))
    assert (trades.state, bars.state, bars.rows_written) == ("succeeded", "succeeded", BARS)
    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
    lo, hi = LO_MS * NS_PER_MS, HI_MS * NS_PER_MS
    clean = reconcile(tmp_path, ds, lo, hi, runs=RunStore(tmp_path), now_ns=NOW_MS * NS_PER_MS)
    assert (clean.compared, clean.diffs, clean.only_derived, clean.only_stored) == (BARS, [], [], [])
    t = LO_MS + 7 * MIN_MS
    good = Lake(tmp_path).read_table(ds, t * NS_PER_MS, (t + MIN_MS) * NS_PER_MS).table.to_pylist()[0]
    bad = Candle(**{**good, "volume": good["volume"] + 1.5, "trades": good["trades"] + 1})
    Lake(tmp_path).write(ds, [bad], Provenance("binance", "rest"), now_ns=NOW_MS * NS_PER_MS)  # the newer part wins
    report = reconcile(tmp_path, ds, lo, hi, runs=RunStore(tmp_path), now_ns=NOW_MS * NS_PER_MS)
    assert report.compared == BARS and report.differing_bars == 1
    assert [(d.ts, d.field, d.derived, d.stored) for d in report.diffs] == [
        (t * NS_PER_MS, "volume", good["volume"], good["volume"] + 1.5),
        (t * NS_PER_MS, "trades", good["trades"], good["trades"] + 1),
    ]
    res = CliRunner().invoke(cli, ["--data", str(tmp_path), "reconcile", "binance", "BTC/USDT", "--span", "1m",
                                   "--start", ns_to_iso(lo), "--end", ns_to_iso(hi)])  # fmt: skip
    assert res.exit_code == 1, res.output
    volume_line, trades_line, summary = res.stdout.splitlines()
    iso_t = ns_to_iso(t * NS_PER_MS)
    assert volume_line == f"{iso_t} volume: derived {good['volume']!r}, stored {good['volume'] + 1.5!r}"
    assert trades_line == f"{iso_t} trades: derived {good['trades']}, stored {good['trades'] + 1}"
    assert summary.startswith(f"binance:BTC/USDT:ohlc:1m: {BARS} bars compared from 2024-01-01T01:00:00Z")
    assert summary.endswith(": 1 differ, 0 only derived (no stored bar), 0 only stored (no stored trade in the period)")


async def test_bybit_1m_bars_derived_from_streamed_trades_equal_its_klines(tmp_path: Path) -> None:
    """Bybit serves only its last 60 spot trades over REST, so its trades come from the WebSocket: 1,300 tape
    trades streamed (00:00:00 .. 00:02:09.9), then 1m bars derived: the 2 final bars equal the klines the fake
    serves over REST (the bar of the newest trade, 00:02, is not final and not written)."""
    now_ms = tape.TAPE_EPOCH_MS + 10 * MIN_MS
    rest, ws = fby.FakeBybit(clock=lambda: now_ms / 1000, tape_bars=True), fby.FakeBybitWs(steps=1300)
    async with serving(rest) as r, running(ws) as w:
        settings = ExchangeSettings(rest_url=r.url, ws_url=w.url, rate_limit=0.0)
        cfg = Config(storage=Storage(path=str(tmp_path)), exchanges={"bybit": settings})
        async with open_service(cfg) as svc:
            sid = await svc.start_stream(parse_stream("bybit", ["BTC/USDT"], "trades", known_exchanges=["bybit"]))
            with trio.fail_after(30):
                while svc.streams.get(sid).recording.rows_received < 1300:
                    await trio.sleep(0.05)
            assert await svc.stop_stream(sid)
            case = Case(
                "bybit", "BTC/USDT", lambda _c: rest, lambda f, t: row(t, f.tape_bar("BTCUSDT", t, MIN_MS, now_ms))
            )
            (rec,) = await svc.backfill(req(case, "ohlc", tape.TAPE_EPOCH_MS, now_ms, now_ms, derive_from="trades"))
    assert (rec.state, rec.rows_written, rec.progress["derived_until"]) == (
        "succeeded", 2, (tape.TAPE_EPOCH_MS + 2 * MIN_MS) * NS_PER_MS
    )  # fmt: skip
    derived = raw_rows(tmp_path, "ohlc", OHLC_COLUMNS)
    assert derived == [case.bar(rest, t) for t in (tape.TAPE_EPOCH_MS, tape.TAPE_EPOCH_MS + MIN_MS)]
    rest_root = tmp_path / "rest"  # the same bars as the fake serves them (klines: no trade count)
    async with serving(fby.FakeBybit(clock=lambda: now_ms / 1000, tape_bars=True)) as r2:
        cfg = Config(
            storage=Storage(path=str(rest_root)), exchanges={"bybit": ExchangeSettings(rest_url=r2.url, rate_limit=0.0)}
        )
        async with open_service(cfg, ops_options={"now_ns": lambda: now_ms * NS_PER_MS}) as svc:
            end = tape.TAPE_EPOCH_MS + 2 * MIN_MS
            (fetched,) = await svc.backfill(req(case, "ohlc", tape.TAPE_EPOCH_MS, end, now_ms))
    assert fetched.state == "succeeded", fetched.error
    assert raw_rows(rest_root, "ohlc", OHLC_COLUMNS) == [(*d[:7], None) for d in derived]
