"""Where ``--start origin`` begins under ``--source auto``: the archive's first file, found by a few probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from dccd.actors.archive import ArchiveBackfiller
from dccd.actors.backfill import BackfillJob

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.domain.timeutil import NS_PER_S, parse_iso_ns
from dccd.sources.archive import get_archive
from dccd.storage import Lake, RunStore
from tests.fake.binance import FakeBinance
from tests.fake.binance_archive import FakeBinanceArchive
from tests.fake.binance_data import FakeMarket

NOW = parse_iso_ns("2024-03-20T12:00:00Z")
NEW = FakeMarket("NEWUSDT", "NEW", "USDT", listed_ms=parse_iso_ns("2024-02-10T06:00:00Z") // 1_000_000)


def backfiller(tmp_path: Path, exchange: str, symbol: str, data_type: DataType, span: str | None, transport: Any) -> ArchiveBackfiller:  # fmt: skip
    ds = DatasetId(exchange, Symbol.parse(symbol), data_type, Span(span) if span else None)
    job = BackfillJob("r1", ds, "origin", NOW, NOW, source="auto")
    archive = get_archive(exchange)
    assert archive is not None
    return ArchiveBackfiller(
        job, None, Lake(tmp_path), RunStore(tmp_path), lambda _b: None, lambda: None, lambda _m: None,  # type: ignore[arg-type]
        archive=archive, origin="http://127.0.0.1:9", transport=transport,
    )  # fmt: skip


async def test_origin_is_the_first_month_the_archive_holds(tmp_path: Path) -> None:
    """A symbol listed 2024-02-10: the monthly files since the archive's first day (2017-08) are searched in
    at most 8 probes, each a checksum file; the origin is the listing month's start."""
    rest = FakeBinance(markets=(NEW,), clock=lambda: NOW / NS_PER_S)
    archive = FakeBinanceArchive(rest, unlisted_404=True)
    bf = backfiller(tmp_path, "binance", "NEW/USDT", DataType.OHLC, "1m", archive.mock_transport())
    assert await bf._archive_origin(NOW) == parse_iso_ns("2024-02-01")
    assert 0 < len(archive.requests) <= 8
    assert all(p.endswith(".CHECKSUM") and "/monthly/" in p for p, _ in archive.requests)


async def test_all_symbol_files_leave_the_origin_to_rest(tmp_path: Path) -> None:
    """BitMEX's day files hold every symbol: their existence says nothing of a listing, so no probe is made and
    the origin is left to REST (None)."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, content=b"")

    bf = backfiller(tmp_path, "bitmex", "BTC/USD:perp", DataType.TRADES, None, httpx.MockTransport(handler))
    assert await bf._archive_origin(NOW) is None
    assert asked == []
