"""Operations endpoints: liveness, readiness with reasons, Prometheus metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio
from litestar import Controller, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from dccd.storage.layout import meta_dir, temp_name

from .context import WebContext

PROBE_TIMEOUT_S = 5.0
HEALTHY_STREAM_STATES = frozenset({"connected", "reconnecting", "stopped"})


def probe_writable(root: Path) -> None:
    """Create, fsync and remove a temp file in ``{root}/_dccd`` (named so a startup sweep would remove a leftover).

    Raises:
        OSError: the lake cannot be written.
    """
    d = meta_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    path = d / temp_name("ready-probe")
    try:
        with open(path, "wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
    finally:
        path.unlink(missing_ok=True)


async def readiness(ctx: WebContext) -> list[str]:
    """Why the service is not ready (empty when it is)."""
    reasons = []
    svc = ctx.svc
    if svc.hub.closed or "hub" not in svc.supervisor:
        reasons.append("supervisor: shutting down")
    if ctx.feeds.closed:
        reasons.append("server: shutting down")
    root = ctx.storage_root
    if root is not None:
        with trio.move_on_after(PROBE_TIMEOUT_S) as scope:
            try:
                await trio.to_thread.run_sync(probe_writable, root, abandon_on_cancel=True)
            except OSError as exc:
                reasons.append(f"storage: cannot write {meta_dir(root)}: {exc.strerror or exc}")
        if scope.cancelled_caught:
            reasons.append(f"storage: writing {meta_dir(root)} took over {PROBE_TIMEOUT_S:g}s")
    list_streams = getattr(svc, "list_streams", None)
    if list_streams is not None and svc.ops is not None:  # streams exist only with storage
        for s in list_streams():
            state = getattr(s, "state", "unknown")
            if state not in HEALTHY_STREAM_STATES:
                reasons.append(f"stream {getattr(s, 'id', '?')}: {state}")
    return reasons


class OpsController(Controller):
    """``/health``, ``/ready``, ``/metrics``."""

    tags = ("ops",)

    @get("/health", summary="Liveness")
    async def health(self) -> dict[str, str]:
        """Answers while the process serves HTTP."""
        return {"status": "ok"}

    @get("/ready", summary="Readiness: supervisor up, storage writable, streams connected or reconnecting")
    async def ready(self, ctx: WebContext) -> Response[dict[str, Any]]:
        """200 when ready; 503 with the reasons otherwise."""
        reasons = await readiness(ctx)
        if reasons:
            return Response({"ready": False, "reasons": reasons, "error": "; ".join(reasons)}, status_code=503)
        return Response({"ready": True, "reasons": []})

    @get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, ctx: WebContext) -> Response[bytes]:
        """Actors, hub, HTTP transports, HTTP requests, SSE subscribers and drops, rows written."""
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
