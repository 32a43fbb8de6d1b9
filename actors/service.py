"""The embedding API: the running actor system as one handle (:class:`Service`).

::

    async with dccd.actors.open_service(config) as svc:      # inside your own trio.run
        writer = await svc.start_writer("writer", lake_write)
        await svc.start_actor("binance:trades", run_stream, writer, role=Role.SOURCE)
        svc.events.subscribe(print)                          # every control event, an Rx Subject
        ...

    svc = await nursery.start(dccd.actors.serve, config)    # or as a task; svc.cancel() ends it

The library never calls ``trio.run``, installs no signal handlers and
configures no logging: the CLI does those. Leaving the block (or
:meth:`Service.cancel`) shuts down in order (sources, writers drain, the hub
closes its subscribers, the rest) within ``grace_s``. The handle is this
module; :mod:`~dccd.actors.wiring` builds it and composes the graph.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from reactivex import abc
from reactivex.subject import Subject

from dccd.config import Config
from dccd.contracts.check import check as check_contracts
from dccd.contracts.report import CheckReport
from dccd.domain.backoff import RestartPolicy
from dccd.domain.capability import Capabilities
from dccd.domain.dataset import DatasetId
from dccd.ops import BackfillRequest, StreamRequest
from dccd.sources.base import DerivativesAdapter, Listing
from dccd.sources.registry import get_adapter
from dccd.storage.export import Export
from dccd.storage.inventory import DatasetInventory
from dccd.storage.runs import RunEvent, RunRecord

from .hub import Hub, HubStats, Key
from .messages import DataValidated, Message
from .stats import ActorStats
from .streams import StreamInfo, StreamOps
from .supervisor import ActorFn, Role, Supervisor
from .writer import WriteFn, Writer

if TYPE_CHECKING:
    from .operations import Operations
    from .scans import ScanOps
    from .scheduler import Scheduler

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

    def __init__(self, config: Config | None, supervisor: Supervisor, hub: Hub[Any], events: Subject[Message]) -> None:
        self.config = config
        self.supervisor = supervisor
        self.hub = hub
        self.events = events
        """Every control event, on the Trio thread: an Rx Subject (the hub taps it under :data:`EVENTS_TOPIC`)."""
        self.bus: abc.ObserverBase[Message] = _Bus(self)
        """Where actors' event streams are subscribed (``writer.events.subscribe(svc.bus)``); their
        completion or errors never end :attr:`events`."""
        self.events_emitted = 0
        self._scope = trio.CancelScope()
        self._t0 = trio.current_time()
        self._operations: Operations | None = None
        """Backfill/stream operations; set when the config names a storage path."""
        self.streams: StreamOps | None = None
        """Live recordings (:mod:`~dccd.actors.streams`); set with :attr:`ops`."""
        self.scheduler: Scheduler | None = None
        """Jobs (config and API); set with :attr:`ops`; fires only after ``await scheduler.start()``."""
        self.scans: ScanOps | None = None
        """Scanner runs, signals and alerts (:mod:`~dccd.actors.scans`); set with :attr:`ops`."""
        self._checks = trio.CapacityLimiter(1)  # one contract check at a time: each may read a year of data
        self.bus_publisher: Any = None
        """The :class:`~dccd.actors.bus.BusPublisher` when the config has ``bus:``."""
        self.work: Any = None
        """The :class:`~dccd.actors.work.WorkQueue` (distributed backfills) when the config has ``bus:``."""
        self.shards: Any = None
        """The :class:`~dccd.actors.shards.ShardCoordinator` when the config has ``shard:``."""

    @property
    def has_operations(self) -> bool:
        """Whether the service has storage and operations (a config with ``storage.path``)."""
        return self._operations is not None

    def attach_operations(self, operations: Operations) -> None:
        """Give the service its operations (done once by the wiring, before the service is handed out)."""
        self._operations = operations

    @property
    def operations(self) -> Operations:
        """The service's operations (needs a config with ``storage.path``).

        Raises:
            RuntimeError: the service was opened without storage.
        """
        if self._operations is None:
            raise RuntimeError("this service has no storage (open it with a config that has storage.path)")
        return self._operations

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
        """``config.storage.path`` (None for a service without a config: no storage, no operations); an
        ``s3://`` lake's local root (its cache directory)."""
        if self.config is None:
            return None
        path = self.config.storage.path
        return self.config.data_root if path.startswith("s3://") else Path(path)

    def emit(self, message: Message) -> None:
        """Publish a control event on :attr:`events` (the hub republishes it under :data:`EVENTS_TOPIC`)."""
        self.events_emitted += 1
        self.events.on_next(message)

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
        writer = Writer(write, name=name, **options)
        writer.events.subscribe(self.bus)
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
        return self._operations.lake.root if self._operations is not None else None

    def store_probe(self) -> tuple[str, Callable[[], None]] | None:
        """An object-store lake's URI and a blocking one-request check that its store answers (raises
        ``StorageError``); None for a lake on local disk or a service without storage."""
        obj = getattr(self._operations.lake, "obj", None) if self._operations is not None else None
        if obj is None:
            return None
        return obj.settings.uri, obj.store.probe

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

    async def check_quality(
        self,
        selectors: tuple[str, ...] = (),
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        as_of: str | None = None,
    ) -> CheckReport:
        """Run the data contracts over stored datasets (:func:`dccd.contracts.check.check`, in a worker
        thread, one check at a time) and emit one ``DataValidated`` (scope ``check``) per dataset.

        Raises:
            SelectorError: a selector matches nothing stored.
            SnapshotNotFound: ``as_of`` names no retained snapshot.
        """
        lake = self.operations.lake
        run = functools.partial(
            check_contracts, lake.root, lake.contracts, selectors, start_ns=start_ns, end_ns=end_ns, as_of=as_of
        )
        async with self._checks:
            report = await trio.to_thread.run_sync(run)
        snapshot = report.as_of.split(" ", 1)[0] if report.as_of else ""
        for ds in report.datasets:
            self.emit(DataValidated(ds.dataset, "check", ds.rows, ds.failed, snapshot))
        return report

    async def missing_dataset(self, dataset: DatasetId) -> str | None:
        """None when ``dataset`` was collected here, else one line naming the nearest stored datasets (no paths)."""
        lake = self.operations.lake
        if await trio.to_thread.run_sync(lake.has_dataset, dataset):
            return None
        return await trio.to_thread.run_sync(functools.partial(lake.missing_message, dataset, show_root=False))

    async def export(
        self,
        dataset: DatasetId,
        fmt: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        as_of: str | int | None = None,
    ) -> Export:
        """An export of ``dataset`` in ``fmt`` (as of a snapshot if given), planned in a worker thread (iterate it
        in worker threads too)."""
        lake = self.operations.lake
        return await trio.to_thread.run_sync(
            functools.partial(lake.export, dataset, fmt, start_ns, end_ns, as_of=as_of)
        )

    async def snapshots(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """A snapshot operation of the lake in a worker thread: ``op`` is ``list_snapshots``, ``snapshot``
        (resolve), ``create_snapshot``, ``snapshot_diff``, ``drop_snapshot`` or ``prune_snapshots``.

        Raises:
            ValueError: an unknown ``op`` (or a bad argument of it).
        """
        if op not in _SNAPSHOT_OPS:
            raise ValueError(f"unknown snapshot operation {op!r}")
        lake = self.operations.lake
        return await trio.to_thread.run_sync(functools.partial(getattr(lake, op), *args, **kwargs))

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
        if self._operations is not None and run_id in self._operations.active:
            return True
        stream = self.streams.get(run_id) if self.streams is not None else None
        return stream is not None and not stream.done.is_set()


_SNAPSHOT_OPS = frozenset(
    ("list_snapshots", "snapshot", "create_snapshot", "snapshot_diff", "drop_snapshot", "prune_snapshots")
)


class _Bus(abc.ObserverBase[Message]):
    """The service's event input: ``on_next`` emits; one source's completion or error does not end the bus."""

    __slots__ = ("_emit",)

    def __init__(self, svc: Service) -> None:
        self._emit = svc.emit

    def on_next(self, value: Message) -> None:
        self._emit(value)

    def on_error(self, error: Exception) -> None:
        pass  # the failing actor's supervisor reports it

    def on_completed(self) -> None:
        pass
