"""Backfills and run history: start (202 + run ids), list, inspect with progress, cancel.

A run is named by its id or by any unique prefix of it (the 12 characters the UI shows);
a prefix that starts several runs is a 400 naming them. Each run carries ``error``
(why it failed or is partial; null otherwise).
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody, Parameter

from dccd.ops import parse_backfill
from dccd.sources.registry import list_adapters
from dccd.storage.runs import OPERATIONS, STATES, TERMINAL, RunRecord

from . import params
from .context import WebContext
from .errors import ApiProblem

_RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CANDIDATES = 5


class BackfillBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /api/v1/backfills``: symbols as ``BTC/USDT``; start ISO/-30d/last/origin; end ISO/-1h/now."""

    exchange: str
    symbols: list[str]
    type: str
    span: str | None = None
    start: str | None = None
    end: str | None = None
    derive_from: str | None = None  # "trades": ohlc bars built from the stored trades


def run_view(record: RunRecord, active: bool) -> dict[str, Any]:
    """A run as JSON, with ``active`` (running in this process)."""
    out: dict[str, Any] = msgspec.to_builtins(record)
    out["active"] = active
    return out


def check_run_id(run_id: str) -> str:
    """Run ids are short tokens; anything else is a 400 before any lookup."""
    if not _RUN_ID.fullmatch(run_id):
        raise params.bad("run_id", f"{run_id[:80]!r} is not a run id")
    return run_id


async def load_run(ctx: WebContext, run_id: str) -> RunRecord:
    """The stored run named by a full id or a unique prefix (the short ids the UI and CLI show).

    Raises:
        ApiProblem: 404 when no run starts with ``run_id``, 400 naming the candidates when several do.
    """
    ids: list[str] = await ctx.stored.match_runs(check_run_id(run_id), limit=_CANDIDATES + 1)
    if len(ids) > 1:
        shown = ", ".join(ids[:_CANDIDATES]) + (", ..." if len(ids) > _CANDIDATES else "")
        raise ApiProblem(400, "run_id", f"{run_id!r} starts several runs ({shown}): give more characters")
    record: RunRecord | None = await ctx.stored.get_run(ids[0]) if ids else None
    if record is None:
        raise ctx.not_found("run_id", f"run {run_id!r}")
    return record


class RunsController(Controller):
    """``/api/v1/backfills`` and ``/api/v1/runs``."""

    path = "/api/v1"
    tags = ("runs",)

    @post("/backfills", status_code=202, summary="Start a backfill (one run per symbol)")
    async def create_backfill(self, ctx: WebContext, data: JSONBody[BackfillBody]) -> dict[str, Any]:
        """Validate, check the exchange's capabilities, start one run per symbol; returns at once."""
        req = parse_backfill(
            data.exchange,
            data.symbols,
            data.type,
            known_exchanges=list_adapters(),
            span=data.span,
            start=data.start,
            end=data.end,
            now_ns=time.time_ns(),
            derive_from=data.derive_from,
        )
        ctx.stored.check_backfill(req)
        run_ids = await ctx.svc.start_backfill(req)
        return {"run_ids": run_ids, "runs": [f"/api/v1/runs/{r}" for r in run_ids]}

    @get("/runs", summary="Run history, newest first")
    async def list_runs(
        self,
        ctx: WebContext,
        run_state: Annotated[str | None, Parameter(query="state")] = None,
        operation: str | None = None,
        limit: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs filtered by ``state`` and ``operation``; ``limit`` 1-1000 (default 50)."""
        st = params.choice(run_state, "state", STATES)
        op = params.choice(operation, "operation", OPERATIONS)
        n = params.limit(limit)
        records = await ctx.stored.list_runs(state=st, operation=op, limit=n)
        return [run_view(r, ctx.svc.run_is_active(r.run_id)) for r in records]

    @get("/runs/{run_id:str}", summary="One run (full id or unique prefix) with progress and its gap/reconnect events")
    async def get_run(self, ctx: WebContext, run_id: str) -> dict[str, Any]:
        """The run record, ``progress`` (done/total/unit/pages/rows) and recorded events."""
        record = await load_run(ctx, run_id)
        out = run_view(record, ctx.svc.run_is_active(record.run_id))
        out["events"] = msgspec.to_builtins(await ctx.stored.run_events(record.run_id))
        return out

    @delete("/runs/{run_id:str}", status_code=200, summary="Cancel a running run (its written rows stay)")
    async def cancel_run(self, ctx: WebContext, run_id: str) -> Response[dict[str, Any]]:
        """Stop the run, drain its writer, and return the final record; 409 if it is not running here."""
        record = await load_run(ctx, run_id)
        run_id = record.run_id
        if record.state in TERMINAL:
            raise ApiProblem(409, "run_id", f"run {run_id!r} already ended ({record.state})")
        stopped = await ctx.svc.cancel_run(run_id)
        if not stopped and record.operation == "stream":
            stopped = await ctx.svc.stop_stream(run_id)  # a stream's id is its run id
        if not stopped:
            raise ApiProblem(409, "run_id", f"run {run_id!r} is not running in this process ({record.state})")
        final = await load_run(ctx, run_id)
        return Response(run_view(final, False))
