"""Backfill work spread over collectors: work units, their subjects and keys, and progress arithmetic.

A distributed backfill (``distribute: true`` on a job, ``POST /api/v1/work/backfills``, ``dccd work
backfill``) is cut into :class:`WorkUnit` s, one per symbol and per ``unit`` of time (a UTC day by
default: one daily archive file, or one day of REST pages), published on the work-queue stream
:data:`WORK_STREAM` (subject ``dccd.work.backfill.<exchange>.<SLUG>``) with ``Nats-Msg-Id`` = the unit's
natural key (:func:`unit_key`: dataset, source and time range, not the plan), so planning the same
range again within the duplicate window enqueues nothing twice.

Every collector with ``bus.work_queue: true`` pulls units through one shared durable consumer
(explicit ack, ``ack_wait``, ``max_deliver``), runs each as an ordinary backfill run over its range and
acks it only once that run's writer has drained. The state of each unit lives in the KV bucket
:data:`WORK_BUCKET` under :func:`state_key` (:class:`UnitState`): the planner's run reads it for its
progress. Pure code here; the actor is :mod:`dccd.actors.work`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from dccd.domain.dataset import DatasetId

from .wire import PREFIX, token

WORK_STREAM = "DCCD_WORK"
WORK_SUBJECTS = [f"{PREFIX}.work.>"]
WORK_CONSUMER = "dccd_workers"
WORK_BUCKET = "dccd_work"

UnitStatus = Literal["queued", "running", "retrying", "done", "dead"]


class WorkUnit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One piece of a distributed backfill: ``[start_ns, end_ns)`` of one dataset.

    ``plan``: the run id of the planner's run; ``index`` of ``total`` units of that plan.
    ``type``/``span``/``symbol`` as on the CLI (``trades``, ``1m``, ``BTC/USDT``).
    """

    plan: str
    index: int
    total: int
    exchange: str
    symbol: str
    type: str
    span: str | None
    start_ns: int
    end_ns: int
    source: str = "auto"


class UnitState(msgspec.Struct, frozen=True):
    """What a unit's KV entry says: its status, who ran it, its run, rows written, deliveries, error."""

    status: UnitStatus
    worker: str = ""
    run_id: str | None = None
    rows: int = 0
    deliveries: int = 0
    error: str | None = None


class WorkCounts(msgspec.Struct, frozen=True):
    """Units of a plan by status (``failed``: retrying after a failed attempt; ``dead``: given up)."""

    total: int
    queued: int
    in_flight: int
    done: int
    failed: int
    dead: int
    rows: int

    @property
    def finished(self) -> bool:
        return self.done + self.dead >= self.total


def split_range(start_ns: int, end_ns: int, unit_ns: int) -> list[tuple[int, int]]:
    """``[start_ns, end_ns)`` cut at multiples of ``unit_ns`` (UTC day boundaries for a day).

    Raises:
        ValueError: ``unit_ns`` is not positive.
    """
    if unit_ns <= 0:
        raise ValueError(f"the work unit must be positive, not {unit_ns} ns")
    out: list[tuple[int, int]] = []
    lo = start_ns
    while lo < end_ns:
        hi = min((lo // unit_ns + 1) * unit_ns, end_ns)
        out.append((lo, hi))
        lo = hi
    return out


def plan_units(
    plan: str,
    dataset: DatasetId,
    start_ns: int,
    end_ns: int,
    unit_ns: int,
    *,
    source: str = "auto",
) -> list[WorkUnit]:
    """The units of one dataset's backfill over ``[start_ns, end_ns)`` (see :func:`split_range`)."""
    ranges = split_range(start_ns, end_ns, unit_ns)
    span = dataset.span.label if dataset.span else None
    return [
        WorkUnit(
            plan, i, len(ranges), dataset.exchange, str(dataset.symbol), dataset.data_type.value, span, lo, hi, source
        )
        for i, (lo, hi) in enumerate(ranges)
    ]


def unit_subject(unit: WorkUnit) -> str:
    """``dccd.work.backfill.<exchange>.<SLUG>``."""
    from dccd.domain.symbols import Symbol

    return f"{PREFIX}.work.backfill.{token(unit.exchange)}.{token(Symbol.parse(unit.symbol).slug)}"


def unit_key(unit: WorkUnit) -> str:
    """The unit's natural key (its ``Nats-Msg-Id``): what it fetches, not which plan asked for it."""
    return f"w:{unit.exchange}:{unit.symbol}:{unit.type}:{unit.span or ''}:{unit.source}:{unit.start_ns}:{unit.end_ns}"


def state_key(unit: WorkUnit) -> str:
    """The unit's key in :data:`WORK_BUCKET` (KV keys allow few characters: a digest of :func:`unit_key`)."""
    return "u." + hashlib.blake2b(unit_key(unit).encode(), digest_size=12).hexdigest()


def encode_unit(unit: WorkUnit) -> bytes:
    return msgspec.json.encode(unit)


def decode_unit(data: bytes) -> WorkUnit:
    """A unit from its message body.

    Raises:
        msgspec.ValidationError, msgspec.DecodeError: not a unit (a poison message).
    """
    return msgspec.json.decode(data, type=WorkUnit)


def encode_state(state: UnitState) -> bytes:
    return msgspec.json.encode(state)


def decode_state(data: bytes | None) -> UnitState | None:
    """A KV value as a :class:`UnitState` (None: absent or unreadable)."""
    if not data:
        return None
    try:
        return msgspec.json.decode(data, type=UnitState)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def count_units(keys: Iterable[str], states: Mapping[str, UnitState | None]) -> WorkCounts:
    """Progress of a plan whose units have the KV ``keys`` (a unit without an entry is queued)."""
    keys = list(keys)
    by: dict[str, int] = {}
    rows = 0
    for k in keys:
        st = states.get(k)
        status = st.status if st is not None else "queued"
        by[status] = by.get(status, 0) + 1
        rows += st.rows if st is not None and st.status == "done" else 0
    return WorkCounts(
        len(keys), by.get("queued", 0), by.get("running", 0), by.get("done", 0), by.get("retrying", 0),
        by.get("dead", 0), rows,
    )  # fmt: skip


def after_failure(deliveries: int, max_deliver: int) -> tuple[UnitStatus, float | None]:
    """What a failed delivery of a unit becomes: ``retrying`` with the delay before its redelivery
    (2, 4, 8… s, at most 30 s), or ``dead`` when it was the ``max_deliver``-th."""
    if deliveries >= max_deliver:
        return "dead", None
    return "retrying", min(2.0**deliveries, 30.0)
