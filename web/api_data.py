"""Stored rows over HTTP: streamed, no row cap, in JSON, JSON lines, CSV, Parquet or Arrow IPC.

The lake's export yields byte chunks (one per DuckDB batch); each chunk is
produced in a worker thread, so a year of bars never blocks the event loop
and never sits whole in memory. ``json`` is a JSON array assembled from the
export's JSON lines as they stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any

import trio
from litestar import Controller, get
from litestar.background_tasks import BackgroundTask
from litestar.response import Stream

from dccd.domain import DatasetId
from dccd.storage.export import Export

from . import params
from .context import WebContext

MEDIA_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
_END: Any = object()


async def _chunks(export: Export, as_array: bool) -> AsyncGenerator[bytes, None]:
    """The export's chunks, each made in a worker thread; the query is closed however the stream ends."""
    it: Iterator[bytes] = iter(export)
    try:
        if as_array:
            yield b"["
        first = True
        while True:
            chunk = await trio.to_thread.run_sync(next, it, _END)
            if chunk is _END:
                break
            if as_array:  # JSON lines -> array items; to_json escapes newlines inside strings
                chunk = chunk.rstrip(b"\n").replace(b"\n", b",")
                if not chunk:
                    continue
                if not first:
                    chunk = b"," + chunk
                first = False
            yield chunk
        if as_array:
            yield b"]"
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(it.close)  # type: ignore[attr-defined]


def _filename(ds: DatasetId, fmt: str) -> str:
    span = f"_{ds.span.label}" if ds.span else ""
    ext = {"jsonl": "jsonl", "arrow": "arrows"}.get(fmt, fmt)
    return f"{ds.exchange}_{ds.symbol.slug}_{ds.data_type.value}{span}.{ext}"


class DataController(Controller):
    """``GET /api/v1/data/{type}/{exchange}/{symbol}``."""

    path = "/api/v1/data"
    tags = ("data",)

    @get("/{data_type:str}/{exchange:str}/{symbol:str}", summary="Stored rows, streamed (deduplicated, sorted by ts)")
    async def read(
        self,
        ctx: WebContext,
        data_type: str,
        exchange: str,
        symbol: str,
        span: str | None = None,
        start: str | None = None,
        end: str | None = None,
        format: str | None = None,
    ) -> Stream:
        """Rows with ``start <= ts < end`` (ISO-8601 or integer ns; open ends allowed).

        ``symbol`` is the slug (``BTC-USDT``, ``BTC-USDT-PERP``); ``span`` is
        required for ohlc; ``format`` is json (default), jsonl, csv, parquet or arrow.
        """
        # Every path parameter is parsed into a typed value before any path is built from it.
        dtype = params.data_type(data_type)
        name = params.exchange(exchange)
        sym = params.symbol_slug(symbol)
        sp = params.span_for(dtype, span)
        start_ns, end_ns = params.window(start, end)
        fmt = params.choice(format, "format", params.FORMATS, "json")
        assert fmt is not None
        ds = DatasetId(name, sym, dtype, sp)
        lake = ctx.ops.lake
        export = await trio.to_thread.run_sync(lake.export, ds, "jsonl" if fmt == "json" else fmt, start_ns, end_ns)
        body = _chunks(export, as_array=fmt == "json")

        async def _aclose() -> None:  # Litestar may leave the generator suspended on disconnect
            await body.aclose()

        headers = {"X-Dccd-Skipped-Files": str(len(export.plan.skipped))}
        if fmt in ("csv", "parquet", "arrow"):
            headers["Content-Disposition"] = f'attachment; filename="{_filename(ds, fmt)}"'
        return Stream(body, media_type=MEDIA_TYPES[fmt], headers=headers, background=BackgroundTask(_aclose))
