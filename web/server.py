"""Serving the app with hypercorn's Trio worker, as one task of the caller's ``trio.run``.

::

    async with dccd.actors.open_service(config) as svc, trio.open_nursery() as nursery:
        urls = await nursery.start(functools.partial(dccd.web.serve_http, svc, config, port=0))
        ...
        nursery.cancel_scope.cancel()      # ends SSE streams, then stops the server

Shutdown order matters: open SSE responses would hold hypercorn's graceful
shutdown for its whole timeout and end in a truncated chunked body. So when
the task is cancelled it first ends every SSE stream (the clients see a
clean end of stream), then triggers the server's shutdown and waits for it,
bounded by ``options.graceful_s``; connections still busy then (a client
that stopped reading) are aborted (see :mod:`~dccd.web.connections`).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
import trio
from dccd.actors import Service
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from litestar import Litestar

from dccd.config import Config, Server

from .app import create_app
from .connections import Connections
from .context import WebContext, WebOptions

log = structlog.get_logger("dccd.web")

# The access log never sees the query string (%(U)s is the path only): a URL is no place for data to leak from.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def hypercorn_config(host: str, port: int, graceful_s: float) -> HypercornConfig:
    """Hypercorn settings: one bind, stdlib loggers (so structlog formats them), bounded graceful shutdown."""
    cfg = HypercornConfig()
    cfg.bind = [_bind(host, port)]
    cfg.errorlog = logging.getLogger("hypercorn.error")  # Logger objects: hypercorn then adds no handlers
    cfg.accesslog = logging.getLogger("hypercorn.access")
    cfg.access_log_format = ACCESS_LOG_FORMAT
    cfg.graceful_timeout = graceful_s
    cfg.keep_alive_timeout = 75.0
    return cfg


async def serve_http(
    svc: Service,
    config: Config | None,
    *,
    host: str | None = None,
    port: int | None = None,
    app: Litestar | None = None,
    options: WebOptions | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP API, SSE and UI until cancelled; ``task_status.started(urls)`` once bound.

    Args:
        svc: the running service.
        config: the effective config (``server.host``/``server.port`` are the defaults for ``host``/``port``).
        host, port: bind address (port 0 picks a free port; the URLs say which).
        app: an app made by :func:`create_app` for this service (default: a new one with ``options``).
        options: web tunables when the app is built here.
    """
    server = config.server if config is not None else Server()
    host = host if host is not None else server.host
    port = port if port is not None else server.port
    app = app if app is not None else create_app(svc, config, options=options, bind_host=host)
    ctx: WebContext = app.state.ctx
    cfg = hypercorn_config(host, port, ctx.options.graceful_s)
    shutdown = trio.Event()
    connections = Connections()
    asgi: Any = connections.middleware(app)  # an ASGI app; hypercorn's annotation is narrower

    scopes: list[trio.CancelScope] = []
    done = trio.Event()

    async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            # Shielded: the caller's cancellation must not cut connections; only `shutdown` ends the server.
            with trio.CancelScope(shield=True) as scope:
                scopes.append(scope)
                await hypercorn_serve(asgi, cfg, shutdown_trigger=shutdown.wait, task_status=task_status)
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(run_server)
        log.info("http.listening", urls=urls)
        task_status.started(urls)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                t0 = trio.current_time()
                # SSE clients get a clean end of stream, and their responses complete, before the server
                # is told to stop: a response that completes after that leaves hypercorn's connection
                # waiting until the graceful timeout (it neither recycles nor closes it).
                ctx.feeds.close()
                with trio.move_on_after(ctx.options.graceful_s):
                    await connections.wait_idle()
                    shutdown.set()
                    await done.wait()
                shutdown.set()
                if not done.is_set():  # clients that stopped reading block their connection: cut them off
                    aborted = connections.abort()
                    log.warning("http.aborted_connections", connections=aborted, after_s=ctx.options.graceful_s)
                    with trio.move_on_after(1.0):
                        await done.wait()
                scopes[0].cancel()
                log.info("http.stopped", shutdown_s=round(trio.current_time() - t0, 3))
