"""Archive files of the fake Bybit, BitMEX and OKX, built from the shared tape (:mod:`tests.fake.tape`).

Each builder returns the bytes the venue would publish for one day, with the
same trades (ids, prices, amounts, sides, times) the REST and WebSocket fakes
serve, so archive, REST and WebSocket agree id for id:

- Bybit derivatives: ``trdMatchID`` is the fake WebSocket's linear trade id
  (``00000000-0000-4000-8000-<tape id>``), the time decimal seconds with the
  trailing zeros dropped (``1704067200.1``, ``1704067200``), as Bybit writes them.
- Bybit spot: ``id`` numbers the file's trades from 1, as Bybit's spot files do.
- BitMEX: the REST fake's trades (``trade_row``: three per tape millisecond),
  all symbols in one file, kdb+ text timestamps.
- OKX: ``trade_id`` is the REST fake's ``tradeId``; a file holds the Beijing
  (UTC+8) day, ``[D-1 16:00Z, D 16:00Z)``.

``every`` thins the tape (only ids that are multiples of it traded, as if the
market were quieter) so a week stays a fast test; the expected trades are the
same functions with the same ``every``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import logging
import re
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from litestar import Litestar, Response, get
from litestar import Request as LitestarRequest

from tests.fake import bitmex as fake_bitmex
from tests.fake import bybit as fake_bybit
from tests.fake import okx as fake_okx
from tests.fake import tape
from tests.fake.venue import bar

DAY_MS = 86_400_000
BEIJING_MS = 8 * 3_600_000
BYBIT_LINEAR_HEADER = (
    "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional"
)
OKX_TRADES_HEADER = "instrument_name,trade_id,side,price,size,created_time"
# An older file's header (both languages in each cell).
OKX_TRADES_HEADER_BILINGUAL = (
    "instrument_name/币对名称,trade_id/成交ID,side/成交方向,price/成交价格,size/成交数量,created_time/成交时间"
)
OKX_CANDLES_HEADER = "open_time,open,high,low,close,vol_ccy,vol_quote,confirm"


def day_ms(date: str) -> int:
    """``2024-01-02`` -> its UTC midnight in ms."""
    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * 1000


def tape_ids(lo_ms: int, hi_ms: int, every: int = 1) -> range:
    """Tape ids (multiples of ``every``) whose time is in ``[lo_ms, hi_ms)``."""
    first = tape.first_id_at(lo_ms)
    first += -first % every
    return range(first, tape.first_id_at(hi_ms), every)


def decimal_seconds(ms: int) -> str:
    """``1704067200100`` -> ``1704067200.1``; whole seconds have no point (``1704067200``)."""
    s, frac = divmod(ms, 1000)
    return f"{s}.{frac:03d}".rstrip("0").rstrip(".")


def _gzip(lines: Iterator[str]) -> bytes:
    return gzip.compress("".join(line + "\n" for line in lines).encode(), compresslevel=1, mtime=0)


def _zip(name: str, lines: Iterator[str], encoding: str = "utf-8") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), "".join(line + "\n" for line in lines).encode(encoding)
        )
    return buf.getvalue()


# --- Bybit ---------------------------------------------------------------------------------------


def bybit_linear_id(tid: int) -> str:
    """The fake's linear execution id of tape trade ``tid`` (REST ``execId`` and WebSocket ``i`` too)."""
    return fake_bybit.linear_exec_id(tid)


def bybit_linear_file(
    native: str, date: str, *, every: int = 1, rpi: bool = False, newest_first: bool = False
) -> bytes:
    """``/trading/<SYM>/<SYM><date>.csv.gz`` of the tape (``rpi`` adds the later ``RPI`` column)."""
    lo = day_ms(date)
    ids = list(tape_ids(lo, lo + DAY_MS, every))
    if newest_first:
        ids.reverse()

    def lines() -> Iterator[str]:
        yield BYBIT_LINEAR_HEADER + (",RPI" if rpi else "")
        for tid in ids:
            t = tape.trade_at(native, tid)
            side = "Sell" if t.is_buyer_maker else "Buy"
            row = (f"{decimal_seconds(t.time_ms)},{native},{side},{t.qty},{t.price},PlusTick,{bybit_linear_id(tid)},"
                   f"{round(float(t.quote_qty) * 1e8)},{t.qty},{t.quote_qty}")  # fmt: skip
            yield row + (f",{tid % 7 == 0:d}" if rpi else "")

    return _gzip(lines())


