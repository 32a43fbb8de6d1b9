"""The work-queue routes: a distributed backfill over HTTP, its planner run, ``/api/v1/work`` and ``dccd_work_*``."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from dccd.client import Client
from dccd.domain.timeutil import NS_PER_S, parse_iso_ns
from tests.bus.conftest import nats_server  # noqa: F401  (fixture)
from tests.bus.natsserver import NatsServer, nats_server_binary
from tests.fake.binance import open_fake_binance

from .conftest import make_config, open_web

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(nats_server_binary() is None, reason="nats-server not installed"),
]
NOW = parse_iso_ns("2025-01-08T12:00:00Z")


async def test_distribute_over_http_and_the_counters(tmp_path: Path, nats_server: NatsServer) -> None:  # noqa: F811
    """POST /api/v1/work/backfills queues 3 daily units this collector runs; the planner run ends succeeded
    with ``progress.work.done == 3``; /api/v1/work and /metrics count them."""
    async with open_fake_binance(weight_limit=10**9, clock=lambda: NOW / NS_PER_S) as fake:
        bus = f"bus: {{url: '{nats_server.url}', work_queue: true, work_ack_wait: 5s}}\n"
        cfg = make_config(tmp_path, fake_url=fake.url, extra=bus)
        async with open_web(cfg, ops_options={"now_ns": lambda: NOW}) as web:
            body = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1h",
                    "start": "2025-01-05", "end": "2025-01-08", "source": "rest"}  # fmt: skip
            with trio.fail_after(20):
                await web.svc.work.wait_connected()
            r = await web.client.post("/api/v1/work/backfills", json=body)
            assert r.status_code == 202, r.text
            (run_id,) = r.json()["run_ids"]
            rec = await web.svc.wait_run(run_id)
            assert rec.state == "succeeded", rec.error
            run = (await web.client.get(f"/api/v1/runs/{run_id}")).json()
            assert run["progress"]["work"]["done"] == 3 and run["progress"]["total"] == 3
            assert run["rows_written"] == 72
            status = (await web.client.get("/api/v1/work")).json()
            assert status["enabled"] and status["worker"] and status["done"] == 3 and status["planned"] == 3
            async with Client(web.url) as client:  # the Python client: the same plan again is not queued twice
                (again,) = await client.distribute(
                    "binance", "BTC/USDT", "ohlc", "1h", "2025-01-05", "2025-01-08", "rest"
                )
                assert (await web.svc.wait_run(again)).state == "succeeded"
                assert (await client.work())["planned"] == 3
            text = (await web.client.get("/metrics")).text
            got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
            assert got["dccd_work_units_done_total"] == 3 and got["dccd_work_units_dead_total"] == 0


async def test_without_a_bus_nothing_is_distributed(tmp_path: Path) -> None:
    """Without ``bus:`` the route answers 409 naming bus, /api/v1/work says disabled, no dccd_work metric."""
    async with open_web(make_config(tmp_path)) as web:
        body = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "start": "-2d"}
        r = await web.client.post("/api/v1/work/backfills", json=body)
        assert r.status_code == 409 and "bus" in r.text
        assert (await web.client.get("/api/v1/work")).json() == {"enabled": False}
        assert "dccd_work_" not in (await web.client.get("/metrics")).text
