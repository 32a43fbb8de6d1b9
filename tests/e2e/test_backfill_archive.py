"""Archive backfills end to end: the service against the fake Binance REST + its fake archive on 127.0.0.1.

Every test compares with a REST-only backfill of the same fake (the archive is
generated from the REST fake's own tape), reading the lakes raw (every part, no
deduplication), so a duplicated, missing or altered row shows up. ``DCCD_SOAK=1``
runs the long form (a whole year of 1m klines).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import trio
from dccd.actors import EVENTS_TOPIC, Service, open_service
from dccd.actors.messages import ArchiveFetched

from dccd.config import Config, ExchangeSettings, Storage
from dccd.domain.timeutil import NS_PER_S, parse_iso_ns
from dccd.storage.archives import ArchiveStore
from dccd.storage.runs import RunState
from tests.e2e.helpers import OHLC_COLUMNS, TRADE_COLUMNS, raw_rows, request
from tests.fake.binance import FakeBinance, open_fake_binance
from tests.fake.binance_archive import FakeBinanceArchive, open_fake_archive
from tests.fake.binance_data import FakeMarket

SOAK = bool(os.environ.get("DCCD_SOAK"))
# A sparse market (3 trades a minute) so a month of trades is ~130k rows: REST-only stays quick.
SPARSE = FakeMarket("BTCUSDT", "BTC", "USDT", listed_ms=1_502_942_400_000, every_ms=60_000)


def archive_config(root: Path, rest_url: str, archive_url: str | None) -> Config:
    """Binance REST at the fake; its archive at ``archive_url`` (None: REST only)."""
    ex = ExchangeSettings(rest_url=rest_url, rate_limit=0.0, archive_url=archive_url)
    return Config(storage=Storage(path=str(root)), exchanges={"binance": ex})


@asynccontextmanager
async def service(
    root: Path, rest: FakeBinance, archive: FakeBinanceArchive | None, now_ns: int
) -> AsyncIterator[Service]:
    """A service with the fakes' URLs and a pinned ``now``."""
    cfg = archive_config(root, rest.url, archive.url if archive is not None else None)
    async with open_service(cfg, ops_options={"now_ns": lambda: now_ns, "concurrency": 4}) as svc:
        yield svc


async def backfill(
    root: Path, rest: FakeBinance, archive: FakeBinanceArchive | None, now_ns: int, *args: Any, **kw: Any
) -> Any:
    """One backfill run to its end; returns its record."""
    async with service(root, rest, archive, now_ns) as svc:
        (record,) = await svc.backfill(request(*args, now_ns=now_ns, **kw))
        return record


def manifest(root: Path) -> dict[str, str]:
    """Manifest key -> state."""
    store = ArchiveStore(root)
    lines = (root / "_dccd" / "archives" / "manifest.jsonl").read_bytes().splitlines()
    keys = {msgspec.json.decode(line)["key"] for line in lines}
    return {k: e.state for k in keys if (e := store.get(k)) is not None}


