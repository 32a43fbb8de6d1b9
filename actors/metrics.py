"""Prometheus export of the actor runtime's statistics and of the live streams' health.

Custom collectors read snapshots per scrape (:class:`~dccd.actors.stats.ActorStats`,
:class:`~dccd.actors.streams.StreamInfo`), so the hot paths keep plain integer
counters and pay nothing for metrics. Register them on the registry you serve;
nothing is registered on the global registry at import time::

    collector = register_metrics(svc, registry)   # later: registry.unregister(collector)
    registry.register(StreamCollector(svc.streams.list, svc.streams.now_ns))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from .hub import HubStats
from .stats import ActorStats, StreamState
from .supervisor import State

if TYPE_CHECKING:
    from .streams import StreamInfo

LIVE_STREAM_STATES = frozenset({StreamState.CONNECTED, StreamState.RECONNECTING})
"""States of a stream that is still running (``stopped`` and ``failed`` ones have ended)."""


class StatsSource(Protocol):
    """Anything with the service's ``statistics()`` shape (a :class:`~dccd.actors.service.Service`)."""

    def actor_statistics(self) -> tuple[ActorStats, ...]:
        """One snapshot per actor."""
        ...

    def hub_statistics(self) -> HubStats:
        """The hub's snapshot."""
        ...


class ActorCollector:
    """Collector of per-actor and hub metrics, prefixed ``dccd_``.

    Args:
        actors: returns the actors' snapshots at scrape time.
        hub: returns the hub's snapshot at scrape time (optional).
    """

    def __init__(self, actors: Callable[[], tuple[ActorStats, ...]], hub: Callable[[], HubStats] | None = None) -> None:
        self._actors = actors
        self._hub = hub

    def describe(self) -> Iterator[Metric]:
        """The metric names this collector produces (for the registry's clash check)."""
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        """Current values, read from fresh snapshots."""
        f = self._families()
        for s in self._actors():
            actor = [s.name, s.role]
            f["restarts"].add_metric(actor, s.restarts)
            for st in State:
                f["state"].add_metric([*actor, st.value], 1.0 if s.state == st.value else 0.0)
            m = s.metrics
            if m.queue_depth is not None:
                f["depth"].add_metric(actor, m.queue_depth)
            if m.queue_high is not None:
                f["high"].add_metric(actor, m.queue_high)
            if m.credits is not None:
                f["credits"].add_metric(actor, m.credits)
            f["items_in"].add_metric(actor, m.items_in)
            f["items_out"].add_metric(actor, m.items_out)
            f["drops"].add_metric(actor, m.drops)
        if self._hub is not None:
            h = self._hub()
            f["subscribers"].add_metric([h.name], h.subscribers)
            f["published"].add_metric([h.name], h.published)
            f["hub_drops"].add_metric([h.name], h.drops)
        yield from f.values()

    def _families(self) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        a = ["actor", "role"]
        c, g = CounterMetricFamily, GaugeMetricFamily
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "restarts": c("dccd_actor_restarts", "Restarts after transient errors.", labels=a),
            "state": g("dccd_actor_state", "1 for the actor's current lifecycle state.", labels=[*a, "state"]),
            "depth": g("dccd_actor_queue_depth", "Items waiting in the actor's input queue.", labels=a),
            "high": g("dccd_actor_queue_high", "High water mark of the actor's input queue.", labels=a),
            "credits": g("dccd_actor_credits", "Emissions producers may make before the gate closes.", labels=a),
            "items_in": c("dccd_actor_items_in", "Items accepted by the actor.", labels=a),
            "items_out": c("dccd_actor_items_out", "Items the actor consumed.", labels=a),
            "drops": c("dccd_actor_drops", "Items (rows) the actor dropped or lost.", labels=a),
        }
        if self._hub is not None:
            fams["subscribers"] = g("dccd_hub_subscribers", "Current hub subscribers.", labels=["hub"])
            fams["published"] = c("dccd_hub_published", "Items published to the hub.", labels=["hub"])
            fams["hub_drops"] = c("dccd_hub_drops", "Items evicted from slow subscribers' buffers.", labels=["hub"])
        return fams


