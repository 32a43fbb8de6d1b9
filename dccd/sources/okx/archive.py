"""OKX's trade-record files (``static.okx.com`` CDN) as an :class:`~dccd.sources.archive.ArchiveAdapter`.

Daily zips of one CSV, no checksums, no listing:

- trades ``/cdn/okex/traderecords/trades/daily/<YYYYMMDD>/<INST>-trades-<YYYY-MM-DD>.zip``:
  ``instrument_name,trade_id,side,price,size,created_time`` (ms). ``trade_id`` is REST's ``tradeId``
  (the lake ``id``); ``size`` is in contracts for swaps, base currency for spot, as over REST.
- candles ``/cdn/okex/traderecords/candlesticks/daily/<YYYYMMDD>/<INST>-candlesticks-<YYYY-MM-DD>.zip``:
  1m bars ``open_time,open,high,low,close,vol_ccy,vol_quote,confirm``; ``vol_ccy`` is the base-currency
  volume and ``vol_quote`` the quote volume (the lake ``volume``/``quote_volume``, as over REST). Older
  files say ``confirm=0`` on every bar, so a day file's bars are all kept. Whole months also come as one
  file, ``/cdn/okex/traderecords/candlesticks/monthly/<YYYYMM>/<INST>-candlesticks-<YYYY-MM>.zip`` (same
  columns; the planner takes it for a whole missing month, as Binance's monthly files).

**Days and months follow Beijing time (UTC+8)**: the file of ``D`` holds ``[D-1 16:00Z, D 16:00Z)`` (a
month's from 16:00 UTC on the last day of the month before), so its rows land
in two UTC partitions and a UTC day needs two files; :func:`archive_period` returns these shifted days
(the planner works on the ns coverage, see :mod:`dccd.sources.archive`). Older files have bilingual
header cells (``trade_id/成交ID``) and are not always UTF-8: columns are found by the English name inside
each cell. Symbols map as over REST: ``BTC/USDT`` is ``BTC-USDT``, ``BTC/USDT:perp`` ``BTC-USDT-SWAP``.
The first days are third-party findings, not checked.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources import archive_columns as cols
from dccd.sources.archive import (
    ArchiveCapability,
    ArchiveFile,
    Granularity,
    Source,
    archive_capability,
    market_of,
    no_checksum_files,
    ns_from_epoch,
    period_label,
    utc_period,
)
from dccd.sources.okx.common import NAME, symbol_to_native

ARCHIVE_URL: Final = "https://static.okx.com"
OFFSET_NS: Final = -8 * 3_600_000_000_000  # Beijing days start at 16:00 UTC the day before
_ROOT: Final = "/cdn/okex/traderecords"


def _beijing_day(y: int, m: int, d: int) -> int:
    return int(dt.datetime(y, m, d, tzinfo=dt.UTC).timestamp()) * 1_000_000_000 + OFFSET_NS


TRADES_FROM: Final = _beijing_day(2021, 9, 1)
CANDLES_FROM: Final = _beijing_day(2021, 9, 1)
_D: Final = Granularity.DAILY
_M: Final = Granularity.MONTHLY
_MONTH_DELAY_S: Final = 7 * 86_400  # (assumed, as Binance's: a monthly file within a week of the month's end)
CAPABILITIES: Final = (
    ArchiveCapability(DataType.TRADES, "trades", "spot", _D, TRADES_FROM),
    ArchiveCapability(DataType.TRADES, "trades", "perp", _D, TRADES_FROM),
    ArchiveCapability(DataType.OHLC, "candlesticks", "spot", _D, CANDLES_FROM, ("1m",)),
    ArchiveCapability(DataType.OHLC, "candlesticks", "perp", _D, CANDLES_FROM, ("1m",)),
    ArchiveCapability(DataType.OHLC, "candlesticks", "spot", _M, CANDLES_FROM, ("1m",), delay_s=_MONTH_DELAY_S),
    ArchiveCapability(DataType.OHLC, "candlesticks", "perp", _M, CANDLES_FROM, ("1m",), delay_s=_MONTH_DELAY_S),
)
_TRADE_COLS: Final = ("instrument_name", "trade_id", "side", "price", "size", "created_time")
_CANDLE_COLS: Final = ("open_time", "open", "high", "low", "close", "vol_ccy", "vol_quote", "confirm")


def archive_period(granularity: Granularity, ts_ns: int) -> tuple[int, int]:
    """The Beijing (UTC+8) day (or month) holding ``ts_ns``: ``[D-1 16:00Z, D 16:00Z)``."""
    return utc_period(granularity, ts_ns, OFFSET_NS)


def archive_file(
    symbol: Symbol, data_type: DataType, span: Span | None, granularity: Granularity, period_ns: int
) -> ArchiveFile:
    """The file of ``symbol``'s trades or 1m candles for the Beijing day (candles: or month) starting at ``period_ns``.

    Raises:
        NoCapability: another data type, span or granularity.
        ValueError: ``period_ns`` is not the start of a Beijing day (month).
    """
    market = market_of(symbol)
    cap = archive_capability(CAPABILITIES, data_type, market, span, granularity)
    if cap is None:
        what = f"{data_type.value}{':' + span.label if span else ''} {granularity.value} {market}"
        raise NoCapability(NAME, f"{what} archive files")
    lo, hi = archive_period(granularity, period_ns)
    if lo != period_ns:
        raise ValueError(f"{period_ns} is not the start of an OKX (UTC+8) {'day' if granularity is _D else 'month'}")
    inst = symbol_to_native(symbol)
    date = period_label(granularity, lo, OFFSET_NS)
    folder = period_label(granularity, lo, OFFSET_NS, sep="")
    path = f"{_ROOT}/{cap.kind}/{granularity.value}/{folder}/{inst}-{cap.kind}-{date}.zip"
    return ArchiveFile(path, None, lo, hi, granularity, data_type, cap.kind, inst, span.label if span else None, market, NAME)  # fmt: skip


def parse_archive(file: ArchiveFile, data: Source) -> pa.Table:
    """A downloaded OKX zip as lake rows (loose schema), ts ascending, trimmed to its Beijing day (month).

    Raises:
        ProtocolDrift: not a zip of one CSV, a missing column or a value that does not parse.
    """
    try:
        if file.kind == "trades":
            t = cols.read_table(data, "zip", positional=_TRADE_COLS, required=_TRADE_COLS)
            table = pa.table(
                {
                    "ts": ns_from_epoch(file, cols.integers(cols.column(t["created_time"]), "created_time")),
                    "id": cols.column(t["trade_id"]),
                    "price": cols.numbers(cols.column(t["price"]), "price"),
                    "amount": cols.numbers(cols.column(t["size"]), "size"),
                    "side": cols.taker_side(cols.column(t["side"])),
                    "recv_ts": pa.nulls(t.num_rows, pa.int64()),
                }
            )
            other = pc.not_equal(cols.column(t["instrument_name"]), file.native)
            if pc.any(other).as_py():
                raise ValueError(f"instrument_name {cols.first_bad(cols.column(t['instrument_name']), pc.invert(other))} is not {file.native}")  # fmt: skip
        elif file.kind == "candlesticks":
            t = cols.read_table(data, "zip", positional=_CANDLE_COLS, required=_CANDLE_COLS[:7])
            table = pa.table(
                {
                    "ts": ns_from_epoch(file, cols.integers(cols.column(t["open_time"]), "open_time")),
                    **{k: cols.numbers(cols.column(t[k]), k) for k in ("open", "high", "low", "close")},
                    "volume": cols.numbers(cols.column(t["vol_ccy"]), "vol_ccy"),
                    "quote_volume": cols.numbers(cols.column(t["vol_quote"]), "vol_quote"),
                    "trades": pa.nulls(t.num_rows, pa.int64()),
                }
            )
        else:
            raise ProtocolDrift(NAME, file.name, f"unknown archive kind {file.kind!r}")
    except (ValueError, OSError, EOFError) as exc:
        raise ProtocolDrift(NAME, file.name, str(exc)) from exc
    return cols.finish(table, file.start_ns, file.end_ns)


class OkxArchive:
    """OKX's trade-record files as an :class:`~dccd.sources.archive.ArchiveAdapter` (stateless)."""

    name: str = NAME
    archive_url: str = ARCHIVE_URL
    archive_capabilities: tuple[ArchiveCapability, ...] = CAPABILITIES
    archive_period = staticmethod(archive_period)
    archive_file = staticmethod(archive_file)
    parse_checksum = staticmethod(no_checksum_files)
    parse_archive = staticmethod(parse_archive)
