"""What every route handler gets: the service, the config, the app's metrics and feeds, and options."""

from __future__ import annotations

from pathlib import Path

import msgspec
from dccd.actors import Service
from dccd.actors.scheduler import Scheduler

from dccd.config import Config

from .errors import ApiProblem, unavailable
from .metrics import WebMetrics
from .sse import Feeds


class WebOptions(msgspec.Struct, frozen=True):
    """Tunables of the web layer (defaults suit production; tests shrink the times).

    Attributes:
        heartbeat_s: SSE comment line after this long without events.
        linger_s: a live tap outlives its last client this long (so EventSource reconnects can resume).
        live_window_s: live records arriving within this window travel as one SSE event.
        live_ring: events kept per live topic for ``Last-Event-ID`` resume (and at most ``ring_bytes`` of them).
        live_client_buffer: events buffered per live client before it lags.
        max_records_per_event: records per live SSE event (bigger windows are split).
        events_ring / events_client_buffer: the same for ``/api/v1/events``.
        tap_maxlen: hub buffer of each tap.
        graceful_s: how long the server waits for open requests at shutdown.
    """

    heartbeat_s: float = 15.0
    linger_s: float = 30.0
    live_window_s: float = 0.1
    live_ring: int = 256
    ring_bytes: int = 8 << 20
    live_client_buffer: int = 64
    max_records_per_event: int = 2000
    events_ring: int = 1024
    events_client_buffer: int = 1024
    tap_maxlen: int = 4096
    graceful_s: float = 3.0


class WebContext:
    """Shared state of one app (injected into handlers as ``ctx``)."""

    def __init__(self, svc: Service, config: Config | None, options: WebOptions) -> None:
        self.svc = svc
        self.config = config
        self.options = options
        self.token: str | None = (config.server.token if config is not None else None) or None
        self.metrics = WebMetrics(svc)
        self.feeds: Feeds = Feeds(
            svc.hub,
            self.metrics,
            heartbeat_s=options.heartbeat_s,
            linger_s=options.linger_s,
            tap_maxlen=options.tap_maxlen,
        )
        self.metrics.watch_sse(self.feeds.stats)

    @property
    def stored(self) -> Service:
        """The service handle, for what needs its storage (lake, runs, backfills).

        Raises:
            ApiProblem: 503 when the service runs without storage.
        """
        return self.with_storage("storage", "storage (config storage.path)")

    def with_storage(self, field: str, what: str) -> Service:
        """The service handle when it has storage (streams and jobs live on it), else a 503 naming ``what``."""
        if not self.svc.has_operations:
            raise unavailable(field, what)
        return self.svc

    def scheduler(self) -> Scheduler:
        """The service's job scheduler, or a 503 naming it."""
        scheduler: Scheduler | None = self.with_storage("jobs", "the job scheduler").scheduler
        if scheduler is None:
            raise unavailable("jobs", "the job scheduler")
        return scheduler

    @property
    def storage_root(self) -> Path | None:
        """The lake root, if the service has storage."""
        root: Path | None = self.svc.lake_root
        return root

    def not_found(self, field: str, what: str) -> ApiProblem:
        """A 404 naming the missing thing."""
        return ApiProblem(404, field, f"{what} not found")
