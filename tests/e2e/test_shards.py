"""Sharded collectors on a real NATS JetStream, as a team runs them: every process separate.

nats-server (JetStream), the seven fake exchanges, two ``dccd serve --shard k/2`` collectors and one
API-only ``dccd serve`` (no jobs) over the same lake. The test checks that the jobs split across the
shards (each stream recorded by exactly one), that one shard SIGKILLed has its streams taken over by
the other within 30 s (the takeover refilling from the lake's newest trade what nobody recorded), that
after a graceful stop the lake has every trade id of the sequential-id exchanges once and no hole,
and that NATS holds every one of those trades exactly once (by ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dccd.bus.consumer import tap
from tests.bus.natsserver import NatsServer, free_port, nats_server_binary
from tests.e2e.test_stall import SEQUENTIAL, wait_for
from tests.fake.serve import EXCHANGES
from tests.objstore.seaweed import Seaweed

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(nats_server_binary() is None, reason="nats-server not installed"),
]
ROOT = Path(__file__).parents[2]


class Cluster:
    """The processes of one run; ``procs`` by name."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.lake = tmp / "lake"
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.s3_uri: str | None = None

    def serve(self, name: str, config: Path, *args: str) -> None:
        port = self.ports[name] = free_port()
        if self.s3_uri is not None:  # a config of its own naming its own cache directory
            own = self.tmp / f"{name}.yaml"
            own.write_text(
                config.read_text().replace("cache_dir: CACHE", f"cache_dir: {json.dumps(str(self.tmp / name))}")
            )
            config = own
        log = (self.tmp / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(
            [str(Path(sys.executable).parent / "dccd"), "serve", "--config", str(config), "--port", str(port), *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=self.env,
        )  # fmt: skip
        log.close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def streams(self, name: str) -> dict[str, str]:
        """``{exchange: state}`` of the streams a collector runs now."""
        rows = httpx.get(self.url(name) + "/api/v1/streams", timeout=5).json()
        return {r["exchange"]: r["state"] for r in rows if r["state"] not in ("stopped", "succeeded", "failed")}

    def stop(self, *names: str) -> None:
        for n in names:
            self.procs[n].send_signal(signal.SIGTERM)
        for n in names:
            try:
                self.procs[n].wait(60)
            except subprocess.TimeoutExpired:
                self.procs[n].kill()


@pytest.fixture(params=["local", "s3"])
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Cluster, NatsServer]]:
    """The processes over a lake on local disk, or (``s3``) on the session's SeaweedFS with one cache per process."""
    store: Seaweed | None = request.getfixturevalue("seaweed") if request.param == "s3" else None
    nats = NatsServer(tmp_path / "jetstream")
    nats.start()
    c = Cluster(tmp_path)
    if store is not None:
        c.s3_uri = store.uri(f"shards-{os.getpid()}-{time.time_ns()}")
        c.env.update(store.env())
    fake_cfg = tmp_path / "fake.yaml"
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake.serve", "--rate", "20", "--config-out", str(fake_cfg),
         "--data", str(c.lake), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=c.env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert fake.stdout is not None
        json.loads(fake.stdout.readline())
        text = fake_cfg.read_text()
        if c.s3_uri is not None:  # every process its own cache directory, as on separate machines
            text = text.replace(json.dumps(str(c.lake)), json.dumps(c.s3_uri) + ", cache_dir: CACHE")
        bus = f'bus: {{url: "{nats.url}", lease_ttl: 8s}}\n'
        (tmp_path / "shard.yaml").write_text(text + bus)
        (tmp_path / "api.yaml").write_text(text.split("jobs:")[0])  # the same lake and exchanges, no jobs
        yield c, nats
    finally:
        for p in c.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
        fake.terminate()
        fake.wait(10)
        if fake.stdout is not None:
            fake.stdout.close()
        nats.kill()


def lake_trade_ids(c: Cluster, con: duckdb.DuckDBPyConnection, exchange: str) -> list[int]:
    """Every stored trade id of ``exchange``, duplicates kept: the raw union of the parts (local glob, or the
    live parts an s3 lake's catalog lists, read by a fresh cache as another machine would)."""
    if c.s3_uri is None:
        glob = str(c.lake / "trades" / f"exchange={exchange}" / "**" / "*.parquet")
        return [r[0] for r in con.execute(f"SELECT CAST(id AS HUGEINT) FROM read_parquet('{glob}')").fetchall()]
    from dccd.storage import Lake
    from dccd.storage.objlake import ObjectLake
    from dccd.storage.reader import connect

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in c.env.items() if k.startswith("AWS_")})
    os.environ["XDG_CACHE_HOME"] = str(c.tmp / "checker")
    try:
        lake = Lake(c.s3_uri)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert isinstance(lake, ObjectLake)
    files = [p.path for ds in lake.datasets() if ds.exchange == exchange and ds.data_type.value == "trades"
             for p in lake.obj.list_parts(ds)]  # fmt: skip
    if not files:
        return []
    cur = connect()
    try:
        return [r[0] for r in cur.execute("SELECT CAST(id AS HUGEINT) FROM read_parquet($f)", {"f": files}).fetchall()]
    finally:
        cur.close()


