"""Distributed backfills on a real nats-server: units split over collectors, redelivery, dead letters.

Collectors here are services in this process sharing one lake (each with its own NATS connection);
``tests/e2e/test_work_kill.py`` kills a separate ``dccd serve`` process mid-unit. Every lake is read raw
(every part, no deduplication) and compared with a single-process backfill of the same fakes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from dccd.actors import EVENTS_TOPIC, Service, open_service
from dccd.actors.messages import RunProgressed, WorkUnitFinished

from dccd.bus.link import NatsLink
from dccd.bus.work import WORK_BUCKET, decode_state
from dccd.config import Config, ExchangeSettings, Storage, parse_config
from dccd.config.schema import Bus
from dccd.domain.timeutil import NS_PER_S, parse_iso_ns
from dccd.errors import ConfigError
from dccd.storage.runs import RunState
from tests.e2e.helpers import TRADE_COLUMNS, raw_rows, request
from tests.e2e.test_backfill_archive import SPARSE
from tests.fake.binance import FakeBinance, open_fake_binance
from tests.fake.binance_archive import FakeBinanceArchive, open_fake_archive

from .natsserver import NatsServer

pytestmark = pytest.mark.timeout(120)

NOW = parse_iso_ns("2025-01-08T12:00:00Z")
START, END = "2024-12-09", "2025-01-08"  # 30 UTC days


def config(root: Path, rest: FakeBinance, arch: FakeBinanceArchive | None, bus: Bus | None) -> Config:
    ex = ExchangeSettings(rest_url=rest.url, rate_limit=0.0, archive_url=arch.url if arch else None)
    return Config(storage=Storage(path=str(root)), exchanges={"binance": ex}, bus=bus)


def bus(url: str, *, worker: bool = True, **kw: Any) -> Bus:
    return Bus(url=url, work_queue=worker, work_ack_wait="3s", **{"work_max_deliver": 2, **kw})


@asynccontextmanager
async def collectors(cfgs: list[Config]) -> AsyncIterator[list[Service]]:
    """Services (collectors) over ``cfgs``, each with its bus connected."""
    async with AsyncExitStack() as stack:
        svcs = [
            await stack.enter_async_context(open_service(c, ops_options={"now_ns": lambda: NOW, "concurrency": 2}))
            for c in cfgs
        ]
        with trio.fail_after(20):
            for s in svcs:
                await s.work.wait_connected()
        yield svcs


def drain(sub: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(sub.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


async def unit_states(url: str) -> list[Any]:
    async with NatsLink.open(url) as link:

        async def read() -> list[Any]:
            kv = await link.js.key_value(WORK_BUCKET)
            return [decode_state((await kv.get(k)).value) for k in await kv.keys()]

        return await link.call(read)


async def test_two_collectors_split_a_30_day_backfill_exactly(tmp_path: Path, nats_server: NatsServer) -> None:
    """30 daily units (archive files, REST for the unpublished day) run on two collectors, each unit once,
    and the shared lake equals a single-process backfill row for row; the planner's run counts units."""
    async with (
        open_fake_binance(weight_limit=10**9, markets=(SPARSE,), clock=lambda: NOW / NS_PER_S) as rest,
        open_fake_archive(rest, missing={"2024-12-14"}) as arch,
    ):
        shared = tmp_path / "shared"
        cfgs = [config(shared, rest, arch, bus(nats_server.url)) for _ in range(2)]
        async with collectors(cfgs) as (a, b):
            async with a.hub.subscribe(EVENTS_TOPIC, maxlen=65536) as sub:
                (run_id,) = await a.work.distribute(request(["BTC/USDT"], "trades", start=START, end=END, now_ns=NOW))
                rec = await a.wait_run(run_id)
                progress = [
                    (e.done, e.total, e.unit) for e in drain(sub) if isinstance(e, RunProgressed) and e.run_id == run_id
                ]
            assert rec.state is RunState.SUCCEEDED, rec.error
            assert rec.progress["work"]["done"] == 30 and rec.progress["work"]["dead"] == 0
            assert progress[-1] == (30, 30, "units")
            assert (a.work.done, b.work.done) != (30, 0) and a.work.done + b.work.done == 30  # both worked
            assert a.work.retried + b.work.retried == 0
            states = await unit_states(nats_server.url)
            assert len(states) == 30 and {(s.status, s.deliveries) for s in states} == {("done", 1)}
            assert rec.rows_written == sum(s.rows for s in states) > 120_000
            # planning the same range again within the duplicate window enqueues nothing
            (again,) = await a.work.distribute(request(["BTC/USDT"], "trades", start=START, end=END, now_ns=NOW))
            rec2 = await a.wait_run(again)
            assert rec2.state is RunState.SUCCEEDED and a.work.done + b.work.done == 30
        single = await backfill_alone(tmp_path / "single", rest, arch)
    assert single.state is RunState.SUCCEEDED, single.error
    got = raw_rows(shared, "trades", TRADE_COLUMNS, order="ts, id")
    assert len({r[1] for r in got}) == len(got)  # no unit written twice
    assert got == raw_rows(tmp_path / "single", "trades", TRADE_COLUMNS, order="ts, id")


