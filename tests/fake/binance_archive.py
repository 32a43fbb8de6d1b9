"""A fake ``data.binance.vision`` on 127.0.0.1: zipped CSVs + ``.CHECKSUM`` built from the fake REST's own tape.

Every file is generated from the :class:`~tests.fake.binance.FakeBinance` it is
given, through the same functions that answer its REST requests
(``Tape.kline_json``, ``Tape.trades_json``, ``Tape.agg_json``), so archive,
REST and WebSocket agree id for id and value for value. USD-M ``fundingRate``
and ``metrics`` come from the functions behind the fake futures host
(:func:`tests.fake.venue.rate`, :func:`~tests.fake.venue.open_interest`).

Paths are Binance's::

    /data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip (+ .CHECKSUM)
    /data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2024-03.zip
    /data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-03.zip

What real archives do, on demand (by the file's date label, ``YYYY-MM-DD`` or ``YYYY-MM``):

- ``missing``: 404 for the file and its checksum (maintenance days);
- ``bad_checksum``: the ``.CHECKSUM`` states another digest (the file is "corrupt");
- ``reuploaded``: the first download of the file is a stale version (one price differs), later ones the
  corrected file its checksum describes (a correction in flight);
- spot times in **microseconds** from ``us_from`` (2025-01-01, as Binance), milliseconds before;
- a header row on USD-M files and on the dates in ``header`` (spot has none by default);
- ``unlisted_404``: 404 for klines/trades/aggTrades files (and checksums) of periods that end before the
  market's listing, as the real archive (off by default: an empty file is served).

``requests`` logs ``(path, status)``; :meth:`count` counts downloads of a kind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from litestar import Litestar, Response, get
from litestar import Request as LitestarRequest

from dccd.domain.spans import Span
from tests.fake.binance import FakeBinance
from tests.fake.venue import open_interest, rate

US_FROM_MS = 1_735_689_600_000  # 2025-01-01T00:00Z: Binance spot files switch to microseconds
FUNDING_EVERY_MS = 8 * 3_600_000
METRICS_EVERY_MS = 5 * 60_000
_PATH = re.compile(
    r"^/data/(?P<market>spot|futures/um)/(?P<gran>daily|monthly)/(?P<kind>klines|trades|aggTrades|fundingRate|metrics)"
    r"/(?P<sym>[A-Z0-9]+)/(?:(?P<iv>[0-9a-z]+)/)?(?P<name>[A-Za-z0-9-]+)\.zip(?P<check>\.CHECKSUM)?$"
)
_HEADERS = {
    "klines": "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore",
    "trades": "id,price,qty,quote_qty,time,is_buyer_maker",
    "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker",
    "fundingRate": "calc_time,funding_interval_hours,last_funding_rate",
    "metrics": "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
    "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio",
}


def _ms(label: str) -> tuple[int, int]:
    """``[lo, hi)`` in ms of a ``YYYY-MM-DD`` or ``YYYY-MM`` label (UTC)."""
    parts = [int(p) for p in label.split("-")]
    if len(parts) == 3:
        lo = dt.datetime(parts[0], parts[1], parts[2], tzinfo=dt.UTC)
        hi = lo + dt.timedelta(days=1)
    else:
        lo = dt.datetime(parts[0], parts[1], 1, tzinfo=dt.UTC)
        hi = dt.datetime(parts[0] + parts[1] // 12, parts[1] % 12 + 1, 1, tzinfo=dt.UTC)
    return int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)


def zipped(name: str, text: str) -> bytes:
    """One CSV member in a deflated zip (what Binance publishes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, text)
    return buf.getvalue()


