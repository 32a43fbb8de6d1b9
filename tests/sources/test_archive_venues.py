"""Bybit, BitMEX and OKX archive adapters: paths, coverage and parsing of files in each venue's formats.

The samples in ``tests/fixtures/archives/`` are written in the formats the venues document (header
variants, Bybit's later ``RPI`` column, OKX's older bilingual GB18030 headers, BitMEX's 2014 files
without notionals); the hosts are not reachable from here, so they are not downloads.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import msgspec
import pyarrow as pa
import pytest

from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.archive import Granularity, get_archive, has_archive
from dccd.sources.bitmex.archive import BitmexArchive
from dccd.sources.bybit.archive import BybitArchive
from dccd.sources.okx.archive import OkxArchive
from dccd.storage.schema import LOOSE_SCHEMAS

FIX = Path(__file__).parent.parent / "fixtures" / "archives"
D = Granularity.DAILY
T = DataType.TRADES
NS = 1_000_000_000
H = 3600 * NS


def gz(name: str) -> bytes:
    return gzip.compress((FIX / name).read_bytes())


def zipped(name: str, member: str = "x.csv") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, (FIX / name).read_bytes())
    return buf.getvalue()


def day_ns(date: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS


def test_registered_archives_and_capabilities() -> None:
    """The planner finds the three venues' archives, for the datasets each publishes and no others."""
    assert isinstance(get_archive("bybit"), BybitArchive)
    assert isinstance(get_archive("bitmex"), BitmexArchive)
    assert isinstance(get_archive("okx"), OkxArchive)
    assert has_archive("bybit", T, "spot", None) and has_archive("bybit", T, "perp", None)
    assert not has_archive("bybit", DataType.OHLC, "spot", Span("1m"))
    assert has_archive("bitmex", T, "perp", None) and not has_archive("bitmex", DataType.OHLC, "perp", Span("1m"))
    assert has_archive("okx", DataType.OHLC, "spot", Span("1m")) and not has_archive("okx", DataType.OHLC, "spot", Span("1h"))  # fmt: skip


# --- paths and coverage ------------------------------------------------------------------------------


def test_bybit_paths_follow_exchange_symbol_naming() -> None:
    """Derivatives under /trading/ with the date glued on, spot under /spot/ with an underscore; USDC perps are ...PERP."""
    a, lo = BybitArchive(), day_ns("2024-03-01")
    f = a.archive_file(Symbol("BTC", "USDT", "perp"), T, None, D, lo)
    assert (f.path, f.start_ns, f.end_ns, f.checksum_path) == (
        "/trading/BTCUSDT/BTCUSDT2024-03-01.csv.gz",
        lo,
        lo + 24 * H,
        None,
    )
    assert (
        a.archive_file(Symbol("ETH", "USDC", "perp"), T, None, D, lo).path
        == "/trading/ETHPERP/ETHPERP2024-03-01.csv.gz"
    )
    assert a.archive_file(Symbol("BTC", "USDT"), T, None, D, lo).path == "/spot/BTCUSDT/BTCUSDT_2024-03-01.csv.gz"
    with pytest.raises(UnsupportedSymbol, match="inverse"):
        a.archive_file(Symbol("BTC", "USD", "perp"), T, None, D, lo)
    with pytest.raises(NoCapability):
        a.archive_file(Symbol("BTC", "USDT"), T, None, Granularity.MONTHLY, lo)
    with pytest.raises(ValueError, match="not the start of a UTC day"):
        a.archive_file(Symbol("BTC", "USDT"), T, None, D, lo + H)


def test_bitmex_one_path_per_day_for_every_symbol() -> None:
    """Every symbol of a day shares /data/trade/<YYYYMMDD>.csv.gz; ``native`` names the symbol kept (XBT for BTC)."""
    a, lo = BitmexArchive(), day_ns("2024-03-01")
    perp = a.archive_file(Symbol("BTC", "USD", "perp"), T, None, D, lo)
    spot = a.archive_file(Symbol("BTC", "USDT"), T, None, D, lo)
    assert perp.path == spot.path == "/data/trade/20240301.csv.gz"
    assert (perp.native, spot.native) == ("XBTUSD", "XBT_USDT")


