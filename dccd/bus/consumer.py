"""Reading the bus: :func:`tap` yields what dccd published on a subject, exactly once per message id.

It reads the JetStream stream (an ordered, ephemeral consumer), not the plain subject: a message
published twice (a retry, a refill overlapping the live feed, a shard taking over) was stored once, and
only the stored copy is delivered. nats-py is asyncio-only, so this is an asyncio API::

    async for msg in tap("nats://127.0.0.1:4222", "dccd.trades.binance.>", deliver="all"):
        print(msg.subject, msg.data)          # data: the decoded payload (dict)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec

from .wire import decode


class BusMessage(msgspec.Struct, frozen=True):
    """One stored message: subject, stream sequence, ``Nats-Msg-Id`` and decoded payload."""

    subject: str
    seq: int
    msg_id: str | None
    data: Any


async def tap(
    url: str,
    subject: str,
    *,
    deliver: Literal["new", "all", "last"] = "new",
    idle_timeout_s: float | None = None,
    connect_timeout_s: float = 5.0,
) -> AsyncIterator[BusMessage]:
    """Yield the messages stored on ``subject`` (wildcards allowed), oldest first.

    ``deliver``: ``new`` (from now), ``all`` (everything the stream keeps), ``last`` (the newest per subject
    and on). Ends after ``idle_timeout_s`` without a message (None: never).

    Raises:
        ConnectionError: no NATS server answered at ``url`` within ``connect_timeout_s``.
    """
    import nats
    from nats.js.api import DeliverPolicy

    try:
        nc = await nats.connect(url, connect_timeout=connect_timeout_s, max_reconnect_attempts=3, name="dccd-tap")
    except Exception as exc:
        raise ConnectionError(f"no NATS server at {url}: {exc}") from None
    try:
        js = nc.jetstream()
        policy = {"new": DeliverPolicy.NEW, "all": DeliverPolicy.ALL, "last": DeliverPolicy.LAST_PER_SUBJECT}[deliver]
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=policy)
        while True:
            try:
                msg = await asyncio.wait_for(sub.next_msg(timeout=None), idle_timeout_s)
            except TimeoutError:
                return
            headers = msg.headers or {}
            yield BusMessage(
                msg.subject,
                msg.metadata.sequence.stream,
                headers.get("Nats-Msg-Id"),
                decode(msg.data, headers.get("Content-Type")),
            )
    finally:
        await nc.close()