async def test_klines_archive_plus_rest_equal_rest_only(tmp_path: Path) -> None:
    """Monthly + daily archive files (ms and µs, header and header-less, a missing day) plus the REST
    tail store exactly what a REST-only backfill stores, and far fewer REST pages are asked."""
    now = parse_iso_ns("2025-02-12T10:30:00Z")
    # the long form: a whole year, a missing monthly file (REST fills the month), a monthly file with a header
    start, missing, header = (
        ("2024-01-01", "2024-03", "2024-05") if SOAK else ("2024-12-20", "2024-12-24", "2024-12-21")
    )
    async with (
        open_fake_binance(weight_limit=10**9, clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(rest, missing={missing}, header={header}) as arch,
    ):
        rec = await backfill(tmp_path / "a", rest, arch, now, ["BTC/USDT"], start=start, source="auto")
        assert rec.state is RunState.SUCCEEDED, rec.error
        rest_pages = rest.count("/api/v3/klines")
        names = {p.rsplit("/", 1)[-1] for p, s in arch.requests if p.endswith(".zip") and s == 200}
        assert {"BTCUSDT-1m-2025-01.zip", f"BTCUSDT-1m-{header}.zip", "BTCUSDT-1m-2025-02-10.zip"} <= names
        assert "BTCUSDT-1m-2025-02-11.zip" not in names  # not published yet: REST
        assert arch.count(".CHECKSUM", status=404) == 1  # the maintenance day: REST filled it
        rec2 = await backfill(tmp_path / "r", rest, None, now, ["BTC/USDT"], start=start, source="auto")
        assert rec2.state is RunState.SUCCEEDED, rec2.error
        archived = raw_rows(tmp_path / "a", "ohlc", OHLC_COLUMNS)
        assert archived == raw_rows(tmp_path / "r", "ohlc", OHLC_COLUMNS)
        assert len(archived) == (now // NS_PER_S // 60 * 60 - parse_iso_ns(start) // NS_PER_S) // 60
        assert rest_pages < (rest.count("/api/v3/klines") - rest_pages) / 10
        states = manifest(tmp_path / "a")
        assert set(states.values()) == {"written", "missing"}
        assert not any((tmp_path / "a" / "_dccd" / "archives" / "files").rglob("*.zip"))  # written: cache dropped
        assert rec.progress["archive_files"] == len(states)


async def test_trades_archive_plus_rest_equal_rest_only(tmp_path: Path) -> None:
    """30 days of trades from daily files (a re-uploaded one, µs ones, a missing day) plus the REST tail
    equal the REST-only result id for id; the re-uploaded file is fetched once more, not failed."""
    now = parse_iso_ns("2025-01-08T12:00:00Z")
    async with (
        open_fake_binance(weight_limit=10**9, markets=(SPARSE,), clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(rest, missing={"2024-12-14"}, reuploaded={"2024-12-16"}) as arch,
    ):
        rec = await backfill(tmp_path / "a", rest, arch, now, ["BTC/USDT"], "trades", start="2024-12-09T06:00:00")
        assert rec.state is RunState.SUCCEEDED, rec.error
        again = [p for p, s in arch.requests if p.endswith("BTCUSDT-trades-2024-12-16.zip")]
        assert len(again) == 2
        rec2 = await backfill(tmp_path / "r", rest, None, now, ["BTC/USDT"], "trades", start="2024-12-09T06:00:00")
        assert rec2.state is RunState.SUCCEEDED, rec2.error
    archived = raw_rows(tmp_path / "a", "trades", TRADE_COLUMNS, order="ts, id")
    assert len(archived) > 120_000
    assert archived == raw_rows(tmp_path / "r", "trades", TRADE_COLUMNS, order="ts, id")
    assert len({r[1] for r in archived}) == len(archived)


async def test_killed_download_resumes_without_refetching(tmp_path: Path) -> None:
    """A run cancelled mid-download leaves its verified files; the next run downloads none of them again."""
    now = parse_iso_ns("2024-03-20T00:00:00Z")
    root = tmp_path / "lake"
    async with (
        open_fake_binance(weight_limit=10**9, clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(rest) as arch,
    ):
        arch.stall_after = 3
        cfg = archive_config(root, rest.url, arch.url)
        opts = {"now_ns": lambda: now, "concurrency": 1}
        async with open_service(cfg, ops_options=opts) as svc:
            req = request(["BTC/USDT"], start="2024-03-01", end="2024-03-15", now_ns=now)
            async with svc.hub.subscribe(EVENTS_TOPIC, maxlen=4096) as sub:
                (run_id,) = await svc.start_backfill(req)
                seen = 0
                with trio.fail_after(30):
                    async for ev in sub:
                        seen += isinstance(ev, ArchiveFetched) and ev.result == "verified"
                        if seen == 3:
                            break
                await trio.sleep(0.2)  # the 4th download is stalled
                assert await svc.cancel_run(run_id)
            record = await svc.wait_run(run_id)
            assert record.state is RunState.CANCELLED
        verified = [k for k, s in manifest(root).items() if s == "verified"]
        assert len(verified) == 3
        shutil.rmtree(root / "ohlc")  # as if the kill came before the writes: only the cache is left
        arch.stall_after = None
        rec = await backfill(root, rest, arch, now, ["BTC/USDT"], start="2024-03-01", end="2024-03-15")
        assert rec.state is RunState.SUCCEEDED, rec.error
        fetched = [p for p, s in arch.requests if p.endswith(".zip") and s == 200]
        assert len(fetched) == len(set(fetched)) == 14  # every day once, none refetched
        assert rec.progress["archive_results"] == {"cached": 3, "verified": 11}
    assert len(raw_rows(root, "ohlc", "ts")) == 14 * 1440


async def test_bad_checksum_fails_the_day_and_nothing_lands(tmp_path: Path) -> None:
    """A file whose SHA-256 differs from its .CHECKSUM is quarantined, the run fails naming it, and no row
    of its day is in the lake (REST does not fill it either); the other days land."""
    now = parse_iso_ns("2024-03-20T00:00:00Z")
    root = tmp_path / "lake"
    async with (
        open_fake_binance(weight_limit=10**9, clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(rest, bad_checksum={"2024-03-05"}) as arch,
    ):
        rec = await backfill(root, rest, arch, now, ["BTC/USDT"], start="2024-03-03", end="2024-03-08")
    assert rec.state is RunState.FAILED
    assert "BTCUSDT-1m-2024-03-05.zip" in (rec.error or "") and "quarantined" in (rec.error or "")
    days = sorted({ts // (86_400 * NS_PER_S) for (ts,) in raw_rows(root, "ohlc", "ts")})
    mar = parse_iso_ns("2024-03-03") // (86_400 * NS_PER_S)
    assert days == [mar, mar + 1, mar + 3, mar + 4]
    q = list((root / "_dccd" / "quarantine" / "archives").rglob("*.zip"))
    assert [p.name for p in q] == ["BTCUSDT-1m-2024-03-05.zip"]
    assert "quarantined" in manifest(root).values()


async def test_source_rest_and_archive_only(tmp_path: Path) -> None:
    """``--source rest`` asks the archive nothing; ``--source archive`` asks REST for no bars and reports
    the unpublished tail as unavailable (partial)."""
    now = parse_iso_ns("2024-03-06T12:00:00Z")
    async with (
        open_fake_binance(weight_limit=10**9, clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(rest) as arch,
    ):
        rec = await backfill(tmp_path / "r", rest, arch, now, ["BTC/USDT"], start="2024-03-01", source="rest")
        assert rec.state is RunState.SUCCEEDED and not arch.requests
        pages = rest.count("/api/v3/klines")
        rec = await backfill(tmp_path / "a", rest, arch, now, ["BTC/USDT"], start="2024-03-01", source="archive")
        assert rec.state is RunState.PARTIAL, rec.error
        assert rest.count("/api/v3/klines") == pages
        assert "archive has no files" in (rec.error or "")
    assert len(raw_rows(tmp_path / "a", "ohlc", "ts")) == 4 * 1440  # March 1-4 published by the 6th


async def test_unreachable_archive_falls_back_to_rest(tmp_path: Path) -> None:
    """An archive origin that refuses connections costs retries, then REST fills every period (auto)."""
    now = parse_iso_ns("2024-03-06T12:00:00Z")
    async with open_fake_binance(weight_limit=10**9, clock=lambda: now / NS_PER_S) as rest:
        with trio.socket.socket() as sock:  # a port nobody listens on: bound, never accepting
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            cfg = archive_config(tmp_path, rest.url, f"http://127.0.0.1:{port}")
            async with open_service(cfg, ops_options={"now_ns": lambda: now}) as svc:
                req = request(["BTC/USDT"], start="2024-03-04", end="2024-03-06", now_ns=now)
                (rec,) = await svc.backfill(req)
    assert rec.state is RunState.SUCCEEDED, rec.error
    assert rec.progress["archive_results"] == {"missing": 1}  # March 5 is not published before the 7th
    assert len(raw_rows(tmp_path, "ohlc", "ts")) == 2 * 1440


async def test_one_file_parsed_while_it_downloads(tmp_path: Path) -> None:
    """A lone file is parsed as it downloads (``archive_streamed``); a stale first download (re-upload) is
    parsed again from the verified file, a file failing its checksum lands nothing, a 404 leaves its day to
    REST: each day equals REST-only exactly, no row twice."""
    now = parse_iso_ns("2025-01-08T12:00:00Z")
    days = {"ok": "2024-12-10", "stale": "2024-12-16", "bad": "2024-12-18", "missing": "2024-12-20"}
    async with (
        open_fake_binance(weight_limit=10**9, markets=(SPARSE,), clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(
            rest, reuploaded={days["stale"]}, bad_checksum={days["bad"]}, missing={days["missing"]}
        ) as arch,
    ):
        for name, day in days.items():
            end = f"{day[:8]}{int(day[8:]) + 1:02d}"
            rec = await backfill(tmp_path / name, rest, arch, now, ["BTC/USDT"], "trades", start=day, end=end)
            if name == "bad":
                assert rec.state is RunState.FAILED and "quarantined" in (rec.error or "")
                assert raw_rows(tmp_path / name, "trades", TRADE_COLUMNS) == []
                continue
            assert rec.state is RunState.SUCCEEDED, rec.error
            assert rec.progress["archive_streamed"] == (1 if name == "ok" else 0)
            assert rec.progress["archive_results"] == ({"missing": 1} if name == "missing" else {"verified": 1})
            ref = await backfill(tmp_path / f"{name}-rest", rest, None, now, ["BTC/USDT"], "trades", start=day, end=end)
            assert ref.state is RunState.SUCCEEDED, ref.error
            archived = raw_rows(tmp_path / name, "trades", TRADE_COLUMNS, order="ts, id")
            assert len(archived) > 4000 and len({r[1] for r in archived}) == len(archived)
            assert archived == raw_rows(tmp_path / f"{name}-rest", "trades", TRADE_COLUMNS, order="ts, id")


NEW = FakeMarket(
    "NEWUSDT", "NEW", "USDT", listed_ms=parse_iso_ns("2024-02-10T06:00:00Z") // 1_000_000, every_ms=120_000
)


async def test_origin_uses_the_archive_from_its_first_file(tmp_path: Path) -> None:
    """``--start origin`` (and ``last`` with nothing stored) plans archive files from the first period the
    archive holds, found by a few probes (404 before the listing), instead of going REST-only: bars and
    trades equal a REST-only origin backfill, with no file asked that the archive lacks."""
    now = parse_iso_ns("2024-03-20T12:00:00Z")
    async with (
        open_fake_binance(weight_limit=10**9, markets=(NEW,), clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(rest, unlisted_404=True) as arch,
    ):
        for name, kind, start in (("ohlc", "ohlc", "origin"), ("last", "ohlc", None), ("trades", "trades", "origin")):
            rec = await backfill(tmp_path / name, rest, arch, now, ["NEW/USDT"], kind, start=start)
            assert rec.state is RunState.SUCCEEDED, rec.error
            assert rec.progress["archive_results"] == {"verified": 19}, rec.progress  # Feb monthly + Mar 1-18
            probes = [p for p, s in arch.requests if p.endswith(".CHECKSUM") and s == 404]
            assert 0 < len(probes) <= 8  # a binary search over the monthly periods since 2017-08
            arch.requests.clear()
            ref = await backfill(tmp_path / f"{name}-rest", rest, None, now, ["NEW/USDT"], kind, start=start)
            assert ref.state is RunState.SUCCEEDED, ref.error
            cols, order = (OHLC_COLUMNS, "ts") if kind == "ohlc" else (TRADE_COLUMNS, "ts, id")
            archived = raw_rows(tmp_path / name, kind, cols, order=order)
            assert archived and archived[0][0] == NEW.listed_ms * 1_000_000
            assert archived == raw_rows(tmp_path / f"{name}-rest", kind, cols, order=order)


async def test_origin_with_the_archive_unreachable_is_found_by_rest(tmp_path: Path) -> None:
    """``--start origin`` when the archive host refuses connections: after the probe's retries REST finds
    the origin and fetches everything (auto), as without archives."""
    now = parse_iso_ns("2024-02-12T00:00:00Z")
    async with open_fake_binance(weight_limit=10**9, markets=(NEW,), clock=lambda: now / NS_PER_S) as rest:
        with trio.socket.socket() as sock:  # a port nobody listens on: bound, never accepting
            await sock.bind(("127.0.0.1", 0))
            cfg = archive_config(tmp_path, rest.url, f"http://127.0.0.1:{sock.getsockname()[1]}")
            async with open_service(cfg, ops_options={"now_ns": lambda: now}) as svc:
                (rec,) = await svc.backfill(request(["NEW/USDT"], start="origin", now_ns=now))
    assert rec.state is RunState.SUCCEEDED, rec.error
    assert "archive_results" not in rec.progress or not rec.progress["archive_results"]
    rows = raw_rows(tmp_path, "ohlc", "ts")
    assert rows[0][0] == NEW.listed_ms * 1_000_000 and len(rows) == (now // 1_000_000 - NEW.listed_ms) // 60_000


async def test_origin_archive_only_without_a_file_asks_rest_nothing(tmp_path: Path) -> None:
    """``--start origin --source archive`` for a symbol the archive has no file of yet: the run ends partial
    saying so, and REST is asked nothing (before, an open start went to REST whatever the source)."""
    now = parse_iso_ns("2024-02-10T18:00:00Z")  # listed at 06:00: no daily file published yet
    async with (
        open_fake_binance(weight_limit=10**9, markets=(NEW,), clock=lambda: now / NS_PER_S) as rest,
        open_fake_archive(rest, unlisted_404=True) as arch,
    ):
        rec = await backfill(tmp_path, rest, arch, now, ["NEW/USDT"], start="origin", source="archive")
        assert rest.count("/api/v3/klines") == 0
    assert rec.state is RunState.PARTIAL
    assert "no file to start from" in (rec.error or "") and "--source archive" in (rec.error or "")
    assert raw_rows(tmp_path, "ohlc", "ts") == []