def test_okx_days_are_beijing_days() -> None:
    """OKX's day D is [D-1 16:00Z, D 16:00Z): the period of a UTC time after 16:00 is the next day's file."""
    a = OkxArchive()
    lo, hi = a.archive_period(D, day_ns("2024-03-01") + 17 * H)
    assert (lo, hi) == (day_ns("2024-03-01") + 16 * H, day_ns("2024-03-02") + 16 * H)
    f = a.archive_file(Symbol("BTC", "USDT", "perp"), T, None, D, lo)
    assert f.path == "/cdn/okex/traderecords/trades/daily/20240302/BTC-USDT-SWAP-trades-2024-03-02.zip"
    assert (f.start_ns, f.end_ns) == (lo, hi)
    c = a.archive_file(Symbol("BTC", "USDT"), DataType.OHLC, Span("1m"), D, lo)
    assert c.path == "/cdn/okex/traderecords/candlesticks/daily/20240302/BTC-USDT-candlesticks-2024-03-02.zip"
    with pytest.raises(ValueError, match="not the start of an OKX"):
        a.archive_file(Symbol("BTC", "USDT"), T, None, D, day_ns("2024-03-02"))
    with pytest.raises(NoCapability):
        a.archive_file(Symbol("BTC", "USDT"), DataType.OHLC, Span("1h"), D, lo)


# --- parsing -----------------------------------------------------------------------------------------


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    assert table.schema == LOOSE_SCHEMAS[DataType.TRADES] or table.schema.names == LOOSE_SCHEMAS[DataType.OHLC].names
    return [tuple(r.values()) for r in table.to_pylist()]


def test_bybit_derivatives_exact_decimal_seconds_and_rpi_column() -> None:
    """Decimal-second times land exactly (not via float), ids are trdMatchID, sides lowercase; RPI rows are kept."""
    a = BybitArchive()
    f = a.archive_file(Symbol("BTC", "USDT", "perp"), T, None, D, day_ns("2026-01-01"))
    assert rows(a.parse_archive(f, gz("bybit_trading_rpi.csv"))) == [
        (1_767_225_600_686_400_000, "5d0c4b3e-2a51-5b0e-9a1b-6c1f2d3e4f50", 87642.5, 0.001, "buy", None),
        (1_767_225_600_686_400_000, "0e8f0c2a-7d13-5a4f-8f35-1b2c3d4e5f61", 87642.4, 0.25, "sell", None),
        (1_767_225_601_000_100_000, "a1b2c3d4-e5f6-5a7b-8c9d-0e1f2a3b4c5d", 87643.0, 1.5, "buy", None),
    ]


def test_bybit_derivatives_old_file_without_rpi_out_of_order() -> None:
    """A 2020 file (no RPI column, rows not in time order, 0..4 decimals) comes out ascending and exact."""
    a = BybitArchive()
    f = a.archive_file(Symbol("BTC", "USDT", "perp"), T, None, D, day_ns("2020-03-25"))
    got = a.parse_archive(f, gz("bybit_trading_2020.csv"))
    assert got["ts"].to_pylist() == [1_585_180_700_000_000_000, 1_585_180_700_064_700_000, 1_585_180_799_500_000_000]
    assert got["amount"].to_pylist() == [0.01, 0.1, 0.002]


def test_bybit_spot_ids_are_qualified_by_the_file_day() -> None:
    """Spot files number trades from 1 per file: ids become <day>:<n> (identical rows stay two trades)."""
    a = BybitArchive()
    f = a.archive_file(Symbol("BTC", "USDT"), T, None, D, day_ns("2025-05-19"))
    assert rows(a.parse_archive(f, gz("bybit_spot_rpi.csv"))) == [
        (1_747_612_800_074_000_000, "2025-05-19:1", 106453.8, 0.003718, "sell", None),
        (1_747_612_800_150_000_000, "2025-05-19:2", 106456.9, 0.0005, "buy", None),
        (1_747_612_800_150_000_000, "2025-05-19:3", 106456.9, 0.0005, "buy", None),
    ]
    old = a.parse_archive(
        a.archive_file(Symbol("BTC", "USDT"), T, None, D, day_ns("2023-01-01")), gz("bybit_spot_2023.csv")
    )
    assert old["id"].to_pylist() == ["2023-01-01:1", "2023-01-01:2"] and old["side"].to_pylist() == ["buy", "sell"]


