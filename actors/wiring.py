"""The wiring: :func:`open_service` / :func:`serve` build a :class:`~dccd.actors.service.Service` and its graph.

The service-level actor graph (every arrow an Rx subscription unless marked ``await``)::

    supervisor lifecycle (ActorStarted/Restarted/Failed/Stopped) ─┐
    Writer.events (PartWritten) ───────────────────────────────────┤
    streams, backfills, refills (Run*, GapDetected, Overflow…) ───┼─► svc.bus ─► svc.events (Rx Subject)
    scheduler triggers (job fired) ─► run start                  ─┤                 │
    scans (SignalGenerated, ScanCompleted; actors/scans.py) ──────┘                 │
                                   on_event ◄───────────────────────────────────────┤
                                   Hub.observer(EVENTS_TOPIC) ◄─────────────────────┤ ─► SSE /events feed, CLI
                                   web metrics (create_app) ◄───────────────────────┘

The data plane of each stream is composed in :mod:`~dccd.actors.live`; the
only edges that are not subscriptions are the ones that wait for the
writer's gate (``await writer.wait_writable()``: an ``on_next`` cannot await).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio
from prometheus_client.registry import CollectorRegistry
from reactivex.subject import Subject

from dccd.bus.shard import parse_shard
from dccd.config import Config
from dccd.contracts.rules import resolve as resolve_contracts
from dccd.domain.backoff import RestartPolicy
from dccd.sources.archive import archive_origin
from dccd.storage.lake import Lake
from dccd.storage.limits import LimitStateFile
from dccd.storage.runs import LEASE_TTL_S, Offload, RunStore

from .bus import serve_bus
from .clients import ClientOptions, ClientPool
from .hub import Hub
from .lease import LeaseOptions, serve_run_lease
from .messages import Message
from .metrics import register_metrics
from .operations import Operations, OperationsOptions
from .scans import ScanOps
from .scheduler import Scheduler
from .service import EVENTS_TOPIC, Service
from .streams import StreamOps, StreamOpsOptions, ws_url_lookup
from .supervisor import Role, open_supervisor

log = structlog.get_logger()

__all__ = ["open_service", "serve"]


async def _run_hub(hub: Hub[Any], *, task_status: trio.TaskStatus[Hub[Any]]) -> None:
    """The hub as an actor, so ordered shutdown closes its subscribers after the writers drained."""
    task_status.started(hub)
    try:
        await trio.sleep_forever()
    finally:
        hub.close()


@asynccontextmanager
async def open_service(
    config: Config | None = None,
    *,
    grace_s: float = 15.0,
    policy: RestartPolicy | None = None,
    hub_maxlen: int = 256,
    registry: CollectorRegistry | None = None,
    rng: random.Random | None = None,
    on_event: Callable[[Message], None] | None = None,
    client_options: ClientOptions | None = None,
    ops_options: OperationsOptions | None = None,
    stream_options: StreamOpsOptions | None = None,
    lease_options: LeaseOptions | None = None,
    storage_offload: Offload | None = None,
    scan_options: dict[str, Any] | None = None,
) -> AsyncIterator[Service]:
    """Run the actor runtime for the duration of the block.

    Args:
        config: the application's config object (only ``config.storage.path`` is read, if present).
        grace_s: bound on the ordered shutdown.
        policy: default restart policy for actors.
        hub_maxlen: default per-subscriber buffer of the hub.
        registry: if given, the actor metrics are registered there (and unregistered on exit).
        rng: random source for backoff jitter.
        on_event: called with every control event (before hub subscribers see it).
        client_options: extra keyword arguments for the exchange HTTP clients (tests: transports, retry).
        ops_options: keyword arguments for :class:`Operations` (``writer_options``, ``concurrency``, ``now_ns``).
        stream_options: keyword arguments for :class:`StreamOps` (``options``, ``connect``, ``backoff``, ``rand``).
        storage_offload: how the lake and the run store run their blocking calls (default: a worker
            thread each; tests under ``autojump_clock`` run them inline so virtual time cannot race them).
        scan_options: keyword arguments for :class:`~dccd.actors.scans.ScanOps` (``debounce_s``, ``alert_options``).
        lease_options: keyword arguments for :func:`~dccd.actors.lease.serve_run_lease`
            (``heartbeat_s``, ``check_s``, ``ttl_s``, ``now_ns``; ``now_ns`` also dates the startup check).

    Yields:
        The :class:`Service` handle.
    """
    hub: Hub[Any] = Hub(maxlen=hub_maxlen)
    events: Subject[Message] = Subject()
    if on_event is not None:
        events.subscribe(on_next=on_event)
    events.subscribe(hub.observer(EVENTS_TOPIC))  # the hub tap: SSE /events, `dccd backfill` progress
    async with open_supervisor(grace_s=grace_s, policy=policy, rng=rng, name="service") as sup:
        svc = Service(config, sup, hub, events)
        sup.lifecycle.subscribe(on_next=svc.emit)  # ActorStarted/Restarted/Failed/Stopped -> the event bus
        await sup.start("hub", _run_hub, hub, role=Role.HUB)
        collector = register_metrics(svc, registry) if registry is not None else None
        if isinstance(config, Config):
            await _open_operations(
                svc, client_options, ops_options, stream_options, lease_options, storage_offload, scan_options
            )
        log.info("service.started", storage=str(svc.storage_path))
        try:
            with svc._scope:
                yield svc
        finally:
            if registry is not None and collector is not None:
                registry.unregister(collector)
            log.info("service.stopping")


def _exchange_settings(config: Config) -> Callable[[str], tuple[str | None, float]]:
    def settings(name: str) -> tuple[str | None, float]:
        ex = config.exchange(name)
        return ex.rest_url, ex.rate_limit

    return settings


async def _open_operations(
    svc: Service,
    client_options: ClientOptions | None,
    ops_options: OperationsOptions | None,
    stream_options: StreamOpsOptions | None = None,
    lease_options: LeaseOptions | None = None,
    storage_offload: Offload | None = None,
    scan_options: dict[str, Any] | None = None,
) -> None:
    """Storage, run history and exchange clients; sweeps temp parts and marks orphaned runs first.

    Takes this process's run lease and starts its heartbeat and the periodic dead-owner check
    (``runs:lease``); the exchange clients record and honour rate-limit deadlines in ``{root}/_dccd``.
    """
    config, root = svc.config, svc.storage_path
    assert config is not None and root is not None
    lake = Lake(root.expanduser(), offload=storage_offload, contracts=resolve_contracts(config.contracts))
    runs = RunStore(root.expanduser(), offload=storage_offload)
    lease: LeaseOptions = {**(lease_options or {})}
    now_ns = lease.setdefault("now_ns", time.time_ns)
    await runs.aregister_owner(now_ns=now_ns())
    swept = await lake.asweep()
    orphans = await runs.amark_orphans(now_ns=now_ns(), ttl_s=lease.get("ttl_s", LEASE_TTL_S))
    if swept or orphans or any(lake.repaired):
        log.warning(
            "service.recovered",
            temp_files_removed=len(swept),
            orphaned_runs=orphans,
            catalog_parts_registered=lake.repaired.registered,
            catalog_parts_ended=lake.repaired.ended,
        )
    await svc.start_actor("runs:lease", functools.partial(serve_run_lease, runs, **lease))
    limits = LimitStateFile(root.expanduser())
    pool = ClientPool(svc.start_actor, _exchange_settings(config), client_options, limit_state=limits)
    ops: OperationsOptions = {**(ops_options or {})}
    # A test transport stands in for every exchange host: the real archive hosts are never asked then.
    defaults = not (client_options or {}).get("transport")
    ops.setdefault("archive_origin", archive_origin(config, defaults=defaults))
    svc.attach_operations(Operations(svc.start_actor, svc.stop_actor, svc.bus.on_next, lake, runs, pool, **ops))
    svc.streams = StreamOps(
        svc.start_actor, svc.stop_actor, svc.bus.on_next, svc.hub, lake, runs, pool,
        ws_url=ws_url_lookup(config), **(stream_options or {}),
    )  # fmt: skip
    svc.scans = await ScanOps.open(svc, root.expanduser(), config.alerts, **(scan_options or {}))
    svc.scheduler = await Scheduler.open(svc, svc.config, root.expanduser())
    if config.shard is not None:
        me, n = parse_shard(config.shard)
        svc.scheduler.shard_jobs(me, n)  # no job runs until the coordinator holds a lease
    if config.bus is not None:
        await svc.start_actor("bus", functools.partial(serve_bus, svc), role=Role.HUB, escalate=False)


async def serve(
    config: Config | None = None, *, task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED, **options: Any
) -> None:
    """Run the service as a task: ``svc = await nursery.start(serve, config)``; ends on ``svc.cancel()``.

    ``options`` are :func:`open_service`'s keyword arguments (pass them with ``functools.partial``).
    """
    async with open_service(config, **options) as svc:
        task_status.started(svc)
        await trio.sleep_forever()