def nats_trade_ids(url: str) -> dict[str, list[str]]:
    async def read() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        async for m in tap(url, "dccd.trades.>", deliver="all", idle_timeout_s=2.0):
            out.setdefault(m.data["exchange"], []).append(m.data["id"])
        return out

    return asyncio.run(read())


def test_two_shards_split_take_over_and_lose_nothing(cluster: tuple[Cluster, NatsServer]) -> None:
    c, nats = cluster
    shard_cfg = c.tmp / "shard.yaml"
    c.serve("shard0", shard_cfg, "--shard", "0/2")
    c.serve("shard1", shard_cfg, "--shard", "1/2")
    c.serve("api", c.tmp / "api.yaml")

    def split() -> bool | tuple[dict[str, str], dict[str, str]]:
        a, b = c.streams("shard0"), c.streams("shard1")
        ok = set(a) | set(b) == set(EXCHANGES) and not set(a) & set(b) and {*a.values(), *b.values()} == {"connected"}
        return True if ok else (a, b)

    wait_for(split, 90, "the seven streams split over the two shards, each connected")
    time.sleep(12)  # past the lease TTL: still split (nobody takes a live shard's jobs)
    a, b = c.streams("shard0"), c.streams("shard1")
    assert not set(a) & set(b) and set(a) | set(b) == set(EXCHANGES), (a, b)
    victim, survivor = ("shard0", "shard1") if len(a) >= len(b) else ("shard1", "shard0")
    moved = set(c.streams(victim))

    c.procs[victim].kill()  # SIGKILL: no graceful stop, no lease let go, its writer buffers lost
    t0 = time.monotonic()
    took = wait_for(
        lambda: set(c.streams(survivor)) == set(EXCHANGES) and set(c.streams(survivor).values()) == {"connected"},
        30,
        f"{survivor} running every stream after {victim} was killed",
    )
    print(f"{survivor} took over {sorted(moved)} {time.monotonic() - t0:.1f}s after {victim} was SIGKILLed")
    assert took <= 30
    time.sleep(8)  # the takeover's refills land; the API process reads the shared lake meanwhile
    inventory = httpx.get(c.url("api") + "/api/v1/inventory", timeout=10).json()
    assert {d["exchange"] for d in inventory if d["data_type"] == "trades"} >= set(SEQUENTIAL)
    d = next(d for d in inventory if d["data_type"] == "trades" and d["exchange"] in SEQUENTIAL)
    url = f"{c.url('api')}/api/v1/data/trades/{d['exchange']}/{d['symbol'].replace('/', '-')}?format=jsonl"
    res = httpx.get(url, timeout=30)  # the API process reads the rows back (from the store, in the s3 variant)
    rows = [json.loads(line) for line in res.text.splitlines()]
    assert res.status_code == 200 and rows and len({r["id"] for r in rows}) == len(rows), res.text[:300]
    metrics = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(httpx.get(c.url(survivor) + "/metrics", timeout=10).text)
        for s in fam.samples
    }
    assert metrics[("dccd_shard_takeovers_total", ())] == 1
    assert metrics[("dccd_shard_owned", (("shard", "0"),))] == metrics[("dccd_shard_owned", (("shard", "1"),))] == 1
    assert metrics[("dccd_bus_published_total", ())] > 0 and metrics[("dccd_bus_connected", ())] == 1
    assert metrics[("dccd_bus_dropped_total", ())] == 0
    c.stop(survivor, "api")

    con = duckdb.connect()
    on_bus = nats_trade_ids(nats.url)
    for ex in SEQUENTIAL:
        ids = lake_trade_ids(c, con, ex)
        assert len(ids) == len(set(ids)), f"{ex}: {len(ids) - len(set(ids))} trades stored twice"
        lo, hi = min(ids), max(ids)
        assert hi - lo + 1 == len(ids), f"{ex}: {hi - lo + 1 - len(ids)} ids missing between {lo} and {hi}"
        bus = on_bus.get(ex, [])
        assert len(bus) == len(set(bus)), f"{ex}: {len(bus) - len(set(bus))} trades on NATS twice"
        assert {int(i) for i in bus} == set(ids), f"{ex}: NATS and the lake differ"
