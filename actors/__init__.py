"""dccd's actor runtime: supervised Trio actors exchanging msgspec messages over reactivex.

Installed as ``dccd.actors``. The pieces:

- :mod:`~dccd.actors.messages`: frozen tagged Structs (commands, events, :class:`Batch`);
- :mod:`~dccd.actors.supervisor`: ordered start, restart with backoff and intensity limit, ordered stop;
- :mod:`~dccd.actors.rx`: :class:`TrioScheduler`, so Rx time operators run on Trio's clock and thread;
- :mod:`~dccd.actors.sink`: :class:`PressureQueue`, the gated lossless end of the data plane;
- :mod:`~dccd.actors.ingress`: :class:`BoundedIngress` for un-gatable WebSocket sources, overflow recorded;
- :mod:`~dccd.actors.hub`: :class:`Hub`, lossy fan-out to SSE/UI with in-band :class:`SubscriberLagged` notices;
- :mod:`~dccd.actors.writer`: :class:`Writer`, the batched writer actor;
- :mod:`~dccd.actors.service`: :class:`Service`, the handle of the embedding API;
- :mod:`~dccd.actors.wiring`: :func:`open_service` / :func:`serve`, which build it and compose the actor graph;
- :mod:`~dccd.actors.stats`, :mod:`~dccd.actors.metrics`: snapshots, and a Prometheus collector for them.
"""

from dccd.domain.backoff import RestartPolicy

from .hub import Hub, HubStats, SubscriberStats, Subscription
from .ingress import BoundedIngress, IngressStats, OverflowPolicy
from .messages import (
    EVENT_TYPES,
    ActorFailed,
    ActorRestarted,
    ActorStarted,
    ActorStopped,
    Batch,
    Flush,
    GapDetected,
    Message,
    OverflowRecorded,
    PartWritten,
    Stop,
    SubscriberLagged,
    decode_event,
)
from .metrics import ActorCollector, register_metrics
from .rx import TrioScheduler, open_trio_scheduler
from .service import EVENTS_TOPIC, Service, ServiceStats
from .sink import Gate, PressureQueue, QueueStats
from .stats import ActorMetrics, ActorStats, Instrumented
from .supervisor import SHUTDOWN_ORDER, Role, State, Supervisor, is_transient, open_supervisor
from .wiring import open_service, serve
from .writer import Writer, WriterStats

__all__ = [
    "EVENTS_TOPIC",
    "EVENT_TYPES",
    "SHUTDOWN_ORDER",
    "ActorCollector",
    "ActorFailed",
    "ActorMetrics",
    "ActorRestarted",
    "ActorStarted",
    "ActorStats",
    "ActorStopped",
    "Batch",
    "BoundedIngress",
    "Flush",
    "GapDetected",
    "Gate",
    "Hub",
    "HubStats",
    "IngressStats",
    "Instrumented",
    "Message",
    "OverflowPolicy",
    "OverflowRecorded",
    "PartWritten",
    "PressureQueue",
    "QueueStats",
    "RestartPolicy",
    "Role",
    "Service",
    "ServiceStats",
    "State",
    "Stop",
    "SubscriberLagged",
    "SubscriberStats",
    "Subscription",
    "Supervisor",
    "TrioScheduler",
    "Writer",
    "WriterStats",
    "decode_event",
    "is_transient",
    "open_service",
    "open_supervisor",
    "open_trio_scheduler",
    "register_metrics",
    "serve",
]
