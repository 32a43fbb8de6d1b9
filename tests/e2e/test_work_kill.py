"""A collector SIGKILLed in the middle of a work unit: the unit is redelivered to another one, the lake ends exact.

nats-server, the fake Binance REST + archive (in this process), a ``dccd serve`` worker process, and in this
process a planner and, after the kill, a second worker, all over one lake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from dccd.actors import open_service

from dccd.bus.link import NatsLink
from dccd.bus.work import WORK_BUCKET, WORK_CONSUMER, WORK_STREAM, decode_state
from dccd.domain.timeutil import NS_PER_S
from dccd.storage.runs import RunState
from tests.bus.natsserver import NatsServer, free_port, nats_server_binary, running_nats
from tests.bus.test_work import END, NOW, START, backfill_alone, bus, config
from tests.e2e.helpers import TRADE_COLUMNS, raw_rows, request
from tests.e2e.test_backfill_archive import SPARSE
from tests.fake.binance import open_fake_binance
from tests.fake.binance_archive import open_fake_archive

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(nats_server_binary() is None, reason="nats-server not installed"),
]


async def kv_states(link: NatsLink) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        kv = await link.js.key_value(WORK_BUCKET)
        try:
            keys = await kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return {}
        return {k: decode_state((await kv.get(k)).value) for k in keys}

    return await link.call(read)


async def redelivered(link: NatsLink) -> int:
    async def read() -> int:
        return int((await link.js.consumer_info(WORK_STREAM, WORK_CONSUMER)).num_redelivered)

    return await link.call(read)


async def take_all(link: NatsLink, seconds: float) -> set[str]:
    """Pull from the workers' consumer for ``seconds`` (keeping what came in progress), then nak it all;
    returns the KV keys of the units taken."""
    import asyncio

    from dccd.bus.work import decode_unit, state_key

    async def take() -> set[str]:
        psub = await link.js.pull_subscribe_bind(WORK_CONSUMER, WORK_STREAM)
        held: dict[str, object] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                for m in await psub.fetch(100, timeout=max(0.2, min(0.5, left))):
                    held[state_key(decode_unit(m.data))] = m
            except TimeoutError:  # nats-py raises its own or asyncio's, by code path
                pass
            for m in held.values():
                await m.in_progress()  # type: ignore[attr-defined]
        for m in held.values():
            await m.nak()  # type: ignore[attr-defined]
        return set(held)

    return await link.call(take, timeout_s=3 * seconds + 10)  # a loaded machine stretches each fetch


async def test_killed_worker_mid_unit_is_redelivered_and_the_lake_is_exact(tmp_path: Path) -> None:
    """A worker process holding a unit (heartbeating it past ack_wait, so it is not redelivered meanwhile)
    is SIGKILLed; after ack_wait the unit goes to the other worker, every unit ends done and the lake
    equals a single-process backfill row for row."""
    with running_nats(tmp_path / "js") as nats:
        await _run(tmp_path, nats)


async def _run(tmp_path: Path, nats: NatsServer) -> None:
    shared = tmp_path / "shared"
    async with (
        open_fake_binance(weight_limit=10**9, markets=(SPARSE,), clock=lambda: NOW / NS_PER_S) as rest,
        open_fake_archive(rest, stall_after=0) as arch,  # every download hangs: the worker stays mid-unit
        NatsLink.open(nats.url) as link,
    ):
        yaml = tmp_path / "worker.yaml"
        yaml.write_text(
            f"storage: {{path: '{shared}', compact_every: null}}\n"
            f"exchanges: {{binance: {{rest_url: '{rest.url}', archive_url: '{arch.url}', rate_limit: 0}}}}\n"
            f"bus: {{url: '{nats.url}', work_queue: true, work_ack_wait: 3s, work_max_deliver: 3}}\n"
        )
        log = (tmp_path / "worker.log").open("w")
        worker = await trio.lowlevel.open_process(
            [str(Path(sys.executable).parent / "dccd"), "serve", "--config", str(yaml), "--port", str(free_port())],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            planner_cfg = config(shared, rest, arch, bus(nats.url, worker=False, work_max_deliver=3))
            async with open_service(planner_cfg, ops_options={"now_ns": lambda: NOW}) as planner:
                with trio.fail_after(20):
                    await planner.work.wait_connected()
                (run_id,) = await planner.work.distribute(
                    request(["BTC/USDT"], "trades", start=START, end=END, now_ns=NOW)
                )
                held: str | None = None
                with trio.fail_after(60):
                    while held is None:
                        running = [k for k, s in (await kv_states(link)).items() if s and s.status == "running"]
                        held = running[0] if running else None
                        await trio.sleep(0.2)
                # For twice ack_wait, take every unit the queue hands out: the 29 others, never the held one
                # (the worker's in-progress heartbeats keep it); then hand them back at once.
                taken = await take_all(link, 6.0)
                assert len(taken) == 29 and held not in taken
                assert await redelivered(link) == 0
                worker.send_signal(signal.SIGKILL)
                with trio.fail_after(10):
                    await worker.wait()
                arch.stall_after = None
                cfg = config(shared, rest, arch, bus(nats.url, work_max_deliver=3))
                async with open_service(cfg, ops_options={"now_ns": lambda: NOW, "concurrency": 2}) as other:
                    rec = await planner.wait_run(run_id)
                    assert other.work.done == 30
                assert rec.state is RunState.SUCCEEDED, rec.error
                states = await kv_states(link)
                assert {s.status for s in states.values()} == {"done"} and len(states) == 30
                assert states[held].deliveries == 2
        finally:
            if worker.returncode is None:
                worker.kill()
                with trio.move_on_after(10):
                    await worker.wait()
            log.close()
        single = await backfill_alone(tmp_path / "single", rest, arch)
    assert single.state is RunState.SUCCEEDED, single.error
    got = raw_rows(shared, "trades", TRADE_COLUMNS, order="ts, id")
    assert sorted(set(got)) == raw_rows(tmp_path / "single", "trades", TRADE_COLUMNS, order="ts, id")
