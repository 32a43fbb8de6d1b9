"""Archive files parsed front to back while they download: the streamed zip member and the growing file."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pytest

from dccd.domain import DataType, Symbol
from dccd.domain.timeutil import NS_PER_MS, parse_iso_ns
from dccd.errors import ProtocolDrift
from dccd.sources.archive import Granularity, open_member
from dccd.sources.binance.archive import BinanceArchive
from dccd.transport.archive import DownloadAborted, GrowingFile
from tests.fake.binance_archive import zipped

BTC = Symbol.parse("BTC/USDT")
DEC1 = parse_iso_ns("2024-12-01")
ARCHIVE = BinanceArchive()
FILE = ARCHIVE.archive_file(BTC, DataType.TRADES, None, Granularity.DAILY, DEC1)


def trades_csv(n: int) -> str:
    lo = DEC1 // NS_PER_MS
    return "".join(
        f"{i},{100 + i % 7}.5,0.{i % 9 + 1},1,{lo + i * 40},{'true' if i % 3 else 'false'},True\n" for i in range(n)
    )


class _Unseekable(io.RawIOBase):
    """A write-only stream zipfile cannot seek back in: it writes sizes and CRC in a data descriptor."""

    def __init__(self) -> None:
        self.data = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        return self.data.write(b)


def test_streamed_zip_equals_the_central_directory_read() -> None:
    """A zip read front to back (header sizes, or sizes in a data descriptor) gives the same rows as
    the central-directory read of the same bytes."""
    body = zipped("t.csv", trades_csv(5000))
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("t.csv", trades_csv(5000))
    described = sink.data.getvalue()
    assert described[6] & 0x08  # bit 3: CRC and sizes come after the data
    whole = ARCHIVE.parse_archive(FILE, body)
    assert whole.num_rows == 5000
    for data in (body, described):
        streamed = list(ARCHIVE.iter_archive(FILE, io.BytesIO(data), rows=10**6))
        assert len(streamed) == 1 and streamed[0].equals(whole)


def test_streamed_zip_refuses_what_the_directory_read_refuses() -> None:
    """Streamed, a member whose CRC-32 does not match, a truncated file and a second member fail as ProtocolDrift."""
    body = bytearray(zipped("t.csv", "x" * 10_000))
    body[30 + len("t.csv") + 4] ^= 0xFF  # inside the deflated data
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", trades_csv(10))
        zf.writestr("b.csv", trades_csv(10))
    good = zipped("t.csv", trades_csv(100))
    for bad, why in ((bytes(body), "CRC|zip"), (good[: len(good) // 2], "truncated"), (two.getvalue(), "one CSV")):
        with pytest.raises(ProtocolDrift, match=why), open_member(FILE, io.BytesIO(bad)) as member:
            member.read()


def test_growing_file_is_parsed_as_it_is_written(tmp_path: Path) -> None:
    """A reader of a :class:`GrowingFile` waits for the chunks a download writes and parses exactly the file."""
    body = zipped("t.csv", trades_csv(20_000))
    path = tmp_path / "f.zip"
    tail = GrowingFile(path)
    got: list[object] = []

    def parse() -> None:
        got.extend(ARCHIVE.iter_archive(FILE, tail, rows=10**6))

    reader = threading.Thread(target=parse, daemon=True)
    reader.start()
    with path.open("wb") as fh:
        for at in range(0, len(body), 4096):
            fh.write(body[at : at + 4096])
            fh.flush()
            tail.grew(min(at + 4096, len(body)))
    tail.finish()
    reader.join(10)
    assert not reader.is_alive()
    (table,) = got
    assert table.equals(ARCHIVE.parse_archive(FILE, body))  # type: ignore[attr-defined]
    tail.close()


def test_aborted_download_ends_the_reader(tmp_path: Path) -> None:
    """An aborted download (a 404, a retry that rewrites the file) wakes a waiting reader with an error,
    never with a short, clean end of file."""
    body = zipped("t.csv", trades_csv(20_000))
    path = tmp_path / "f.zip"
    path.write_bytes(body[:5000])
    tail = GrowingFile(path)
    tail.grew(5000)
    errors: list[BaseException] = []

    def parse() -> None:
        try:
            list(ARCHIVE.iter_archive(FILE, tail, rows=10**6))
        except (DownloadAborted, ProtocolDrift) as exc:
            errors.append(exc)

    reader = threading.Thread(target=parse, daemon=True)
    reader.start()
    reader.join(0.2)
    assert reader.is_alive()  # waiting for more bytes
    tail.abort("the download is retried")
    reader.join(10)
    assert not reader.is_alive() and len(errors) == 1
    assert tail.aborted == "the download is retried"
    tail.finish()  # a finish after an abort does not make what was read valid
    assert tail.aborted is not None
    tail.close()