async def backfill_alone(root: Path, rest: FakeBinance, arch: FakeBinanceArchive) -> Any:
    async with open_service(config(root, rest, arch, None), ops_options={"now_ns": lambda: NOW}) as svc:
        assert svc.work is None
        (rec,) = await svc.backfill(request(["BTC/USDT"], "trades", start=START, end=END, now_ns=NOW))
        return rec


async def test_poison_unit_is_dead_lettered_after_max_deliver(tmp_path: Path, nats_server: NatsServer) -> None:
    """A unit whose run fails every time is delivered ``max_deliver`` (2) times, then dead-lettered: the
    planner's run fails naming it, a ``dead`` WorkUnitFinished event goes out; an unreadable message is
    dead-lettered at once."""
    async with open_fake_binance(weight_limit=10**9, clock=lambda: NOW / NS_PER_S) as rest:
        cfg = config(tmp_path / "lake", rest, None, bus(nats_server.url))
        async with collectors([cfg]) as (svc,), svc.hub.subscribe(EVENTS_TOPIC, maxlen=4096) as sub:
            link = svc.work.link

            async def garbage() -> None:
                await link.js.publish("dccd.work.backfill.x.y", b"{not a unit", headers={"Nats-Msg-Id": "junk"})

            await link.call(garbage)
            req = request(["DOGE/EUR"], "trades", start="2025-01-07", end="2025-01-08", now_ns=NOW, source="rest")
            (run_id,) = await svc.work.distribute(req)  # the fake does not list DOGE/EUR: every run fails
            rec = await svc.wait_run(run_id)
            events = [(e.result, e.deliveries, e.symbol) for e in drain(sub) if isinstance(e, WorkUnitFinished)]
        assert rec.state is RunState.FAILED
        assert "1 of 1 work units failed 2 times (dead letters)" in (rec.error or "")
        assert "DOGE/EUR" in (rec.error or "")
        assert ("retrying", 1, "DOGE/EUR") in events and ("dead", 2, "DOGE/EUR") in events
        assert ("dead", 1, "") in events  # the unreadable message
        assert svc.work.dead == 2 and svc.work.retried == 1
        kinds = [e.kind for e in await svc.run_events(run_id)]
        assert kinds.count("dead_letter") == 1


def test_distribute_needs_a_bus() -> None:
    """``distribute: true`` without ``bus:`` is a config error naming the key (nothing changes without a bus)."""
    text = (
        "jobs:\n  - {exchange: binance, symbols: [BTC/USDT], type: trades, start: '-2d', every: 1h, distribute: true}\n"
    )
    with pytest.raises(ConfigError, match=r"jobs\[0\]\.distribute: needs bus\.url"):
        parse_config(text, {}, "t.yaml")
    ok = parse_config(text + "bus: {url: 'nats://127.0.0.1:4222', work_queue: true}\n", {}, "t.yaml")
    assert ok.bus is not None and ok.bus.work_queue and ok.jobs[0].distribute


async def test_cli_plans_units_and_status_counts_them(tmp_path: Path, nats_server: NatsServer) -> None:
    """``dccd work backfill`` queues one unit per UTC day, follows its planner run while a worker collector
    runs them, exits 0; ``dccd work status`` counts them done; without ``bus.url`` it is a usage error."""
    dccd = str(Path(sys.executable).parent / "dccd")
    async with open_fake_binance(weight_limit=10**9) as rest:
        yaml = tmp_path / "c.yaml"
        lake = tmp_path / "lake"
        base = f"storage: {{path: '{lake}'}}\nexchanges: {{binance: {{rest_url: '{rest.url}', rate_limit: 0}}}}\n"
        yaml.write_text(base)
        args = [dccd, "work", "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1h", "--source", "rest"]
        args += ["--start", "-3d", "--end", "-1d", "--json", "--config", str(yaml)]
        r = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
        assert r.returncode == 2 and b"bus.url" in r.stderr
        yaml.write_text(base + f"bus: {{url: '{nats_server.url}'}}\n")
        worker = Config(
            storage=Storage(path=str(lake)),
            exchanges={"binance": ExchangeSettings(rest_url=rest.url, rate_limit=0.0)},
            bus=bus(nats_server.url),
        )
        async with open_service(worker) as svc:
            r = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
            assert r.returncode == 0, r.stderr[-2000:]
            (run,) = json.loads(r.stdout)
            assert run["state"] == "succeeded" and run["progress"]["total"] in (2, 3)  # -3d..-1d cut at UTC days
            assert svc.work.done == run["progress"]["total"] == run["progress"]["work"]["done"]
            status = [dccd, "work", "status", "--json", "--config", str(yaml)]
            out = json.loads((await trio.run_process(status, capture_stdout=True)).stdout)
            assert out["queued"] == out["unacked"] == 0 and out["units"] == {"done": run["progress"]["total"]}


