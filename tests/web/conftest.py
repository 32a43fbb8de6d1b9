"""A real service + hypercorn server on 127.0.0.1 per test, with httpx clients (never Litestar's AsyncTestClient)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from dccd.actors import Batch, Service, open_service
from dccd.web import WebContext, WebOptions, create_app, serve_http
from litestar import Litestar

from dccd.config import Config, parse_config
from dccd.domain import DatasetId, DataType, Symbol, Trade
from tests.fake.binance import FakeBinance, open_fake_binance

TOKEN = "s3cret-token-for-tests"
BTC = Symbol.parse("BTC/USDT")
TRADES_KEY = ("trades", "binance", "BTC/USDT")
FAST = WebOptions(heartbeat_s=15.0, linger_s=0.2, live_window_s=0.02, graceful_s=2.0)


def make_config(root: Path, *, fake_url: str | None = None, token: str | None = None, extra: str = "") -> Config:
    """A config with the lake under ``root``, Binance at ``fake_url`` (unthrottled) and an optional token."""
    text = f"storage: {{path: '{root}'}}\n"
    if token:
        text += f"server: {{token: '{token}'}}\n"
    if fake_url:
        # ws_url: a closed local port, so no test can ever reach the real exchange's WebSocket.
        text += f"exchanges: {{binance: {{rest_url: '{fake_url}', ws_url: 'ws://127.0.0.1:9', rate_limit: 0}}}}\n"
    return parse_config(text + extra, env={})


def trades(n: int, start: int = 0) -> Batch:
    """A batch of ``n`` trades with ids/ts ``start..start+n-1``."""
    records: list[Any] = [
        Trade(ts=1_700_000_000_000_000_000 + i, id=str(i), price=100.0 + i, amount=0.5, side="buy", recv_ts=i)
        for i in range(start, start + n)
    ]
    return Batch(DatasetId("binance", BTC, DataType.TRADES), records, source="test", transport="ws")


@dataclass
class Web:
    """A running service and its HTTP server."""

    svc: Service
    app: Litestar
    url: str
    client: httpx.AsyncClient
    config: Config | None
    nursery: trio.Nursery

    @property
    def ctx(self) -> WebContext:
        ctx: WebContext = self.app.state.ctx
        return ctx

    def auth(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def open_web(config: Config | None = None, *, options: WebOptions = FAST, **service: Any) -> AsyncIterator[Web]:
    """Service (``open_service(config, **service)``) + app + server on an ephemeral port + an httpx client."""
    async with open_service(config, **service) as svc, trio.open_nursery() as nursery:
        app = create_app(svc, config, options=options)
        urls = await nursery.start(functools.partial(serve_http, svc, config, host="127.0.0.1", port=0, app=app))
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(base_url=urls[0], limits=limits, timeout=10.0) as client:
            yield Web(svc, app, urls[0], client, config, nursery)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with open_fake_binance() as fake:
        yield fake


@pytest.fixture
async def web(tmp_path: Path, fake: FakeBinance) -> AsyncIterator[Web]:
    """A service with storage and Binance at the fake, no token."""
    async with open_web(make_config(tmp_path / "lake", fake_url=fake.url)) as w:
        yield w


@pytest.fixture
async def secured(tmp_path: Path, fake: FakeBinance) -> AsyncIterator[Web]:
    """The same with a bearer token configured."""
    async with open_web(make_config(tmp_path / "lake", fake_url=fake.url, token=TOKEN)) as w:
        yield w
