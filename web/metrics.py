"""Prometheus metrics of one app: the service's actors, the HTTP transports, and the web layer itself.

Each app owns a :class:`~prometheus_client.CollectorRegistry` (never the
global one), so several apps or tests in one process do not collide.
``/metrics`` renders it followed by :data:`dccd.transport.http.TRANSPORT_REGISTRY`;
each registry refuses a clashing name when a collector registers, and the render
refuses one across them (:class:`DuplicateMetric`), since Prometheus rejects a
scrape that declares a name twice. Inbound API requests are ``dccd_http_*``,
outbound exchange requests ``dccd_exchange_*``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dccd.actors import PartWritten, register_metrics
from dccd.actors.alerts import AlertCollector
from dccd.actors.messages import ArchiveFetched, DataValidated
from dccd.actors.messages import Message as ActorMessage
from dccd.actors.metrics import BusCollector, StreamCollector
from litestar.types import ASGIApp, Message, Receive, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dccd.transport.http import TRANSPORT_REGISTRY

from .contract_metrics import ContractMetrics


class DuplicateMetric(RuntimeError):
    """Two collectors expose the same metric name (Prometheus would reject the whole scrape)."""


def check_unique(exposition: bytes) -> None:
    """Raise :class:`DuplicateMetric` naming every metric with a second ``# HELP`` or ``# TYPE`` line."""
    seen: set[tuple[bytes, bytes]] = set()
    clashes: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith((b"# HELP ", b"# TYPE ")):
            key = (line[2:6], line.split(b" ", 3)[2])
            if key in seen:
                clashes.add(key[1].decode())
            seen.add(key)
    if clashes:
        raise DuplicateMetric(f"metric names declared twice in /metrics: {', '.join(sorted(clashes))}")


def render_registries(registries: Sequence[CollectorRegistry]) -> bytes:
    """The text exposition of ``registries`` one after another.

    Raises:
        DuplicateMetric: a name is declared twice (within or across the registries).
    """
    text = b"".join(generate_latest(r) for r in registries)
    check_unique(text)
    return text


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WebMetrics:
    """The app's registry and the web layer's own metrics.

    Args:
        svc: the service whose actor/hub statistics are exported (``None``: web metrics only).
    """

    def __init__(self, svc: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = register_metrics(svc, self.registry) if svc is not None else None
        r = self.registry
        streams = getattr(svc, "streams", None)  # a service with storage records live streams
        if streams is not None:
            r.register(StreamCollector(streams.list, streams.now_ns))
        if getattr(svc, "scans", None) is not None:  # webhook alerts: dccd_alert_*
            r.register(AlertCollector(svc.scans.alerts))
        if getattr(getattr(svc, "config", None), "bus", None) is not None:
            r.register(BusCollector(svc))
        self.requests = Counter(
            "dccd_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "dccd_http_request_duration_seconds",
            "Time from request to response start.",
            ["method", "route"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.sse_events = Counter("dccd_sse_events", "SSE events produced by the feeds.", ["feed"], registry=r)
        self.rows_written = Counter(
            "dccd_rows_written", "Rows stored in the lake (from PartWritten).", ["exchange", "type"], registry=r
        )
        self.parts_written = Counter("dccd_parts_written", "Parquet parts stored.", ["exchange", "type"], registry=r)
        self.bytes_written = Counter(
            "dccd_bytes_written", "Bytes of Parquet parts stored.", ["exchange", "type"], registry=r
        )
        self.archive_files = Counter(
            "dccd_archive_files",
            "Archive files done by backfills, by result (verified, cached, missing, quarantined).",
            ["exchange", "result"],
            registry=r,
        )
        self.archive_bytes = Counter(
            "dccd_archive_bytes", "Bytes of archive files downloaded.", ["exchange"], registry=r
        )
        self.archive_rows = Counter(
            "dccd_archive_rows", "Rows read from archive files and sent to the writers.", ["exchange"], registry=r
        )
        self.contracts = ContractMetrics(r)

    def watch_sse(self, stats: Callable[[], dict[str, tuple[int, int]]]) -> None:
        """Export SSE clients and drops from ``stats()`` = {feed kind: (clients, dropped events)} at scrape time."""
        self.registry.register(_SseCollector(stats))

    def on_event(self, message: ActorMessage) -> None:
        """Count a service control event (subscribed to ``svc.events``)."""
        if isinstance(message, PartWritten):
            labels = (message.dataset.exchange, message.dataset.data_type.value)
            self.rows_written.labels(*labels).inc(message.rows)
            self.parts_written.labels(*labels).inc()
            self.bytes_written.labels(*labels).inc(message.bytes)
        elif isinstance(message, ArchiveFetched):
            self.archive_files.labels(message.exchange, message.result).inc()
            self.archive_bytes.labels(message.exchange).inc(message.bytes)
            self.archive_rows.labels(message.exchange).inc(message.rows)
        elif isinstance(message, DataValidated):
            self.contracts.on_validated(message)

    def render(self) -> bytes:
        """The Prometheus text exposition of this app and of the HTTP transports.

        Raises:
            DuplicateMetric: two collectors expose the same name.
        """
        return render_registries((self.registry, TRANSPORT_REGISTRY))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting requests by route template (never the raw path or query)."""

        async def counted(scope: Any, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            t0 = time.perf_counter()
            method = scope["method"]
            route = scope.get("path_template") or "unmatched"

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.requests.labels(method, route, str(message["status"])).inc()
                    self.latency.labels(method, route).observe(time.perf_counter() - t0)
                await send(message)

            await app(scope, receive, send_wrapper)

        return counted


class _SseCollector:
    """``dccd_sse_subscribers`` and ``dccd_sse_dropped_events_total``, read from the feeds per scrape.

    Drops are counted when a client's buffer evicts an event, not when the
    client is told: a stuck client may never read its ``lagged`` notice.
    """

    def __init__(self, stats: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        subs, drops = self._families()
        for kind, (clients, dropped) in sorted(self._stats().items()):
            subs.add_metric([kind], clients)
            drops.add_metric([kind], dropped)
        yield subs
        yield drops

    def _families(self) -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily("dccd_sse_subscribers", "Connected SSE clients.", labels=["feed"]),
            CounterMetricFamily(
                "dccd_sse_dropped_events",
                "SSE events evicted from slow clients' buffers (they get 'lagged').",
                labels=["feed"],
            ),
        )
