"""The archive contract and Binance's archive adapter: paths, coverage, checksums, column-wise parsing, the planner."""

from __future__ import annotations

import hashlib

import pytest

from dccd.domain import DataType, Span, Symbol
from dccd.domain.timeutil import NS_PER_MS, parse_iso_ns
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources.archive import Granularity, get_archive, ns_from_epoch, utc_period
from dccd.sources.archive_plan import plan_archive, uncovered
from dccd.sources.binance.archive import BinanceArchive
from tests.fake.binance_archive import zipped

BTC, PERP = Symbol.parse("BTC/USDT"), Symbol.parse("BTC/USDT:perp")
D, M = Granularity.DAILY, Granularity.MONTHLY
MAR1 = parse_iso_ns("2024-03-01")
ARCHIVE = BinanceArchive()


def test_registry_and_paths() -> None:
    """Binance files sit at Binance's real paths (spot/futures, daily/monthly, 1mo for 1M), checksum beside them."""
    assert isinstance(get_archive("binance"), BinanceArchive)
    assert get_archive("kraken") is None
    f = ARCHIVE.archive_file(BTC, DataType.OHLC, Span("1m"), D, MAR1)
    assert f.path == "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip"
    assert f.checksum_path == f.path + ".CHECKSUM"
    assert (f.start_ns, f.end_ns) == (MAR1, parse_iso_ns("2024-03-02"))
    f = ARCHIVE.archive_file(BTC, DataType.OHLC, Span("1M"), M, MAR1)
    assert f.path == "/data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-03.zip"
    assert f.end_ns == parse_iso_ns("2024-04-01")
    f = ARCHIVE.archive_file(PERP, DataType.TRADES, None, D, MAR1)
    assert f.path == "/data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-03-01.zip"
    f = ARCHIVE.archive_file(PERP, DataType.FUNDING, None, M, MAR1)
    assert f.path == "/data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-03.zip"
    with pytest.raises(NoCapability):
        ARCHIVE.archive_file(BTC, DataType.FUNDING, None, M, MAR1)  # spot has no funding
    with pytest.raises(NoCapability):
        ARCHIVE.archive_file(BTC, DataType.OHLC, Span("1w"), D, MAR1)  # weekly bars are monthly files only
    with pytest.raises(ValueError, match="not the start"):
        ARCHIVE.archive_file(BTC, DataType.OHLC, Span("1m"), D, MAR1 + 1)


def test_periods_can_follow_another_time_zone() -> None:
    """A period is a ns interval: UTC+8 days (OKX) start at 16:00 UTC the day before."""
    ts = parse_iso_ns("2024-03-01T17:00:00Z")
    assert utc_period(D, ts) == (MAR1, parse_iso_ns("2024-03-02"))
    assert utc_period(D, ts, -8 * 3600 * 10**9) == (
        parse_iso_ns("2024-03-01T16:00:00Z"),
        parse_iso_ns("2024-03-02T16:00:00Z"),
    )
    assert utc_period(M, ts) == (MAR1, parse_iso_ns("2024-04-01"))


def test_checksum_line() -> None:
    """A ``sha256sum`` line of the file gives its digest; another file's line or garbage is ProtocolDrift."""
    f = ARCHIVE.archive_file(BTC, DataType.TRADES, None, D, MAR1)
    digest = hashlib.sha256(b"x").hexdigest()
    assert ARCHIVE.parse_checksum(f, f"{digest.upper()}  {f.name}\n".encode()) == digest
    with pytest.raises(ProtocolDrift, match="not a sha256sum line"):
        ARCHIVE.parse_checksum(f, f"{digest}  other.zip\n".encode())
    with pytest.raises(ProtocolDrift):
        ARCHIVE.parse_checksum(f, b"<html>")


def test_units_sniffed_per_file() -> None:
    """ms and µs epoch columns both become exact ns; a file mixing units is ProtocolDrift."""
    import pyarrow as pa

    f = ARCHIVE.archive_file(BTC, DataType.TRADES, None, D, MAR1)
    ms = 1_709_251_200_123
    assert ns_from_epoch(f, pa.array([ms])).to_pylist() == [ms * NS_PER_MS]
    assert ns_from_epoch(f, pa.array([ms * 1000 + 7])).to_pylist() == [(ms * 1000 + 7) * 1000]
    with pytest.raises(ProtocolDrift, match="mixes units"):
        ns_from_epoch(f, pa.array([ms, ms * 1000]))


