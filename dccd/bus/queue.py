"""The work queue's NATS side: the ``DCCD_WORK`` stream, the ``dccd_work`` unit states, the workers' consumer.

Every operation is one :meth:`NatsLink.call` (nats-py on the link's asyncio thread, under the link's
deadline) and raises :class:`~dccd.bus.link.BusError` when NATS does not answer. The decisions (what to do
after a run, when a unit is dead) are in :mod:`dccd.bus.work`; the loops in :mod:`dccd.actors.work`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from functools import partial
from typing import Any, Literal

from .link import NatsLink
from .work import (
    WORK_BUCKET,
    WORK_CONSUMER,
    WORK_STREAM,
    WORK_SUBJECTS,
    UnitState,
    WorkUnit,
    decode_state,
    encode_state,
    encode_unit,
    state_key,
    unit_key,
    unit_subject,
)

MAX_DELIVERIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.{WORK_CONSUMER}"
"""JetStream's advisory: a message of the workers' consumer reached ``max_deliver`` without an ack."""

Reply = Literal["ack", "nak", "term", "in_progress"]


class WorkQueueClient:
    """The queue on one :class:`NatsLink`; :meth:`open` creates what is missing.

    ``max_deliver`` is the consumer's (the first worker to start created it), once opened as a worker.
    """

    def __init__(self, link: NatsLink, kv: Any, psub: Any, advisories: Any, max_deliver: int) -> None:
        self.link = link
        self._kv, self._psub, self._advisories = kv, psub, advisories
        self.max_deliver = max_deliver

    @classmethod
    async def open(
        cls,
        link: NatsLink,
        *,
        worker: bool,
        ack_wait_s: float,
        max_deliver: int,
        max_age_s: float,
        duplicate_window_s: float,
    ) -> WorkQueueClient:
        """The stream (work-queue retention) and the state bucket; as a ``worker`` also the shared durable
        pull consumer and a queue-group subscription to :data:`MAX_DELIVERIES`."""
        from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StreamConfig

        async def make() -> WorkQueueClient:
            js = link.js
            cfg = StreamConfig(
                name=WORK_STREAM,
                subjects=WORK_SUBJECTS,
                retention=RetentionPolicy.WORK_QUEUE,
                max_age=max_age_s,
                duplicate_window=duplicate_window_s,
            )
            try:
                await js.add_stream(cfg)
            except Exception:
                await js.update_stream(cfg)
            try:
                kv = await js.key_value(WORK_BUCKET)
            except Exception:
                kv = await js.create_key_value(KeyValueConfig(bucket=WORK_BUCKET, history=1, ttl=max_age_s))
            if not worker:
                return cls(link, kv, None, None, max_deliver)
            ccfg = ConsumerConfig(
                durable_name=WORK_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait_s,
                max_deliver=max_deliver,
                max_ack_pending=-1,
            )
            psub = await js.pull_subscribe(WORK_SUBJECTS[0], durable=WORK_CONSUMER, stream=WORK_STREAM, config=ccfg)
            ci = await psub.consumer_info()
            actual = int(ci.config.max_deliver) if ci.config.max_deliver and ci.config.max_deliver > 0 else max_deliver
            advisories = await link.nc.subscribe(MAX_DELIVERIES, queue=WORK_CONSUMER)
            return cls(link, kv, psub, advisories, actual)

        return await link.call(make)

    @classmethod
    async def attach(cls, link: NatsLink) -> WorkQueueClient:
        """The existing queue's state bucket, to read it (nothing is created or changed).

        Raises:
            BusError: no queue yet (no collector or planner has run), or NATS did not answer.
        """

        async def bind() -> WorkQueueClient:
            return cls(link, await link.js.key_value(WORK_BUCKET), None, None, 0)

        return await link.call(bind)

    # -- planner -----------------------------------------------------------------------------------

    async def enqueue(self, units: list[WorkUnit]) -> int:
        """Publish the units (pipelined, acked) and mark the new ones ``queued``; returns how many were new.

        A unit published again within the duplicate window is not enqueued again and keeps its state
        (running, or done by the earlier plan). A new unit's ``queued`` is written only over the entry
        read before publishing: a worker that already took it wrote a newer state.
        """
        link, kv = self.link, self._kv

        async def send() -> int:
            from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

            before: dict[str, int] = {}
            for u in units:
                with contextlib.suppress(KeyNotFoundError):
                    before[state_key(u)] = (await kv.get(state_key(u))).revision
            futs = []
            for u in units:
                hdr = {"Nats-Msg-Id": unit_key(u), "Content-Type": "application/json"}
                futs.append(await link.js.publish_async(unit_subject(u), encode_unit(u), headers=hdr))
            acks = await asyncio.gather(*futs)
            fresh = 0
            queued = encode_state(UnitState("queued"))
            for u, ack in zip(units, acks, strict=True):
                if ack.duplicate:
                    continue
                fresh += 1
                key = state_key(u)
                with contextlib.suppress(KeyWrongLastSequenceError):
                    if key in before:
                        await kv.update(key, queued, last=before[key])
                    else:
                        await kv.create(key, queued)
            return fresh

        return await link.call(send, timeout_s=link.timeout_s + 0.01 * len(units))

    async def states(self, keys: list[str]) -> dict[str, UnitState | None]:
        """The states of the units with these KV keys (None: no entry)."""
        kv = self._kv

        async def read() -> dict[str, UnitState | None]:
            from nats.js.errors import KeyNotFoundError

            out: dict[str, UnitState | None] = {}
            for k in keys:
                try:
                    out[k] = decode_state((await kv.get(k)).value)
                except KeyNotFoundError:
                    out[k] = None
            return out

        return await self.link.call(read, timeout_s=self.link.timeout_s + 0.005 * len(keys))

    # -- worker ------------------------------------------------------------------------------------

    async def set_state(self, unit: WorkUnit, state: UnitState) -> None:
        await self.link.call(partial(self._kv.put, state_key(unit), encode_state(state)))

    async def fetch(self, timeout_s: float) -> list[Any]:
        """At most one message (nats-py's), waiting up to ``timeout_s``; [] when none came."""
        psub = self._psub

        async def fetch() -> list[Any]:
            try:
                return list(await psub.fetch(1, timeout=timeout_s))
            except TimeoutError:  # nats-py raises its own or asyncio's, by code path
                return []

        return await self.link.call(fetch, timeout_s=timeout_s + 5.0)

    async def reply(self, msg: Any, what: Reply, *, delay_s: float | None = None) -> None:
        """``ack`` (waits for the server's confirmation), ``nak`` (redeliver after ``delay_s``), ``term``
        (never again), ``in_progress`` (restart the ack_wait clock)."""
        fn = {
            "ack": msg.ack_sync,
            "nak": partial(msg.nak, delay=delay_s),
            "term": msg.term,
            "in_progress": msg.in_progress,
        }[what]
        await self.link.call(fn)

    async def next_dead(self, timeout_s: float) -> tuple[int, bytes] | None:
        """The next unit JetStream stopped delivering (from :data:`MAX_DELIVERIES`): its stream sequence and
        body, deleted from the stream; None when no advisory came within ``timeout_s``.

        Raises:
            ValueError, KeyError: an advisory not in JetStream's format.
        """
        sub, js = self._advisories, self.link.js

        async def next_one() -> tuple[int, bytes] | None:
            try:
                adv = await sub.next_msg(timeout=timeout_s)
            except TimeoutError:  # nats-py raises its own or asyncio's, by code path
                return None
            seq = int(json.loads(adv.data)["stream_seq"])
            raw = await js.get_msg(WORK_STREAM, seq)
            with contextlib.suppress(Exception):  # already gone: nothing to clean up
                await js.delete_msg(WORK_STREAM, seq)
            return seq, bytes(raw.data or b"")

        return await self.link.call(next_one, timeout_s=timeout_s + 5.0)

    async def backlog(self) -> tuple[int, int, int]:
        """The workers' consumer: units waiting, delivered and not acked, redelivered and not acked."""

        async def info() -> tuple[int, int, int]:
            from nats.js.errors import NotFoundError

            try:
                ci = await self.link.js.consumer_info(WORK_STREAM, WORK_CONSUMER)
            except NotFoundError:
                return 0, 0, 0
            return int(ci.num_pending or 0), int(ci.num_ack_pending or 0), int(ci.num_redelivered or 0)

        return await self.link.call(info, timeout_s=5.0)

    async def status_counts(self) -> dict[str, int]:
        """Units in the state bucket by status."""
        kv = self._kv

        async def read() -> dict[str, int]:
            from nats.js.errors import NoKeysError

            try:
                keys = await kv.keys()
            except NoKeysError:
                return {}
            out: dict[str, int] = {}
            for k in keys:
                st = decode_state((await kv.get(k)).value)
                status = st.status if st is not None else "unreadable"
                out[status] = out.get(status, 0) + 1
            return out

        return await self.link.call(read, timeout_s=30.0)
