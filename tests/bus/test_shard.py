"""Which shard owns a job, and the lease decisions (dccd.bus.shard)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dccd.bus.shard import LeaseView, parse_shard, plan_leases, shard_of


@pytest.mark.parametrize(("text", "want"), [("0/2", (0, 2)), ("1/2", (1, 2)), (" 3 / 4 ", (3, 4)), ("0/1", (0, 1))])
def test_parse_shard(text: str, want: tuple[int, int]) -> None:
    assert parse_shard(text) == want


@pytest.mark.parametrize(
    ("text", "msg"),
    [("2/2", "shard K must be 0..N-1"), ("1/0", "shard K must be 0..N-1"), ("a/b", "is not a shard"), ("1", "not a")],
)
def test_bad_shards_are_one_line(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_shard(text)


def test_shard_of_is_stable_and_order_free() -> None:
    # pinned: every process (any Python, any PYTHONHASHSEED) must agree
    assert shard_of("binance", ["BTC/USDT"], 2) == shard_of("binance", ["BTC/USDT"], 2)
    assert shard_of("binance", ["ETH/USDT", "BTC/USDT"], 7) == shard_of("binance", ["BTC/USDT", "ETH/USDT"], 7)
    for i in range(8):  # the definition: blake2b-64 of "exchange|sorted,symbols", big-endian, mod N
        digest = hashlib.blake2b(f"binance|S{i}/USDT".encode(), digest_size=8).digest()
        assert shard_of("binance", [f"S{i}/USDT"], 4) == int.from_bytes(digest, "big") % 4


def test_spread_over_many_jobs_is_even() -> None:
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of("okx", [f"C{i}/USDT"], 4)] += 1
    assert all(900 < c < 1100 for c in counts), counts


def test_a_shard_claims_its_own_and_a_dead_peers() -> None:
    view = LeaseView(alive=frozenset({0}), owners={})
    assert plan_leases(0, 2, view, held=()).claim == (0, 1)  # 1 is not alive: taken over
    alive_peer = LeaseView(alive=frozenset({0, 1}), owners={})
    assert plan_leases(0, 2, alive_peer, held=()).claim == (0,)


def test_a_taker_lets_go_when_the_owner_is_back_and_the_owner_waits() -> None:
    view = LeaseView(alive=frozenset({0, 1}), owners={0: 0, 1: 0})
    taker = plan_leases(0, 2, view, held=(0, 1))
    assert taker.claim == () and taker.release == (1,)
    back = plan_leases(1, 2, view, held=())
    assert back.claim == () and back.release == ()  # owned by 0 until it lets go


def test_a_restarted_shard_takes_back_the_lease_of_its_previous_run() -> None:
    view = LeaseView(alive=frozenset({1}), owners={0: 1, 1: 1})
    assert plan_leases(1, 2, view, held=()).claim == (0, 1)


@given(
    n=st.integers(1, 5),
    alive=st.frozensets(st.integers(0, 4)),
    owners=st.dictionaries(st.integers(0, 4), st.integers(0, 4)),
    me=st.integers(0, 4),
)
def test_never_claims_a_shard_another_live_collector_owns(
    n: int, alive: frozenset[int], owners: dict[int, int], me: int
) -> None:
    me %= n
    view = LeaseView(alive | {me}, {j: o for j, o in owners.items() if j < n and o < n})
    plan = plan_leases(me, n, view, held=())
    for j in plan.claim:
        assert view.owners.get(j) in (None, me)
        assert j == me or j not in view.alive or view.owners.get(j) == me
