"""Stopping the server with SSE clients attached: fast, clean end of stream, and no hang on clients that stopped reading."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import httpx
import trio
from dccd.actors import open_service
from dccd.web import WebOptions, create_app, serve_http

from .conftest import TRADES_KEY, make_config, trades
from .test_sse import LIVE, PARAMS, _stuck_client


async def _reader(
    client: httpx.AsyncClient, path: str, params: Any, ends: list[str], task_status: trio.TaskStatus[None]
) -> None:
    try:
        async with client.stream("GET", path, params=params) as r:
            task_status.started()
            async for _ in r.aiter_raw():
                pass
        ends.append("eof")
    except httpx.HTTPError as exc:  # e.g. RemoteProtocolError: incomplete chunked read
        ends.append(type(exc).__name__)


async def test_shutdown_with_50_sse_clients_is_fast_and_clean(tmp_path: Path) -> None:
    """Cancelling serve_http with 50 live/events clients attached ends in < 2 s, each client seeing a clean EOF."""
    cfg = make_config(tmp_path)
    ends: list[str] = []
    async with open_service(cfg) as svc:
        app = create_app(svc, cfg, options=WebOptions(graceful_s=3.0))
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client, trio.open_nursery() as clients:
            async with trio.open_nursery() as server:
                [url] = await server.start(functools.partial(serve_http, svc, cfg, host="127.0.0.1", port=0, app=app))
                for i in range(50):
                    path, params = (LIVE, PARAMS) if i % 2 else ("/api/v1/events", None)
                    await clients.start(_reader, client, url + path, params, ends)
                svc.hub.publish(TRADES_KEY, trades(10))
                await trio.sleep(0.2)
                t0 = trio.current_time()
                server.cancel_scope.cancel()
            elapsed = trio.current_time() - t0
        assert svc.hub.subscriber_count == 0
    assert elapsed < 2.0
    assert ends == ["eof"] * 50


async def test_shutdown_cuts_off_clients_that_stopped_reading(tmp_path: Path) -> None:
    """Clients that never read (their writes block inside hypercorn) are aborted after graceful_s; readers still get EOF."""
    cfg = make_config(tmp_path)
    ends: list[str] = []
    options = WebOptions(graceful_s=0.5, live_window_s=0.02, live_client_buffer=4)
    async with open_service(cfg) as svc:
        app = create_app(svc, cfg, options=options)
        async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as clients:
            async with trio.open_nursery() as server:
                [url] = await server.start(functools.partial(serve_http, svc, cfg, host="127.0.0.1", port=0, app=app))
                stuck = [await _stuck_client(int(url.rsplit(":", 1)[1])) for _ in range(5)]
                for _ in range(5):
                    await clients.start(_reader, client, url + LIVE, PARAMS, ends)
                for k in range(12):  # megabytes: the stuck clients' sockets fill up and their writes block
                    svc.hub.publish(TRADES_KEY, trades(4000, 4000 * k))
                    await trio.sleep(0.05)
                t0 = trio.current_time()
                server.cancel_scope.cancel()
            elapsed = trio.current_time() - t0
            for s in stuck:
                s.close()
    assert elapsed < options.graceful_s + 1.5
    assert ends == ["eof"] * 5
