"""BitMEX's public trade files (``public.bitmex.com``) as an :class:`~dccd.sources.archive.ArchiveAdapter`.

``/data/trade/<YYYYMMDD>.csv.gz``: one gzip CSV per UTC day holding **every symbol's** trades, since
2014-11-22, no checksums. Columns ``timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,
homeNotional,foreignNotional[,trdType]``; ``timestamp`` is kdb+ text (``2018-12-05D00:00:25.948313000``),
parsed to exact ns. The lake row is what REST stores: ``id`` = ``trdMatchID``, ``amount`` = ``homeNotional``
(base currency; ``size`` in contracts where an old file has no ``homeNotional``), ``side`` the taker's.

Because one path serves every symbol, :func:`archive_file` names the symbol in ``ArchiveFile.native``
and :func:`parse_archive` keeps that symbol's rows, filtering block by block as the file streams in
(memory follows the rows kept, not the file); :func:`parse_archive_symbols` splits one download for
several symbols in one pass. Symbols map as over REST (``BTC/USD:perp`` is ``XBTUSD``, spot
``BTC/USDT`` is ``XBT_USDT``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
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
    period_label,
    utc_period,
)
from dccd.sources.bitmex.common import NAME, symbol_to_native

ARCHIVE_URL: Final = "https://public.bitmex.com"
FIRST_DAY: Final = int(dt.datetime(2014, 11, 22, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
CAPABILITIES: Final = (
    ArchiveCapability(DataType.TRADES, "trade", "perp", Granularity.DAILY, FIRST_DAY),
    ArchiveCapability(DataType.TRADES, "trade", "spot", Granularity.DAILY, FIRST_DAY),
)
_COLS: Final = ("timestamp", "symbol", "side", "size", "price", "tickDirection", "trdMatchID", "grossValue",
                "homeNotional", "foreignNotional", "trdType")  # fmt: skip
_REQUIRED: Final = ("timestamp", "symbol", "side", "size", "price", "trdMatchID")


def archive_period(granularity: Granularity, ts_ns: int) -> tuple[int, int]:
    """BitMEX's files are UTC days."""
    return utc_period(granularity, ts_ns)


def archive_file(
    symbol: Symbol, data_type: DataType, span: Span | None, granularity: Granularity, period_ns: int
) -> ArchiveFile:
    """The (all-symbol) trade file of the UTC day starting at ``period_ns``, ``native`` naming ``symbol``.

    Raises:
        NoCapability: not daily trades.
        ValueError: ``period_ns`` is not a UTC midnight.
    """
    market = market_of(symbol)
    cap = archive_capability(CAPABILITIES, data_type, market, span, granularity)
    if cap is None:
        raise NoCapability(NAME, f"{data_type.value} {granularity.value} {market} archive files")
    lo, hi = archive_period(granularity, period_ns)
    if lo != period_ns:
        raise ValueError(f"{period_ns} is not the start of a UTC day")
    path = f"/data/trade/{period_label(granularity, lo, sep='')}.csv.gz"
    return ArchiveFile(
        path, None, lo, hi, granularity, data_type, cap.kind, symbol_to_native(symbol), None, market, NAME
    )


def parse_archive(file: ArchiveFile, data: Source) -> pa.Table:
    """``file.native``'s trades of a downloaded day file (loose lake schema), ts ascending.

    Raises:
        ProtocolDrift: not gzip, a missing column or a value that does not parse (naming it and the file).
    """
    return parse_archive_symbols(file, data, [file.native])[file.native]


def parse_archive_symbols(file: ArchiveFile, data: Source, natives: Sequence[str]) -> dict[str, pa.Table]:
    """One pass over a day file: the trades of each of ``natives`` (BitMEX names), as for :func:`parse_archive`.

    Raises:
        ProtocolDrift: as :func:`parse_archive`.
    """
    wanted = pa.array(sorted(set(natives)), pa.string())

    def keep(batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.filter(pc.is_in(batch.column("symbol"), value_set=wanted))

    try:
        t = cols.read_table(data, "gzip", positional=_COLS, required=_REQUIRED, optional=("homeNotional",), keep=keep)
        size = cols.column(t["size"])
        if "homeNotional" in t.column_names:  # empty in some rows of old files: those fall back to contracts
            home = cols.column(t["homeNotional"])
            amount_text = pc.if_else(pc.equal(home, ""), size, home)
        else:
            amount_text = size
        table = pa.table(
            {
                "ts": cols.kdb_timestamp_ns(cols.column(t["timestamp"])),
                "id": cols.column(t["trdMatchID"]),
                "price": cols.numbers(cols.column(t["price"]), "price"),
                "amount": cols.numbers(amount_text, "homeNotional"),
                "side": cols.taker_side(cols.column(t["side"])),
                "recv_ts": pa.nulls(t.num_rows, pa.int64()),
            }
        )
        symbols = cols.column(t["symbol"])
    except (ValueError, OSError, EOFError) as exc:
        raise ProtocolDrift(NAME, file.name, str(exc)) from exc
    out = {}
    for native in natives:
        out[native] = cols.finish(table.filter(pc.equal(symbols, native)), file.start_ns, file.end_ns)
    return out


class BitmexArchive:
    """BitMEX's public trade files as an :class:`~dccd.sources.archive.ArchiveAdapter` (stateless)."""

    name: str = NAME
    archive_url: str = ARCHIVE_URL
    archive_capabilities: tuple[ArchiveCapability, ...] = CAPABILITIES
    archive_period = staticmethod(archive_period)
    archive_file = staticmethod(archive_file)
    parse_checksum = staticmethod(no_checksum_files)
    parse_archive = staticmethod(parse_archive)
    parse_archive_symbols = staticmethod(parse_archive_symbols)
