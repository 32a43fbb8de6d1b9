"""A NATS JetStream connection used from Trio.

nats-py is asyncio-only, so :class:`NatsLink` runs it on an asyncio event loop in a thread of its own
and awaits its coroutines from Trio: :meth:`NatsLink.call` schedules one on that loop and parks the Trio
task until it finishes, with a deadline on every call (a cancelled Trio task cancels the asyncio side).
nats-py keeps the TCP connection, reconnects by itself and buffers while it does; the link surfaces
what failed as :class:`BusError`.

::

    async with NatsLink.open("nats://127.0.0.1:4222", name="dccd") as link:
        await link.ensure_streams(max_age_s=86400, duplicate_window_s=600)
        acks = await link.publish_many(messages)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import msgspec
import trio

from dccd.errors import TransientError

from .wire import CONTENT_TYPES, Format, Outgoing

T = TypeVar("T")

DATA_STREAM = "DCCD_DATA"
EVENTS_STREAM = "DCCD_EVENTS"
STREAM_SUBJECTS = {
    DATA_STREAM: ["dccd.trades.>", "dccd.candles.>", "dccd.book.>"],
    EVENTS_STREAM: ["dccd.events.>", "dccd.signals.>"],
}


class BusError(TransientError):
    """The bus did not answer in time or refused an operation (retried by the caller)."""


class PublishResult(msgspec.Struct, frozen=True):
    """Acks of one :meth:`NatsLink.publish_many`: stored, dropped as duplicates, failed."""

    stored: int
    duplicates: int
    failed: int
    error: str | None = None


class NatsLink:
    """One nats-py client on a private asyncio loop thread (see the module docstring)."""

    def __init__(self, url: str, *, name: str = "dccd", fmt: Format = "json", timeout_s: float = 10.0) -> None:
        self.url = url
        self.name = name
        self.fmt: Format = fmt
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"nats-{name}", daemon=True)
        self._nc: Any = None
        self._js: Any = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, url: str, *, name: str = "dccd", fmt: Format = "json", timeout_s: float = 10.0
    ) -> AsyncIterator[NatsLink]:
        """Connect (within ``timeout_s``) and close on exit.

        Raises:
            BusError: the server did not accept the connection in time.
        """
        link = cls(url, name=name, fmt=fmt, timeout_s=timeout_s)
        link._thread.start()
        try:
            await link.call(link._connect)
            yield link
        finally:
            with trio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    await link.call(link._close, timeout_s=5.0)
                link._loop.call_soon_threadsafe(link._loop.stop)
                await trio.to_thread.run_sync(link._thread.join, 5.0)

    # -- the bridge ------------------------------------------------------------------------------

    async def call(self, fn: Callable[[], Awaitable[T]], *, timeout_s: float | None = None) -> T:
        """Run ``fn()`` on the link's asyncio loop and return its result.

        Raises:
            BusError: it took longer than ``timeout_s`` (default: the link's), or failed.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s

        async def bounded() -> T:
            return await asyncio.wait_for(fn(), limit)

        fut: Future[T] = asyncio.run_coroutine_threadsafe(bounded(), self._loop)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: Future[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        fut.add_done_callback(wake)
        try:
            with trio.fail_after(limit + 1.0):  # the asyncio side times out first; this one is the backstop
                await done.wait()
        except BaseException:
            fut.cancel()
            raise
        try:
            return fut.result()
        except TimeoutError:
            raise BusError(f"NATS at {self.url} did not answer within {limit:g} s") from None
        except BusError:
            raise
        except Exception as exc:
            raise BusError(f"NATS at {self.url}: {type(exc).__name__}: {exc}") from exc

    # -- asyncio side ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        import nats

        self._nc = await nats.connect(
            self.url,
            name=self.name,
            connect_timeout=min(self.timeout_s, 5.0),
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
        self._js = self._nc.jetstream(timeout=self.timeout_s)

    async def _close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()

    @property
    def js(self) -> Any:
        """The nats-py JetStream context (use only inside :meth:`call`)."""
        return self._js

    @property
    def nc(self) -> Any:
        """The nats-py client (use only inside :meth:`call`)."""
        return self._nc

    # -- operations ------------------------------------------------------------------------------

    async def ensure_streams(self, *, max_age_s: float, duplicate_window_s: float, replicas: int = 1) -> None:
        """Create (or update) the data and events streams: limits retention, a duplicate window."""
        from nats.js.api import StreamConfig

        async def make() -> None:
            for name, subjects in STREAM_SUBJECTS.items():
                cfg = StreamConfig(
                    name=name,
                    subjects=subjects,
                    max_age=max_age_s,
                    duplicate_window=duplicate_window_s,
                    num_replicas=replicas,
                )
                try:
                    await self._js.add_stream(cfg)
                except Exception:
                    await self._js.update_stream(cfg)

        await self.call(make)

    async def publish_many(self, messages: Sequence[Outgoing]) -> PublishResult:
        """Publish ``messages`` pipelined and wait for every ack (``Nats-Msg-Id`` set on each)."""
        ctype = CONTENT_TYPES[self.fmt]

        async def send() -> PublishResult:
            futs = []
            for m in messages:
                hdr = {"Nats-Msg-Id": m.msg_id, "Content-Type": ctype}
                futs.append(await self._js.publish_async(m.subject, m.payload, headers=hdr))
            acks = await asyncio.gather(*futs, return_exceptions=True)
            stored = dup = failed = 0
            error = None
            for ack in acks:
                if isinstance(ack, BaseException):
                    failed += 1
                    error = error or f"{type(ack).__name__}: {ack}"
                elif getattr(ack, "duplicate", False):
                    dup += 1
                else:
                    stored += 1
            return PublishResult(stored, dup, failed, error)

        return await self.call(send, timeout_s=self.timeout_s + 0.002 * len(messages))
