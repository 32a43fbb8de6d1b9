"""The app factory: ``create_app(svc, config) -> Litestar``.

The app runs under hypercorn's Trio worker inside the service's own
``trio.run`` (see :func:`dccd.web.serve_http`). Its lifespan owns a nursery
for the SSE taps; the middleware stack counts requests (outermost) and
guards every request (:mod:`~dccd.web.auth`: Host, Origin, bearer token,
JSON bodies). Litestar's asyncio-only parts
(ChannelsPlugin) and its logging setup are not used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from dccd.actors import Service
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from dccd import __version__
from dccd.config import Config

from .api_catalog import CatalogController
from .api_control import ControlController
from .api_data import DataController
from .api_live import LiveController
from .api_ops import OpsController
from .api_quality import QualityController
from .api_query import QueryController
from .api_runs import RunsController
from .api_scan import ScanController
from .api_snapshots import SnapshotsController
from .api_work import WorkController
from .auth import AllowedHosts, auth_middleware
from .context import WebContext, WebOptions
from .errors import EXCEPTION_HANDLERS
from .ui import schema_plugins, ui, ui_asset, vendor_asset

ROUTE_HANDLERS: list[Any] = [
    OpsController,
    CatalogController,
    RunsController,
    ControlController,
    DataController,
    LiveController,
    QualityController,
    SnapshotsController,
    QueryController,
    ScanController,
    WorkController,
    ui,
    ui_asset,
    vendor_asset,
]


def create_app(
    svc: Service, config: Config | None, *, options: WebOptions | None = None, bind_host: str | None = None
) -> Litestar:
    """Build the HTTP app over a running service.

    Args:
        svc: the service handle (``open_service``).
        config: the effective :class:`dccd.config.Config` (token, shown masked at ``/api/v1/config``).
        options: web tunables (heartbeats, replay rings, buffers).
        bind_host: the address the server binds (default ``config.server.host``): a name the Host check accepts.

    Returns:
        The Litestar app; ``app.state.ctx`` is its :class:`WebContext`.
    """
    ctx = WebContext(svc, config, options or WebOptions())
    server = config.server if config is not None else None
    hosts = AllowedHosts(server.allowed_hosts if server else None, bind_host or (server.host if server else None))

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        disposable = svc.events.subscribe(ctx.metrics.on_event)
        try:
            async with trio.open_nursery() as nursery:
                ctx.feeds.nursery = nursery
                yield
                ctx.feeds.close()
                nursery.cancel_scope.cancel()
        finally:
            disposable.dispose()
            if ctx.metrics.collector is not None:
                ctx.metrics.registry.unregister(ctx.metrics.collector)

    def provide_ctx() -> WebContext:
        return ctx

    app = Litestar(
        route_handlers=ROUTE_HANDLERS,
        dependencies={"ctx": Provide(provide_ctx, use_cache=True, sync_to_thread=False)},
        middleware=[ctx.metrics.middleware, auth_middleware(ctx.token, hosts)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="dccd", version=__version__, path="/schema", render_plugins=schema_plugins()
        ),
        state=None,
    )
    app.state.ctx = ctx
    return app
