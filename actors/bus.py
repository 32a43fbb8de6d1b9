"""The bus publisher actor: live batches and service events onto NATS JetStream.

::

    StreamOps.started ─► each stream's Writer.accepted (WS batches and REST refills) ─┐
    svc.events (runs, actors, scans, signals) ─────────────────────────────────────────┼─► BusPublisher.input
                                                                                        │   (bounded outbox)
                                                          publish loop: pipelined, acked ◄┘
                                                          ─► NATS JetStream (Nats-Msg-Id = natural key)

Ingestion never waits for the bus: :attr:`BusPublisher.input` only appends to a bounded outbox (in
messages); when the bus is down or slow the outbox fills and its oldest messages are dropped and counted
(``dccd_bus_dropped_total``): the lake stays the system of record. A failed publish is retried with
backoff and, because every message carries its natural key as ``Nats-Msg-Id``, a retry that the server
had in fact stored is dropped by JetStream as a duplicate instead of stored twice.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
import structlog
import trio
from reactivex import abc

from dccd.bus.link import BusError, NatsLink
from dccd.bus.wire import Format, Outgoing, batch_messages, event_message

from .messages import Batch, Message, PartWritten, RunProgressed, SubscriberLagged

log = structlog.get_logger()

_QUIET = (PartWritten, RunProgressed, SubscriberLagged)  # high-rate internals: kept off the bus


class BusStats(msgspec.Struct, frozen=True):
    """Counters of the publisher (exported as ``dccd_bus_*``)."""

    queued: int
    published: int
    duplicates: int
    failed: int
    dropped: int
    depth: int
    connected: bool
    last_error: str | None


class _Input(abc.ObserverBase[Any]):
    def __init__(self, pub: BusPublisher) -> None:
        self._pub = pub

    def on_next(self, value: Any) -> None:
        self._pub.offer(value)

    def on_error(self, error: Exception) -> None:
        log.warning("bus.input_error", error=str(error))

    def on_completed(self) -> None:
        pass


class BusPublisher:
    """Publishes what it is fed (see the module docstring).

    Args:
        link: the NATS connection.
        fmt: payload format.
        max_queue: outbox bound, in messages.
        chunk: messages published (pipelined) per round trip.
    """

    def __init__(
        self, link: NatsLink | None, *, fmt: Format = "json", max_queue: int = 500_000, chunk: int = 2_000
    ) -> None:
        self.link = link
        self.fmt: Format = fmt
        self.max_queue = max_queue
        self.chunk = chunk
        self._out: deque[Outgoing] = deque()
        self._wake = trio.Event()
        self.queued = self.published = self.duplicates = self.failed = self.dropped = 0
        self.connected = link is not None
        self.last_error: str | None = None
        self.input: abc.ObserverBase[Any] = _Input(self)
        """Input: :class:`Batch` (live data) and events; never blocks."""

    def offer(self, item: Any) -> None:
        """Queue the bus messages of one batch or event (drop the oldest beyond ``max_queue``)."""
        if isinstance(item, Batch):
            msgs = list(batch_messages(item.dataset, item.records, self.fmt))
        elif isinstance(item, Message):
            if isinstance(item, _QUIET):
                return
            msgs = [event_message(item, self.fmt)]
        else:
            return
        if not msgs:
            return
        self._out.extend(msgs)
        self.queued += len(msgs)
        self._trim()
        self._wake.set()

    def _trim(self) -> None:
        """Drop the oldest messages beyond ``max_queue`` (counted)."""
        over = len(self._out) - self.max_queue
        for _ in range(max(0, over)):
            self._out.popleft()
        self.dropped += max(0, over)

    def statistics(self) -> BusStats:
        return BusStats(
            self.queued, self.published, self.duplicates, self.failed, self.dropped, len(self._out),
            self.connected, self.last_error,
        )  # fmt: skip

    async def run(self, *, task_status: trio.TaskStatus[BusPublisher] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish until cancelled; on cancellation publish what is queued within a few seconds."""
        task_status.started(self)
        try:
            await self._loop()
        finally:
            with trio.move_on_after(5.0) as scope:
                scope.shield = True
                while self._out and self.connected:
                    if not await self._publish_chunk():
                        break

    async def _loop(self) -> None:
        delay = 0.25
        while True:
            if not self._out:
                self._wake = trio.Event()
                await self._wake.wait()
            if await self._publish_chunk():
                delay = 0.25
            else:
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish_chunk(self) -> bool:
        """Publish the oldest ``chunk`` messages; keep those that failed at the front. True if all were acked."""
        link = self.link
        if link is None:
            return False
        chunk = [self._out.popleft() for _ in range(min(self.chunk, len(self._out)))]
        try:
            res = await link.publish_many(chunk)
        except BusError as exc:
            self._failed(chunk, str(exc))
            return False
        self.published += res.stored
        self.duplicates += res.duplicates
        if res.failed:
            # which ones failed is not known: publish the chunk again; stored ones come back as duplicates
            self._failed(chunk, res.error or "publish failed")
            return False
        if not self.connected:
            log.info("bus.recovered", url=link.url)
        self.connected, self.last_error = True, None
        return True

    def _failed(self, chunk: list[Outgoing], error: str) -> None:
        self.failed += 1
        if self.connected:
            log.warning("bus.publish_failed", error=error, pending=len(chunk) + len(self._out))
        self.connected, self.last_error = False, error
        self._out.extendleft(reversed(chunk))
        self._trim()


