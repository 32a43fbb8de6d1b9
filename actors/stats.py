"""Snapshots the runtime reports: per-actor metrics and statistics (frozen Structs, cheap to build)."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

import msgspec


class StreamState(StrEnum):
    """A live stream's state (its values are what the API, the metrics and the UI show)."""

    CONNECTED = "connected"
    """Every connection is up."""
    RECONNECTING = "reconnecting"
    """Some connection is down or not up yet."""
    STOPPED = "stopped"
    FAILED = "failed"


class ActorMetrics(msgspec.Struct, frozen=True):
    """Queue and flow counters an actor's handle may report (all optional)."""

    queue_depth: int | None = None
    queue_high: int | None = None
    items_in: int = 0
    items_out: int = 0
    drops: int = 0
    credits: int | None = None


@runtime_checkable
class Instrumented(Protocol):
    """A handle (the value an actor passes to ``task_status.started``) that reports metrics."""

    def actor_metrics(self) -> ActorMetrics:
        """Current queue depth and flow counters."""
        ...


class ActorStats(msgspec.Struct, frozen=True):
    """A snapshot of one supervised actor."""

    name: str
    role: str
    state: str
    restarts: int
    started_at: float | None
    last_error: str | None
    metrics: ActorMetrics
