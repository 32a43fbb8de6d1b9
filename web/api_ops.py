"""Operations endpoints: liveness, readiness with reasons, Prometheus metrics.

``/health`` is liveness: 200 whenever the process serves HTTP. ``/ready`` is 200
only when nothing below holds, else 503 with one reason per problem:

- the supervisor or the server is shutting down;
- ``{root}/_dccd`` cannot be written (or writing takes over ``PROBE_TIMEOUT_S``);
- an object-store lake's store fails or does not answer one request within ``PROBE_TIMEOUT_S``;
- a stream failed, or is in a state other than connected / reconnecting / stopped;
- a running stream has no connection up and no data for over ``DOWN_GRACE_S``
  (a reconnect normally takes a few seconds; a refused one keeps failing);
- a running stream has connections up but no data frame for over ``SILENCE_S``
  (for candles: over the bar's span plus ``SILENCE_S``, as a bar arrives when it closes).

Times count from the latest data frame, or from the stream's start before the
first one. A reason names the stream id, exchange, symbols and type, and how
long it has been down or silent. Stopped streams never make the service unready.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import trio
from dccd.actors.metrics import LIVE_STREAM_STATES, seconds_since_data
from dccd.actors.stats import StreamState
from dccd.actors.streams import StreamInfo
from litestar import Controller, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from dccd.domain.spans import Span
from dccd.errors import StorageError
from dccd.storage.layout import meta_dir, temp_name

from .context import WebContext
from .metrics import DuplicateMetric

log = structlog.get_logger("dccd.web")

PROBE_TIMEOUT_S = 5.0
HEALTHY_STREAM_STATES = frozenset({StreamState.CONNECTED, StreamState.RECONNECTING, StreamState.STOPPED})
DOWN_GRACE_S = 30.0
"""A running stream with no connection up and no data for longer is not ready."""
SILENCE_S = 60.0
"""A running stream with no data frame for longer (candles: span + this) is not ready."""


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
    probe = svc.store_probe()
    if probe is not None:
        reasons.extend(await store_problems(*probe))
    streams = getattr(svc, "streams", None)  # streams exist only with storage
    if streams is not None:
        reasons.extend(stream_problems(svc.list_streams(), streams.now_ns()))
    return reasons


_probing: set[str] = set()
"""Store URIs with a probe in flight (a thread abandoned at the deadline included): at most one each."""


async def store_problems(uri: str, probe: Callable[[], None]) -> list[str]:
    """Why the object store at ``uri`` is not ready: ``probe`` failed or took over ``PROBE_TIMEOUT_S``."""
    late = [f"storage: {uri} did not answer within {PROBE_TIMEOUT_S:g}s"]
    if uri in _probing:  # the previous probe is still waiting for the store
        return late
    _probing.add(uri)

    def run() -> None:
        try:
            probe()
        finally:
            _probing.discard(uri)

    with trio.move_on_after(PROBE_TIMEOUT_S):
        try:
            await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        except StorageError as exc:
            return [f"storage: {exc}"]
        return []
    return late


def stream_problems(streams: list[StreamInfo], now_ns: int) -> list[str]:
    """One reason per stream that is not receiving (see the module docstring), read at wall time ``now_ns``."""
    reasons = []
    for s in streams:
        name = f"stream {s.id} ({s.exchange} {','.join(s.symbols)} {s.type})"
        if s.state not in HEALTHY_STREAM_STATES:
            reasons.append(f"{name}: {s.state}" + (f": {s.error}" if s.error else ""))
        if s.state not in LIVE_STREAM_STATES:
            continue
        silent_s = seconds_since_data(s, now_ns)
        what = "no data" if s.last_data_ns is None else "last data"
        if s.connections_up == 0 and silent_s > DOWN_GRACE_S:
            reasons.append(f"{name}: no connection up, {what} {silent_s:.0f}s ago")
        elif silent_s > _silence_limit_s(s):
            up = f"{s.connections_up}/{s.connections} connections up"
            reasons.append(f"{name}: silent, {up}, {what} {silent_s:.0f}s ago")
    return reasons


def _silence_limit_s(s: StreamInfo) -> float:
    return SILENCE_S + (Span.parse(s.span).seconds if s.type == "ohlc" and s.span else 0)


class OpsController(Controller):
    """``/health``, ``/ready``, ``/metrics``."""

    tags = ("ops",)

    @get("/health", summary="Liveness")
    async def health(self) -> dict[str, str]:
        """Answers while the process serves HTTP."""
        return {"status": "ok"}

    @get("/ready", summary="Readiness: supervisor up, storage writable, every running stream receiving")
    async def ready(self, ctx: WebContext) -> Response[dict[str, Any]]:
        """200 when ready; 503 with the reasons otherwise (each names the stream that is down or silent)."""
        reasons = await readiness(ctx)
        if reasons:
            return Response({"ready": False, "reasons": reasons, "error": "; ".join(reasons)}, status_code=503)
        return Response({"ready": True, "reasons": []})

    @get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, ctx: WebContext) -> Response[bytes]:
        """Actors, hub, streams, exchange requests, API requests, SSE subscribers and drops, rows written.

        A name declared twice would make Prometheus reject the whole scrape: that answers 500 naming it.
        """
        try:
            body = ctx.metrics.render()
        except DuplicateMetric as exc:
            log.error("metrics.duplicate", error=str(exc))
            return Response(f"{exc}\n".encode(), status_code=500, media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE_LATEST)
