"""The embedding API: the running actor system as one handle.

::

    async with dccd.actors.open_service(config) as svc:      # inside your own trio.run
        writer = await svc.start_writer("writer", lake_write)
        await svc.start_actor("binance:trades", run_stream, writer, role=Role.SOURCE)
        ...

    svc = await nursery.start(dccd.actors.serve, config)    # or as a task; svc.cancel() ends it

The library never calls ``trio.run``, installs no signal handlers and
configures no logging: the CLI does those. Leaving the block (or
:meth:`Service.cancel`) shuts down in order (sources, writers drain, the hub
closes its subscribers, the rest) within ``grace_s``.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import structlog
import trio
from prometheus_client.registry import CollectorRegistry
from reactivex.subject import Subject

from dccd.config import Config
from dccd.domain.backoff import RestartPolicy
from dccd.domain.capability import Capabilities
from dccd.domain.dataset import DatasetId
from dccd.ops import BackfillRequest, StreamRequest
from dccd.sources.base import DerivativesAdapter, Listing
from dccd.sources.registry import get_adapter
from dccd.storage.export import Export
from dccd.storage.inventory import DatasetInventory
from dccd.storage.lake import Lake
from dccd.storage.limits import LimitStateFile
from dccd.storage.runs import LEASE_TTL_S, RunEvent, RunRecord, RunStore

from .clients import ClientPool
from .hub import Hub, HubStats, Key
from .lease import serve_run_lease
from .messages import Message
from .metrics import register_metrics
from .operations import Operations
from .scheduler import Scheduler
from .stats import ActorStats
from .streams import StreamInfo, StreamOps, ws_url_lookup
from .supervisor import ActorFn, Role, Supervisor, open_supervisor
from .writer import WriteFn, Writer

log = structlog.get_logger()

EVENTS_TOPIC: Key = ("events",)
"""Hub topic carrying every control event (lifecycle, PartWritten, OverflowRecorded...)."""


class ServiceStats(msgspec.Struct, frozen=True):
    """A snapshot of the whole runtime."""

    uptime_s: float
    actors: tuple[ActorStats, ...]
    hub: HubStats
    events: int


class Service:
    """Handle on a running actor system (made by :func:`open_service` / :func:`serve`)."""

    def __init__(self, config: Any, supervisor: Supervisor, hub: Hub[Any], events: Subject[Message]) -> None:
        self.config = config
        self.supervisor = supervisor
        self.hub = hub
        self.events = events
        """Every control event, on the Trio thread (also published to the hub under :data:`EVENTS_TOPIC`)."""
        self.events_emitted = 0
        self._scope = trio.CancelScope()
        self._t0 = trio.current_time()
        self.ops: Operations | None = None
        """Backfill/stream operations; set when the config names a storage path."""
        self.streams: StreamOps | None = None
        """Live recordings (:mod:`~dccd.actors.streams`); set with :attr:`ops`."""
        self.scheduler: Scheduler | None = None
        """Jobs (config and API); set with :attr:`ops`; fires only after ``await scheduler.start()``."""

    @property
    def operations(self) -> Operations:
        """The service's operations (needs a config with ``storage.path``).

        Raises:
            RuntimeError: the service was opened without storage.
        """
        if self.ops is None:
            raise RuntimeError("this service has no storage (open it with a config that has storage.path)")
        return self.ops

    async def start_backfill(self, request: BackfillRequest) -> list[str]:
        """Start a backfill (one run per symbol) and return the run ids; see :class:`Operations`."""
        return await self.operations.start_backfill(request)

    async def backfill(self, request: BackfillRequest) -> list[RunRecord]:
        """Run a backfill to completion and return the final run records."""
        run_ids = await self.operations.start_backfill(request)
        return [await self.operations.wait_run(r) for r in run_ids]

    async def wait_run(self, run_id: str) -> RunRecord:
        """Wait for a run of this service to end."""
        return await self.operations.wait_run(run_id)

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel a running run; False if it is not running in this service."""
        return await self.operations.cancel_run(run_id)

    def _streams(self) -> StreamOps:
        if self.streams is None:
            raise RuntimeError("this service has no storage (open it with a config that has storage.path)")
        return self.streams

    async def start_stream(self, request: StreamRequest) -> str:
        """Start recording a live stream (one run); returns its id. See :class:`StreamOps`."""
        return await self._streams().start(request)

    async def stop_stream(self, stream_id: str) -> bool:
        """Stop a stream after writing everything it received; False if it is not running."""
        return await self._streams().stop(stream_id)

    def list_streams(self) -> list[StreamInfo]:
        """Running and recently ended streams."""
        return self._streams().list()

    @property
    def storage_path(self) -> Path | None:
        """``config.storage.path`` when the config has one."""
        path = getattr(getattr(self.config, "storage", None), "path", None)
        return None if path is None else Path(path)

    def emit(self, message: Message) -> None:
        """Publish a control event to :attr:`events` and to the hub's :data:`EVENTS_TOPIC`."""
        self.events_emitted += 1
        self.events.on_next(message)
        self.hub.publish(EVENTS_TOPIC, message)

    async def start_actor(
        self,
        name: str,
        fn: ActorFn,
        *args: Any,
        role: Role = Role.OTHER,
        policy: RestartPolicy | None = None,
        escalate: bool = True,
    ) -> Any:
        """Start a supervised actor and wait until it is ready; see :meth:`Supervisor.start`."""
        return await self.supervisor.start(name, fn, *args, role=role, policy=policy, escalate=escalate)

    async def stop_actor(self, name: str) -> None:
        """Stop one actor and wait for it (a writer drains first); see :meth:`Supervisor.stop`."""
        await self.supervisor.stop(name)

    async def start_writer(self, name: str, write: WriteFn, **options: Any) -> Writer:
        """Create a :class:`Writer` emitting into this service and start it with the ``writer`` role.

        ``options`` go to :class:`Writer` (``max_rows``, ``max_age_s``, ``high``, ``low``, ``drain_s``, ``offload``).
        """
        writer = Writer(write, name=name, emit=self.emit, **options)
        started: Writer = await self.supervisor.start(name, writer.run, role=Role.WRITER)
        return started

    def actor_statistics(self) -> tuple[ActorStats, ...]:
        """One snapshot per actor."""
        return self.supervisor.statistics()

    def hub_statistics(self) -> HubStats:
        """The hub's snapshot."""
        return self.hub.statistics()

    def statistics(self) -> ServiceStats:
        """Actors (state, restarts, queue depth, drops, credits), hub and event counts."""
        return ServiceStats(
            uptime_s=trio.current_time() - self._t0,
            actors=self.actor_statistics(),
            hub=self.hub_statistics(),
            events=self.events_emitted,
        )

    def cancel(self) -> None:
        """End the service block (or the :func:`serve` task); shutdown then runs in order."""
        self._scope.cancel()

    # -- what the web layer asks: controllers call the handle, never the lake, the run store or adapters ------

    @property
    def lake_root(self) -> Path | None:
        """The lake's root directory, when the service has storage."""
        return self.ops.lake.root if self.ops is not None else None

    def capabilities(self, exchange: str) -> Capabilities:
        """What ``exchange`` declares (registry metadata, no I/O).

        Raises:
            ConfigError: unknown exchange, or a plugin that fails to load.
        """
        return get_adapter(exchange).capabilities

    def lists_perpetuals(self, exchange: str) -> bool:
        """Whether ``exchange`` lists perpetuals apart (its adapter is a :class:`DerivativesAdapter`)."""
        return isinstance(get_adapter(exchange), DerivativesAdapter)

    def check_backfill(self, request: BackfillRequest) -> None:
        """Raise what :meth:`start_backfill` would before any run (unknown exchange, capability, symbol form)."""
        self.operations.check_backfill(request)

    async def listing(self, exchange: str, *, perp: bool = False) -> Listing:
        """The exchange's symbol table, cached (see :meth:`ClientPool.listing`)."""
        return await self.operations.pool.listing(exchange, perp=perp)

    async def inventory(self) -> list[DatasetInventory]:
        """Every stored dataset with rows, range and exact gaps (computed in a worker thread)."""
        return await self.operations.lake.ainventory()

    async def missing_dataset(self, dataset: DatasetId) -> str | None:
        """None when ``dataset`` was collected here, else one line naming the nearest stored datasets (no paths)."""
        lake = self.operations.lake
        if await trio.to_thread.run_sync(lake.has_dataset, dataset):
            return None
        return await trio.to_thread.run_sync(functools.partial(lake.missing_message, dataset, show_root=False))

    async def export(
        self, dataset: DatasetId, fmt: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Export:
        """An export of ``dataset`` in ``fmt``, planned in a worker thread (iterate it in worker threads too)."""
        return await trio.to_thread.run_sync(self.operations.lake.export, dataset, fmt, start_ns, end_ns)

    async def list_runs(
        self, *, state: str | None = None, operation: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Stored runs, newest first, optionally filtered (see :meth:`RunStore.list_runs`)."""
        return await self.operations.runs.alist_runs(state=state, operation=operation, limit=limit)

    async def match_runs(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Ids of stored runs starting with ``prefix``, newest first (see :meth:`RunStore.match_ids`)."""
        return await self.operations.runs.amatch_ids(prefix, limit=limit)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One stored run, or None."""
        return await self.operations.runs.aget(run_id)

    async def run_events(self, run_id: str) -> list[RunEvent]:
        """The gap, refill, reconnect and unavailable events recorded for a run."""
        return await self.operations.runs.aevents(run_id)

    def run_is_active(self, run_id: str) -> bool:
        """Whether the run is running in this service (a backfill, or a stream: a stream's id is its run id)."""
        if self.ops is not None and run_id in self.ops.active:
            return True
        stream = self.streams.get(run_id) if self.streams is not None else None
        return stream is not None and not stream.done.is_set()


async def _run_hub(hub: Hub[Any], *, task_status: trio.TaskStatus[Hub[Any]]) -> None:
    """The hub as an actor, so ordered shutdown closes its subscribers after the writers drained."""
    task_status.started(hub)
    try:
        await trio.sleep_forever()
    finally:
        hub.close()


@asynccontextmanager
async def open_service(
    config: Any = None,
    *,
    grace_s: float = 15.0,
    policy: RestartPolicy | None = None,
    hub_maxlen: int = 256,
    registry: CollectorRegistry | None = None,
    rng: random.Random | None = None,
    on_event: Callable[[Message], None] | None = None,
    client_options: dict[str, Any] | None = None,
    ops_options: dict[str, Any] | None = None,
    stream_options: dict[str, Any] | None = None,
    lease_options: dict[str, Any] | None = None,
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
        lease_options: keyword arguments for :func:`~dccd.actors.lease.serve_run_lease`
            (``heartbeat_s``, ``check_s``, ``ttl_s``, ``now_ns``; ``now_ns`` also dates the startup check).

    Yields:
        The :class:`Service` handle.
    """
    hub: Hub[Any] = Hub(maxlen=hub_maxlen)
    events: Subject[Message] = Subject()
    if on_event is not None:
        events.subscribe(on_event)
    svc: Service | None = None

    def emit(message: Message) -> None:
        if svc is not None:
            svc.emit(message)

    async with open_supervisor(grace_s=grace_s, policy=policy, emit=emit, rng=rng, name="service") as sup:
        svc = Service(config, sup, hub, events)
        await sup.start("hub", _run_hub, hub, role=Role.HUB)
        collector = register_metrics(svc, registry) if registry is not None else None
        if isinstance(config, Config):
            await _open_operations(svc, client_options, ops_options, stream_options, lease_options)
        log.info("service.started", storage=str(svc.storage_path))
        try:
            with svc._scope:
                yield svc
        finally:
            if registry is not None and collector is not None:
                registry.unregister(collector)
            log.info("service.stopping")


def _exchange_settings(config: Any) -> Callable[[str], tuple[str | None, float]]:
    def settings(name: str) -> tuple[str | None, float]:
        ex = config.exchange(name) if hasattr(config, "exchange") else None
        return (getattr(ex, "rest_url", None), float(getattr(ex, "rate_limit", 0.8)))

    return settings


async def _open_operations(
    svc: Service,
    client_options: dict[str, Any] | None,
    ops_options: dict[str, Any] | None,
    stream_options: dict[str, Any] | None = None,
    lease_options: dict[str, Any] | None = None,
) -> None:
    """Storage, run history and exchange clients; sweeps temp parts and marks orphaned runs first.

    Takes this process's run lease and starts its heartbeat and the periodic dead-owner check
    (``runs:lease``); the exchange clients record and honour rate-limit deadlines in ``{root}/_dccd``.
    """
    root = svc.storage_path
    assert root is not None
    lake = Lake(root.expanduser())
    runs = RunStore(root.expanduser())
    lease = dict(lease_options or {})
    now_ns = lease.setdefault("now_ns", time.time_ns)
    await runs.aregister_owner(now_ns=now_ns())
    swept = await lake.asweep()
    orphans = await runs.amark_orphans(now_ns=now_ns(), ttl_s=lease.get("ttl_s", LEASE_TTL_S))
    if swept or orphans:
        log.warning("service.recovered", temp_files_removed=len(swept), orphaned_runs=orphans)
    await svc.start_actor("runs:lease", functools.partial(serve_run_lease, runs, **lease))
    limits = LimitStateFile(root.expanduser())
    pool = ClientPool(svc.start_actor, _exchange_settings(svc.config), client_options, limit_state=limits)
    svc.ops = Operations(svc.start_actor, svc.stop_actor, svc.emit, lake, runs, pool, **(ops_options or {}))
    svc.streams = StreamOps(
        svc.start_actor, svc.stop_actor, svc.emit, svc.hub, lake, runs, pool,
        ws_url=ws_url_lookup(svc.config), **(stream_options or {}),
    )  # fmt: skip
    svc.scheduler = await Scheduler.open(svc, svc.config, root.expanduser())


async def serve(
    config: Any = None, *, task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED, **options: Any
) -> None:
    """Run the service as a task: ``svc = await nursery.start(serve, config)``; ends on ``svc.cancel()``.

    ``options`` are :func:`open_service`'s keyword arguments (pass them with ``functools.partial``).
    """
    async with open_service(config, **options) as svc:
        task_status.started(svc)
        await trio.sleep_forever()