def test_bybit_bad_files_fail_naming_the_file_and_value() -> None:
    """A truncated gzip, a missing column or a float-formatted time is a ProtocolDrift naming the file."""
    a = BybitArchive()
    f = a.archive_file(Symbol("BTC", "USDT", "perp"), T, None, D, day_ns("2026-01-01"))
    with pytest.raises(ProtocolDrift, match=r"BTCUSDT2026-01-01\.csv\.gz"):
        a.parse_archive(f, gz("bybit_trading_rpi.csv")[:40])
    with pytest.raises(ProtocolDrift, match="column 'trdMatchID' missing"):
        a.parse_archive(f, gzip.compress(b"timestamp,symbol,side,size,price\n1767225600.1,BTCUSDT,Buy,1,2\n"))
    bad = (FIX / "bybit_trading_rpi.csv").read_bytes().replace(b"1767225601.0001", b"1.7672256010001e9")
    with pytest.raises(ProtocolDrift, match=r"'1\.7672256010001e9' is not decimal seconds"):
        a.parse_archive(f, gzip.compress(bad))


def test_bitmex_keeps_the_requested_symbol_with_exact_kdb_times() -> None:
    """From an all-symbol file only XBTUSD's rows land, kdb+ times exact to the ns, amount = homeNotional."""
    a = BitmexArchive()
    f = a.archive_file(Symbol("BTC", "USD", "perp"), T, None, D, day_ns("2024-03-01"))
    assert rows(a.parse_archive(f, gz("bitmex_trade.csv"))) == [
        (1_709_251_200_016_342_000, "00000000-006d-1000-0000-001d4f5d0a91", 61180.5, 0.00163452, "buy", None),
        (1_709_251_200_016_342_000, "00000000-006d-1000-0000-001d4f5d0a92", 61180.5, 0.00490356, "buy", None),
        (1_709_251_202_000_000_000, "00000000-006d-1000-0000-001d4f5d0aa0", 61179.0, 0.01961492, "sell", None),
    ]
    split = a.parse_archive_symbols(f, gz("bitmex_trade.csv"), ["XBT_USDT", "ETHUSDT", "SOLUSDT"])
    assert {k: v.num_rows for k, v in split.items()} == {"XBT_USDT": 1, "ETHUSDT": 1, "SOLUSDT": 0}
    assert split["XBT_USDT"]["ts"].to_pylist() == [1_709_251_201_948_313_000]


def test_bitmex_2014_file_without_notionals_falls_back_to_contracts() -> None:
    """Files from before homeNotional existed store the contract size, as REST does."""
    a = BitmexArchive()
    f = a.archive_file(Symbol("BTC", "USD", "perp"), T, None, D, day_ns("2014-11-22"))
    f = msgspec.structs.replace(f, native="XBTZ14")
    got = a.parse_archive(f, gz("bitmex_trade_2014.csv"))
    assert got["amount"].to_pylist() == [1.0, 12.0]
    assert got["ts"].to_pylist() == [1_416_627_221_867_303_000, 1_416_627_259_118_651_000]


def test_okx_trades_new_and_bilingual_headers() -> None:
    """Both header generations (the old one bilingual and GB18030-encoded) give the same columns."""
    a = OkxArchive()
    f = a.archive_file(Symbol("BTC", "USDT"), T, None, D, day_ns("2024-03-01") - 8 * H)
    assert rows(a.parse_archive(f, zipped("okx_trades.csv"))) == [
        (1_709_222_400_012_000_000, "601234567", 61180.1, 0.00012, "buy", None),
        (1_709_222_400_999_000_000, "601234568", 61180.0, 0.5, "sell", None),
        (1_709_308_799_999_000_000, "601234569", 61179.9, 0.0003, "sell", None),
    ]
    old = a.archive_file(Symbol("BTC", "USDT", "perp"), T, None, D, day_ns("2021-10-01") - 8 * H)
    assert rows(a.parse_archive(old, zipped("okx_trades_2021_bilingual.csv"))) == [
        (1_633_017_600_128_000_000, "211234567", 45001.2, 3.0, "sell", None),
        (1_633_017_601_005_000_000, "211234568", 45002.0, 12.0, "buy", None),
    ]


