"""A ``distribute: true`` job on two ``dccd serve --shard k/2`` collectors, every process separate.

The job's owning shard plans 30 daily units of trades (the fake Binance archive, REST for a missing day);
both collectors pull them; the lake they share equals a single-process backfill row for row.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from dccd.bus.link import NatsLink
from dccd.domain.timeutil import NS_PER_S
from dccd.storage.runs import RunState
from tests.bus.natsserver import free_port, nats_server_binary, running_nats
from tests.bus.test_work import END, NOW, START, backfill_alone
from tests.e2e.helpers import TRADE_COLUMNS, raw_rows
from tests.e2e.test_backfill_archive import SPARSE
from tests.e2e.test_work_kill import kv_states
from tests.fake.binance import open_fake_binance
from tests.fake.binance_archive import open_fake_archive

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(nats_server_binary() is None, reason="nats-server not installed"),
]


async def test_two_shards_split_a_distributed_job(tmp_path: Path) -> None:
    """The job fires once on the shard owning it, its 30 units run on both collectors, each once, and the
    planner run (visible from either collector) ends succeeded with the lake exact."""
    shared = tmp_path / "shared"
    with running_nats(tmp_path / "js") as nats:
        async with (
            open_fake_binance(weight_limit=10**9, markets=(SPARSE,), clock=lambda: NOW / NS_PER_S) as rest,
            open_fake_archive(rest, missing={"2024-12-14"}) as arch,
            NatsLink.open(nats.url) as link,
        ):
            yaml = tmp_path / "shard.yaml"
            yaml.write_text(
                f"storage: {{path: '{shared}', compact_every: null}}\n"
                f"exchanges: {{binance: {{rest_url: '{rest.url}', archive_url: '{arch.url}', rate_limit: 0}}}}\n"
                f"bus: {{url: '{nats.url}', lease_ttl: 4s, work_queue: true, work_ack_wait: 10s}}\n"
                "jobs:\n  - {exchange: binance, symbols: [BTC/USDT], type: trades, "
                f"start: '{START}', end: '{END}', once: true, distribute: true}}\n"
            )
            ports = [free_port(), free_port()]
            dccd = str(Path(sys.executable).parent / "dccd")
            procs: list[Any] = []
            try:
                for k, port in enumerate(ports):
                    log = (tmp_path / f"shard{k}.log").open("w")
                    procs.append(
                        await trio.lowlevel.open_process(
                            [dccd, "serve", "--config", str(yaml), "--port", str(port), "--shard", f"{k}/2"],
                            stdout=log,
                            stderr=log,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                        )
                    )
                    log.close()
                planner: dict[str, Any] = {}
                async with httpx.AsyncClient(timeout=5) as client:
                    with trio.fail_after(150):
                        while not planner or planner["state"] in ("pending", "running"):
                            await trio.sleep(0.5)
                            try:
                                runs = (await client.get(f"http://127.0.0.1:{ports[0]}/api/v1/runs")).json()
                            except httpx.HTTPError:
                                continue
                            planner = next((r for r in runs if (r.get("progress") or {}).get("distributed")), {})
                    done = [(await client.get(f"http://127.0.0.1:{p}/api/v1/work")).json()["done"] for p in ports]
                assert planner["state"] == RunState.SUCCEEDED, planner.get("error")
                assert planner["progress"]["work"]["done"] == 30
                assert sum(done) == 30 and min(done) >= 1, done  # both collectors worked
                states = await kv_states(link)
                assert len(states) == 30 and {(s.status, s.deliveries) for s in states.values()} == {("done", 1)}
            finally:
                for p in procs:
                    if p.returncode is None:
                        p.terminate()
                for p in procs:
                    with trio.move_on_after(30):
                        await p.wait()
                    if p.returncode is None:
                        p.kill()
            single = await backfill_alone(tmp_path / "single", rest, arch)
    assert single.state is RunState.SUCCEEDED, single.error
    got = raw_rows(shared, "trades", TRADE_COLUMNS, order="ts, id")
    assert len({r[1] for r in got}) == len(got)
    assert got == raw_rows(tmp_path / "single", "trades", TRADE_COLUMNS, order="ts, id")
