"""Messages exchanged between actors: frozen, tagged msgspec Structs.

Commands are imperative (:class:`Flush`, :class:`Stop`), events past tense
(:class:`PartWritten`, :class:`RunProgressed`, ...). Every message carries a
``type`` tag (its snake_case class name) so a stream of mixed events encodes
to self-describing JSON and decodes back through :data:`EVENT_TYPES`.

Data travels as :class:`Batch` (one page, one WebSocket frame's worth, one
flush) and never as single records: a Trio channel hop costs ~13 µs and an
Rx ``on_next`` ~2 µs, which a per-record design would pay per trade.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from dccd.domain.dataset import DatasetId
from dccd.domain.records import Record

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


class Message(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag=_snake):
    """Base of every actor message; ``type`` is the snake_case class name."""


# -- commands -------------------------------------------------------------------------------------


class Flush(Message, frozen=True, gc=False):
    """Write everything buffered now instead of waiting for size or age."""


class Stop(Message, frozen=True, gc=False):
    """Finish gracefully: accept nothing new, drain, then end."""

    reason: str = ""


# -- data -----------------------------------------------------------------------------------------


class Batch(Message, frozen=True, gc=False):
    """Records of one dataset travelling together between actors.

    ``source`` names the producer (actor name or exchange endpoint) and
    ``transport`` how the records arrived (``rest``, ``ws`` or ``archive``); the writer
    stores both as provenance. ``recv_ts`` is when the batch arrived (ns UTC).
    ``table`` carries rows already in columns (a ``pyarrow.Table`` in the lake's
    columns, an archive file's rows) instead of ``records``: it is written as it
    is, never converted to Structs.
    """

    dataset: DatasetId
    records: list[Record]
    source: str
    transport: str
    recv_ts: int | None = None
    table: Any = None

    @property
    def rows(self) -> int:
        """Number of records (or table rows)."""
        return len(self.records) if self.table is None else int(self.table.num_rows)


# -- data-plane events ----------------------------------------------------------------------------


class PartWritten(Message, frozen=True, gc=False):
    """The writer stored one part durably."""

    dataset: DatasetId
    rows: int
    path: str | None
    bytes: int
    first_ts: int | None
    last_ts: int | None
    duration_s: float
    writer: str = ""


class GapDetected(Message, frozen=True, gc=False):
    """Records in ``[start_ts, end_ts]`` (and ids ``first_id..last_id``) are missing and should be refilled."""

    dataset: DatasetId
    start_ts: int
    end_ts: int
    first_id: str | None = None
    last_id: str | None = None
    reason: str = ""


class OverflowRecorded(Message, frozen=True, gc=False):
    """A bounded ingress dropped ``rows`` records (``batches`` batches): a gap to refill.

    ``first_ts``/``last_ts`` are the smallest and largest dropped timestamps;
    ``first_id``/``last_id`` the ids of the first and last dropped records in
    arrival order (``None`` for records without ids).
    """

    dataset: DatasetId
    rows: int
    batches: int
    first_ts: int
    last_ts: int
    first_id: str | None
    last_id: str | None
    policy: str
    ingress: str = ""


class SubscriberLagged(Message, frozen=True, gc=False):
    """In-band notice to a slow subscriber: ``n`` items were dropped before the next one."""

    n: int


# -- lifecycle events -----------------------------------------------------------------------------


class ActorStarted(Message, frozen=True, gc=False):
    """An actor reported ready (``task_status.started``) for the first time."""

    name: str
    role: str


class ActorRestarted(Message, frozen=True, gc=False):
    """An actor failed with a transient error and is restarted after ``delay_s``."""

    name: str
    role: str
    attempt: int
    delay_s: float
    error: str


class ActorFailed(Message, frozen=True, gc=False):
    """An actor failed for good (permanent error or restart intensity exceeded)."""

    name: str
    role: str
    error: str
    escalated: bool


class ActorStopped(Message, frozen=True, gc=False):
    """An actor ended: it returned, or it was stopped."""

    name: str
    role: str
    reason: str


class RunStateChanged(Message, frozen=True, gc=False):
    """A run (backfill, stream, compaction) moved to ``state``; ``error`` set when it failed."""

    run_id: str
    operation: str
    state: str
    dataset: str = ""
    error: str | None = None
    rows: int = 0


class RunProgressed(Message, frozen=True, gc=False):
    """Progress of a run: ``done``/``total`` in ``unit`` (bars, trades, ns), pages and rows so far."""

    run_id: str
    done: int
    total: int | None
    unit: str
    pages: int
    rows: int
    rate_rows_s: float = 0.0
    eta_s: float | None = None


class RunLogged(Message, frozen=True, gc=False):
    """A log line attached to a run (retries, holes, warnings)."""

    run_id: str
    level: str
    message: str


class JobTriggered(Message, frozen=True, gc=False):
    """A scheduled job's trigger fired for the slot ``due_ns`` (wall ns UTC; None: a ``once`` job at start)."""

    job_id: str
    due_ns: int | None = None


class ScanCompleted(Message, frozen=True, gc=False):
    """A scanner run finished: ``hits`` signals over ``symbols`` symbols in ``elapsed_s``; ``error`` set when it failed.

    ``run_id`` is the run that carried it (API/CLI/job/trigger), ``params_hash`` identifies the
    scanner's validated config, ``snapshot`` the lake snapshot read (empty without a catalog).
    """

    run_id: str
    scanner: str
    version: str
    params_hash: str
    symbols: int
    hits: int
    elapsed_s: float
    snapshot: str = ""
    error: str | None = None


class SignalGenerated(Message, frozen=True, gc=False):
    """One scanner hit: ``symbol`` on ``exchange`` at bar ``ts`` (ns UTC); ``values`` the scanner's figures."""

    run_id: str
    scanner: str
    version: str
    params_hash: str
    exchange: str
    symbol: str
    ts: int
    values: dict[str, float | int | str | bool | None]
    snapshot: str = ""


class DataValidated(Message, frozen=True, gc=False):
    """Data contracts ran over ``dataset`` (one written batch or an on-demand check).

    ``checked`` rows were examined, ``failed`` maps contract name to failing row count (only
    contracts that failed), ``scope`` says what was checked (``batch`` or ``check``).
    """

    dataset: str
    scope: str
    checked: int
    failed: dict[str, int]
    snapshot: str = ""


class ArchiveFetched(Message, frozen=True, gc=False):
    """One archive file of a backfill run is done: ``result`` is ``verified`` (downloaded, checksum matched),
    ``cached`` (verified earlier, re-used without a request), ``missing`` (404: REST fills its period)
    or ``quarantined`` (checksum mismatch: its period failed). ``bytes`` were downloaded for it;
    ``files_done``/``files_total`` and ``bytes_done`` count the run's archive phase so far.
    """

    run_id: str
    exchange: str
    path: str
    result: str
    bytes: int
    rows: int
    files_done: int
    files_total: int
    bytes_done: int


class WorkUnitFinished(Message, frozen=True, gc=False):
    """A unit of a distributed backfill (:mod:`dccd.bus.work`) is over on this collector: ``result`` is
    ``done`` (its rows are written, the unit acked), ``retrying`` (it failed, redelivered later) or
    ``dead`` (it failed ``max_deliver`` times: dead-lettered, never delivered again).
    """

    plan: str
    unit: str
    exchange: str
    symbol: str
    start_ns: int
    end_ns: int
    result: str
    deliveries: int
    run_id: str | None = None
    rows: int = 0
    error: str | None = None


Command = Flush | Stop
Event = (
    PartWritten
    | GapDetected
    | OverflowRecorded
    | SubscriberLagged
    | ActorStarted
    | ActorRestarted
    | ActorFailed
    | ActorStopped
    | RunStateChanged
    | RunProgressed
    | RunLogged
    | JobTriggered
    | ScanCompleted
    | SignalGenerated
    | DataValidated
    | ArchiveFetched
    | WorkUnitFinished
)
EVENT_TYPES: tuple[type[Message], ...] = (
    PartWritten,
    GapDetected,
    OverflowRecorded,
    SubscriberLagged,
    ActorStarted,
    ActorRestarted,
    ActorFailed,
    ActorStopped,
    RunStateChanged,
    RunProgressed,
    RunLogged,
    JobTriggered,
    ScanCompleted,
    SignalGenerated,
    DataValidated,
    ArchiveFetched,
    WorkUnitFinished,
)

_event_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Event)


def decode_event(data: bytes | str) -> Message:
    """Decode one JSON-encoded event (as produced by ``msgspec.json.encode``).

    Raises:
        msgspec.ValidationError: not a known event, with the failing ``$.path``.
    """
    event: Message = _event_decoder.decode(data)
    return event
