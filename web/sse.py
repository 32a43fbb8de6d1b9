"""Server-Sent Events from the hub: one tap per topic, a replay ring, and bounded per-client fan-out.

::

    service hub ──(one subscription per topic)──► Feed tap ─► Subject ─► buffer_with_time(window_s, TrioScheduler)
        ─► encoded frames ──► replay ring
                         └──► fan-out hub ──► client 1..N (bounded)

A :class:`Feed` subscribes to the service hub once, however many clients
watch the topic, batches what arrived within ``window_s`` (an Rx
``buffer_with_time`` on the :class:`~dccd.actors.TrioScheduler`, so windows
follow Trio's clock) into one event,
encodes it once (``id``/``event``/``data`` bytes shared by every client),
keeps the last ``ring_size`` events for ``Last-Event-ID`` resume, and
offers each event to the clients' bounded buffers. A client that falls
behind loses its oldest events and gets ``event: lagged`` ``{"n": N}``;
nothing upstream waits for it. After its last client leaves, a feed lingers
``linger_s`` (so a reconnecting ``EventSource`` can resume) and then
releases its hub subscription.

Event ids are dense integers per topic, so a resuming client is told
exactly how many events it missed beyond the ring.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncGenerator
from typing import Any

import reactivex.operators as ops
import trio
from dccd.actors import Hub, SubscriberLagged, TrioScheduler
from dccd.actors.hub import Key
from reactivex import Observable
from reactivex.subject import Subject

from .frames import HEARTBEAT, Encoder, Frame, frame, lagged
from .metrics import WebMetrics

FEED_KINDS = ("trades", "candles", "events")
START_GRACE_S = 5.0


class Feed:
    """The tap, replay ring and client fan-out of one hub topic (made by :class:`Feeds`)."""

    def __init__(
        self,
        feeds: Feeds,
        key: Key,
        kind: str,
        encode: Encoder,
        *,
        window_s: float,
        ring_size: int,
        client_maxlen: int,
        ring_bytes: int = 8 << 20,
        extra_topics: tuple[Key, ...] = (),
    ) -> None:
        self.feeds = feeds
        self.key = key
        self.extra_topics = extra_topics  # more hub topics folded into the same events (candles: the trades)
        self.kind = kind
        self.encode = encode
        self.window_s = window_s
        self.client_maxlen = client_maxlen
        self.ring: collections.deque[Frame] = collections.deque(maxlen=ring_size)
        self.ring_bytes = ring_bytes
        self._ring_size = 0  # bytes held by the ring: big events make it keep fewer
        self.fanout: Hub[Frame] = Hub(maxlen=client_maxlen, name=f"sse:{kind}")
        self.clients = 0
        # The client that opened the feed attaches a moment later (after the response starts): give it time.
        self._idle_until = trio.current_time() + max(feeds.linger_s, START_GRACE_S)
        self._wait = trio.CancelScope()

    @property
    def last_seq(self) -> int:
        """Id of the newest event of this topic (0 before the first)."""
        return self.feeds._seqs.get(self.key, 0)

    def _emit(self, event: str, data: bytes, tag: str | None) -> None:
        seq = self.last_seq + 1
        self.feeds._set_seq(self.key, seq)
        f = frame(event, data, seq, tag)
        if len(self.ring) == self.ring.maxlen:
            self._ring_size -= len(self.ring[0].raw)
        self.ring.append(f)
        self._ring_size += len(f.raw)
        while self._ring_size > self.ring_bytes and len(self.ring) > 1:
            self._ring_size -= len(self.ring.popleft().raw)
        self.fanout.publish(self.key, f)
        self.feeds.metrics.sse_events.labels(self.kind).inc()

    def _deadline(self) -> float:
        return math.inf if self.clients else self._idle_until

    def attach(self) -> None:
        """A client arrived: no lingering."""
        self.clients += 1
        self._wait.deadline = math.inf

    def reserve(self) -> None:
        """A client is on its way (its response is about to start): do not end the tap before it attaches."""
        if not self.clients:
            self._idle_until = max(self._idle_until, trio.current_time() + START_GRACE_S)
            self._wait.deadline = self._idle_until

    def detach(self) -> None:
        """A client left: the tap lingers ``linger_s`` once nobody watches."""
        self.clients -= 1
        if self.clients == 0:
            self._idle_until = trio.current_time() + self.feeds.linger_s
            self._wait.deadline = self._idle_until

    async def run(self, hub: Hub[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The tap: subscribe once; hub items ─► Rx window on the TrioScheduler ─► encode, remember, fan out."""
        try:
            async with hub.subscribe(self.key, maxlen=self.feeds.tap_maxlen) as sub, trio.open_nursery() as timers:
                items: Subject[Any] = Subject()
                if self.window_s > 0:
                    windows: Observable[list[Any]] = items.pipe(
                        ops.buffer_with_time(self.window_s, scheduler=TrioScheduler(timers)), ops.filter(bool)
                    )
                    windows.subscribe(on_next=self._window)
                else:
                    items.subscribe(on_next=lambda item: self._window([item]))
                for topic in self.extra_topics:
                    await timers.start(self._pump_extra, hub, topic, items)
                task_status.started()
                try:
                    while await self._pump(sub, items):
                        pass
                finally:
                    items.on_completed()  # the open window leaves now
                    timers.cancel_scope.cancel()
        finally:
            self.feeds._forget(self)
            self.fanout.close()  # clients still attached end cleanly (hub closed or app stopping)

    async def _pump_extra(
        self, hub: Hub[Any], topic: Key, items: Subject[Any], *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Forward an extra topic into ``items`` for as long as the tap runs (its lifetime is the main topic's)."""
        async with hub.subscribe(topic, maxlen=self.feeds.tap_maxlen) as sub:
            task_status.started()
            async for item in sub:
                items.on_next(item)

    async def _pump(self, sub: Any, items: Subject[Any]) -> bool:
        """Move what the hub has into ``items`` (waiting for the first); False when the tap should end.

        A task, not an operator: it awaits the hub subscription, and it ends the tap after ``linger_s`` idle.
        """
        first: Any = _IDLE
        self._wait = trio.CancelScope(deadline=self._deadline())
        with self._wait:
            first = await _receive(sub)
        if first is _IDLE:  # a client may have reserved a place since the deadline passed
            return self.clients > 0 or trio.current_time() < self._idle_until
        if first is _END:
            return False
        items.on_next(first)
        while True:
            try:
                items.on_next(sub.receive_nowait())
            except trio.WouldBlock:
                return True
            except trio.EndOfChannel:
                return False

    def _window(self, items: list[Any]) -> None:
        """One window of hub items as events; a :class:`SubscriberLagged` of the tap itself is told in sequence."""
        run: list[Any] = []
        for item in items:
            if isinstance(item, SubscriberLagged):  # the tap itself lost hub items: every client is told, in sequence
                self._flush(run)
                run = []
                self._emit("lagged", b'{"n":%d}' % item.n, None)
            else:
                run.append(item)
        self._flush(run)

    def _flush(self, items: list[Any]) -> None:
        if items:
            for event, data, tag in self.encode(items):
                self._emit(event, data, tag)

    def replay(self, after: int) -> list[Frame]:
        """Events after id ``after``: from the ring, preceded by ``lagged`` if some are gone."""
        last = self.last_seq
        if after >= last:  # up to date, or an id from another server run: nothing to replay
            return []
        kept = [f for f in self.ring if f.seq is not None and f.seq > after]
        first = kept[0].seq if kept and kept[0].seq is not None else last + 1
        lost = first - after - 1
        return ([lagged(lost)] if lost > 0 else []) + kept


_END: Any = object()
_IDLE: Any = object()


async def _receive(sub: Any) -> Any:
    try:
        return await sub.receive()
    except trio.EndOfChannel:
        return _END


class Feeds:
    """The app's feeds: starts taps on demand in the app's nursery and streams them to clients.

    Args:
        hub: the service hub.
        metrics: the app's metrics.
        heartbeat_s: a comment line is sent after this long without events.
        linger_s: how long a tap outlives its last client.
        tap_maxlen: hub buffer of a tap (items between two windows).
    """

    def __init__(
        self,
        hub: Hub[Any],
        metrics: WebMetrics,
        *,
        heartbeat_s: float = 15.0,
        linger_s: float = 30.0,
        tap_maxlen: int = 4096,
        max_topics: int = 10_000,
    ) -> None:
        self.hub = hub
        self.metrics = metrics
        self.heartbeat_s = heartbeat_s
        self.linger_s = linger_s
        self.tap_maxlen = tap_maxlen
        self.nursery: trio.Nursery | None = None
        self.feeds: dict[Key, Feed] = {}
        self.closed = False
        self._seqs: collections.OrderedDict[Key, int] = collections.OrderedDict()
        self._ended: collections.Counter[str] = collections.Counter()  # drops of feeds that ended, by kind
        self._max_topics = max_topics

    def _set_seq(self, key: Key, seq: int) -> None:
        self._seqs[key] = seq
        self._seqs.move_to_end(key)
        while len(self._seqs) > self._max_topics:  # ids of long-idle topics restart; clients then replay nothing
            self._seqs.popitem(last=False)

    def _forget(self, feed: Feed) -> None:
        if self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]
            self._ended[feed.kind] += feed.fanout.statistics().drops

    async def open(
        self,
        key: Key,
        kind: str,
        encode: Encoder,
        *,
        window_s: float,
        ring_size: int,
        client_maxlen: int,
        ring_bytes: int = 8 << 20,
        extra_topics: tuple[Key, ...] = (),
    ) -> Feed:
        """The running feed of ``key``, its tap started (and subscribed) if needed.

        Raises:
            RuntimeError: the app's lifespan is not running, or the app is shutting down.
        """
        feed = self.feeds.get(key)
        if feed is not None:
            feed.reserve()
            return feed
        if self.nursery is None or self.closed:
            raise RuntimeError("the app is not running (no lifespan) or is shutting down")
        feed = Feed(
            self,
            key,
            kind,
            encode,
            window_s=window_s,
            ring_size=ring_size,
            client_maxlen=client_maxlen,
            ring_bytes=ring_bytes,
            extra_topics=extra_topics,
        )
        self.feeds[key] = feed
        await self.nursery.start(feed.run, self.hub)
        return feed

    def close(self) -> None:
        """End every client stream now (before the server shuts down); idempotent."""
        self.closed = True
        for feed in list(self.feeds.values()):
            feed.fanout.close()

    def subscribers(self) -> int:
        """Clients attached to any feed."""
        return sum(f.clients for f in self.feeds.values())

    def stats(self) -> dict[str, tuple[int, int]]:
        """Per feed kind: (attached clients, events evicted from slow clients' buffers, ever)."""
        out = {kind: (0, 0) for kind in FEED_KINDS}
        out.update({kind: (0, n) for kind, n in self._ended.items()})
        for f in self.feeds.values():
            clients, drops = out.get(f.kind, (0, 0))
            out[f.kind] = (clients + f.clients, drops + f.fanout.statistics().drops)
        return out

    async def stream(self, feed: Feed, after: int, run_id: str | None = None) -> AsyncGenerator[Frame, None]:
        """One client's events: replay after id ``after``, then live; heartbeats when idle.

        The subscription is taken before the replay so nothing falls between;
        events already replayed are skipped by id.
        """
        sub = feed.fanout.subscribe(feed.key, maxlen=feed.client_maxlen)
        feed.attach()
        try:
            sent = after
            for old in feed.replay(after):
                if old.seq is not None:
                    sent = old.seq
                if run_id is None or old.tag is None or old.tag == run_id:
                    yield old
            while True:
                f: Any = _IDLE
                with trio.move_on_after(self.heartbeat_s):  # never yield inside a cancel scope
                    f = await _receive(sub)
                if f is _END:
                    return
                if f is _IDLE:
                    yield HEARTBEAT
                elif isinstance(f, SubscriberLagged):
                    yield lagged(f.n)
                elif f.seq is None or f.seq > sent:
                    sent = f.seq if f.seq is not None else sent
                    if run_id is None or f.tag is None or f.tag == run_id:
                        yield f
        finally:
            sub.unsubscribe()
            feed.detach()
