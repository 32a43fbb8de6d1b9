"""Binance's public data archive (``data.binance.vision``) as an :class:`~dccd.sources.archive.ArchiveAdapter`.

Paths: ``/data/{spot|futures/um}/{daily|monthly}/{kind}/<SYM>[/<interval>]/<SYM>-<interval|kind>-<date>.zip``,
each with a ``.CHECKSUM`` sibling (``<sha256>  <filename>``). Files are UTC days and calendar months.

Columns (no header on spot; USD-M files gained a header row part-way through history, sniffed per file):

- klines: open time, open, high, low, close, volume, close time, quote volume, count, taker buy base,
  taker buy quote, ignore. Interval ``1mo`` is dccd's ``1M``.
- trades: id, price, qty, quote qty, time, is buyer maker[, is best match] (spot has the 7th column).
- aggTrades: agg id, price, qty, first id, last id, time, is buyer maker[, is best match]. Read for
  completeness (``planned=False``): the lake's trades are individual fills with the trade ids REST and
  WebSocket use, and an aggregate id is not one, so the planner fetches ``trades`` files.
- fundingRate (USD-M, monthly): calc time, funding interval hours, last funding rate. The archive has no
  mark price (null in the lake, where REST's ``markPrice`` fills it).
- metrics (USD-M, daily, every 5 min): create time (``YYYY-MM-DD HH:MM:SS`` UTC), symbol, sum open interest,
  sum open interest value, ratios (not stored).

Spot times are microseconds from 2025-01-01 (milliseconds before); the unit is sniffed per file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability, ProtocolDrift, UnsupportedSymbol
from dccd.sources.archive import (
    ArchiveCapability,
    ArchiveFile,
    Granularity,
    Source,
    StreamSource,
    archive_capability,
    coalesce,
    first_line,
    iter_csv,
    market_of,
    ns_from_epoch,
    open_member,
    period_label,
    side_from_buyer_maker,
    trim,
    utc_period,
)
from dccd.sources.binance.common import NAME

ARCHIVE_URL: Final = "https://data.binance.vision"

_DAILY_SPANS: Final = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
_MONTHLY_SPANS: Final = (*_DAILY_SPANS, "3d", "1w", "1M")
_FUT_SPANS_D: Final = tuple(s for s in _DAILY_SPANS if s != "1s")  # USD-M publishes no 1s klines
_FUT_SPANS_M: Final = tuple(s for s in _MONTHLY_SPANS if s != "1s")


def _day(y: int, m: int, d: int) -> int:
    return int(dt.datetime(y, m, d, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


SPOT_FROM: Final = _day(2017, 8, 17)  # BTCUSDT's listing: the archive's first spot day
UM_FROM: Final = _day(2019, 12, 31)  # BTCUSDT perpetual klines/trades
UM_FUNDING_FROM: Final = _day(2020, 1, 1)
UM_METRICS_FROM: Final = _day(2021, 12, 1)
_D, _M = Granularity.DAILY, Granularity.MONTHLY
_MONTH_DELAY_S: Final = 7 * 86_400  # monthly files appear in the first week of the next month
# CSV text per parsed block: 4 MiB parses with less CPU than 16 MiB (measured on a 2M-trade day file:
# 0.54 vs 0.82 CPU-s) and yields its first rows 4x sooner, so the writer starts while the rest parses.
BLOCK_BYTES: Final = 1 << 22


def _caps() -> tuple[ArchiveCapability, ...]:
    caps: list[ArchiveCapability] = []
    for market, first, spans_d, spans_m in (
        ("spot", SPOT_FROM, _DAILY_SPANS, _MONTHLY_SPANS),
        ("perp", UM_FROM, _FUT_SPANS_D, _FUT_SPANS_M),
    ):
        caps += [
            ArchiveCapability(DataType.OHLC, "klines", market, _D, first, spans_d),
            ArchiveCapability(DataType.OHLC, "klines", market, _M, first, spans_m, delay_s=_MONTH_DELAY_S),
            ArchiveCapability(DataType.TRADES, "trades", market, _D, first),
            ArchiveCapability(DataType.TRADES, "trades", market, _M, first, delay_s=_MONTH_DELAY_S),
            ArchiveCapability(DataType.TRADES, "aggTrades", market, _D, first, planned=False),
            ArchiveCapability(DataType.TRADES, "aggTrades", market, _M, first, delay_s=_MONTH_DELAY_S, planned=False),
        ]
    caps += [
        ArchiveCapability(DataType.FUNDING, "fundingRate", "perp", _M, UM_FUNDING_FROM, delay_s=_MONTH_DELAY_S),
        ArchiveCapability(DataType.OI, "metrics", "perp", _D, UM_METRICS_FROM),
    ]
    return tuple(caps)


CAPABILITIES: Final = _caps()


def native(symbol: Symbol) -> str:
    """``BTC/USDT`` and ``BTC/USDT:perp`` -> ``BTCUSDT`` (USD-M perpetuals share the spot name).

    Raises:
        UnsupportedSymbol: a market kind Binance's archive does not hold.
    """
    if symbol.market not in (None, "perp"):
        raise UnsupportedSymbol(NAME, str(symbol), "has no Binance archive")
    return f"{symbol.base}{symbol.quote}"


def interval_name(span: Span) -> str:
    """dccd span label -> Binance archive interval (``1M`` -> ``1mo``)."""
    return "1mo" if span.label == "1M" else span.label


def archive_period(granularity: Granularity, ts_ns: int) -> tuple[int, int]:
    """Binance files are UTC days and UTC calendar months."""
    return utc_period(granularity, ts_ns)


def archive_file(
    symbol: Symbol,
    data_type: DataType,
    span: Span | None,
    granularity: Granularity,
    period_ns: int,
    kind: str | None = None,
) -> ArchiveFile:
    """The file of ``symbol``'s dataset for the period starting at ``period_ns``.

    ``kind`` picks a non-planned file kind (``aggTrades``); by default the planned one.

    Raises:
        NoCapability: Binance publishes no such file (type, market, span or granularity).
        UnsupportedSymbol: see :func:`native`.
    """
    market = market_of(symbol)
    sym = native(symbol)
    cap = None
    for c in CAPABILITIES:
        if kind is not None and c.kind == kind and c.market == market and c.granularity is granularity:
            cap = c
            break
    if kind is None:
        cap = archive_capability(CAPABILITIES, data_type, market, span, granularity)
    if cap is None or (span is not None and span.label not in cap.spans) or cap.data_type is not data_type:
        what = f"{data_type.value}{':' + span.label if span else ''} {granularity.value} {market}"
        raise NoCapability(NAME, f"{what} archive files")
    lo, hi = archive_period(granularity, period_ns)
    if lo != period_ns:
        raise ValueError(f"{period_ns} is not the start of a {granularity.value} period")
    date = period_label(granularity, lo)
    root = "/data/spot" if market == "spot" else "/data/futures/um"
    if cap.kind == "klines":
        assert span is not None
        iv = interval_name(span)
        path = f"{root}/{granularity.value}/klines/{sym}/{iv}/{sym}-{iv}-{date}.zip"
    else:
        path = f"{root}/{granularity.value}/{cap.kind}/{sym}/{sym}-{cap.kind}-{date}.zip"
    return ArchiveFile(
        path,
        path + ".CHECKSUM",
        lo,
        hi,
        granularity,
        data_type,
        cap.kind,
        sym,
        span.label if span is not None else None,
        market,
        NAME,
    )


def parse_checksum(file: ArchiveFile, body: bytes) -> str:
    """The SHA-256 of a ``.CHECKSUM`` file (``<hex>  <name>``); the name must be the file's.

    Raises:
        ProtocolDrift: not a checksum line of this file.
    """
    parts = body.decode("ascii", "replace").split()
    if len(parts) != 2 or len(parts[0]) != 64 or parts[1].lstrip("*") != file.name:
        raise ProtocolDrift(NAME, file.name + ".CHECKSUM", f"not a sha256sum line for {file.name}: {body[:120]!r}")
    digest = parts[0].lower()
    if any(ch not in "0123456789abcdef" for ch in digest):
        raise ProtocolDrift(NAME, file.name + ".CHECKSUM", f"not a hex digest: {parts[0]!r}")
    return digest


_F64, _I64, _STR, _BOOL = pa.float64(), pa.int64(), pa.string(), pa.bool_()
_KLINE_COLS: Final = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                      "taker_base", "taker_quote", "ignore")  # fmt: skip
_KLINE_TYPES: Final = {"open_time": _I64, "open": _F64, "high": _F64, "low": _F64, "close": _F64, "volume": _F64,
                       "quote_volume": _F64, "count": _I64}  # fmt: skip
_TRADE_COLS: Final = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
_AGG_COLS: Final = ("id", "price", "qty", "first_id", "last_id", "time", "is_buyer_maker", "is_best_match")
_TRADE_TYPES: Final = {"id": _I64, "price": _F64, "qty": _F64, "time": _I64, "is_buyer_maker": _BOOL}
_FUNDING_COLS: Final = ("calc_time", "interval_hours", "rate")
_METRICS_COLS: Final = ("create_time", "symbol", "oi", "oi_value", "r1", "r2", "r3", "r4")


def parse_archive(file: ArchiveFile, data: Source) -> pa.Table:
    """A downloaded Binance zip (bytes or path) as lake rows (loose schema), ts ascending, trimmed to its coverage.

    Raises:
        ProtocolDrift: not a zip of one CSV, or a CSV that does not parse as ``file.kind``.
    """
    tables = list(iter_archive(file, data, rows=2**62))
    if tables:
        return tables[0]
    _names, types = _columns(file, b"," * len(_AGG_COLS))
    return _convert(file, pa.table({n: pa.array([], types[n]) for n in types}))  # no rows, the lake's columns


def iter_archive(file: ArchiveFile, data: StreamSource, rows: int = 1_000_000) -> Iterator[pa.Table]:
    """:func:`parse_archive` in tables of about ``rows`` rows (bounded memory for month-long trade files);
    ``data`` may be a stream read front to back (a download in progress).

    Raises:
        ProtocolDrift: as :func:`parse_archive`.
    """
    with open_member(file, data) as stream:
        line = first_line(stream)
        if not line.strip():
            return
        names, types = _columns(file, line)
        converted = (
            trim(_convert(file, t), file.start_ns, file.end_ns)
            for t in iter_csv(file, stream, names, types, block_size=BLOCK_BYTES)
        )
        yield from coalesce(converted, rows, first_rows=rows // 4)  # a smaller first table: the writer starts sooner


def _columns(file: ArchiveFile, line: bytes) -> tuple[tuple[str, ...], dict[str, pa.DataType]]:
    if file.kind == "klines":
        return _KLINE_COLS, _KLINE_TYPES
    if file.kind in ("trades", "aggTrades"):
        cols = _TRADE_COLS if file.kind == "trades" else _AGG_COLS
        return cols[: min(len(cols), line.count(b",") + 1)], _TRADE_TYPES  # USD-M trades lack ``is_best_match``
    if file.kind == "fundingRate":
        return _FUNDING_COLS, {"calc_time": _I64, "rate": _F64}
    if file.kind == "metrics":
        return _METRICS_COLS, {"create_time": pa.timestamp("s"), "oi": _F64, "oi_value": _F64}
    raise ProtocolDrift(NAME, file.name, f"unknown archive kind {file.kind!r}")


def _convert(file: ArchiveFile, t: pa.Table) -> pa.Table:
    """One block of the CSV (columns as :func:`_columns` names them) in the lake's columns."""
    if file.kind == "klines":
        return pa.table(
            {
                "ts": ns_from_epoch(file, t["open_time"]),
                "open": t["open"],
                "high": t["high"],
                "low": t["low"],
                "close": t["close"],
                "volume": t["volume"],
                "quote_volume": t["quote_volume"],
                "trades": t["count"],
            }
        )
    if file.kind in ("trades", "aggTrades"):
        return pa.table(
            {
                "ts": ns_from_epoch(file, t["time"]),
                "id": pc.cast(t["id"], _STR),  # parsed as integers (2x faster than text), stored as text
                "price": t["price"],
                "amount": t["qty"],
                "side": side_from_buyer_maker(t["is_buyer_maker"]),
                "recv_ts": pa.nulls(t.num_rows, _I64),
            }
        )
    if file.kind == "fundingRate":
        return pa.table(
            {"ts": ns_from_epoch(file, t["calc_time"]), "rate": t["rate"], "mark_price": pa.nulls(t.num_rows, _F64)}
        )
    ts = pc.multiply(t["create_time"].combine_chunks().cast(_I64), pa.scalar(1_000_000_000, _I64))
    return pa.table({"ts": ts, "open_interest": t["oi"], "open_interest_value": t["oi_value"]})


class BinanceArchive:
    """Binance's data archive as an :class:`~dccd.sources.archive.ArchiveAdapter` (stateless)."""

    name: str = NAME
    archive_url: str = ARCHIVE_URL
    archive_capabilities: tuple[ArchiveCapability, ...] = CAPABILITIES
    archive_period = staticmethod(archive_period)
    archive_file = staticmethod(archive_file)
    parse_checksum = staticmethod(parse_checksum)
    parse_archive = staticmethod(parse_archive)
    iter_archive = staticmethod(iter_archive)
