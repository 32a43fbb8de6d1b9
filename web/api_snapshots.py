"""Lake snapshots over HTTP: ``/api/v1/snapshots`` (list, create, one, diff, drop, prune).

Reads as of a snapshot are the data endpoint's ``?as_of=`` (:mod:`web.api_data`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import JSONBody

from dccd.domain.timeutil import ns_to_iso
from dccd.storage.catalog import Snapshot
from dccd.storage.snapshots import SnapshotNotFound

from . import params
from .context import WebContext
from .errors import ApiProblem


class SnapshotBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /api/v1/snapshots``: optional tag and note; ``keep`` applies retention after."""

    tag: str | None = None
    note: str | None = None
    keep: int | None = None


def _snap(s: Snapshot) -> dict[str, Any]:
    return {
        "snapshot_id": s.snapshot_id,
        "time": ns_to_iso(s.time_ns),
        "time_ns": s.time_ns,
        "tag": s.tag,
        "note": s.note,
    }


def _ref(text: str | None, field: str) -> str:
    if not text or len(text) > 80:
        raise params.bad(field, "required: a snapshot id, tag or ISO time (at most 80 characters)")
    return text


class SnapshotsController(Controller):
    """``/api/v1/snapshots``."""

    path = "/api/v1/snapshots"
    tags = ("snapshots",)

    @get("", summary="Retained snapshots with their datasets, parts, rows and bytes")
    async def list_snapshots(self, ctx: WebContext) -> list[dict[str, Any]]:
        """Oldest first."""
        items = await ctx.stored.snapshots("list_snapshots")
        return [msgspec.to_builtins(s) for s in items]

    @post("", status_code=201, summary="Take a snapshot now")
    async def create_snapshot(self, ctx: WebContext, data: JSONBody[SnapshotBody]) -> dict[str, Any]:
        """Everything committed now; 400 for a bad or taken tag."""
        try:
            snap = await ctx.stored.snapshots("create_snapshot", tag=data.tag, note=data.note, keep=data.keep)
        except ValueError as exc:
            raise params.bad("tag" if "tag" in str(exc) else "keep", str(exc)) from None
        return _snap(snap)

    @get("/diff", summary="Datasets, rows and ranges added and removed between two snapshots")
    async def diff(self, ctx: WebContext, a: str | None = None, b: str | None = None) -> list[dict[str, Any]]:
        """``?a=&b=``: ids, tags or ISO times."""
        try:
            items = await ctx.stored.snapshots("snapshot_diff", _ref(a, "a"), _ref(b, "b"))
        except SnapshotNotFound as exc:
            raise ApiProblem(404, "snapshot", str(exc)) from None
        return [msgspec.to_builtins(d) for d in items]

    @post("/prune", status_code=200, summary="Retention: keep the newest N untagged snapshots")
    async def prune(self, ctx: WebContext, keep: int) -> dict[str, Any]:
        """Tagged snapshots are kept; parts no snapshot needs any more are deleted."""
        if keep < 0:
            raise params.bad("keep", "must be 0 or more")
        dropped, deleted = await ctx.stored.snapshots("prune_snapshots", keep)
        return {"dropped": [_snap(s) for s in dropped], "parts_deleted": len(deleted)}

    @get("/{ref:str}", summary="One snapshot")
    async def get_snapshot(self, ctx: WebContext, ref: str) -> dict[str, Any]:
        """By id, tag or ISO time (the newest taken at or before it)."""
        try:
            return _snap(await ctx.stored.snapshots("snapshot", _ref(ref, "ref")))
        except SnapshotNotFound as exc:
            raise ApiProblem(404, "snapshot", str(exc)) from None

    @delete("/{ref:str}", status_code=200, summary="Drop a snapshot")
    async def drop_snapshot(self, ctx: WebContext, ref: str) -> dict[str, Any]:
        """Drop it and delete the parts only it needed."""
        try:
            snap, deleted = await ctx.stored.snapshots("drop_snapshot", _ref(ref, "ref"))
        except SnapshotNotFound as exc:
            raise ApiProblem(404, "snapshot", str(exc)) from None
        return {"dropped": _snap(snap), "parts_deleted": len(deleted)}