def bybit_spot_file(native: str, date: str, *, every: int = 1, rpi: bool = True) -> bytes:
    """``/spot/<SYM>/<SYM>_<date>.csv.gz`` of the tape: ids 1.. within the file, ms times, lowercase sides."""
    lo = day_ms(date)

    def lines() -> Iterator[str]:
        yield "id,timestamp,price,volume,side" + (",rpi" if rpi else "")
        for n, tid in enumerate(tape_ids(lo, lo + DAY_MS, every), start=1):
            t = tape.trade_at(native, tid)
            yield f"{n},{t.time_ms},{t.price},{t.qty},{'sell' if t.is_buyer_maker else 'buy'}" + (",0" if rpi else "")

    return _gzip(lines())


# --- BitMEX --------------------------------------------------------------------------------------


def kdb(ms: int) -> str:
    """``1543968025948`` -> ``2018-12-05D00:00:25.948000000``."""
    t = dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC)
    return f"{t:%Y-%m-%dD%H:%M:%S}.{ms % 1000:03d}000000"


def bitmex_keys(lo_ms: int, hi_ms: int, every: int = 1) -> range:
    """The REST fake's trade indices ``k`` (multiples of ``every``) whose time is in ``[lo_ms, hi_ms)``."""
    per = fake_bitmex.PER_MS
    first = tape.first_id_at(lo_ms) * per
    first += -first % every
    return range(first, tape.first_id_at(hi_ms) * per, every)


def bitmex_trade_file(date: str, symbols: Sequence[str], *, every: int = 1, trd_type: bool = True) -> bytes:
    """``/data/trade/<YYYYMMDD>.csv.gz``: every symbol's trades of the day, interleaved by time."""
    lo = day_ms(date)

    def lines() -> Iterator[str]:
        yield "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional" + (
            ",trdType" if trd_type else ""
        )
        for k in bitmex_keys(lo, lo + DAY_MS, every):
            for sym in symbols:
                t = tape.trade_at(sym, k)
                r = fake_bitmex.trade_row(sym, k)
                yield (f"{kdb(fake_bitmex.trade_ms(k))},{sym},{r['side']},{r['size']},{t.price},{r['tickDirection']},"
                       f"{r['trdMatchID']},{r['size'] * 1000},{t.qty},{t.quote_qty}") + (",Regular" if trd_type else "")  # fmt: skip

    return _gzip(lines())


# --- OKX -----------------------------------------------------------------------------------------


def beijing_day(date: str) -> tuple[int, int]:
    """``[lo, hi)`` ms of OKX's day ``date`` (UTC+8): from 16:00 UTC the day before."""
    lo = day_ms(date) - BEIJING_MS
    return lo, lo + DAY_MS


def okx_trades_file(inst: str, date: str, *, every: int = 1, bilingual: bool = False) -> bytes:
    """``<INST>-trades-<date>.zip`` of the Beijing day (old files: a bilingual header, GB18030 text)."""
    lo, hi = beijing_day(date)

    def lines() -> Iterator[str]:
        yield OKX_TRADES_HEADER_BILINGUAL if bilingual else OKX_TRADES_HEADER
        for tid in tape_ids(lo, hi, every):
            r = fake_okx.trade_row(inst, tid)
            yield f"{inst},{r['tradeId']},{r['side']},{r['px']},{r['sz']},{r['ts']}"

    return _zip(f"{inst}-trades-{date}.csv", lines(), "gb18030" if bilingual else "utf-8")


