"""Stored rows over HTTP: streamed, no row cap, in JSON, JSON lines, columnar JSON, CSV, Parquet or Arrow IPC.

The lake's export yields byte chunks (one per DuckDB batch); each chunk is
produced in a worker thread, one chunk ahead of the socket writes, so a year
of bars never blocks the event loop and never sits whole in memory. ``json`` is a JSON array assembled from the
export's JSON lines as they stream; ``columns`` is a JSON array of column blocks
(``[{"ts": [...], "open": [...], ...}, ...]``, one per DuckDB batch), about half the bytes of
``json`` for bars and parsed without a key per row.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import structlog
import trio
from litestar import Controller, get
from litestar.background_tasks import BackgroundTask
from litestar.response import Stream

from dccd.domain import DatasetId
from dccd.storage.export import Export
from dccd.storage.snapshots import SnapshotNotFound

from . import params
from .context import WebContext
from .errors import ApiProblem

MEDIA_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "columns": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
_END: Any = object()
log = structlog.get_logger("dccd.web")


class _Failed:
    """The producer's error, handed to the response so it aborts (a truncated body must not look complete)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


async def _produce(export: Export, send: trio.MemorySendChannel[Any], scope: trio.CancelScope) -> None:
    """Make the export's chunks in a worker thread, one ahead of the sender (bounded: backpressure stays)."""
    it = iter(export)
    try:
        with scope:
            async with send:
                while True:
                    try:
                        chunk = await trio.to_thread.run_sync(next, it, _END)
                    except Exception as exc:  # e.g. a part damaged mid-read (CorruptPart)
                        await send.send(_Failed(exc))
                        return
                    if chunk is _END:
                        return
                    await send.send(chunk)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(it.close)  # the DuckDB query ends with the response


async def _chunks(export: Export, as_array: bool, nursery: trio.Nursery, what: str) -> AsyncGenerator[bytes, None]:
    """The export's chunks, produced one ahead in a task of the app's nursery (DuckDB and encoding overlap the
    socket writes); cancelled and closed however the response ends."""
    send, recv = trio.open_memory_channel[Any](1)
    scope = trio.CancelScope()
    nursery.start_soon(_produce, export, send, scope)
    try:
        async with recv:
            if as_array:
                yield b"["
            first = True
            async for chunk in recv:
                if isinstance(chunk, _Failed):
                    log.error("data.read_failed", dataset=what, error=str(chunk.exc))
                    raise chunk.exc
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
        scope.cancel()


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
        as_of: str | None = None,
    ) -> Stream:
        """Rows with ``start <= ts < end`` (ISO-8601 or integer ns; open ends allowed).

        ``symbol`` is the slug (``BTC-USDT``, ``BTC-USDT-PERP``); ``span`` is
        required for ohlc; ``format`` is json (default), jsonl, columns (column blocks), csv, parquet or arrow.
        A dataset never collected answers 404 naming the nearest stored datasets; a
        collected one with no rows in the range answers 200 with no rows. ``as_of`` (a snapshot id, tag or
        ISO time) answers the rows the lake held at that snapshot; 404 when it names none.
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
        svc = ctx.stored
        snapshot_id: int | None = None
        if as_of is not None:
            if not as_of or len(as_of) > 80:
                raise params.bad("as_of", "a snapshot id, tag or ISO time (at most 80 characters)")
            try:
                snapshot_id = (await svc.snapshots("snapshot", as_of)).snapshot_id
            except SnapshotNotFound as exc:
                raise ApiProblem(404, "as_of", str(exc)) from None
        missing = await svc.missing_dataset(ds)
        if missing is not None:  # never collected: not an empty success
            raise ApiProblem(404, "dataset", missing)
        export = await svc.export(ds, "jsonl" if fmt == "json" else fmt, start_ns, end_ns, as_of=snapshot_id)
        nursery = ctx.feeds.nursery
        if nursery is None:
            raise RuntimeError("the app's lifespan is not running")
        body = _chunks(export, fmt in ("json", "columns"), nursery, str(ds))

        async def _aclose() -> None:  # Litestar may leave the generator suspended on disconnect
            await body.aclose()

        headers = {"X-Dccd-Skipped-Files": str(len(export.plan.skipped))}
        if fmt in ("csv", "parquet", "arrow"):
            headers["Content-Disposition"] = f'attachment; filename="{_filename(ds, fmt)}"'
        return Stream(body, media_type=MEDIA_TYPES[fmt], headers=headers, background=BackgroundTask(_aclose))
