"""Prometheus export of the actor runtime's statistics.

A custom collector reads one :class:`~dccd.actors.service.ServiceStats`
snapshot per scrape, so the hot paths keep plain integer counters and pay
nothing for metrics. Register it on the registry you serve; nothing is
registered on the global registry at import time::

    collector = register_metrics(svc, registry)   # later: registry.unregister(collector)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from .hub import HubStats
from .stats import ActorStats
from .supervisor import State


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