def okx_candles_file(inst: str, date: str) -> bytes:
    """``<INST>-candlesticks-<date>.zip``: the REST fake's 1m bars of the Beijing day."""
    lo, hi = beijing_day(date)

    def lines() -> Iterator[str]:
        yield OKX_CANDLES_HEADER
        for t in range(lo, hi, 60_000):
            b = bar(f"{inst}:1m", t)
            yield f"{t},{b.open},{b.high},{b.low},{b.close},{b.volume},{b.quote},1"

    return _zip(f"{inst}-candlesticks-{date}.csv", lines())


def beijing_month(month: str) -> tuple[int, int]:
    """``[lo, hi)`` ms of OKX's month ``month`` (``YYYY-MM``, UTC+8): from 16:00 UTC the day before its 1st."""
    y, m = (int(x) for x in month.split("-"))
    nxt = f"{y + m // 12:04d}-{m % 12 + 1:02d}-01"
    return day_ms(f"{month}-01") - BEIJING_MS, day_ms(nxt) - BEIJING_MS


def okx_monthly_candles_file(inst: str, month: str) -> bytes:
    """``<INST>-candlesticks-<YYYY-MM>.zip``: the REST fake's 1m bars of the Beijing month."""
    lo, hi = beijing_month(month)

    def lines() -> Iterator[str]:
        yield OKX_CANDLES_HEADER
        for t in range(lo, hi, 60_000):
            b = bar(f"{inst}:1m", t)
            yield f"{t},{b.open},{b.high},{b.low},{b.close},{b.volume},{b.quote},1"

    return _zip(f"{inst}-candlesticks-{month}.csv", lines())


# --- the server ----------------------------------------------------------------------------------

_BYBIT_LINEAR = re.compile(r"^/trading/(?P<sym>[A-Z0-9]+)/(?P=sym)(?P<date>\d{4}-\d{2}-\d{2})\.csv\.gz$")
_BYBIT_SPOT = re.compile(r"^/spot/(?P<sym>[A-Z0-9]+)/(?P=sym)_(?P<date>\d{4}-\d{2}-\d{2})\.csv\.gz$")
_BITMEX = re.compile(r"^/data/trade/(?P<d>\d{8})\.csv\.gz$")
_OKX = re.compile(
    r"^/cdn/okex/traderecords/(?P<kind>trades|candlesticks)/daily/(?P<d>\d{8})/"
    r"(?P<inst>[A-Z0-9]+-[A-Z0-9]+(?:-SWAP)?)-(?P=kind)-(?P<date>\d{4}-\d{2}-\d{2})\.zip$"
)
_OKX_MONTHLY = re.compile(
    r"^/cdn/okex/traderecords/candlesticks/monthly/(?P<d>\d{6})/"
    r"(?P<inst>[A-Z0-9]+-[A-Z0-9]+(?:-SWAP)?)-candlesticks-(?P<date>\d{4}-\d{2})\.zip$"
)
BITMEX_SYMBOLS = ("XBTUSD", "ETHUSDT", "XBT_USDT")