async def test_replanned_after_the_duplicate_window_runs_again(tmp_path: Path, nats_server: NatsServer) -> None:
    """Units planned again after the duplicate window are queued and run again (their done state reset),
    while a plan within the window enqueues nothing and ends at once on the units' done states."""
    async with open_fake_binance(weight_limit=10**9, clock=lambda: NOW / NS_PER_S) as rest:
        cfg = config(tmp_path / "lake", rest, None, bus(nats_server.url, duplicate_window="5s"))
        async with collectors([cfg]) as (svc,):
            req = request(["BTC/USDT"], "ohlc", span="1h", start="2025-01-05", end="2025-01-07", now_ns=NOW)
            for _ in range(2):  # the second within the window: nothing queued
                (run_id,) = await svc.work.distribute(req)
                assert (await svc.wait_run(run_id)).state is RunState.SUCCEEDED
            assert (svc.work.planned, svc.work.done) == (2, 2)
            await trio.sleep(5.5)
            (run_id,) = await svc.work.distribute(req)
            rec = await svc.wait_run(run_id)
            assert rec.state is RunState.SUCCEEDED and rec.progress["work"]["done"] == 2
            assert (svc.work.planned, svc.work.done) == (4, 4)


async def test_a_distribute_job_fires_into_units(tmp_path: Path, nats_server: NatsServer) -> None:
    """A configured backfill job with ``distribute: true`` fires a planner run (not a local backfill run)
    whose units the collectors run; the job's last state is the planner run's."""
    async with open_fake_binance(weight_limit=10**9, clock=lambda: NOW / NS_PER_S) as rest:
        text = (
            f"storage: {{path: '{tmp_path / 'lake'}'}}\n"
            f"exchanges: {{binance: {{rest_url: '{rest.url}', rate_limit: 0}}}}\n"
            f"bus: {{url: '{nats_server.url}', work_queue: true}}\n"
            "jobs:\n  - {exchange: binance, symbols: [BTC/USDT], type: ohlc, span: 1h, start: '2025-01-05',"
            " end: '2025-01-08', once: true, distribute: true, source: rest}\n"
        )
        async with collectors([parse_config(text, {}, "t.yaml")]) as (svc,):
            await svc.scheduler.start(run_config_jobs=True)
            (job,) = svc.scheduler.list_jobs()
            with trio.fail_after(30):
                while job.last_state in (None, "queued", "running"):
                    await trio.sleep(0.1)
                    job = svc.scheduler.get_job(job.id)
            assert job.last_state == "succeeded", job.last_error
            (run_id,) = job.last_run_ids
            rec = await svc.get_run(run_id)
            assert rec is not None and rec.progress["work"]["done"] == 3 and rec.rows_written == 72
            assert svc.work.done == 3


async def test_a_last_delivery_never_acked_is_dead_lettered(tmp_path: Path, nats_server: NatsServer) -> None:
    """A unit whose last allowed delivery went to a collector that stopped without acking (JetStream's
    max-deliveries advisory) is recorded dead by a live collector, which uses the consumer's max_deliver
    over its own; the planner run fails naming why."""
    from nats.js.api import AckPolicy, ConsumerConfig

    from dccd.bus.work import WORK_CONSUMER, WORK_STREAM

    async with open_fake_binance(weight_limit=10**9, clock=lambda: NOW / NS_PER_S) as rest:
        lake = tmp_path / "lake"
        async with collectors([config(lake, rest, None, bus(nats_server.url, worker=False))]) as (planner,):
            req = request(["BTC/USDT"], "ohlc", span="1h", start="2025-01-07", end="2025-01-08", now_ns=NOW)
            (run_id,) = await planner.work.distribute(req)
            link = planner.work.link

            async def take_and_die() -> int:  # the workers' durable consumer, one delivery allowed, never acked
                ccfg = ConsumerConfig(
                    durable_name=WORK_CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=5.0, max_deliver=1,
                    max_ack_pending=-1,
                )  # fmt: skip
                psub = await link.js.pull_subscribe("dccd.work.>", WORK_CONSUMER, stream=WORK_STREAM, config=ccfg)
                return len(await psub.fetch(1, timeout=5))

            assert await link.call(take_and_die) == 1
            async with collectors([config(lake, rest, None, bus(nats_server.url, work_max_deliver=5))]) as (w,):
                with trio.fail_after(30):
                    rec = await planner.wait_run(run_id)
                assert w.work.max_deliver == 1 and (w.work.dead, w.work.done) == (1, 0)
    assert rec.state is RunState.FAILED and "without an ack" in (rec.error or "")