def register_metrics(source: StatsSource, registry: CollectorRegistry) -> ActorCollector:
    """Register an :class:`ActorCollector` for ``source`` on ``registry`` and return it.

    Raises:
        ValueError: the registry already has a collector producing these names.
    """
    collector = ActorCollector(source.actor_statistics, source.hub_statistics)
    registry.register(collector)
    return collector


def seconds_since_data(info: StreamInfo, now_ns: int) -> float:
    """Seconds since the stream's latest data frame, or since it started when none came yet (never negative)."""
    since = info.last_data_ns if info.last_data_ns is not None else info.started_ns
    return max(0.0, (now_ns - since) / 1e9)


class StreamCollector:
    """Per-stream series ``dccd_stream_*``, labelled ``stream``, ``exchange``, ``type``, ``symbols`` (comma-joined).

    Streams that ended (``stopped``/``failed``) keep their counters while they are
    listed, read as not connected and have no ``seconds_since_data`` (an alert on
    silence must not fire for a stream that was stopped on purpose).

    Args:
        streams: returns the current :class:`~dccd.actors.streams.StreamInfo` snapshots.
        now_ns: the wall clock the snapshots' ``last_data_ns``/``started_ns`` are read on.
    """

    def __init__(self, streams: Callable[[], Iterable[StreamInfo]], now_ns: Callable[[], int]) -> None:
        self._streams = streams
        self._now_ns = now_ns

    def describe(self) -> Iterator[Metric]:
        """The metric names this collector produces (for the registry's clash check)."""
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        """Current values, read from fresh snapshots."""
        f = self._families()
        now = self._now_ns()
        for s in self._streams():
            labels = [s.id, s.exchange, s.type, ",".join(s.symbols)]
            live = s.state in LIVE_STREAM_STATES
            f["connected"].add_metric(labels, 1.0 if s.state is StreamState.CONNECTED else 0.0)
            f["connections"].add_metric(labels, s.connections)
            f["connections_up"].add_metric(labels, s.connections_up if live else 0)
            if live:
                f["silent"].add_metric(labels, seconds_since_data(s, now))
            f["messages"].add_metric(labels, s.messages)
            f["rows"].add_metric(labels, s.rows)
            f["reconnects"].add_metric(labels, s.reconnects)
            f["attempts"].add_metric(labels, s.reconnect_attempts)
            f["failures"].add_metric(labels, s.reconnect_failures)
            f["watchdog"].add_metric(labels, s.watchdog_trips)
            f["refills"].add_metric([*labels, "done"], s.refills_done)
            f["refills"].add_metric([*labels, "failed"], s.refills_failed)
            f["gaps_open"].add_metric(labels, s.gaps_open)
        yield from f.values()

    def _families(self) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        ls = ["stream", "exchange", "type", "symbols"]
        c, g = CounterMetricFamily, GaugeMetricFamily
        return {
            "connected": g("dccd_stream_connected", "1 while every connection of the stream is up.", labels=ls),
            "connections": g("dccd_stream_connections", "WebSocket connections the stream plans.", labels=ls),
            "connections_up": g("dccd_stream_connections_up", "Connections of the stream open now.", labels=ls),
            "silent": g(
                "dccd_stream_seconds_since_data",
                "Seconds since the latest data frame (since the start before the first); running streams only.",
                labels=ls,
            ),
            "messages": c("dccd_stream_messages", "Frames received.", labels=ls),
            "rows": c("dccd_stream_rows", "Rows written to the lake.", labels=ls),
            "reconnects": c("dccd_stream_reconnects", "Reconnects that succeeded after a drop.", labels=ls),
            "attempts": c(
                "dccd_stream_reconnect_attempts", "Reconnect attempts after a drop, failed ones included.", labels=ls
            ),
            "failures": c("dccd_stream_reconnect_failures", "Reconnect attempts that failed.", labels=ls),
            "watchdog": c("dccd_stream_watchdog_trips", "Connections replaced because they went silent.", labels=ls),
            "refills": c("dccd_stream_refills", "REST refills of holes, by result.", labels=[*ls, "result"]),
            "gaps_open": g("dccd_stream_gaps_open", "Ranges recorded as unfillable gaps.", labels=ls),
        }