@dataclass
class FakeVenueArchive:
    """The archive trees of the fake Bybit (``/trading``, ``/spot``), BitMEX (``/data/trade``) and OKX (``/cdn/okex``).

    ``missing`` dates (``YYYY-MM-DD``, OKX monthly files ``YYYY-MM``) answer 404; ``garbled`` ones serve a file whose second data row has
    a time in another format (``1.7e9``, as a float printer would write it); ``bilingual`` OKX dates have the old header; days
    not over yet by ``clock`` answer 404 (not published). ``requests`` logs ``(path, status)``.
    """

    every: int = 1
    missing: set[str] = field(default_factory=set)
    garbled: set[str] = field(default_factory=set)
    bilingual: set[str] = field(default_factory=set)
    rpi_from: str = "2025-01-01"
    bitmex_symbols: tuple[str, ...] = BITMEX_SYMBOLS
    clock: Callable[[], float] = time.time
    url: str = ""
    requests: list[tuple[str, int]] = field(default_factory=list)
    _cache: dict[str, bytes] = field(default_factory=dict)

    def count(self, prefix: str = "/", *, status: int | None = 200) -> int:
        """Requests whose path starts with ``prefix`` (answered ``status``; None: any)."""
        return sum(1 for p, s in self.requests if p.startswith(prefix) and (status is None or s == status))

    def body(self, path: str) -> tuple[str, bytes] | None:
        """``(date, file bytes)`` at ``path``, or None when it is no file of these archives."""
        if path in self._cache:
            return path, self._cache[path]
        if m := _BYBIT_LINEAR.match(path):
            date = m["date"]
            data = bybit_linear_file(m["sym"], date, every=self.every, rpi=date >= self.rpi_from)
        elif m := _BYBIT_SPOT.match(path):
            date = m["date"]
            data = bybit_spot_file(m["sym"], date, every=self.every, rpi=date >= self.rpi_from)
        elif m := _BITMEX.match(path):
            date = f"{m['d'][:4]}-{m['d'][4:6]}-{m['d'][6:]}"
            data = bitmex_trade_file(date, self.bitmex_symbols, every=self.every)
        elif m := _OKX_MONTHLY.match(path):
            date = m["date"]
            data = okx_monthly_candles_file(m["inst"], date)
        elif m := _OKX.match(path):
            date = m["date"]
            if m["kind"] == "trades":
                data = okx_trades_file(m["inst"], date, every=self.every, bilingual=date in self.bilingual)
            else:
                data = okx_candles_file(m["inst"], date)
        else:
            return None
        if date in self.garbled:
            text = gzip.decompress(data) if path.endswith(".gz") else b""
            lines = text.split(b"\n")
            first = lines[2].split(b",", 1)
            lines[2] = b"1.7e9," + first[1]
            data = gzip.compress(b"\n".join(lines), mtime=0)
        self._cache[path] = data
        return date, data

    def handle(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        """``(status, body, headers)`` of a GET."""
        date = _date_in(path)
        over = date is not None and _day_end_ms(path, date) <= self.clock() * 1000
        found = self.body(path) if date is not None and date not in self.missing and over else None
        if found is None:
            status, body, headers = 404, b"<Error><Code>NoSuchKey</Code></Error>", {}
        else:
            status, body = 200, found[1]
            headers = {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}
        self.requests.append((path, status))
        return status, body, headers

    def app(self) -> Litestar:
        """The Litestar app of this fake."""

        @get(path="/{rest:path}")
        async def serve_file(request: LitestarRequest[Any, Any, Any]) -> Response[bytes]:
            status, body, headers = await trio.to_thread.run_sync(self.handle, request.url.path)
            return Response(body, status_code=status, headers=headers, media_type="application/octet-stream")

        return Litestar([serve_file], logging_config=None, openapi_config=None)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on an ephemeral 127.0.0.1 port until cancelled; ``started(url)``."""
        cfg = HypercornConfig()
        cfg.bind = ["127.0.0.1:0"]
        cfg.errorlog = logging.getLogger("tests.fake.archive_venues")
        cfg.accesslog = None
        cfg.graceful_timeout = 0.1
        async with trio.open_nursery() as nursery:
            app: Any = self.app()
            binds = await nursery.start(lambda task_status: hypercorn_serve(app, cfg, task_status=task_status))
            self.url = binds[0]
            task_status.started(self.url)


def _date_in(path: str) -> str | None:
    for pattern in (_BYBIT_LINEAR, _BYBIT_SPOT, _OKX, _OKX_MONTHLY):
        if m := pattern.match(path):
            return m["date"]
    if m := _BITMEX.match(path):
        return f"{m['d'][:4]}-{m['d'][4:6]}-{m['d'][6:]}"
    return None


def _day_end_ms(path: str, date: str) -> int:
    """When the day (OKX: or month) of a file is over (OKX's Beijing day ends at 16:00 UTC)."""
    if path.startswith("/cdn/okex/") and len(date) == 7:
        return beijing_month(date)[1]
    return beijing_day(date)[1] if path.startswith("/cdn/okex/") else day_ms(date) + DAY_MS


@asynccontextmanager
async def open_fake_venue_archive(**kwargs: Any) -> AsyncIterator[FakeVenueArchive]:
    """Run the fake Bybit/BitMEX/OKX archives on 127.0.0.1 for the block; ``fake.url`` is the origin."""
    fake = FakeVenueArchive(**kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
