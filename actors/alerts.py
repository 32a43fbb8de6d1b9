"""Webhook alerts: every :class:`SignalGenerated` of the configured scanners POSTed as JSON.

Each webhook has its own bounded queue and delivery task: the bus's ``on_next`` only does a
``send_nowait`` (a full queue drops the signal and counts it), so a slow or dead receiver never
slows the bus, ingestion or other webhooks. A delivery is retried on connection errors, timeouts,
408, 429 and 5xx with exponential backoff (``backoff_s`` × 2^attempt, at most ``max_backoff_s``),
``retries`` times; any other 4xx is final. Counted per target (``host:port``) as
``dccd_alert_deliveries_total{target,outcome=sent|failed|dropped}`` and ``dccd_alert_retries_total``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from reactivex import Observable

from .messages import Message, SignalGenerated

log = structlog.get_logger()


class AlertCounts:
    """Delivery counters of one webhook."""

    __slots__ = ("dropped", "failed", "queued", "retries", "sent")

    def __init__(self) -> None:
        self.sent = self.failed = self.dropped = self.retries = self.queued = 0


class AlertSender:
    """The ``alerts`` actor (see the module docstring).

    Args:
        alerts: :class:`dccd.config.Alert` entries (``url``, ``scanners``, ``timeout_s``, ``retries``).
        queue: signals buffered per webhook before new ones are dropped.
        backoff_s / max_backoff_s: retry delays.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        alerts: Sequence[Any],
        *,
        queue: int = 10_000,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.alerts = list(alerts)
        self.queue = queue
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._transport = transport
        self.counts = {self.target(a.url): AlertCounts() for a in self.alerts}
        self._sends: list[tuple[Any, trio.MemorySendChannel[bytes]]] = []

    @staticmethod
    def target(url: str) -> str:
        """The metrics label of a webhook: ``host:port``."""
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    async def run(self, events: Observable[Message], *, task_status: trio.TaskStatus[AlertSender]) -> None:
        """Deliver until cancelled; ``events`` is the service bus."""
        async with httpx.AsyncClient(transport=self._transport) as client, trio.open_nursery() as nursery:
            self._sends = []
            for alert in self.alerts:
                send, recv = trio.open_memory_channel[bytes](self.queue)
                self._sends.append((alert, send))
                nursery.start_soon(self._deliver, client, alert, recv)
            sub = events.subscribe(on_next=self.on_event)
            try:
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                sub.dispose()

    def on_event(self, message: Message) -> None:
        """Queue a signal for each webhook that wants its scanner (never blocks)."""
        if not isinstance(message, SignalGenerated):
            return
        body = msgspec.json.encode(message)
        for alert, send in self._sends:
            if alert.scanners and message.scanner not in alert.scanners:
                continue
            counts = self.counts[self.target(alert.url)]
            try:
                send.send_nowait(body)
                counts.queued += 1
            except trio.WouldBlock:
                counts.dropped += 1
            except trio.ClosedResourceError:
                return

    async def _deliver(self, client: httpx.AsyncClient, alert: Any, recv: trio.MemoryReceiveChannel[bytes]) -> None:
        counts = self.counts[self.target(alert.url)]
        headers = {"content-type": "application/json"}
        async for body in recv:
            counts.queued -= 1
            for attempt in range(alert.retries + 1):
                final, reason = await self._post(client, alert, body, headers)
                if final is not None:
                    if final:
                        counts.sent += 1
                    else:
                        counts.failed += 1
                        log.warning("alert.failed", target=self.target(alert.url), reason=reason)
                    break
                if attempt == alert.retries:
                    counts.failed += 1
                    log.warning("alert.failed", target=self.target(alert.url), reason=reason, attempts=attempt + 1)
                    break
                counts.retries += 1
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                log.info("alert.retrying", target=self.target(alert.url), reason=reason, delay_s=delay)
                await trio.sleep(delay)

    async def _post(
        self, client: httpx.AsyncClient, alert: Any, body: bytes, headers: dict[str, str]
    ) -> tuple[bool | None, str]:
        """``(True, _)`` delivered, ``(False, why)`` final failure, ``(None, why)`` retry."""
        try:
            with trio.fail_after(alert.timeout_s):
                resp = await client.post(alert.url, content=body, headers=headers, timeout=alert.timeout_s)
        except trio.TooSlowError:
            return None, f"no answer in {alert.timeout_s} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if resp.status_code < 300:
            return True, ""
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            return None, f"HTTP {resp.status_code}"
        return False, f"HTTP {resp.status_code}"


class AlertCollector:
    """Prometheus collector of an :class:`AlertSender`'s counters."""

    def __init__(self, sender: AlertSender) -> None:
        self._sender = sender

    def describe(self) -> Iterator[Metric]:
        """The metric names (for the registry's clash check)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """Current values."""
        deliveries, retries, queued = self._families()
        for target, c in self._sender.counts.items():
            for outcome in ("sent", "failed", "dropped"):
                deliveries.add_metric([target, outcome], getattr(c, outcome))
            retries.add_metric([target], c.retries)
            queued.add_metric([target], c.queued)
        yield from (deliveries, retries, queued)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, GaugeMetricFamily]:
        return (
            CounterMetricFamily(
                "dccd_alert_deliveries", "Webhook deliveries of signals by outcome.", labels=["target", "outcome"]
            ),
            CounterMetricFamily("dccd_alert_retries", "Webhook delivery retries.", labels=["target"]),
            GaugeMetricFamily("dccd_alert_queued", "Signals waiting for delivery.", labels=["target"]),
        )
