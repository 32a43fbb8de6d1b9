"""Bybit's public trade files (``public.bybit.com``) as an :class:`~dccd.sources.archive.ArchiveAdapter`.

Two kinds of daily (UTC) gzip CSV files, no checksums:

- derivatives ``/trading/<SYM>/<SYM><YYYY-MM-DD>.csv.gz``: ``timestamp,symbol,side,size,price,
  tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional[,RPI]``. ``timestamp`` is seconds as
  decimal text (``1767225600.6864``), parsed exactly (never through a float); ``trdMatchID`` is the
  execution id REST and WebSocket give (the lake ``id``); ``size`` is in base coin on linear contracts
  (the lake ``amount``, as over REST); ``side`` is the taker's (``Buy``/``Sell``).
- spot ``/spot/<SYM>/<SYM>_<YYYY-MM-DD>.csv.gz``: ``id,timestamp,price,volume,side[,rpi]``, ``timestamp``
  in ms (the unit is sniffed per file), ``side`` lowercase. ``id`` numbers the trades *within the file*
  (1, 2, ...) and is not Bybit's ``execId``, so the lake ``id`` is ``<YYYY-MM-DD>:<id>``: unique across
  days, stable across downloads (a re-download dedups), but not the id a live stream stores.

Files are read by their header row (column order and the later ``RPI``/``rpi`` column do not matter);
RPI trades are trades and are kept. Symbols map as over REST: ``BTC/USDT`` spot and ``BTC/USDT:perp``
are ``BTCUSDT``, ``BTC/USDC:perp`` is ``BTCPERP``; inverse contracts are not supported.
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
from dccd.sources.bybit.common import NAME, symbol_to_native

ARCHIVE_URL: Final = "https://public.bybit.com"


def _day(y: int, m: int, d: int) -> int:
    return int(dt.datetime(y, m, d, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


LINEAR_FROM: Final = _day(2020, 3, 25)  # BTCUSDT's first linear trade file
SPOT_FROM: Final = _day(2022, 11, 10)  # first spot trade files (unverified: the archive has no index page we read)
CAPABILITIES: Final = (
    ArchiveCapability(DataType.TRADES, "trading", "perp", Granularity.DAILY, LINEAR_FROM),
    ArchiveCapability(DataType.TRADES, "spot", "spot", Granularity.DAILY, SPOT_FROM, synthetic_ids=True),
)

_LINEAR_COLS: Final = ("timestamp", "symbol", "side", "size", "price", "tickDirection", "trdMatchID",
                       "grossValue", "homeNotional", "foreignNotional")  # fmt: skip
_SPOT_COLS: Final = ("id", "timestamp", "price", "volume", "side")


def archive_period(granularity: Granularity, ts_ns: int) -> tuple[int, int]:
    """Bybit's files are UTC days."""
    return utc_period(granularity, ts_ns)


def archive_file(
    symbol: Symbol, data_type: DataType, span: Span | None, granularity: Granularity, period_ns: int
) -> ArchiveFile:
    """The trade file of ``symbol`` for the UTC day starting at ``period_ns``.

    Raises:
        NoCapability: not trades, or not daily.
        UnsupportedSymbol: an inverse contract (see :func:`~dccd.sources.bybit.common.symbol_to_native`).
        ValueError: ``period_ns`` is not a UTC midnight.
    """
    market = market_of(symbol)
    cap = archive_capability(CAPABILITIES, data_type, market, span, granularity)
    if cap is None:
        raise NoCapability(NAME, f"{data_type.value} {granularity.value} {market} archive files")
    sym = symbol_to_native(symbol)
    lo, hi = archive_period(granularity, period_ns)
    if lo != period_ns:
        raise ValueError(f"{period_ns} is not the start of a UTC day")
    date = period_label(granularity, lo)
    path = f"/trading/{sym}/{sym}{date}.csv.gz" if market == "perp" else f"/spot/{sym}/{sym}_{date}.csv.gz"
    return ArchiveFile(path, None, lo, hi, granularity, data_type, cap.kind, sym, None, market, NAME)


def parse_archive(file: ArchiveFile, data: Source) -> pa.Table:
    """A downloaded Bybit trade file as lake trades (loose schema), ts ascending, trimmed to its day.

    Raises:
        ProtocolDrift: not gzip, a missing column, or a value that does not parse (naming it and the file).
    """
    try:
        if file.kind == "trading":
            t = cols.read_table(data, "gzip", positional=_LINEAR_COLS, required=("timestamp", "side", "size", "price", "trdMatchID"))  # fmt: skip
            ts = cols.decimal_seconds_ns(cols.column(t["timestamp"]))
            ids = cols.column(t["trdMatchID"])
            amount = cols.numbers(cols.column(t["size"]), "size")
        elif file.kind == "spot":
            t = cols.read_table(data, "gzip", positional=_SPOT_COLS, required=("id", "timestamp", "price", "volume", "side"))  # fmt: skip
            ts = ns_from_epoch(
                file, cols.integers(cols.column(t["timestamp"]), "timestamp")
            )  # ms today; sniffed per file like Binance's
            day = period_label(Granularity.DAILY, file.start_ns)
            ids = pc.binary_join_element_wise(pa.scalar(day), cols.column(t["id"]), ":")
            amount = cols.numbers(cols.column(t["volume"]), "volume")
        else:
            raise ProtocolDrift(NAME, file.name, f"unknown archive kind {file.kind!r}")
        table = pa.table(
            {
                "ts": ts,
                "id": ids,
                "price": cols.numbers(cols.column(t["price"]), "price"),
                "amount": amount,
                "side": cols.taker_side(cols.column(t["side"])),
                "recv_ts": pa.nulls(t.num_rows, pa.int64()),
            }
        )
    except (ValueError, OSError, EOFError) as exc:
        raise ProtocolDrift(NAME, file.name, str(exc)) from exc
    return cols.finish(table, file.start_ns, file.end_ns)


class BybitArchive:
    """Bybit's public trade files as an :class:`~dccd.sources.archive.ArchiveAdapter` (stateless)."""

    name: str = NAME
    archive_url: str = ARCHIVE_URL
    archive_capabilities: tuple[ArchiveCapability, ...] = CAPABILITIES
    archive_period = staticmethod(archive_period)
    archive_file = staticmethod(archive_file)
    parse_checksum = staticmethod(no_checksum_files)
    parse_archive = staticmethod(parse_archive)
