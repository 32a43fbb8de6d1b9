"""Exchange connections as actors: one shared HTTP client (and rate limiter) per exchange.

Every paginator and gap-filler hitting the same exchange goes through the one
client the :class:`ClientPool` opened for it, so the exchange's weight budget,
429 pauses and 418 bans are shared (and, with a ``limit_state``, survive a
restart). The symbol listing is fetched once per exchange and cached, so an
unknown symbol fails before any paging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import httpx
import structlog
import trio
from prometheus_client import CollectorRegistry

from dccd.domain.ratelimit import RetryPolicy
from dccd.sources.base import Adapter, Listing, listing_for
from dccd.sources.registry import get_adapter
from dccd.transport.http import ExchangeClient, open_exchange_client
from dccd.transport.ratelimit import LimitStateStore, WeightLimiter

from .supervisor import Role

log = structlog.get_logger()

LISTING_TTL_S = 3600.0


class ClientOptions(TypedDict, total=False):
    """Keyword options of :func:`~dccd.transport.http.open_exchange_client` (tests: transports, retry policy)."""

    limiter: WeightLimiter | None
    retry: RetryPolicy | None
    timeout_s: float
    connect_timeout_s: float
    max_connections: int
    http2: bool
    transport: httpx.AsyncBaseTransport | None
    registry: CollectorRegistry | None
    wall_clock_ns: Callable[[], int]
    rand: Callable[[], float]
    limit_state: LimitStateStore | None


async def run_exchange_client(
    adapter: Adapter,
    rest_url: str | None,
    rate_limit: float,
    options: ClientOptions,
    *,
    task_status: trio.TaskStatus[ExchangeClient] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own one exchange's HTTP client for the life of the service."""
    async with open_exchange_client(adapter, rest_url, rate_limit, **options) as client:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(actor=f"http:{adapter.name}", exchange=adapter.name)
        log.info("http.client_opened", base_url=client.base_url, rate_limit=rate_limit)
        task_status.started(client)
        await trio.sleep_forever()


class ClientPool:
    """Lazily started, shared exchange clients of a service.

    Args:
        start_actor: the service's ``start_actor``.
        settings: ``name -> (rest_url, rate_limit)`` lookup (the config's exchange overrides).
        options: extra keyword arguments for :func:`open_exchange_client` (tests pass transports).
        limit_state: where 429 pauses and 418 bans are recorded and restored from (the lake's
            ``_dccd/limits.json``), so a restarted service honours them before its first request.
    """

    def __init__(
        self,
        start_actor: Callable[..., Any],
        settings: Callable[[str], tuple[str | None, float]],
        options: ClientOptions | None = None,
        *,
        limit_state: LimitStateStore | None = None,
    ) -> None:
        self._start_actor = start_actor
        self._settings = settings
        self._options: ClientOptions = {**(options or {})}
        if limit_state is not None:
            self._options.setdefault("limit_state", limit_state)
        self._clients: dict[str, ExchangeClient] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._listing_locks: dict[tuple[str, bool], trio.Lock] = {}
        self._listings: dict[tuple[str, bool], tuple[float, Listing]] = {}

    def adapter(self, exchange: str) -> Adapter:
        """The adapter of ``exchange`` (raises ConfigError if unknown)."""
        return get_adapter(exchange)

    async def get(self, exchange: str) -> ExchangeClient:
        """The shared client of ``exchange``, starting its actor on first use."""
        client = self._clients.get(exchange)
        if client is not None:
            return client
        lock = self._locks.setdefault(exchange, trio.Lock())
        async with lock:
            client = self._clients.get(exchange)
            if client is None:
                adapter = get_adapter(exchange)
                rest_url, rate_limit = self._settings(exchange)
                client = await self._start_actor(
                    f"http:{exchange}",
                    run_exchange_client,
                    adapter,
                    rest_url,
                    rate_limit,
                    ClientOptions(**self._options),
                    role=Role.OTHER,
                )
                assert client is not None
                self._clients[exchange] = client
        return client

    async def listing(self, exchange: str, *, perp: bool = False) -> Listing:
        """The exchange's symbol table (its perpetuals' with ``perp``), fetched at most once per :data:`LISTING_TTL_S`.

        Perpetuals are listed apart on most exchanges (Binance's futures host), so a
        ``BASE/QUOTE:perp`` symbol must be checked against that table, not the spot one.
        """
        key = (exchange, perp)
        async with self._listing_locks.setdefault(key, trio.Lock()):  # concurrent runs share one fetch
            return await self._listing(exchange, perp, key)

    async def _listing(self, exchange: str, perp: bool, key: tuple[str, bool]) -> Listing:
        cached = self._listings.get(key)
        now = trio.current_time()
        if cached is not None and now - cached[0] < LISTING_TTL_S:
            return cached[1]
        client = await self.get(exchange)
        request, parse = listing_for(client.adapter, perp=perp)
        listing = parse(request, await client.fetch(request))
        if listing.rate_limits is not None and not perp:
            # The exchange's live budget (Binance exchangeInfo) beats the adapter's published default;
            # a derivatives host's table describes that host's budget, not this limiter's.
            client.limiter.update(listing.rate_limits)
        self._listings[key] = (now, listing)
        return listing
