"""SSE events as bytes: encoded once per event, shared by every client; the encoders of the feeds.

Live data events carry a JSON list of records (``trades``: ``{ts,id,price,amount,side,recv_ts}``;
``candles``: ``{ts,open,high,low,close,volume,quote_volume,trades}``); control events carry one
message each, named by its type. ``closing_sse`` wraps a generator so it is always closed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import msgspec
from dccd.actors import Batch
from dccd.actors.messages import Message
from litestar.background_tasks import BackgroundTask
from litestar.response import ServerSentEvent, ServerSentEventMessage

_encode = msgspec.json.Encoder().encode


class Frame(ServerSentEventMessage):
    """One SSE event, encoded once and shared by every client (Litestar sends :meth:`encode`)."""

    def __init__(self, raw: bytes, seq: int | None = None, tag: str | None = None) -> None:
        super().__init__(data=None)
        self.raw = raw
        self.seq = seq
        self.tag = tag

    def encode(self) -> bytes:
        """The wire bytes."""
        return self.raw


def frame(event: str, data: bytes, seq: int | None = None, tag: str | None = None) -> Frame:
    """An event with optional id; ``data`` is one line of JSON (msgspec never emits raw newlines)."""
    head = b"" if seq is None else b"id: %d\r\n" % seq
    return Frame(head + b"event: " + event.encode() + b"\r\ndata: " + data + b"\r\n\r\n", seq, tag)


HEARTBEAT = Frame(b": keep-alive\r\n\r\n")


def lagged(n: int, seq: int | None = None) -> Frame:
    """The in-band notice that ``n`` events were lost."""
    return frame("lagged", b'{"n":%d}' % n, seq)


def closing_sse(agen: AsyncGenerator[Any, None], **kwargs: Any) -> ServerSentEvent:
    """A ServerSentEvent whose generator is always closed when the response ends.

    Litestar cancels its body task on disconnect; if that lands while the task
    waits in ``send()``, the generator stays suspended and its ``finally``
    (releasing the subscription) never runs. Closing it from a background task
    fixes that. ``BackgroundTask(agen.aclose)`` does not work: Litestar does
    not see it as async and never awaits it.
    """

    async def _aclose() -> None:
        await agen.aclose()

    return ServerSentEvent(agen, background=BackgroundTask(_aclose), **kwargs)


Encoder = Callable[[list[Any]], list[tuple[str, bytes, str | None]]]
"""Turns what one window delivered (hub items, no SubscriberLagged) into ``(event, data, tag)`` triples."""


def data_encoder(event: str, max_records: int) -> Encoder:
    """Records of the window's :class:`Batch` items as JSON lists, at most ``max_records`` per event."""

    def encode(items: list[Any]) -> list[tuple[str, bytes, str | None]]:
        records = [r for item in items if isinstance(item, Batch) for r in item.records]
        return [(event, _encode(records[i : i + max_records]), None) for i in range(0, len(records), max_records)]

    return encode


def _run_tag(message: Message) -> str | None:
    run_id = getattr(message, "run_id", None)
    if isinstance(run_id, str):
        return run_id
    for attr in ("name", "writer"):  # actors of a run are named "<role>:<run_id>"
        name = getattr(message, attr, None)
        if isinstance(name, str) and ":" in name:
            return name.rsplit(":", 1)[1]
    return None


def event_encoder(items: list[Any]) -> list[tuple[str, bytes, str | None]]:
    """One event per control message: event name = message type, data = its msgspec JSON.

    The tag is the message's run id ("" when it belongs to no run) for ``?run_id=`` filtering.
    """
    out: list[tuple[str, bytes, str | None]] = []
    for m in items:
        if isinstance(m, Message):
            out.append((type(m).__struct_config__.tag or type(m).__name__, _encode(m), _run_tag(m) or ""))
    return out