def test_trades_with_and_without_header() -> None:
    """Spot trades (7 columns, no header, µs) and USD-M trades (6 columns, header, ms) parse to the same rows."""
    t_ms = MAR1 // NS_PER_MS + 5
    spot = ARCHIVE.archive_file(BTC, DataType.TRADES, None, D, MAR1)
    rows = f"7,100.5,0.25,25.125,{t_ms * 1000 + 1},true,True\n8,100.75,1.5,151.125,{t_ms * 1000 + 2},false,True\n"
    got = ARCHIVE.parse_archive(spot, zipped("a.csv", rows)).to_pylist()
    assert got == [
        {"ts": MAR1 + 5_001_000, "id": "7", "price": 100.5, "amount": 0.25, "side": "sell", "recv_ts": None},
        {"ts": MAR1 + 5_002_000, "id": "8", "price": 100.75, "amount": 1.5, "side": "buy", "recv_ts": None},
    ]
    perp = ARCHIVE.archive_file(PERP, DataType.TRADES, None, D, MAR1)
    text = f"id,price,qty,quote_qty,time,is_buyer_maker\n7,100.5,0.25,25.125,{t_ms},true\n"
    assert ARCHIVE.parse_archive(perp, zipped("b.csv", text)).to_pylist()[0]["ts"] == MAR1 + 5_000_000


def test_rows_outside_the_coverage_are_trimmed_and_bad_files_named() -> None:
    """A file holds only its period's rows; a broken zip or CSV raises ProtocolDrift naming the file."""
    f = ARCHIVE.archive_file(BTC, DataType.OHLC, Span("1m"), D, MAR1)
    lo = MAR1 // NS_PER_MS
    csv = "".join(f"{t},1,2,0.5,1.5,10,{t + 59_999},15,3,1,1,0\n" for t in (lo - 60_000, lo, lo + 86_400_000))
    table = ARCHIVE.parse_archive(f, zipped("k.csv", csv))
    assert table["ts"].to_pylist() == [MAR1]
    assert table["trades"].to_pylist() == [3]
    with pytest.raises(ProtocolDrift, match=f.name):
        ARCHIVE.parse_archive(f, b"not a zip")
    with pytest.raises(ProtocolDrift, match="CSV does not parse"):
        ARCHIVE.parse_archive(f, zipped("k.csv", f"{lo},x,2,0.5,1.5,10,{lo},15,3,1,1,0\n"))


def test_funding_and_metrics() -> None:
    """fundingRate rows keep the exact rate (mark price null); metrics' text times become ns."""
    f = ARCHIVE.archive_file(PERP, DataType.FUNDING, None, M, MAR1)
    text = f"calc_time,funding_interval_hours,last_funding_rate\n{MAR1 // NS_PER_MS},8,-0.00012345\n"
    assert ARCHIVE.parse_archive(f, zipped("f.csv", text)).to_pylist() == [
        {"ts": MAR1, "rate": -0.00012345, "mark_price": None}
    ]
    f = ARCHIVE.archive_file(PERP, DataType.OI, None, D, MAR1)
    text = "create_time,symbol,a,b,c,d,e,f\n2024-03-01 00:05:00,BTCUSDT,5.5,6.6,1,1,1,1\n"
    assert ARCHIVE.parse_archive(f, zipped("m.csv", text)).to_pylist() == [
        {"ts": MAR1 + 300 * 10**9, "open_interest": 5.5, "open_interest_value": 6.6}
    ]


def test_planner_months_days_and_rest() -> None:
    """Whole missing months are monthly files, other whole days daily; stored, partial, unpublished days go to REST."""
    start = parse_iso_ns("2024-01-30T05:00:00Z")
    end = parse_iso_ns("2024-04-03T12:00:00Z")
    now = parse_iso_ns("2024-04-04T06:00:00Z")
    stored = [(parse_iso_ns("2024-03-10T01:00:00Z"), parse_iso_ns("2024-03-10T02:00:00Z"))]
    plan = plan_archive(ARCHIVE, BTC, DataType.OHLC, Span("1m"), start, end, now, stored)
    names = [f.name for f in plan.files]
    assert names[:3] == ["BTCUSDT-1m-2024-01-31.zip", "BTCUSDT-1m-2024-02.zip", "BTCUSDT-1m-2024-03-01.zip"]
    assert "BTCUSDT-1m-2024-03-10.zip" not in names  # partly stored: REST repairs it exactly
    assert names[-1] == "BTCUSDT-1m-2024-04-02.zip"  # April 3 is partial, and not published before the 4th
    assert len(names) == 1 + 1 + 30 + 2
    assert plan.rest == (
        (start, parse_iso_ns("2024-01-31")),
        (parse_iso_ns("2024-03-10"), parse_iso_ns("2024-03-11")),
        (parse_iso_ns("2024-04-03"), end),
    )
    later = plan_archive(ARCHIVE, BTC, DataType.OHLC, Span("1m"), start, end, parse_iso_ns("2024-04-09"), [])
    assert [f.name for f in later.files][-3:] == ["BTCUSDT-1m-2024-03.zip", "BTCUSDT-1m-2024-04-01.zip", "BTCUSDT-1m-2024-04-02.zip"]  # fmt: skip
    old = plan_archive(ARCHIVE, BTC, DataType.OHLC, Span("1m"), parse_iso_ns("2017-01-01"), parse_iso_ns("2017-08-20"), now)  # fmt: skip
    assert [f.name for f in old.files] == ["BTCUSDT-1m-2017-08-17.zip", "BTCUSDT-1m-2017-08-18.zip", "BTCUSDT-1m-2017-08-19.zip"]  # fmt: skip


