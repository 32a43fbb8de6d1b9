"""The fake Bybit/BitMEX/OKX archive files agree with the REST fakes trade for trade, parsed by the real adapters."""

from __future__ import annotations

import gzip
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from dccd.domain.records import DataType, Trade
from dccd.domain.symbols import Symbol
from dccd.sources.archive import Granularity
from dccd.sources.bitmex import rest as bitmex_rest
from dccd.sources.bitmex.archive import BitmexArchive
from dccd.sources.bybit import rest as bybit_rest
from dccd.sources.bybit.archive import BybitArchive
from dccd.sources.okx import rest as okx_rest
from dccd.sources.okx.archive import OkxArchive
from tests.fake import archive_venues as av
from tests.fake import tape
from tests.fake.bitmex import FakeBitmex
from tests.fake.bybit import FakeBybit
from tests.fake.okx import FakeOkx
from tests.fake.serve import config_yaml, open_all

MS = 1_000_000
DAY = "2024-01-03"
D = Granularity.DAILY


def rest_page(fake: Any, adapter_parse: Any, request: Any) -> list[Trade]:
    status, body, _ = fake.handle(request.method, request.path, list(request.params))
    assert status == 200, body
    return list(adapter_parse(request, body).records)


def as_rows(table: Any) -> dict[str, tuple[Any, ...]]:
    return {r["id"]: (r["ts"], r["price"], r["amount"], r["side"]) for r in table.to_pylist()}


def test_bitmex_archive_rows_equal_rest_trades_by_id() -> None:
    """Every XBTUSD trade of a REST page that the day file holds is the same trade there (id, ns, price, amount, side)."""
    start_ms = av.day_ms(DAY) + 3_600_000
    fake = FakeBitmex(clock=lambda: (start_ms + 3_600_000) / 1000)
    sym = Symbol("BTC", "USD", "perp")
    page = rest_page(fake, bitmex_rest.parse_trades, bitmex_rest.build_trades(sym, start_ns=start_ms * MS))
    a = BitmexArchive()
    f = a.archive_file(sym, DataType.TRADES, None, D, av.day_ms(DAY) * MS)
    archived = as_rows(a.parse_archive(f, av.bitmex_trade_file(DAY, av.BITMEX_SYMBOLS, every=97)))
    common = [t for t in page if t.id in archived]
    assert len(page) == 1000 and len(common) >= 10
    assert all(archived[t.id] == (t.ts, t.price, t.amount, t.side) for t in common)
    assert len(archived) == len(av.bitmex_keys(av.day_ms(DAY), av.day_ms(DAY) + av.DAY_MS, 97))


def test_okx_archive_rows_equal_rest_trades_by_id_across_the_beijing_boundary() -> None:
    """OKX's day file ends at 16:00 UTC: REST trades on both sides of it are in this file or the next, equal by id."""
    boundary_ms = av.day_ms(DAY) + 16 * 3_600_000
    fake = FakeOkx(clock=lambda: (boundary_ms + 86_400_000) / 1000)
    sym = Symbol("BTC", "USDT")
    first_id = tape.first_id_at(boundary_ms) - 50
    cursor = str(500_000_000 + first_id)
    page = rest_page(fake, okx_rest.parse_trades, okx_rest.build_trades(sym, cursor=cursor))
    a = OkxArchive()
    lo = a.archive_period(D, boundary_ms * MS - 1)[0]
    before = a.parse_archive(
        a.archive_file(sym, DataType.TRADES, None, D, lo), av.okx_trades_file("BTC-USDT", DAY, every=10)
    )
    after_file = a.archive_file(sym, DataType.TRADES, None, D, boundary_ms * MS)
    after = a.parse_archive(after_file, av.okx_trades_file("BTC-USDT", "2024-01-04", every=10, bilingual=True))
    assert before["ts"].to_pylist()[-1] < boundary_ms * MS <= after["ts"].to_pylist()[0]
    archived = as_rows(before) | as_rows(after)
    common = [t for t in page if t.id in archived]
    assert len(page) == 100 and len(common) == 10
    assert {t.ts < boundary_ms * MS for t in common} == {True, False}
    assert all(archived[t.id] == (t.ts, t.price, t.amount, t.side) for t in common)


