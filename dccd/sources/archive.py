"""The archive adapter contract (sans-IO): exchanges' bulk history files as one more source.

Exchanges publish their history as daily/monthly files (Binance's
``data.binance.vision``, Bybit's ``public.bybit.com``, BitMEX's and OKX's
file trees). An :class:`ArchiveAdapter` says *which* files exist for a
dataset and *how* to read one; it never does I/O. The actor side
(``actors/archive.py``) downloads, verifies, parses and writes::

    cap = adapter.archive_capability(DataType.OHLC, market, span, Granularity.MONTHLY)   # None: not published
    lo, hi = adapter.archive_period(Granularity.MONTHLY, ts_ns)                        # the period holding ts
    file = adapter.archive_file(symbol, DataType.OHLC, span, Granularity.MONTHLY, lo)  # ArchiveFile
    # GET archive_url + file.path -> bytes (streamed to a temp file); GET archive_url + file.checksum_path
    digest = adapter.parse_checksum(file, checksum_body)                             # hex SHA-256 or ProtocolDrift
    table = adapter.parse_archive(file, data)                                         # pyarrow Table, lake columns
    rows outside [file.start_ns, file.end_ns) are trimmed by the caller

Rules every adapter keeps:

- **Capabilities are declared**, one :class:`ArchiveCapability` per (data
  type, venue dataset ``kind``, market, granularity): the spans it holds
  (OHLC), the first day it holds (``first_ns``: files for periods before it
  are never asked for), and ``delay_s``, how long after a period ends its file
  is expected to exist (a daily file appears the next day, a monthly one in
  the first week). ``planned=False`` marks a file kind the adapter can read
  but the planner does not use for the lake dataset (Binance ``aggTrades``
  aggregate fills, so its ids are not the trade ids REST and WebSocket use).
- **Coverage is a ns interval**, ``[start_ns, end_ns)``, not a date: a file
  covers exactly the rows whose ``ts`` falls in it. A venue whose days
  follow another time zone (OKX's UTC+8 days begin at 16:00 UTC) returns
  shifted periods from :meth:`ArchiveAdapter.archive_period` and files whose
  coverage spans two UTC days; the planner, the dedup and the writer work on
  intervals and never assume UTC days. :func:`utc_period` is the usual UTC
  calendar period.
- **Parsing is column-wise**: ``pyarrow.csv`` reads the file (no per-row
  Python), the result is a table in the lake's *loose* schema for the data
  type (``dccd.storage.schema.LOOSE_SCHEMAS``), so the writer's quality gates
  see the same columns as from REST. Timestamps are exact int64 ns: a file's
  unit (ms or µs, Binance spot switched on 2025-01-01) is sniffed per file
  from its values (:func:`ns_from_epoch`), never from its date; decimal
  seconds are parsed as text, never through a float. Whether the first line
  is a header is sniffed per file too (:func:`read_csv`). A file that does
  not parse raises :class:`~dccd.errors.ProtocolDrift` naming the file.
- **Checksums**: ``checksum_path`` is set where the venue publishes one next
  to the file (Binance ``.CHECKSUM``, ``sha256sum`` format); None elsewhere,
  where size and ETag are recorded instead.
- URLs are ``archive_url`` (the adapter's default or the configured
  override: ``exchanges.<name>.archive_url``, ``DCCD_<EXCHANGE>_ARCHIVE_URL``)
  + ``file.path``; paths are the venue's real ones, so an override is one
  origin serving the same tree (a fake, a mirror).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import gzip
import importlib
import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, Final, Protocol, runtime_checkable

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_DAY
from dccd.errors import ProtocolDrift

_fast_zlib: ModuleType | None
try:  # ISA-L inflates 2-3x faster than zlib (a dependency; zlib when it is missing)
    from isal import isal_zlib as _fast_zlib
except ImportError:  # pragma: no cover - exercised where isal is not installed
    _fast_zlib = None

NS_PER_MS: Final = 1_000_000
NS_PER_US: Final = 1_000
# Epoch values at or above this are microseconds (1e15 µs = 2001-09-09; 1e15 ms is year 33658).
US_THRESHOLD: Final = 10**15
# ... and at or above this, nanoseconds.
NS_THRESHOLD: Final = 10**18


Source = bytes | str | os.PathLike[str]
"""A downloaded file: its bytes, or the path of the file on disk (read as a stream, never whole)."""

StreamSource = Source | io.IOBase
"""A :data:`Source`, or a readable binary stream read front to back (a file still being downloaded:
:meth:`StreamingArchiveAdapter.iter_archive` accepts it)."""


class Granularity(enum.StrEnum):
    """How much time one archive file holds."""

    DAILY = "daily"
    MONTHLY = "monthly"


class ArchiveCapability(msgspec.Struct, frozen=True):
    """One kind of file an archive publishes.

    Attributes:
        data_type: the lake dataset type its rows become.
        kind: the venue's name for the file kind (``klines``, ``trades``, ``aggTrades``, ``fundingRate``, ...).
        market: ``"spot"`` or ``"perp"`` (``Symbol.market`` or ``"spot"`` when None).
        granularity: daily or monthly files.
        first_ns: start (ns UTC) of the first period the archive holds (for its oldest symbol).
        spans: OHLC spans published (dccd labels: ``1M`` for Binance's ``1mo``); empty otherwise.
        delay_s: how long after a period's end its file is expected to exist.
        planned: False when the planner must not use this kind for ``data_type`` (read-only support).
        synthetic_ids: the files carry no exchange trade id (Bybit spot numbers its rows per file), so
            the ids dccd gives their rows never equal the ids a stream stored: a period partly stored is
            still taken from the file, minus the stored rows matched on (ts, price, amount, side) counts.
    """

    data_type: DataType
    kind: str
    market: str
    granularity: Granularity
    first_ns: int
    spans: tuple[str, ...] = ()
    delay_s: int = 86_400
    planned: bool = True
    synthetic_ids: bool = False


class ArchiveFile(msgspec.Struct, frozen=True):
    """One archive file: where it is and which rows it holds.

    Attributes:
        path: the venue's path, appended to the archive origin (``/data/spot/daily/...zip``).
        checksum_path: path of the published checksum file, or None when the venue publishes none.
        start_ns, end_ns: coverage: the file holds exactly the rows with ``start_ns <= ts < end_ns``.
        granularity: daily or monthly.
        data_type: the lake dataset type.
        kind: the venue's file kind (see :class:`ArchiveCapability`).
        native: the venue's symbol (``BTCUSDT``), or ``""`` for an all-symbols file (BitMEX).
        span: OHLC span label, else None.
        market: ``"spot"``/``"perp"``.
        exchange: the adapter's name (errors name it).
    """

    path: str
    checksum_path: str | None
    start_ns: int
    end_ns: int
    granularity: Granularity
    data_type: DataType
    kind: str
    native: str
    span: str | None = None
    market: str = "spot"
    exchange: str = ""

    @property
    def name(self) -> str:
        """The file's base name (``BTCUSDT-1m-2024-03-01.zip``)."""
        return self.path.rsplit("/", 1)[-1]


@runtime_checkable
class ArchiveAdapter(Protocol):
    """What the archive actor and the planner need of an exchange's archive (stateless, sans-IO)."""

    name: str
    archive_url: str
    archive_capabilities: tuple[ArchiveCapability, ...]

    def archive_period(self, granularity: Granularity, ts_ns: int) -> tuple[int, int]:
        """The period ``[lo, hi)`` (ns) of the file of ``granularity`` holding ``ts_ns``."""
        ...

    def archive_file(
        self, symbol: Symbol, data_type: DataType, span: Span | None, granularity: Granularity, period_ns: int
    ) -> ArchiveFile:
        """The file holding the period that starts at ``period_ns`` (a start from :meth:`archive_period`).

        Raises:
            NoCapability: the archive publishes no such file.
            UnsupportedSymbol: the symbol has no archive name.
        """
        ...

    def parse_checksum(self, file: ArchiveFile, body: bytes) -> str:
        """The lowercase hex SHA-256 a checksum file states for ``file``.

        Raises:
            ProtocolDrift: not a checksum of this file.
        """
        ...

    def parse_archive(self, file: ArchiveFile, data: Source) -> pa.Table:
        """The rows of a downloaded file (bytes, or its path), in the lake's loose schema of ``file.data_type``,
        ts ascending, trimmed to the file's coverage.

        Raises:
            ProtocolDrift: the file does not parse (names the file and what was wrong).
        """
        ...


@runtime_checkable
class StreamingArchiveAdapter(ArchiveAdapter, Protocol):
    """An archive adapter that can also stream a file (optional; the actor prefers it when present)."""

    def iter_archive(self, file: ArchiveFile, data: StreamSource, rows: int = 1_000_000) -> Iterator[pa.Table]:
        """The rows of a file as :meth:`parse_archive` gives them, in tables of about ``rows`` rows each
        (each ts ascending, the tables in file order), so a file of any size fits in bounded memory.
        ``data`` may also be a stream read front to back (a download in progress, see :func:`open_member`).

        Raises:
            ProtocolDrift: as :meth:`parse_archive` (possibly after some tables were yielded).
        """
        ...


def archive_capability(
    capabilities: Sequence[ArchiveCapability],
    data_type: DataType,
    market: str,
    span: Span | None,
    granularity: Granularity,
    *,
    planned_only: bool = True,
) -> ArchiveCapability | None:
    """The capability (of ``adapter.archive_capabilities``) for this dataset and granularity, or None."""
    label = span.label if span is not None else None
    for cap in capabilities:
        if cap.data_type is not data_type or cap.market != market or cap.granularity is not granularity:
            continue
        if planned_only and not cap.planned:
            continue
        if label is not None and label not in cap.spans:
            continue
        return cap
    return None


def market_of(symbol: Symbol) -> str:
    """``"perp"`` for perpetuals, else ``"spot"``."""
    return symbol.market or "spot"


# Built-in archive adapters, imported on first use: exchange name -> "module:attribute".
ARCHIVES: Final[dict[str, str]] = {
    "binance": "dccd.sources.binance.archive:BinanceArchive",
    "bitmex": "dccd.sources.bitmex.archive:BitmexArchive",
    "bybit": "dccd.sources.bybit.archive:BybitArchive",
    "okx": "dccd.sources.okx.archive:OkxArchive",
}


def no_checksum_files(file: ArchiveFile, body: bytes) -> str:
    """``parse_checksum`` of a venue that publishes no checksum files: its files' ``checksum_path`` is None,
    so the planner never asks.

    Raises:
        ProtocolDrift: always.
    """
    raise ProtocolDrift(file.exchange, file.name, f"{file.exchange} publishes no checksum files")


def get_archive(exchange: str) -> ArchiveAdapter | None:
    """The archive adapter of ``exchange`` (an instance), or None when it publishes no archive dccd reads."""
    target = ARCHIVES.get(exchange)
    if target is None:
        return None
    module, _, attr = target.partition(":")
    adapter: ArchiveAdapter = getattr(importlib.import_module(module), attr)()
    return adapter


def has_archive(exchange: str, data_type: DataType, market: str, span: Span | None) -> bool:
    """True when ``exchange``'s archive publishes planned files (daily or monthly) for this dataset."""
    adapter = get_archive(exchange)
    if adapter is None:
        return False
    caps = adapter.archive_capabilities
    return any(archive_capability(caps, data_type, market, span, g) is not None for g in Granularity)


def archive_origin(config: Any, *, defaults: bool = True) -> Callable[[str], str | None]:
    """``exchange -> archive origin`` for a config (anything with ``.exchange(name)`` giving
    ``rest_url``/``archive_url``): the configured ``archive_url``; else the adapter's real origin,
    unless ``rest_url`` is overridden (a fake or a proxy stands in for the exchange: the real
    archive host is not asked behind its back) or ``defaults`` is False; else None (no archive).
    """

    def origin(exchange: str) -> str | None:
        settings = config.exchange(exchange)
        if getattr(settings, "archive_url", None):
            return str(settings.archive_url)
        adapter = get_archive(exchange)
        if adapter is None or not defaults:
            return None
        rest_url = getattr(settings, "rest_url", None)
        if rest_url:
            from dccd.sources.registry import get_adapter

            if rest_url.rstrip("/") != get_adapter(exchange).rest_url.rstrip("/"):
                return None
        return adapter.archive_url

    return origin


# -- periods ------------------------------------------------------------------------------------


def _month_start_ns(year: int, month: int) -> int:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def utc_period(granularity: Granularity, ts_ns: int, offset_ns: int = 0) -> tuple[int, int]:
    """The day or calendar month holding ``ts_ns``; periods start at a UTC midnight (month start) + ``offset_ns``.

    ``offset_ns=0`` gives UTC days/months. OKX's Beijing (UTC+8) days are ``offset_ns = -8 h``:
    the day labelled 2024-03-02 is ``[2024-03-01T16:00Z, 2024-03-02T16:00Z)``.
    """
    t = ts_ns - offset_ns
    if granularity is Granularity.DAILY:
        lo = t - t % NS_PER_DAY
        return lo + offset_ns, lo + NS_PER_DAY + offset_ns
    day = dt.datetime.fromtimestamp(t // 1_000_000_000, tz=dt.UTC)
    lo = _month_start_ns(day.year, day.month)
    return lo + offset_ns, _month_start_ns(day.year, day.month + 1) + offset_ns


def period_label(granularity: Granularity, period_ns: int, offset_ns: int = 0, sep: str = "-") -> str:
    """``YYYY-MM-DD`` (daily) or ``YYYY-MM`` (monthly) of a period start in its own clock."""
    d = dt.datetime.fromtimestamp((period_ns - offset_ns) // 1_000_000_000, tz=dt.UTC)
    if granularity is Granularity.DAILY:
        return f"{d.year:04d}{sep}{d.month:02d}{sep}{d.day:02d}"
    return f"{d.year:04d}{sep}{d.month:02d}"


# -- column-wise parsing helpers ----------------------------------------------------------------------


def _venue(file: ArchiveFile) -> str:
    return f"{file.exchange or 'archive'} archive"


@contextlib.contextmanager
def open_member(file: ArchiveFile, data: StreamSource) -> Iterator[io.BufferedReader]:
    """The one member of a ZIP archive as a buffered stream (``peek`` shows its first bytes).

    ``data`` as bytes or a path is read through the zip's central directory; as a stream it is read
    front to back (:class:`_StreamedMember`: local header, deflated data, CRC-32 and size checked at
    its end, a second member refused), so a file can be parsed while it downloads.

    Raises:
        ProtocolDrift: not a ZIP, or not exactly one member.
    """
    if isinstance(data, io.IOBase):
        try:
            with _StreamedMember(data) as streamed:
                yield io.BufferedReader(streamed, buffer_size=1 << 16)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise ProtocolDrift(_venue(file), file.name, f"not a readable zip: {exc}") from exc
        except Exception as exc:
            if _fast_zlib is not None and isinstance(exc, _fast_zlib.error):
                raise ProtocolDrift(_venue(file), file.name, f"not a readable zip: {exc}") from exc
            raise
        return
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")  # noqa: SIM115 - closed below
    try:
        with source, zipfile.ZipFile(source) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) != 1:
                raise ProtocolDrift(_venue(file), file.name, f"expected one CSV in the zip, found {len(infos)}")
            info = infos[0]
            if info.compress_type == zipfile.ZIP_DEFLATED and _fast_zlib is not None:
                member: Any = _Inflater(source, info)
            else:
                member = zf.open(info)
            with member:
                yield io.BufferedReader(member, buffer_size=1 << 16)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ProtocolDrift(_venue(file), file.name, f"not a readable zip: {exc}") from exc
    except Exception as exc:
        if _fast_zlib is not None and isinstance(exc, _fast_zlib.error):
            raise ProtocolDrift(_venue(file), file.name, f"not a readable zip: {exc}") from exc
        raise


class _Inflater(io.RawIOBase):
    """A deflated zip member inflated with ISA-L (``isal``, 2-3x faster than zlib), CRC-32 checked at its end.

    Raises (on read) ``zipfile.BadZipFile`` for a truncated member or a CRC mismatch.
    """

    def __init__(self, raw: Any, info: zipfile.ZipInfo) -> None:
        super().__init__()
        assert _fast_zlib is not None
        raw.seek(info.header_offset)
        header = raw.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {info.filename}")
        name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
        raw.seek(info.header_offset + 30 + name_len + extra_len)
        self._raw, self._left = raw, info.compress_size
        self._inflate = _fast_zlib.decompressobj(-15)
        self._crc, self._want_crc, self._want_size, self._size = 0, info.CRC, info.file_size, 0
        self._buf, self._pos, self._done = b"", 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        assert _fast_zlib is not None
        while self._pos >= len(self._buf):
            if self._done:
                return 0
            chunk = self._raw.read(min(self._left, 1 << 22))
            self._left -= len(chunk)
            out = self._inflate.decompress(chunk) if chunk else b""
            if not chunk or self._left <= 0:
                out += self._inflate.flush()
                self._done = True
            self._buf, self._pos = out, 0
            self._crc = _fast_zlib.crc32(out, self._crc)
            self._size += len(out)
            if self._done and (self._crc != self._want_crc or self._size != self._want_size):
                raise zipfile.BadZipFile("zip member is truncated or its CRC-32 does not match")
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n
        return n


def _u16(b: bytes, at: int) -> int:
    return int.from_bytes(b[at : at + 2], "little")


def _u32(b: bytes, at: int) -> int:
    return int.from_bytes(b[at : at + 4], "little")


def _read_exact(raw: Any, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = raw.read(n - len(out))
        if not chunk:
            raise zipfile.BadZipFile("zip file is truncated")
        out += chunk
    return out


class _StreamedMember(io.RawIOBase):
    """The first member of a zip read front to back from ``raw`` (no seek, no central directory).

    Its local header gives the compression (deflate; stored when its size is in the header) and, unless
    bit 3 of its flags defers them to a data descriptor after the data, its CRC-32 and sizes. At the end
    of the member both are checked, and the next record must be the central directory: a second member
    is refused, as the central-directory reader does.

    Raises (on read) ``zipfile.BadZipFile``.
    """

    def __init__(self, raw: Any) -> None:
        super().__init__()
        header = _read_exact(raw, 30)
        if header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("not a zip file (no local file header at its start)")
        flags, method = _u16(header, 6), _u16(header, 8)
        _read_exact(raw, _u16(header, 26) + _u16(header, 28))  # name, extra field
        self._deferred = bool(flags & 0x08)
        self._want = (_u32(header, 14), _u32(header, 22))  # CRC-32, uncompressed size (unless deferred)
        if method not in (0, zipfile.ZIP_DEFLATED) or (method == 0 and self._deferred):
            raise zipfile.BadZipFile(f"zip member compression {method} cannot be streamed")
        self._raw = raw
        self._stored_left = _u32(header, 18) if method == 0 else -1
        zmod: Any = _fast_zlib if _fast_zlib is not None else zlib
        self._zlib = zmod
        self._inflate = zmod.decompressobj(-15) if method != 0 else None
        self._crc, self._size = 0, 0
        self._buf, self._pos, self._done, self._rest = b"", 0, False, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while self._pos >= len(self._buf):
            if self._done:
                return 0
            self._buf, self._pos = self._next(), 0
            self._crc = self._zlib.crc32(self._buf, self._crc)
            self._size += len(self._buf)
            if self._done:
                self._check()
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n
        return n

    def _next(self) -> bytes:
        if self._inflate is None:  # stored
            chunk = self._raw.read(min(self._stored_left, 1 << 20)) if self._stored_left else b""
            if self._stored_left and not chunk:
                raise zipfile.BadZipFile("zip member is truncated")
            self._stored_left -= len(chunk)
            if not self._stored_left:
                self._done, self._rest = True, b""
            return bytes(chunk)
        chunk = self._raw.read(1 << 20)
        if not chunk:
            raise zipfile.BadZipFile("zip member is truncated")
        out: bytes = self._inflate.decompress(chunk)
        if self._inflate.eof:
            self._done, self._rest = True, self._inflate.unused_data
        return out

    def _check(self) -> None:
        rest = self._rest
        if len(rest) < 28:  # enough for [signature] CRC-32, two zip64 sizes and the next record's signature
            rest += self._raw.read(28 - len(rest)) or b""
        crc, size = self._want
        if self._deferred:  # data descriptor: [PK\x07\x08] CRC-32, compressed size, size (4 bytes each; zip64: 8)
            at = 4 if rest[:4] == b"PK\x07\x08" else 0
            wide = rest[at + 12 : at + 14] != b"PK"
            crc = _u32(rest, at)
            size = int.from_bytes(rest[at + 12 : at + 20], "little") if wide else _u32(rest, at + 8)
            rest = rest[at + (20 if wide else 12) :]
        if self._crc != crc or self._size & 0xFFFFFFFF != size & 0xFFFFFFFF:
            raise zipfile.BadZipFile("zip member is truncated or its CRC-32 does not match")
        if rest[:4] == b"PK\x03\x04":
            raise zipfile.BadZipFile("expected one CSV in the zip, found more")
        if rest[:4] not in (b"PK\x01\x02", b"PK\x05\x06"):
            raise zipfile.BadZipFile("no central directory after the zip member")


@contextlib.contextmanager
def open_gzip(file: ArchiveFile, data: Source) -> Iterator[io.BufferedReader]:
    """A gzip-compressed CSV (Bybit, BitMEX) as a buffered stream.

    Raises:
        ProtocolDrift: not gzip data.
    """
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with gzip.open(source, "rb") as raw:
            yield io.BufferedReader(raw, buffer_size=1 << 16)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ProtocolDrift(_venue(file), file.name, f"not readable gzip data: {exc}") from exc


_NUMERIC_START: Final = re.compile(rb"^\s*-?[0-9]")


def has_header(head: bytes) -> bool:
    """True when the first line's first field is not a number (a header row)."""
    return not _NUMERIC_START.match(head[:64])


def first_line(stream: io.BufferedReader) -> bytes:
    """The first line of a stream without consuming it (up to 64 KiB)."""
    head = stream.peek(1 << 16)
    return head.split(b"\n", 1)[0]


def read_csv(
    file: ArchiveFile,
    stream: io.BufferedReader,
    names: Sequence[str],
    types: dict[str, pa.DataType],
    *,
    header: bool | None = None,
) -> pa.Table:
    """Read a CSV stream into columns ``names`` typed by ``types`` (only those columns are kept).

    A header row (sniffed from the first line when ``header`` is None) is skipped, never trusted
    for names: venues renamed columns over time (``open_time`` vs ``Open time``), the column order
    did not change. ``pyarrow.csv`` parses in blocks on its own threads: no per-row Python.

    Raises:
        ProtocolDrift: the CSV does not parse into these columns.
    """
    skip = 1 if (has_header(first_line(stream)) if header is None else header) else 0
    try:
        return pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=list(names), skip_rows=skip, block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=list(types), strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ProtocolDrift(_venue(file), file.name, f"CSV does not parse: {exc}") from exc


def iter_csv(
    file: ArchiveFile,
    stream: io.BufferedReader,
    names: Sequence[str],
    types: dict[str, pa.DataType],
    *,
    header: bool | None = None,
    block_size: int = 1 << 24,
) -> Iterator[pa.Table]:
    """:func:`read_csv` as a stream of tables of one ``block_size`` of text each (memory stays bounded
    by a few blocks however large the file: a month of trades is tens of millions of rows).

    Raises:
        ProtocolDrift: a block does not parse into these columns.
    """
    skip = 1 if (has_header(first_line(stream)) if header is None else header) else 0
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=list(names), skip_rows=skip, block_size=block_size),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=list(types), strings_can_be_null=False
            ),
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ProtocolDrift(_venue(file), file.name, f"CSV does not parse: {exc}") from exc


def coalesce(tables: Iterator[pa.Table], rows: int, first_rows: int | None = None) -> Iterator[pa.Table]:
    """Tables of at least ``rows`` rows (the last may be smaller) from a stream of smaller ones, ts ascending each.

    The first table is yielded once it holds ``first_rows`` (default ``rows``): a smaller first table lets
    its consumer (the writer) start while the rest of the file is still being parsed.
    """
    pending: list[pa.Table] = []
    n = 0
    want = rows if first_rows is None else min(first_rows, rows)
    for table in tables:
        if not table.num_rows:
            continue
        pending.append(table)
        n += table.num_rows
        if n >= want:
            yield sort_ts(pa.concat_tables(pending))
            pending, n, want = [], 0, rows
    if pending:
        yield sort_ts(pa.concat_tables(pending))


def sort_ts(table: pa.Table) -> pa.Table:
    """``table`` ordered by ts (as is when already ascending)."""
    ts = table["ts"].combine_chunks()
    if table.num_rows > 1 and not pc.all(pc.greater_equal(ts[1:], ts[:-1])).as_py():
        return table.sort_by("ts")
    return table


def ns_from_epoch(file: ArchiveFile, values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Integer epoch times (ms, µs or ns; the unit sniffed from the values: once per file, or per block of
    a streamed file, which also reads right a file whose unit changed part-way) as int64 ns.

    Raises:
        ProtocolDrift: the file mixes units (a file is written in one unit) or holds negative times.
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.int64())
    if len(arr) == 0:
        return arr
    lo, hi = pc.min_max(arr).values()
    lo_v, hi_v = lo.as_py(), hi.as_py()
    if lo_v is None or hi_v is None or lo_v < 0:
        raise ProtocolDrift(_venue(file), file.name, "time column has empty or negative values")
    factor = _unit_factor(lo_v)
    if factor != _unit_factor(hi_v):
        raise ProtocolDrift(_venue(file), file.name, f"time column mixes units ({lo_v} .. {hi_v})")
    return pc.multiply(arr, pa.scalar(factor, pa.int64())) if factor != 1 else arr


def _unit_factor(value: int) -> int:
    if value >= NS_THRESHOLD:
        return 1
    if value >= US_THRESHOLD:
        return NS_PER_US
    return NS_PER_MS


def side_from_buyer_maker(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Taker side from ``is_buyer_maker`` (buyer is maker => the taker sold)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pc.if_else(arr, pa.scalar("sell"), pa.scalar("buy"))


def trim(table: pa.Table, start_ns: int, end_ns: int) -> pa.Table:
    """Rows with ``start_ns <= ts < end_ns`` (a file's coverage); the table itself (no copy) when all are."""
    ts = table["ts"]
    if not table.num_rows:
        return table
    lo, hi = (v.as_py() for v in pc.min_max(ts).values())
    if lo is not None and hi is not None and start_ns <= lo and hi < end_ns:
        return table
    mask = pc.and_(pc.greater_equal(ts, start_ns), pc.less(ts, end_ns))
    return table.filter(mask)


__all__ = [
    "ArchiveAdapter",
    "ArchiveCapability",
    "ArchiveFile",
    "Granularity",
    "Source",
    "StreamSource",
    "StreamingArchiveAdapter",
    "archive_capability",
    "archive_origin",
    "coalesce",
    "first_line",
    "get_archive",
    "has_archive",
    "has_header",
    "iter_csv",
    "market_of",
    "no_checksum_files",
    "ns_from_epoch",
    "open_gzip",
    "open_member",
    "period_label",
    "read_csv",
    "side_from_buyer_maker",
    "sort_ts",
    "trim",
    "utc_period",
]
