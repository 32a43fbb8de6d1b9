"""Live recordings (streams) and scheduled jobs.

Both are optional parts of a service (``svc.start_stream``..., ``svc.scheduler``):
when one is absent the routes answer 503 naming it instead of failing.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import JSONBody

from dccd.ops import InvalidRequest, parse_stream
from dccd.sources.registry import list_adapters

from . import params
from .context import WebContext

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class StreamBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /api/v1/streams``: symbols as ``BTC/USDT``; type trades, ohlc (with span) or book."""

    exchange: str
    symbols: list[str]
    type: str
    span: str | None = None


def _id(value: str, field: str) -> str:
    if not _ID.fullmatch(value):
        raise params.bad(field, f"{value[:80]!r} is not an id")
    return value


class ControlController(Controller):
    """``/api/v1/streams`` and ``/api/v1/jobs``."""

    path = "/api/v1"
    tags = ("streams", "jobs")

    @get("/streams", summary="Live recordings and their state")
    async def list_streams(self, ctx: WebContext) -> list[dict[str, Any]]:
        """Every stream: state (connected/reconnecting/stopped), messages, rows, reconnects, gaps."""
        return [msgspec.to_builtins(s) for s in ctx.with_storage("streams", "live streams").list_streams()]

    @post("/streams", status_code=201, summary="Start a live recording")
    async def start_stream(self, ctx: WebContext, data: JSONBody[StreamBody]) -> dict[str, Any]:
        """Validate and start it (the service checks that the exchange declares the live feed); returns its id."""
        req = parse_stream(data.exchange, data.symbols, data.type, known_exchanges=list_adapters(), span=data.span)
        stream_id = await ctx.with_storage("streams", "live streams").start_stream(req)
        return {"stream_id": stream_id}

    @delete("/streams/{stream_id:str}", status_code=200, summary="Stop a live recording")
    async def stop_stream(self, ctx: WebContext, stream_id: str) -> dict[str, Any]:
        """Stop the stream (its writer drains); 404 if there is no such running stream."""
        svc = ctx.with_storage("streams", "live streams")
        if not await svc.stop_stream(_id(stream_id, "stream_id")):
            raise ctx.not_found("stream_id", f"running stream {stream_id!r}")
        return {"stopped": stream_id}

    @get("/jobs", summary="Scheduled jobs")
    async def list_jobs(self, ctx: WebContext) -> list[dict[str, Any]]:
        """Configured and created jobs with their schedules and next run."""
        return [msgspec.to_builtins(j) for j in ctx.scheduler().list_jobs()]

    @post("/jobs", status_code=201, summary="Create a job (same keys as a config job)")
    async def create_job(self, ctx: WebContext, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        """Create a job from config-style keys (exchange, symbols, type, span, start, every|cron|once...)."""
        scheduler = ctx.scheduler()
        try:
            job = await scheduler.create_job(data)
        except InvalidRequest:
            raise
        except ValueError as exc:  # the scheduler's own one-line validation messages
            raise params.bad("job", str(exc)) from None
        out: dict[str, Any] = msgspec.to_builtins(job)
        return out

    @delete("/jobs/{job_id:str}", status_code=200, summary="Delete a job (its data stays)")
    async def delete_job(self, ctx: WebContext, job_id: str) -> dict[str, Any]:
        """Remove the job from the schedule; 404 if unknown."""
        if not await ctx.scheduler().delete_job(_id(job_id, "job_id")):
            raise ctx.not_found("job_id", f"job {job_id!r}")
        return {"deleted": job_id}

    @post("/jobs/{job_id:str}/run", status_code=202, summary="Run a job now")
    async def run_job(self, ctx: WebContext, job_id: str) -> dict[str, Any]:
        """Start the job's backfill now, outside its schedule; returns the run ids."""
        scheduler = ctx.scheduler()
        try:
            run_ids = await scheduler.run_now(_id(job_id, "job_id"))
        except KeyError:
            raise ctx.not_found("job_id", f"job {job_id!r}") from None
        return {"run_ids": list(run_ids), "runs": [f"/api/v1/runs/{r}" for r in run_ids]}