def test_okx_rejects_another_instrument_and_a_bad_zip() -> None:
    """A file whose rows name another instrument, or a zip that is not one CSV, fails naming the file."""
    a = OkxArchive()
    f = a.archive_file(Symbol("ETH", "USDT"), T, None, D, day_ns("2024-03-01") - 8 * H)
    with pytest.raises(ProtocolDrift, match="instrument_name 'BTC-USDT' is not ETH-USDT"):
        a.parse_archive(f, zipped("okx_trades.csv"))
    with pytest.raises(ProtocolDrift, match=r"ETH-USDT-trades-2024-03-01\.zip: .*not a zip"):
        a.parse_archive(f, b"<html>404</html>")


def test_okx_candles_keep_unconfirmed_bars_of_old_files() -> None:
    """Daily 1m candle files: every bar kept (old files say confirm=0), volumes as REST stores them."""
    a = OkxArchive()
    f = a.archive_file(Symbol("BTC", "USDT"), DataType.OHLC, Span("1m"), D, day_ns("2024-03-01") - 8 * H)
    got = a.parse_archive(f, zipped("okx_candles.csv"))
    assert got.schema == LOOSE_SCHEMAS[DataType.OHLC]
    assert [tuple(r.values()) for r in got.to_pylist()] == [
        (1_709_222_400_000_000_000, 61180.1, 61200.0, 61170.0, 61199.9, 12.5, 764998.75, None),
        (1_709_222_460_000_000_000, 61199.9, 61210.2, 61190.0, 61205.0, 3.25, 198914.0625, None),
    ]


def test_parses_from_a_downloaded_path_like_from_bytes(tmp_path: Path) -> None:
    """The downloader hands over a file path: each venue parses it as it parses the bytes."""
    cases = [
        (BitmexArchive(), Symbol("BTC", "USD", "perp"), "2024-03-01", gz("bitmex_trade.csv")),
        (BybitArchive(), Symbol("BTC", "USDT"), "2025-05-19", gz("bybit_spot_rpi.csv")),
    ]
    for a, sym, date, data in cases:
        f = a.archive_file(sym, T, None, D, day_ns(date))
        path = tmp_path / f.name
        path.write_bytes(data)
        assert a.parse_archive(f, path).equals(a.parse_archive(f, data))
    okx = OkxArchive()
    f = okx.archive_file(Symbol("BTC", "USDT"), T, None, D, day_ns("2024-03-01") - 8 * H)
    (tmp_path / f.name).write_bytes(zipped("okx_trades.csv"))
    assert okx.parse_archive(f, str(tmp_path / f.name)).num_rows == 3


def test_rows_outside_the_files_day_are_dropped() -> None:
    """A row stamped outside the file's coverage (the next day, or before its start) is not the file's to store."""
    a = BybitArchive()
    f = a.archive_file(Symbol("BTC", "USDT", "perp"), T, None, D, day_ns("2026-01-01"))
    text = (FIX / "bybit_trading_rpi.csv").read_text()
    text += "1767312000,BTCUSDT,Buy,1,2,PlusTick,next-day,1,1,2,0\n1767225599.9999,BTCUSDT,Buy,1,2,PlusTick,day-before,1,1,2,0\n"
    got = a.parse_archive(f, gzip.compress(text.encode()))
    assert got["id"].to_pylist()[-1] == "a1b2c3d4-e5f6-5a7b-8c9d-0e1f2a3b4c5d" and got.num_rows == 3


