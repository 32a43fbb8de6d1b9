"""The fake Binance archive serves the REST fake's own rows, Binance's paths and checksums, and its faults."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from contextlib import AsyncExitStack

import httpx

from tests.fake.binance import FakeBinance
from tests.fake.binance_archive import FakeBinanceArchive
from tests.fake.binance_data import FakeMarket
from tests.fake.serve import config_yaml, open_all

DAY = "/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-03-01.zip"
SPARSE = (FakeMarket("BTCUSDT", "BTC", "USDT", listed_ms=1_502_942_400_000, every_ms=60_000),)  # 3 trades a minute


def member(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (name,) = zf.namelist()
        return zf.read(name).decode()


def test_archive_rows_are_the_rest_rows() -> None:
    """A day file holds exactly the trades ``historicalTrades`` serves for that day, in Binance's CSV columns."""
    rest = FakeBinance(clock=lambda: 1_710_000_000.0, markets=SPARSE)
    fake = FakeBinanceArchive(rest)
    status, body, headers = fake.handle(DAY)
    assert status == 200 and headers["ETag"]
    lines = member(body).splitlines()
    tape = rest.tapes["BTCUSDT"]
    first, last = int(lines[0].split(",")[0]), int(lines[-1].split(",")[0])
    assert len(lines) == last - first + 1 == 1440 * 3
    r = json.loads(tape.trades_json(first, first)[0])
    assert (
        lines[0] == f"{first},{r['price']},{r['qty']},{r['quoteQty']},{r['time']},{str(r['isBuyerMaker']).lower()},True"
    )
    _, check, _ = fake.handle(DAY + ".CHECKSUM")
    assert check == f"{hashlib.sha256(body).hexdigest()}  BTCUSDT-trades-2024-03-01.zip\n".encode()


def test_faults_and_units() -> None:
    """Missing days 404, a bad checksum lies, a re-upload is stale once, 2025 spot files are in µs with no header."""
    rest = FakeBinance(clock=lambda: 1_740_000_000.0, markets=SPARSE)
    fake = FakeBinanceArchive(rest, missing={"2024-03-01"}, bad_checksum={"2024-03-02"}, reuploaded={"2024-03-03"})
    assert fake.handle(DAY)[0] == 404 and fake.handle(DAY + ".CHECKSUM")[0] == 404
    bad = DAY.replace("03-01", "03-02")
    _, body, _ = fake.handle(bad)
    assert fake.handle(bad + ".CHECKSUM")[1].split()[0].decode() != hashlib.sha256(body).hexdigest()
    re_up = DAY.replace("03-01", "03-03")
    first, second = fake.handle(re_up)[1], fake.handle(re_up)[1]
    assert first != second and fake.handle(re_up + ".CHECKSUM")[1].split()[0].decode() == hashlib.sha256(second).hexdigest()  # fmt: skip
    jan = "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-02.zip"
    row = member(fake.handle(jan)[1]).splitlines()[0].split(",")
    assert row[0] == "1735776000000000" and row[6] == "1735776059999999"  # µs
    fut = "/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-02.zip"
    text = member(fake.handle(fut)[1])
    assert text.startswith("open_time,") and "\n1735776000000," in text  # USD-M: header, ms


async def test_serve_offers_the_archive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``python -m tests.fake.serve`` runs the Binance archive too and writes its ``archive_url`` into the config."""
    async with AsyncExitStack() as stack:
        urls = await open_all(stack, ("binance",), 10.0, 1.0)
        url = urls["binance"]["archive_url"]
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            path = "/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2023-12-31.zip"  # the day before the tape: cheap
            body = (await client.get(path)).content
            check = (await client.get(path + ".CHECKSUM")).text
            missing = await client.get(path.replace("BTCUSDT", "NOPE"))
        assert check.split()[0] == hashlib.sha256(body).hexdigest()
        assert member(body) == "" and missing.status_code == 404
        assert f"archive_url: {json.dumps(url)}" in config_yaml(urls, str(tmp_path), 8080)