class BusCollector:
    """``dccd_bus_*`` (the publisher's counters) and ``dccd_shard_*`` (leases) of a service with ``bus:``.

    Reads ``svc.bus_publisher`` and ``svc.shards`` at each scrape (they appear once the bus actor runs).
    """

    def __init__(self, svc: Any) -> None:
        self._svc = svc

    def describe(self) -> Iterator[Metric]:
        """The metric names this collector produces (for the registry's clash check)."""
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        """Current values."""
        f = self._families()
        pub = getattr(self._svc, "bus_publisher", None)
        if pub is not None:
            s = pub.statistics()
            f["published"].add_metric([], s.published)
            f["duplicates"].add_metric([], s.duplicates)
            f["dropped"].add_metric([], s.dropped)
            f["failures"].add_metric([], s.failed)
            f["depth"].add_metric([], s.depth)
            f["connected"].add_metric([], 1.0 if s.connected else 0.0)
        coord = getattr(self._svc, "shards", None)
        if coord is not None:
            for j in range(coord.n):
                f["owned"].add_metric([str(j)], 1.0 if j in coord.owned else 0.0)
            f["takeovers"].add_metric([], coord.takeovers)
            f["renew_failures"].add_metric([], coord.renew_failures)
        work = getattr(self._svc, "work", None)
        if work is not None:
            w = work.statistics()
            f["work_planned"].add_metric([], w.planned)
            f["work_in_flight"].add_metric([], w.running)
            f["work_done"].add_metric([], w.done)
            f["work_failed"].add_metric([], w.retried)
            f["work_dead"].add_metric([], w.dead)
            if w.queued is not None and w.ack_pending is not None:
                f["work_queued"].add_metric([], w.queued)
                f["work_unacked"].add_metric([], w.ack_pending)
        yield from f.values()

    def _families(self) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        c, g = CounterMetricFamily, GaugeMetricFamily
        return {
            "published": c("dccd_bus_published", "Messages stored by JetStream."),
            "duplicates": c("dccd_bus_duplicates", "Messages JetStream dropped as already stored (same Nats-Msg-Id)."),
            "dropped": c("dccd_bus_dropped", "Messages dropped from the full outbox while the bus was unreachable."),
            "failures": c("dccd_bus_publish_failures", "Publish rounds that failed (and were retried)."),
            "depth": g("dccd_bus_queue_depth", "Messages waiting in the outbox."),
            "connected": g("dccd_bus_connected", "1 while the last publish round succeeded."),
            "owned": g("dccd_shard_owned", "1 for each shard whose jobs this collector runs.", labels=["shard"]),
            "takeovers": c("dccd_shard_takeovers", "Shards of dead collectors taken over."),
            "renew_failures": c("dccd_shard_renew_failures", "Lease rounds that failed."),
            "work_planned": c("dccd_work_units_planned", "Work units this process queued (new ones, not duplicates)."),
            "work_in_flight": g("dccd_work_units_in_flight", "Work units this collector is running."),
            "work_done": c("dccd_work_units_done", "Work units this collector ran and acked."),
            "work_failed": c("dccd_work_units_failed", "Work unit attempts that failed here (redelivered later)."),
            "work_dead": c("dccd_work_units_dead", "Work units dead-lettered here (failed max_deliver times)."),
            "work_queued": g("dccd_work_queued", "Work units waiting in the shared queue (all collectors)."),
            "work_unacked": g("dccd_work_unacked", "Work units delivered and not yet acked (all collectors)."),
        }
