"""The shard coordinator actor: holds this collector's leases in the bus's KV bucket, takes over dead shards.

Every ``ttl/4`` it renews ``alive-K`` and the ``owner-J`` keys it holds, reads the bucket, and applies
:func:`dccd.bus.shard.plan_leases`; whenever the set of shards it owns changes it awaits
``on_change(shards)`` (the scheduler then starts or stops those shards' jobs). A collector that cannot
renew for most of a TTL owns nothing any more (another collector is about to take its shards over; two
collectors must not record the same stream) until it can renew again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
import trio

from dccd.bus.link import BusError, NatsLink
from dccd.bus.shard import LEASE_BUCKET, LeasePlan, LeaseView, alive_key, owner_key, plan_leases

log = structlog.get_logger()


class ShardCoordinator:
    """Leases of collector ``me`` of ``n`` (see the module docstring)."""

    def __init__(
        self,
        link: NatsLink,
        me: int,
        n: int,
        *,
        ttl_s: float,
        on_change: Callable[[frozenset[int]], Awaitable[None]],
        bucket: str = LEASE_BUCKET,
        release_on_exit: bool = True,
    ) -> None:
        self.link = link
        self.me, self.n = me, n
        self.ttl_s = ttl_s
        self.on_change = on_change
        self.bucket = bucket
        self.release_on_exit = release_on_exit
        self.held: dict[int, int] = {}  # shard -> revision of our owner key
        self.takeovers = 0
        self.renew_failures = 0
        self._kv: Any = None
        self._last_ok = self._started = trio.current_time()

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self.held)

    async def run(self, *, task_status: trio.TaskStatus[ShardCoordinator] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the bucket, then keep the leases until cancelled (owning nothing afterwards)."""
        await self._open_bucket()
        task_status.started(self)
        try:
            while True:
                try:
                    await self.tick()
                    self._last_ok = trio.current_time()
                except BusError as exc:
                    self.renew_failures += 1
                    log.warning("shard.renew_failed", shard=self.me, error=str(exc))
                    if self.held and trio.current_time() - self._last_ok > self.ttl_s * 0.75:
                        log.error("shard.leases_lost", shard=self.me, held=sorted(self.held))
                        self.held.clear()
                        await self.on_change(self.owned)
                await trio.sleep(self.ttl_s / 4)
        finally:
            if self.held and self.release_on_exit:
                with trio.CancelScope(shield=True), trio.move_on_after(3.0):
                    await self._release_all()

    async def _open_bucket(self) -> None:
        from nats.js.api import KeyValueConfig

        js, bucket, ttl = self.link.js, self.bucket, self.ttl_s

        async def make() -> Any:
            try:
                return await js.key_value(bucket)
            except Exception:
                return await js.create_key_value(KeyValueConfig(bucket=bucket, ttl=ttl, history=1))

        self._kv = await self.link.call(make)

    async def tick(self) -> None:
        """One round: renew, read, plan, apply (see the module docstring)."""
        kv, me, n = self._kv, self.me, self.n
        me_b = str(me).encode()

        async def renew_and_read() -> tuple[dict[int, int], set[int], dict[int, int]]:
            from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

            await kv.put(alive_key(me), me_b)
            renewed: dict[int, int] = {}
            for j, rev in self.held.items():
                # expired and claimed by another collector meanwhile: not ours any more
                with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError):
                    renewed[j] = await kv.update(owner_key(j), me_b, last=rev)
            alive: set[int] = set()
            owners: dict[int, int] = {}
            for j in range(n):
                try:
                    await kv.get(alive_key(j))
                    alive.add(j)
                except KeyNotFoundError:
                    pass
                try:
                    entry = await kv.get(owner_key(j))
                    owners[j] = int(entry.value.decode())
                except (KeyNotFoundError, ValueError):
                    pass
            return renewed, alive, owners

        renewed, alive, owners = await self.link.call(renew_and_read)
        before = self.owned
        lost = set(self.held) - set(renewed)
        if lost:
            log.error("shard.lease_lost", shard=me, lost=sorted(lost))
        self.held = renewed
        plan = plan_leases(me, n, LeaseView(frozenset(alive), owners), self.held)
        if trio.current_time() - self._started < self.ttl_s:
            # peers starting with us may not have announced themselves yet: take over nobody for one TTL
            plan = LeasePlan(tuple(j for j in plan.claim if j == me), plan.release)

        async def apply(releasing: dict[int, int]) -> tuple[dict[int, int], list[int]]:
            from nats.js.errors import KeyWrongLastSequenceError

            got: dict[int, int] = {}
            for j in plan.claim:
                try:
                    if owners.get(j) == me:
                        got[j] = await kv.put(owner_key(j), me_b)
                    else:
                        got[j] = await kv.create(owner_key(j), me_b)
                except KeyWrongLastSequenceError:
                    pass  # another collector won it
            released = []
            for j, rev in releasing.items():
                await kv.delete(owner_key(j), last=rev)
                released.append(j)
            return got, released

        if plan.claim or plan.release:
            releasing = {j: self.held.pop(j) for j in plan.release}  # stop their jobs before the owner starts them
            await self.on_change(self.owned)
            got, _ = await self.link.call(partial(apply, releasing))
            for j in got:
                if j != me:
                    self.takeovers += 1
                    log.warning("shard.takeover", shard=me, took=j)
            self.held.update(got)
        if self.owned != before:
            log.info("shard.owned", shard=me, owned=sorted(self.owned))
            await self.on_change(self.owned)

    async def _release_all(self) -> None:
        kv, held = self._kv, dict(self.held)

        async def release() -> None:
            for j, rev in held.items():
                await kv.delete(owner_key(j), last=rev)
            await kv.delete(alive_key(self.me))

        self.held.clear()
        try:
            await self.link.call(release, timeout_s=2.0)
        except BusError as exc:
            log.warning("shard.release_failed", shard=self.me, error=str(exc))
