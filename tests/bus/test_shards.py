"""Shard leases on a real nats-server: the split, a takeover after a crash, the handback."""

from __future__ import annotations

import trio
from dccd.actors.shards import ShardCoordinator

from dccd.bus.link import NatsLink

from .natsserver import NatsServer

TTL = 2.0


class Owned:
    """Records what a coordinator owns after each change (what the scheduler would run)."""

    def __init__(self) -> None:
        self.now: frozenset[int] = frozenset()
        self.history: list[frozenset[int]] = []

    async def __call__(self, shards: frozenset[int]) -> None:
        self.now = shards
        self.history.append(shards)


async def wait_for(cond: object, timeout_s: float) -> float:
    t0 = trio.current_time()
    with trio.fail_after(timeout_s):
        while not cond():  # type: ignore[operator]
            await trio.sleep(0.05)
    return trio.current_time() - t0


async def test_two_collectors_split_take_over_and_hand_back(nats_server: NatsServer) -> None:
    a_owned, b_owned = Owned(), Owned()
    async with (
        NatsLink.open(nats_server.url) as link_a,
        NatsLink.open(nats_server.url) as link_b,
        trio.open_nursery() as nursery,
    ):
        a_scope = trio.CancelScope()

        async def run_a(coord: ShardCoordinator, scope: trio.CancelScope) -> None:
            with scope:
                await coord.run()

        a = ShardCoordinator(link_a, 0, 2, ttl_s=TTL, on_change=a_owned, release_on_exit=False)
        b = ShardCoordinator(link_b, 1, 2, ttl_s=TTL, on_change=b_owned)
        nursery.start_soon(run_a, a, a_scope)
        nursery.start_soon(b.run)
        await wait_for(lambda: a_owned.now == {0} and b_owned.now == {1}, 10)
        await trio.sleep(TTL * 1.5)  # past the startup grace: still split, nobody takes a live peer's shard
        assert (a_owned.now, b_owned.now) == ({0}, {1})
        assert frozenset({0, 1}) not in b_owned.history

        a_scope.cancel()  # collector 0 dies without letting go (SIGKILL): its leases expire
        took = await wait_for(lambda: b_owned.now == {0, 1}, 4 * TTL + 5)
        assert took <= 2 * TTL + 2, took
        assert b.takeovers == 1

        a2_owned = Owned()
        a2 = ShardCoordinator(link_a, 0, 2, ttl_s=TTL, on_change=a2_owned)
        nursery.start_soon(a2.run)  # collector 0 is back: 1 lets go of shard 0 first, then 0 claims it
        await wait_for(lambda: a2_owned.now == {0} and b_owned.now == {1}, 4 * TTL + 5)
        nursery.cancel_scope.cancel()
