"""Column-wise parsing of exchange archive files (Bybit, BitMEX, OKX), no per-row Python.

Archive files are CSV (gzip or zip). :func:`read_table` reads one with pyarrow's
CSV reader (streamed, columns found by the header's names), every column as text, so each value is
parsed once by a vectorised kernel here instead of by pyarrow's type
inference (which would turn ``1767225600.6864`` into a float and lose the
last digits). The timestamp parsers are exact: text to int64 nanoseconds with
integer arithmetic only.

- :func:`decimal_seconds_ns`: Bybit derivatives' ``1767225600.6864`` (seconds
  with 0..9 decimals; digits past the nanosecond are dropped, i.e. floored).
- :func:`kdb_timestamp_ns`: BitMEX's kdb+ text ``2018-12-05D00:00:25.948313000``.
- :func:`integers`: integer epoch text (Bybit spot, OKX ms; the unit is then sniffed by
  :func:`dccd.sources.archive.ns_from_epoch`); :func:`ms_ns` when the unit is known.
- :func:`numbers`, :func:`taker_side`: prices/amounts (as ``float(text)``), ``buy``/``sell``.

Each raises :class:`ValueError` naming the first value that does not parse;
the adapters turn it into :class:`~dccd.errors.ProtocolDrift` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, Final, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

NS_PER_S: Final = 1_000_000_000
NS_PER_MS: Final = 1_000_000
_DEC_SECONDS_PLAIN: Final = r"^\d{1,10}(\.\d{0,9})?$"  # at most 19 digits: fits int64 before scaling
_DEC_SECONDS: Final = r"^(?P<s>\d{1,11})(?:\.(?P<f>\d{0,9})\d*)?$"
_KDB: Final = r"^(?P<d>\d{4}-\d{2}-\d{2}D\d{2}:\d{2}:\d{2})(?:\.(?P<f>\d{0,9}))?$"
_MS_MAX: Final = 9_223_372_036_853  # ms whose ns (any sub-ms part too) fits in int64
_S_MAX: Final = 9_223_372_035  # seconds whose ns (any fraction too) fits in int64

Column: TypeAlias = pa.Array | pa.ChunkedArray  # a column, whole or in chunks


def _all(mask: Column) -> bool:
    """Every value true (a null counts as false); true for no values, whatever the chunking."""
    return len(mask) == 0 or bool(pc.all(pc.fill_null(mask, False)).as_py())


def first_bad(values: Column, ok: Column) -> str:
    """The first value where ``ok`` is false or null, quoted (for an error message)."""
    bad = pc.filter(values, pc.invert(pc.fill_null(ok, False)))
    return repr(bad[0].as_py()) if len(bad) else "?"


def _fraction_ns(fraction: Column) -> pa.Array:
    """``"0647"`` -> 64_700_000: the fraction right-padded to 9 digits, as an integer."""
    padded = pc.utf8_rpad(pc.fill_null(fraction, ""), width=9, padding="0")
    return pc.cast(padded, pa.int64())


def decimal_seconds_ns(values: Column, what: str = "timestamp") -> pa.Array:
    """Seconds as decimal text (``1767225600.6864``, ``1704067200``) to exact int64 ns.

    Never goes through a float: ``1767225600.6864`` is ``1767225600686400000``.

    Raises:
        ValueError: a value that is not ``digits[.digits]`` (naming it and ``what``).
    """
    if _all(pc.match_substring_regex(values, _DEC_SECONDS_PLAIN)):
        # The usual file: drop the point and scale by 10**(9 - decimals); no struct, no padding.
        dot = pc.find_substring(values, ".")
        decimals = pc.if_else(pc.less(dot, 0), 0, pc.subtract(pc.subtract(pc.utf8_length(values), dot), 1))
        scale = pc.power(pa.scalar(10, pa.int64()), pc.cast(pc.subtract(9, decimals), pa.int64()))
        try:
            return pc.multiply_checked(pc.cast(pc.replace_substring(values, ".", ""), pa.int64()), scale)
        except pa.ArrowInvalid:
            pass  # an overflow: the general path below names the value
    parts = pc.extract_regex(values, _DEC_SECONDS)
    ok = parts.is_valid()
    if not _all(ok):
        raise ValueError(f"{what} {first_bad(values, ok)} is not decimal seconds")
    seconds = pc.cast(pc.struct_field(parts, "s"), pa.int64())
    fits = pc.less_equal(seconds, _S_MAX)
    if not _all(fits):
        raise ValueError(f"{what} {first_bad(values, fits)} is past the int64 nanosecond range")
    return pc.add(pc.multiply(seconds, NS_PER_S), _fraction_ns(pc.struct_field(parts, "f")))


def kdb_timestamp_ns(values: Column, what: str = "timestamp") -> pa.Array:
    """kdb+ text timestamps (``2018-12-05D00:00:25.948313000``, UTC) to exact int64 ns.

    Raises:
        ValueError: a value that is not ``YYYY-MM-DDDhh:mm:ss[.fffffffff]`` or not a real date.
    """
    parts = pc.extract_regex(values, _KDB)
    ok = parts.is_valid()
    if not _all(ok):
        raise ValueError(f"{what} {first_bad(values, ok)} is not a kdb+ timestamp")
    text = pc.struct_field(parts, "d")
    whole = pc.strptime(text, format="%Y-%m-%dD%H:%M:%S", unit="s", error_is_null=True)
    # strptime rolls 02-30 over to 03-02 and :60 to the next minute: the day and second must read back.
    day = pc.cast(pc.utf8_slice_codeunits(text, 8, 10), pa.int64())
    second = pc.cast(pc.utf8_slice_codeunits(text, 17, 19), pa.int64())
    valid = pc.fill_null(pc.and_(pc.equal(pc.day(whole), day), pc.equal(pc.second(whole), second)), False)
    if not _all(valid):
        raise ValueError(f"{what} {first_bad(values, valid)} is not a real date and time")
    seconds = pc.cast(whole, pa.int64())
    return pc.add(pc.multiply(seconds, NS_PER_S), _fraction_ns(pc.struct_field(parts, "f")))


def ms_ns(values: Column, what: str = "timestamp") -> pa.Array:
    """Integer milliseconds (text or integers) to int64 ns.

    Raises:
        ValueError: a value that is not a non-negative integer that fits.
    """
    if pa.types.is_integer(values.type):
        ms = pc.cast(values, pa.int64())
        ok = pc.and_(pc.greater_equal(ms, 0), pc.less_equal(ms, _MS_MAX))
    else:
        ok = pc.match_substring_regex(values, r"^\d{1,16}$")
        if not _all(ok):
            raise ValueError(f"{what} {first_bad(values, ok)} is not integer milliseconds")
        ms = pc.cast(values, pa.int64())
        ok = pc.less_equal(ms, _MS_MAX)
    if not _all(ok):
        raise ValueError(f"{what} {first_bad(values, ok)} is not integer milliseconds")
    return pc.multiply(ms, NS_PER_MS)


def taker_side(values: Column, what: str = "side") -> pa.Array:
    """``Buy``/``Sell``/``buy``/``sell`` to the lake's ``buy``/``sell``.

    Raises:
        ValueError: any other value.
    """
    lower = pc.utf8_lower(values)
    ok = pc.is_in(lower, value_set=pa.array(["buy", "sell"]))
    if not _all(ok):
        raise ValueError(f"{what} {first_bad(values, ok)} is not buy/sell")
    return lower


def numbers(values: Column, what: str) -> pa.Array:
    """Decimal text to float64 (correctly rounded, as ``float(text)`` does).

    Raises:
        ValueError: a value that is not a finite number.
    """
    ok = pc.match_substring_regex(values, r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
    if not _all(ok):
        raise ValueError(f"{what} {first_bad(values, ok)} is not a number")
    return pc.cast(values, pa.float64())


# --- reading -------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_text(data: bytes | str | os.PathLike[str], compression: str) -> Iterator[IO[bytes]]:
    """The CSV bytes inside an archive file (its bytes or its path), as a stream.

    ``gzip`` is decompressed by pyarrow as it is read; ``zip`` must hold one CSV member.

    Raises:
        ValueError: a zip without exactly one member, not a zip, or an unknown compression.
    """
    if compression == "gzip":
        source = pa.py_buffer(data) if isinstance(data, bytes) else os.fspath(data)
        with pa.input_stream(source, compression="gzip") as stream:
            yield stream
        return
    if compression != "zip":
        raise ValueError(f"unknown compression {compression!r}")
    raw: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        archive = zipfile.ZipFile(raw)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a zip file: {exc}") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise ValueError(f"zip holds {len(members)} files, expected one CSV")
        with archive.open(members[0]) as member:
            yield member


def header_line(stream: IO[bytes], limit: int = 4096) -> tuple[str, bytes]:
    """The first line of ``stream`` (decoded leniently: old OKX headers are not always UTF-8) and the bytes read."""
    head = b""
    while b"\n" not in head and len(head) < limit:
        chunk = stream.read(256)
        if not chunk:
            break
        head += chunk
    line, _, _ = head.partition(b"\n")
    return line.decode("utf-8", errors="replace").strip().lstrip("\ufeff"), head


class _Prefixed(io.RawIOBase):
    """``prefix`` then the rest of ``stream``: puts back what :func:`header_line` read."""

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
        self._prefix, self._stream = prefix, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_batches(
    stream: IO[bytes],
    names: Sequence[str],
    *,
    skip_header: bool,
    prefix: bytes = b"",
    types: Mapping[str, pa.DataType] | None = None,
    include: Sequence[str] | None = None,
    block_size: int = 8 << 20,
) -> Iterator[pa.RecordBatch]:
    """Stream record batches of a CSV with the given column ``names``, text unless ``types`` says otherwise.

    ``prefix`` is what was already read from ``stream`` (by :func:`header_line`).
    Memory stays at about ``block_size`` whatever the file size.

    Raises:
        ValueError: a row with another column count (pyarrow's message, with the row).
    """
    col_types = {n: pa.string() for n in names} | dict(types or {})
    source: Any = io.BufferedReader(_Prefixed(prefix, stream), buffer_size=1 << 20) if prefix else stream
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(
            column_names=list(names), skip_rows=1 if skip_header else 0, block_size=block_size
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(
            column_types=col_types, include_columns=list(include) if include else None, strings_can_be_null=False
        ),
    )
    try:
        yield from reader
    except pa.ArrowInvalid as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


_TOKEN: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def header_names(header: str, known: Sequence[str]) -> list[str]:
    """Column names of a header line, each cell mapped to the ``known`` name it contains.

    Matching is case-insensitive and finds the name inside a bilingual cell
    (old OKX files: ``trade_id/成交ID`` or ``成交ID(trade_id)``); a cell naming
    nothing known keeps its own text (``col<i>`` when it has none).
    """
    lookup = {k.lower(): k for k in known}
    names = []
    for i, cell in enumerate(header.split(",")):
        tokens = [t.lower() for t in _TOKEN.findall(cell)]
        hit = next((lookup[t] for t in tokens if t in lookup), None)
        names.append(hit or (cell.strip().lower() or f"col{i}"))
    return names


def _is_header(line: str) -> bool:
    first = line.split(",", 1)[0].strip().strip('"')
    return not (first[:1].isdigit() or first[:1] == "-")


def read_table(
    data: bytes | str | os.PathLike[str],
    compression: str,
    *,
    positional: Sequence[str],
    required: Sequence[str],
    optional: Sequence[str] = (),
    keep: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
) -> pa.Table:
    """Read an archive CSV into a table of text columns named by ``required`` (+ the ``optional`` present).

    The header row, when the first line is one, names the columns (so column
    order and extra columns such as Bybit's ``RPI`` do not matter); a file
    without one is read by ``positional`` names. ``keep`` filters each block
    as it is read (BitMEX's all-symbol files), so memory follows the rows kept.

    Raises:
        ValueError: a required column is missing, or a row does not parse.
    """
    with open_text(data, compression) as stream:
        line, _ = header_line(stream)
    if not line:
        return pa.table({n: pa.array([], pa.string()) for n in required})
    skip = _is_header(line)
    names = header_names(line, [*positional, *required, *optional]) if skip else list(positional)
    if not skip and line.count(",") + 1 > len(names):  # extra trailing columns in a header-less file
        names += [f"col{i}" for i in range(len(names), line.count(",") + 1)]
    missing = [n for n in required if n not in names]
    if missing:
        raise ValueError(f"column {missing[0]!r} missing (header: {line[:200]!r})")
    include = [*required, *(n for n in optional if n in names)]
    unique = [n if names.index(n) == i else f"{n}#{i}" for i, n in enumerate(names)]  # pyarrow wants distinct names
    batches = []
    with open_text(data, compression) as stream:  # again from the start: pyarrow reads the native stream itself
        for batch in read_batches(stream, unique, skip_header=skip, include=include):
            batches.append(keep(batch) if keep is not None else batch)
    schema = pa.schema([(n, pa.string()) for n in include])
    return pa.Table.from_batches([b for b in batches if b.num_rows], schema=schema)


def column(values: pa.ChunkedArray) -> Column:
    """A table column for the parsers here: left in its chunks (the kernels run per chunk, no copy)."""
    return values


def integers(values: Column, what: str) -> pa.Array:
    """Non-negative integer text (epoch times of any unit) to int64.

    Raises:
        ValueError: a value that is not 1..18 digits (naming it and ``what``).
    """
    ok = pc.match_substring_regex(values, r"^\d{1,18}$")
    if not _all(ok):
        raise ValueError(f"{what} {first_bad(values, ok)} is not an integer epoch time")
    return pc.cast(values, pa.int64())


def finish(table: pa.Table, start_ns: int, end_ns: int) -> pa.Table:
    """``table``'s rows with ``start_ns <= ts < end_ns`` (a file's coverage), by ``ts``.

    Both steps cost nothing for the usual file (all inside, already in order): the
    bounds are checked on the min/max first, the order on one comparison pass.
    """
    if not table.num_rows:
        return table
    lo, hi = (v.as_py() for v in pc.min_max(table["ts"]).values())
    if lo < start_ns or hi >= end_ns:
        table = table.filter(pc.and_(pc.greater_equal(table["ts"], start_ns), pc.less(table["ts"], end_ns)))
    ts = table["ts"].combine_chunks()
    if table.num_rows > 1 and not pc.all(pc.greater_equal(ts[1:], ts[:-1])).as_py():
        return table.sort_by("ts")
    return table