@dataclass
class FakeBinanceArchive:
    """The fake archive of ``rest``'s markets (see the module docstring)."""

    rest: FakeBinance
    missing: set[str] = field(default_factory=set)
    bad_checksum: set[str] = field(default_factory=set)
    reuploaded: set[str] = field(default_factory=set)
    header: set[str] = field(default_factory=set)
    us_from_ms: int = US_FROM_MS
    stall_after: int | None = None  # zip downloads answered before every further one hangs (a killed run)
    unlisted_404: bool = False  # no file for a period that ends before the market's listing
    url: str = ""
    requests: list[tuple[str, int]] = field(default_factory=list)
    _cache: dict[str, bytes] = field(default_factory=dict)
    _served: dict[str, int] = field(default_factory=dict)

    # --- observation ---

    def count(self, suffix: str = ".zip", *, status: int | None = 200) -> int:
        """Requests whose path ends with ``suffix`` (answered ``status``; None: any)."""
        return sum(1 for p, s in self.requests if p.endswith(suffix) and (status is None or s == status))

    # --- content ---

    def csv(self, kind: str, market: str, sym: str, iv: str | None, label: str) -> str:
        """The CSV text of one file (no header: that is added by :meth:`body`)."""
        lo, hi = _ms(label)
        now_ms = int(self.rest.clock() * 1000)
        if kind == "fundingRate":
            first = -(-lo // FUNDING_EVERY_MS) * FUNDING_EVERY_MS
            return "".join(f"{t},8,{rate(sym, t)}\n" for t in range(first, hi, FUNDING_EVERY_MS))
        if kind == "metrics":
            rows = []
            for t in range(lo, hi, METRICS_EVERY_MS):
                coins, value = open_interest(sym, t)
                stamp = dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                rows.append(f"{stamp},{sym},{coins},{value},1.0,1.0,1.0,1.0\n")
            return "".join(rows)
        tape = self.rest.tapes[sym]
        us = market == "spot" and lo >= self.us_from_ms
        if kind == "klines":
            assert iv is not None
            span = Span("1M" if iv == "1mo" else iv)
            opens = tape.bar_opens(span, lo, hi - 1, 10**9, min(now_ms, hi - 1))
            out = []
            for t in opens:
                r = json.loads(tape.kline_json(span, t, now_ms))
                if us:
                    r[0], r[6] = r[0] * 1000, r[6] * 1000 + 999
                out.append(",".join(str(v) for v in r) + "\n")
            return "".join(out)
        first_g, last_g = tape.first_group_at(lo), tape.last_group_at(hi - 1)
        if kind == "aggTrades":
            out = []
            for g in range(first_g, last_g + 1):
                a = json.loads(tape.agg_json(g))
                t = a["T"] * 1000 if us else a["T"]
                out.append(f"{a['a']},{a['p']},{a['q']},{a['f']},{a['l']},{t},{str(a['m']).lower()},True\n")
            return "".join(out)
        k = tape.market.trades_per_ms
        if last_g < first_g:
            return ""
        out = []
        for row in tape.trades_json(first_g * k, last_g * k + k - 1):
            r = json.loads(row)
            t = r["time"] * 1000 if us else r["time"]
            tail = ",True" if market == "spot" else ""
            out.append(
                f"{r['id']},{r['price']},{r['qty']},{r['quoteQty']},{t},{str(r['isBuyerMaker']).lower()}{tail}\n"
            )
        return "".join(out)

    def body(self, path: str) -> bytes | None:
        """The zip served at ``path`` (None: not a file of this archive)."""
        if path in self._cache:
            return self._cache[path]
        m = _PATH.match(path)
        if m is None or m["check"] or m["sym"] not in self.rest.tapes:
            return None
        date = _label(path)
        assert date is not None
        listed_ms = self.rest.tapes[m["sym"]].market.listed_ms
        if self.unlisted_404 and m["kind"] in ("klines", "trades", "aggTrades") and _ms(date)[1] <= listed_ms:
            return None
        text = self.csv(m["kind"], "spot" if m["market"] == "spot" else "um", m["sym"], m["iv"], date)
        if m["market"] != "spot" or date in self.header:
            text = _HEADERS[m["kind"]] + "\n" + text
        data = zipped(m["name"] + ".csv", text)
        self._cache[path] = data
        return data

    def checksum(self, path: str) -> bytes | None:
        """The ``.CHECKSUM`` of the zip at ``path``."""
        data = self.body(path)
        if data is None:
            return None
        digest = hashlib.sha256(data).hexdigest()
        if _label(path) in self.bad_checksum:
            digest = hashlib.sha256(data + b"corrupt").hexdigest()
        return f"{digest}  {path.rsplit('/', 1)[-1]}\n".encode()

    # --- the server ---

    def handle(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        """``(status, body, headers)`` of a GET."""
        label = _label(path)
        if label is not None and label in self.missing:
            status, body, headers = 404, b"<Error><Code>NoSuchKey</Code></Error>", {}
        elif path.endswith(".CHECKSUM"):
            check = self.checksum(path[: -len(".CHECKSUM")])
            status, body, headers = (200, check, {}) if check is not None else (404, b"", {})
        else:
            data = self.body(path)
            if data is None:
                status, body, headers = 404, b"<Error><Code>NoSuchKey</Code></Error>", {}
            else:
                n = self._served[path] = self._served.get(path, 0) + 1
                if label in self.reuploaded and n == 1:  # the stale version, before the correction
                    m = _PATH.match(path)
                    assert m is not None
                    text = zipfile.ZipFile(io.BytesIO(data)).read(m["name"] + ".csv").decode()
                    data = zipped(m["name"] + ".csv", text.replace(",", ",9", 1))
                status, body = 200, data
                headers = {"ETag": f'"{hashlib.md5(data).hexdigest()}"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}  # fmt: skip
        self.requests.append((path, status))
        return status, body, headers

    def mock_transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake without sockets."""

        def handler(request: httpx.Request) -> httpx.Response:
            status, body, headers = self.handle(request.url.path)
            return httpx.Response(status, headers=headers, content=body)

        return httpx.MockTransport(handler)

    def app(self) -> Litestar:
        """The Litestar app of this fake."""

        @get(path="/data/{rest:path}")
        async def serve_file(request: LitestarRequest[Any, Any, Any]) -> Response[bytes]:
            path = request.url.path
            if self.stall_after is not None and path.endswith(".zip") and self.count(".zip") >= self.stall_after:
                await trio.sleep_forever()
            status, body, headers = await trio.to_thread.run_sync(self.handle, request.url.path)
            return Response(body, status_code=status, headers=headers, media_type="application/zip")

        return Litestar([serve_file], logging_config=None, openapi_config=None)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on an ephemeral 127.0.0.1 port until cancelled; ``started(url)``."""
        cfg = HypercornConfig()
        cfg.bind = ["127.0.0.1:0"]
        cfg.errorlog = logging.getLogger("tests.fake.binance_archive")
        cfg.accesslog = None
        cfg.graceful_timeout = 0.1
        async with trio.open_nursery() as nursery:
            app: Any = self.app()
            binds = await nursery.start(lambda task_status: hypercorn_serve(app, cfg, task_status=task_status))
            self.url = binds[0]
            task_status.started(self.url)


def _label(path: str) -> str | None:
    m = re.search(r"-(\d{4}-\d{2}(?:-\d{2})?)\.zip", path)
    return m.group(1) if m else None


@asynccontextmanager
async def open_fake_archive(rest: FakeBinance, **kwargs: Any) -> AsyncIterator[FakeBinanceArchive]:
    """Run a fake Binance archive of ``rest``'s tape on 127.0.0.1 for the block; ``fake.url`` is its origin."""
    fake = FakeBinanceArchive(rest, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()


Clock = Callable[[], float]