async def serve_bus(svc: Any, *, task_status: trio.TaskStatus[BusPublisher] = trio.TASK_STATUS_IGNORED) -> None:
    """The ``bus`` actor of a service whose config has ``bus:``: link, publisher and (``shard:``) leases.

    Ready at once (a bus that is down never delays the collector): the publisher's outbox fills from the
    service's events and from every stream's accepted batches while it connects, retrying with backoff.
    Once connected, nats-py reconnects by itself. With ``shard:`` the coordinator starts once connected;
    until then this collector runs no job.
    """
    from dccd.bus.shard import parse_shard
    from dccd.config.timeexpr import parse_duration_s

    from .shards import ShardCoordinator
    from .work import work_queue_of

    cfg = svc.config.bus
    pub = BusPublisher(None, fmt=cfg.format, max_queue=cfg.max_queue)
    subs = [svc.events.subscribe(pub.input)]
    streams = getattr(svc, "streams", None)
    if streams is not None:
        for stream in streams.streams.values():
            subs.append(stream.writer.accepted.subscribe(pub.input))
        subs.append(streams.started.subscribe(on_next=lambda s: subs.append(s.writer.accepted.subscribe(pub.input))))
    svc.bus_publisher = pub
    work = svc.work = work_queue_of(svc, cfg, svc.config.shard) if svc.has_operations else None
    task_status.started(pub)
    delay = 0.5
    try:
        while True:
            try:
                async with NatsLink.open(cfg.url, name="dccd", fmt=cfg.format) as link:
                    await link.ensure_streams(
                        max_age_s=parse_duration_s(cfg.max_age),
                        duplicate_window_s=parse_duration_s(cfg.duplicate_window),
                    )
                    pub.link, pub.connected, pub.last_error = link, True, None
                    log.info("bus.connected", url=cfg.url)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(pub.run)
                        if work is not None:
                            await nursery.start(work.run, link)
                        if svc.config.shard is not None and svc.scheduler is not None:
                            me, n = parse_shard(svc.config.shard)
                            ttl_s = parse_duration_s(cfg.lease_ttl)
                            coord = ShardCoordinator(link, me, n, ttl_s=ttl_s, on_change=svc.scheduler.set_owned)
                            svc.shards = coord
                            await nursery.start(coord.run)
            except BusError as exc:
                pub.connected, pub.last_error = False, str(exc)
                log.warning("bus.unreachable", url=cfg.url, error=str(exc), retry_s=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 10.0)
    finally:
        for sub in subs:
            sub.dispose()