def test_uncovered() -> None:
    """The complement of covered intervals inside a range."""
    assert uncovered(0, 10, [(2, 4), (4, 6), (8, 12)]) == ((0, 2), (6, 8))
    assert uncovered(0, 10, []) == ((0, 10),)
    assert uncovered(0, 10, [(0, 10)]) == ()


@pytest.mark.parametrize("fast", [True, False], ids=["isal", "zlib"])
def test_inflate_paths_agree_and_check_crc(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """ISA-L and zlib inflate the same rows; a member whose bytes were altered fails its CRC-32 as ProtocolDrift."""
    import dccd.sources.archive as archive_mod

    if not fast:
        monkeypatch.setattr(archive_mod, "_fast_zlib", None)
    f = ARCHIVE.archive_file(BTC, DataType.OHLC, Span("1m"), D, MAR1)
    lo = MAR1 // NS_PER_MS
    csv = "".join(f"{lo + i * 60_000},1,2,0.5,1.5,10,{lo + i * 60_000 + 59_999},15,{i},1,1,0\n" for i in range(1440))
    data = zipped("k.csv", csv)
    table = ARCHIVE.parse_archive(f, data)
    assert table["trades"].to_pylist() == list(range(1440))
    assert [t.num_rows for t in ARCHIVE.iter_archive(f, data, rows=500)] == [1440]  # one 4 MiB block
    stored = zipped("k.csv", "x" * 10_000)  # compresses well: flip a byte inside the deflate stream
    bad = bytearray(stored)
    bad[len(bad) // 4] ^= 0xFF
    with pytest.raises(ProtocolDrift, match=f.name):
        ARCHIVE.parse_archive(f, bytes(bad))


def test_coalesce_and_stream_blocks() -> None:
    """Blocks of a streamed CSV are merged into tables of at least ``rows`` rows, each sorted by ts."""
    import io

    import pyarrow as pa

    from dccd.sources.archive import coalesce, iter_csv

    f = ARCHIVE.archive_file(BTC, DataType.TRADES, None, D, MAR1)
    text = "".join(f"{i},1.5\n" for i in range(3000)).encode()
    blocks = list(iter_csv(f, io.BufferedReader(io.BytesIO(text)), ("ts", "price"), {"ts": pa.int64()}, block_size=4096))  # type: ignore[arg-type]  # fmt: skip
    assert len(blocks) > 3 and sum(b.num_rows for b in blocks) == 3000
    merged = list(coalesce(iter(blocks), 1000))
    assert all(t.num_rows >= 1000 for t in merged[:-1]) and sum(t.num_rows for t in merged) == 3000
    assert [v for t in merged for v in t["ts"].to_pylist()] == list(range(3000))
    shuffled = pa.table({"ts": [3, 1, 2]})
    (only,) = coalesce(iter([shuffled]), 10)
    assert only["ts"].to_pylist() == [1, 2, 3]


def test_coalesce_yields_a_smaller_first_table() -> None:
    """With ``first_rows`` the first table is yielded as soon as it holds that many rows (the writer starts
    while the rest parses); the following ones hold ``rows`` again."""
    import pyarrow as pa

    from dccd.sources.archive import coalesce

    blocks = [pa.table({"ts": list(range(i * 100, i * 100 + 100))}) for i in range(10)]
    sizes = [t.num_rows for t in coalesce(iter(blocks), 400, first_rows=150)]
    assert sizes == [200, 400, 400]
    assert [t.num_rows for t in coalesce(iter(blocks), 400)] == [400, 400, 200]