@pytest.mark.parametrize("market", ["linear", "spot"])
def test_bybit_archive_rows_equal_recent_rest_trades(market: str) -> None:
    """Bybit's recent REST trades are in the day file: linear by execId, spot (file-numbered ids) by value."""
    now_ms = av.day_ms(DAY) + 5 * 3_600_000
    fake = FakeBybit(clock=lambda: now_ms / 1000)
    sym = Symbol("BTC", "USDT", "perp") if market == "linear" else Symbol("BTC", "USDT")
    page = rest_page(fake, bybit_rest.parse_trades, bybit_rest.build_trades(sym, limit=60))
    a = BybitArchive()
    f = a.archive_file(sym, DataType.TRADES, None, D, av.day_ms(DAY) * MS)
    if market == "linear":
        archived = as_rows(a.parse_archive(f, av.bybit_linear_file("BTCUSDT", DAY, every=10)))
        common = [t for t in page if t.id in archived]
        assert len(common) == 6 and all(archived[t.id] == (t.ts, t.price, t.amount, t.side) for t in common)
    else:
        table = a.parse_archive(f, av.bybit_spot_file("BTCUSDT", DAY, every=10))
        by_value = {(r["ts"], r["price"], r["amount"], r["side"]): r["id"] for r in table.to_pylist()}
        common = [t for t in page if (t.ts, t.price, t.amount, t.side) in by_value]
        assert len(page) == 60 and len(common) == 6
        first = tape.first_id_at(av.day_ms(DAY))  # the file numbers the day's trades from 1
        for t in common:
            n = (tape.first_id_at(t.ts // MS) - first) // 10 + 1
            assert by_value[(t.ts, t.price, t.amount, t.side)] == f"{DAY}:{n}"


def test_fake_archive_faults_and_publication() -> None:
    """Missing days 404, a day not over yet 404s (OKX's ends 16:00 UTC), a garbled day has a float-printed time."""
    now_ms = av.day_ms("2024-01-05") + 15 * 3_600_000
    fake = av.FakeVenueArchive(every=1000, missing={"2024-01-02"}, garbled={"2024-01-03"}, clock=lambda: now_ms / 1000)
    linear = "/trading/BTCUSDT/BTCUSDT{}.csv.gz"
    assert fake.handle(linear.format("2024-01-02"))[0] == 404
    status, body, headers = fake.handle(linear.format("2024-01-03"))
    assert status == 200 and headers["ETag"] and gzip.decompress(body).split(b"\n")[2].startswith(b"1.7e9,BTCUSDT,")
    assert fake.handle(linear.format("2024-01-04"))[0] == 200 and fake.handle(linear.format("2024-01-05"))[0] == 404
    okx = "/cdn/okex/traderecords/trades/daily/{0}/BTC-USDT-trades-{1}.zip"
    assert fake.handle(okx.format("20240104", "2024-01-04"))[0] == 200  # Beijing 01-04 ended 2024-01-04T16:00Z
    assert fake.handle(okx.format("20240105", "2024-01-05"))[0] == 404  # ends 2024-01-05T16:00Z, after now
    assert fake.handle("/trading/BTCUSDT/other.csv")[0] == 404
    assert fake.count("/trading/", status=200) == 2 and fake.count("/", status=None) == 7


async def test_serve_offers_the_venue_archives(tmp_path: Path) -> None:
    """``python -m tests.fake.serve`` serves the Bybit/BitMEX/OKX trade files and puts their archive_url in the config."""
    async with AsyncExitStack() as stack:
        urls = await open_all(stack, ("bybit", "okx"), rate=1.0, rest_day=3.0)
        assert urls["bybit"]["archive_url"] == urls["okx"]["archive_url"]
        async with httpx.AsyncClient(base_url=urls["okx"]["archive_url"], timeout=30) as client:
            r = await client.get(
                "/cdn/okex/traderecords/candlesticks/daily/20240102/BTC-USDT-candlesticks-2024-01-02.zip"
            )
            assert r.status_code == 200 and len(r.content) > 1000
            assert (await client.get("/data/trade/20240110.csv.gz")).status_code == 404  # after the fakes' day 3
        text = config_yaml(urls, str(tmp_path), 8080)
        assert f"archive_url: {json.dumps(urls['okx']['archive_url'])}" in text
