"""Sharding: which of N collectors owns a job, and the lease keys they hold.

A job belongs to shard ``stable_hash(exchange + sorted symbols) % N`` (blake2b, so every process and
every Python agrees, unlike ``hash()``). Each collector ``K/N`` keeps two keys alive in the bus's KV
bucket (:data:`LEASE_BUCKET`, whose entries expire after the lease TTL):

* ``alive-K``: "collector K is up" (renewed every TTL/4);
* ``owner-J``: "this collector runs shard J's jobs"; normally collector J holds ``owner-J``.

A collector that sees ``owner-J`` absent (expired: J died) creates it (create-if-absent: one winner)
and runs J's jobs, their streams refilling from the lake's newest trade what nobody recorded meanwhile.
When J comes back (``alive-J`` present) the taker lets ``owner-J`` go and stops J's jobs; J then claims
it. :func:`plan_leases` is the pure decision; the actor in :mod:`dccd.actors.shards` applies it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

import msgspec

LEASE_BUCKET = "dccd_shards"
_SHARD = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (shards are numbered from 0).

    Raises:
        ValueError: not ``K/N``, or ``K`` out of range.
    """
    m = _SHARD.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a shard like 0/2 (K/N: this process is shard K of N, K from 0)")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"{text!r}: shard K must be 0..N-1 with N >= 1")
    return k, n


def shard_of(exchange: str, symbols: Iterable[object], n: int) -> int:
    """The shard (0..n-1) owning a job of ``exchange`` over ``symbols`` (order does not matter)."""
    key = exchange + "|" + ",".join(sorted(str(s) for s in symbols))
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % n


def alive_key(k: int) -> str:
    return f"alive-{k}"


def owner_key(k: int) -> str:
    return f"owner-{k}"


class LeaseView(msgspec.Struct, frozen=True):
    """What a collector read from the bucket: who is alive, and who owns each shard (by collector index)."""

    alive: frozenset[int]
    owners: Mapping[int, int]


class LeasePlan(msgspec.Struct, frozen=True):
    """What collector ``me`` does next: shards to claim (create-if-absent) and to let go."""

    claim: tuple[int, ...]
    release: tuple[int, ...]


def plan_leases(me: int, n: int, view: LeaseView, held: Iterable[int]) -> LeasePlan:
    """Decide from a :class:`LeaseView` which shards ``me`` claims and which it releases.

    * its own shard: claimed when nobody owns it (or a previous run of ``me`` still does);
    * another shard J: claimed when nobody owns it and collector J is not alive (it died);
    * a shard J != me it holds: released as soon as collector J is alive again.
    """
    held = set(held)
    claim = [
        j for j in range(n) if view.owners.get(j) == me or (j not in view.owners and (j == me or j not in view.alive))
    ]
    release = [j for j in sorted(held) if j != me and j in view.alive]
    return LeasePlan(tuple(sorted(set(claim) - held)), tuple(release))