def test_files_with_a_header_only_hold_no_rows() -> None:
    """A day without trades (header only, or an empty member) parses to an empty lake table, not an error."""
    lo = day_ns("2024-03-01")
    cases = [
        (BybitArchive(), Symbol("BTC", "USDT", "perp"), lo, gzip.compress(b"timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional\n")),
        (BybitArchive(), Symbol("BTC", "USDT"), lo, gzip.compress(b"")),
        (BitmexArchive(), Symbol("BTC", "USD", "perp"), lo, gz("bitmex_trade_2014.csv")),  # no XBTUSD rows
        (OkxArchive(), Symbol("BTC", "USDT"), lo - 8 * H, _okx_header_only()),
    ]  # fmt: skip
    for a, sym, start, data in cases:
        got = a.parse_archive(a.archive_file(sym, T, None, D, start), data)
        assert got.num_rows == 0 and got.schema == LOOSE_SCHEMAS[DataType.TRADES]


def _okx_header_only() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.csv", "instrument_name,trade_id,side,price,size,created_time\n")
    return buf.getvalue()


def test_okx_monthly_candles_are_beijing_months() -> None:
    """OKX's month M is [last day of M-1 16:00Z, last day of M 16:00Z); its candle file sits under
    ``candlesticks/monthly/YYYYMM``; trades have no monthly files."""
    a = OkxArchive()
    M = Granularity.MONTHLY
    lo, hi = a.archive_period(M, day_ns("2024-03-31") + 17 * H)
    assert (lo, hi) == (day_ns("2024-03-31") + 16 * H, day_ns("2024-04-30") + 16 * H)
    c = a.archive_file(Symbol("BTC", "USDT", "perp"), DataType.OHLC, Span("1m"), M, lo)
    assert c.path == "/cdn/okex/traderecords/candlesticks/monthly/202404/BTC-USDT-SWAP-candlesticks-2024-04.zip"
    assert (c.start_ns, c.end_ns, c.granularity) == (lo, hi, M)
    with pytest.raises(ValueError, match="not the start of an OKX"):
        a.archive_file(Symbol("BTC", "USDT"), DataType.OHLC, Span("1m"), M, day_ns("2024-04-01"))
    with pytest.raises(NoCapability):
        a.archive_file(Symbol("BTC", "USDT"), T, None, M, lo)


def test_bybit_spot_days_partly_stored_are_planned_for_merging() -> None:
    """Bybit spot files have no trade ids and its REST keeps 60 trades: a day partly stored (by a stream) is
    still planned from its file, flagged as merging; derivatives files (real ids) leave such a day to REST."""
    from dccd.sources.archive_plan import plan_archive

    a = BybitArchive()
    lo, hi = day_ns("2024-01-03"), day_ns("2024-01-05")
    stored = [(lo + 6 * H, lo + 12 * H)]
    spot = plan_archive(a, Symbol("BTC", "USDT"), T, None, lo, hi, hi + 2 * 24 * H, stored)
    assert [f.start_ns for f in spot.files] == [lo, lo + 24 * H] and spot.rest == ()
    assert spot.merging == (spot.files[0].path,)
    perp = plan_archive(a, Symbol("BTC", "USDT", "perp"), T, None, lo, hi, hi + 2 * 24 * H, stored)
    assert [f.start_ns for f in perp.files] == [lo + 24 * H] and perp.rest == ((lo, lo + 24 * H),)
    assert perp.merging == ()


@pytest.mark.parametrize(
    ("adapter", "symbol"),
    [
        (BybitArchive, Symbol("BTC", "USDT", "perp")),
        (BitmexArchive, Symbol("BTC", "USD", "perp")),
        (OkxArchive, Symbol("BTC", "USDT")),
    ],
)
def test_venues_without_checksum_files_never_plan_one_and_refuse_to_parse_one(adapter: object, symbol: Symbol) -> None:
    a = adapter()  # type: ignore[operator]
    lo = day_ns("2024-03-01") - (8 * H if adapter is OkxArchive else 0)  # OKX days are UTC+8 days
    f = a.archive_file(symbol, T, None, D, lo)
    assert f.checksum_path is None
    with pytest.raises(ProtocolDrift, match=f"{a.name} publishes no checksum files"):
        a.parse_checksum(f, b"0" * 64)
