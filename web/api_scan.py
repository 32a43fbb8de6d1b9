"""Scanners, scan runs and signals: ``/api/v1/scanners``, ``/api/v1/scans``, ``/api/v1/signals``, SSE.

``POST /api/v1/scans`` takes one scan (``{"scanner", "span", "params", "universe", "confirm"}``) or
several (``{"scans": [...]}``, sharing one read of the lake where span and universe match) and answers
202 with the run id; progress is on ``/api/v1/events`` (``signal_generated``, ``scan_completed``) and
``GET /api/v1/scans/{run_id}``; each hit also on ``/api/v1/live/signals``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
import trio
from dccd.actors.scans import SIGNALS_TOPIC, ScanOps
from litestar import Controller, get, post
from litestar.params import JSONBody
from litestar.response import ServerSentEvent

from dccd.config import schema_error
from dccd.errors import ConfigError
from dccd.scan.contract import describe, get_scanner, list_scanners
from dccd.scan.engine import ScanSpec

from . import params
from .api_live import _LAST_ID, _last_id, _open, _start
from .context import WebContext
from .errors import ApiProblem
from .frames import closing_sse, event_encoder

_RUN = re.compile(r"scan-[0-9a-f]{12}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _scans(ctx: WebContext) -> ScanOps:
    scans: ScanOps | None = ctx.with_storage("scans", "scans (config storage.path)").scans
    if scans is None:
        raise ApiProblem(503, "scans", "scans unavailable")
    return scans


def parse_scans(body: Any) -> list[ScanSpec]:
    """One scan mapping, or ``{"scans": [...]}``.

    Raises:
        ConfigError: one line naming the field.
    """
    if isinstance(body, dict) and "scans" in body:
        if set(body) != {"scans"} or not isinstance(body["scans"], list) or not body["scans"]:
            raise ConfigError("scans", 'expected {"scans": [scan, ...]} with at least one scan and no other key')
        items, prefix = body["scans"], "scans"
    else:
        items, prefix = [body], ""
    out = []
    for i, item in enumerate(items):
        try:
            out.append(msgspec.convert(item, ScanSpec, strict=False))
        except msgspec.ValidationError as exc:
            raise schema_error(exc, f"{prefix}[{i}]" if prefix else "") from None
    return out


class ScanController(Controller):
    """``/api/v1/scanners``, ``/api/v1/scans``, ``/api/v1/signals``, ``/api/v1/live/signals``."""

    path = "/api/v1"
    tags = ("scans",)

    @get("/scanners", summary="Scanners and their parameters (JSON Schema)")
    async def scanners(self) -> list[dict[str, Any]]:
        """Built-in and plugin scanners: name, version, summary, spans, params (JSON Schema), defaults."""
        out = []
        for name in list_scanners():
            try:
                out.append(describe(get_scanner(name)))
            except ConfigError as exc:  # a broken plugin is listed with its error, not hidden
                out.append({"name": name, "error": exc.message})
        return out

    @post("/scans", status_code=202, summary="Run a scan (or several) now")
    async def start_scan(self, ctx: WebContext, data: JSONBody[Any]) -> dict[str, Any]:
        """Validate, start, and answer the run id at once; 400 names a bad field."""
        specs = parse_scans(data)
        try:
            run_id = await _scans(ctx).start(specs, trigger="api")
        except trio.ClosedResourceError:
            raise ApiProblem(503, "server", "shutting down") from None
        return {"run_id": run_id, "run": f"/api/v1/scans/{run_id}", "events": f"/api/v1/events?run_id={run_id}"}

    @get("/scans/{run_id:str}", summary="A scan run's state and results")
    async def scan_run(self, ctx: WebContext, run_id: str, wait: bool = False) -> dict[str, Any]:
        """State (running/succeeded/failed), error, and per scanner symbols and hits; ``wait=true`` waits."""
        if not _RUN.fullmatch(run_id):
            raise params.bad("run_id", f"{run_id[:80]!r} is not a scan run id")
        run = _scans(ctx).get_run(run_id)
        if run is None:
            raise ctx.not_found("run_id", f"scan run {run_id!r}")
        if wait:
            with trio.move_on_after(60):
                await run.done.wait()
        info: dict[str, Any] = run.info()
        return info

    @get("/signals", summary="Stored signals, newest bar first")
    async def signals(
        self,
        ctx: WebContext,
        scanner: str | None = None,
        since: str | None = None,
        run_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Signals from ``{root}/signals`` (``scanner``, ``since`` ISO or ns, ``run_id``, ``limit`` ≤ 10000)."""
        if scanner is not None and not _NAME.fullmatch(scanner):
            raise params.bad("scanner", f"{scanner[:80]!r} is not a scanner name")
        if run_id is not None and not _RUN.fullmatch(run_id):
            raise params.bad("run_id", f"{run_id[:80]!r} is not a scan run id")
        if not 1 <= limit <= 10_000:
            raise params.bad("limit", f"{limit} is not between 1 and 10000")
        since_ns = params.timestamp(since, "since")
        rows = await _scans(ctx).signals(scanner=scanner, since_ns=since_ns, run_id=run_id, limit=limit)
        return [msgspec.to_builtins(r) for r in rows]

    @get("/live/signals", summary="SSE: signals as scans produce them (event 'signal_generated')")
    async def live_signals(
        self, ctx: WebContext, last_event_id: Annotated[str | None, _LAST_ID] = None
    ) -> ServerSentEvent:
        """One event per signal (data: the SignalGenerated JSON); ids resume with ``Last-Event-ID``."""
        _scans(ctx)
        o = ctx.options
        last_id = _last_id(last_event_id)
        feed = await _open(
            ctx,
            SIGNALS_TOPIC,
            "signals",
            event_encoder,
            window_s=0.0,
            ring=o.events_ring,
            buffer=o.events_client_buffer,
        )
        return closing_sse(ctx.feeds.stream(feed, _start(feed, last_id)))
