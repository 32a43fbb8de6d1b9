"""Distributed backfills: ``POST /api/v1/work/backfills`` plans one into units on the bus's work queue;
``GET /api/v1/work`` shows this collector's work-queue counters (see :mod:`dccd.actors.work`).

Any process with ``bus:`` can plan; the units run on the collectors with ``bus.work_queue: true``. The
planner's runs (one per symbol) are ordinary runs: ``GET /api/v1/runs/{id}`` has their unit counts under
``progress.work`` and ``/api/v1/events`` their progress.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody

from dccd.bus.link import BusError
from dccd.ops import parse_backfill
from dccd.sources.registry import list_adapters

from .api_runs import BackfillBody
from .context import WebContext
from .errors import ApiProblem


def _work(ctx: WebContext) -> Any:
    work = getattr(ctx.svc, "work", None)
    if work is None:
        raise ApiProblem(409, "bus", "this server has no bus (bus.url): backfills cannot be distributed")
    return work


class WorkController(Controller):
    """``/api/v1/work``."""

    path = "/api/v1/work"
    tags = ("work",)

    @post("/backfills", status_code=202, summary="Plan a backfill into work units that every collector pulls")
    async def distribute(self, ctx: WebContext, data: JSONBody[BackfillBody]) -> dict[str, Any]:
        """Validate as ``POST /api/v1/backfills``, cut the range into units, queue them; returns the planner runs."""
        work = _work(ctx)
        req = parse_backfill(
            data.exchange, data.symbols, data.type, known_exchanges=list_adapters(), span=data.span,
            start=data.start, end=data.end, now_ns=time.time_ns(), derive_from=data.derive_from, source=data.source,
        )  # fmt: skip
        try:
            run_ids = await work.distribute(req)
        except BusError as exc:
            raise ApiProblem(503, "bus", str(exc)) from None
        return {"run_ids": run_ids, "runs": [f"/api/v1/runs/{r}" for r in run_ids]}

    @get("", summary="This collector's work-queue counters")
    async def status(self, ctx: WebContext) -> dict[str, Any]:
        """``enabled`` (a bus), ``worker`` (pulls units), unit counters and the shared queue's backlog."""
        work = getattr(ctx.svc, "work", None)
        if work is None:
            return {"enabled": False}
        out: dict[str, Any] = msgspec.to_builtins(work.statistics())
        return {"enabled": True, "worker": work.worker, "connected": work.link is not None, "name": work.name, **out}
