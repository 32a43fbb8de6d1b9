"""Service: embedding in a foreign Trio app, runtime actors, statistics, events, Prometheus export."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Any

import dccd.actors
import trio
from dccd.actors import (
    EVENTS_TOPIC,
    ActorStarted,
    Batch,
    BoundedIngress,
    PartWritten,
    Role,
    Service,
    Writer,
    open_service,
)
from prometheus_client import CollectorRegistry, generate_latest

from .conftest import EventLog, FakeLake, make_batch


async def paginator(writer: Writer, pages: int, *, task_status: trio.TaskStatus[None]) -> None:
    """A REST paginator: waits for the writer's gate before each page."""
    task_status.started()
    for page in range(pages):
        await writer.wait_writable()
        await trio.sleep(0.25)
        writer.send(make_batch(10, start=10 * page))
    await trio.sleep_forever()


async def test_serve_runs_inside_another_apps_nursery(autojump_clock: Any) -> None:
    """nursery.start(serve, config) returns a Service next to the app's own tasks; cancel() ends only the service."""
    ticks: list[float] = []

    async def app_ticker() -> None:
        while True:
            await trio.sleep(1)
            ticks.append(trio.current_time())

    lake = FakeLake(delay_s=0.5)
    async with trio.open_nursery() as app:
        app.start_soon(app_ticker)
        svc: Service = await app.start(dccd.actors.serve, SimpleNamespace(storage=SimpleNamespace(path="/data")))
        assert str(svc.storage_path) == "/data"
        writer = await svc.start_writer("writer", lake.write, max_rows=20, offload=lake.offload)
        await svc.start_actor("paginator", paginator, writer, 8, role=Role.SOURCE)
        await trio.sleep(5)
        svc.cancel()
        await trio.sleep(4.5)
        assert ticks == [float(t) for t in range(1, 10)]  # the app's task never noticed
        assert svc.supervisor.names() == []
        app.cancel_scope.cancel()
    assert lake.ts() == list(range(80))


async def test_open_service_inside_an_app_and_its_shutdown_drains(autojump_clock: Any) -> None:
    """async with open_service(...) runs next to the app's tasks; leaving it drains every accepted row."""
    lake = FakeLake(delay_s=1.0)
    seen: list[float] = []

    async def app_task() -> None:
        await trio.sleep(0.5)
        while True:
            seen.append(trio.current_time())
            await trio.sleep(1)

    async with trio.open_nursery() as app:
        app.start_soon(app_task)
        async with open_service(grace_s=10) as svc:
            writer = await svc.start_writer("writer", lake.write, max_rows=1000, max_age_s=60, offload=lake.offload)
            await svc.start_actor("paginator", paginator, writer, 4, role=Role.SOURCE)
            await trio.sleep(3)
        assert trio.current_time() == 4.0  # one 1 s write of the 40 buffered rows
        assert lake.ts() == list(range(40))
        assert seen == [0.5, 1.5, 2.5, 3.5]  # the app kept running during the service's life and drain
        app.cancel_scope.cancel()


async def test_statistics_show_actors_queues_and_hub(autojump_clock: Any) -> None:
    """statistics() reports each actor's role, state, restarts, queue depth and credits, and the hub."""
    lake = FakeLake(delay_s=100)
    async with open_service() as svc:
        writer = await svc.start_writer("writer", lake.write, max_rows=1, high=4, low=2, offload=lake.offload)
        for i in range(3):
            writer.send(make_batch(1, start=i))
        ingress = BoundedIngress(10, name="ws", emit=svc.emit)
        await svc.start_actor("ws-pump", ingress.run, writer.input, writer, role=Role.SOURCE)
        assert ingress.offer(make_batch(6, start=3))
        assert not ingress.offer(make_batch(7, start=9))  # 6 + 7 rows > the 10-row bound: dropped
        await trio.sleep(1)  # the pump forwarded the 6 rows through the writer's open gate
        async with svc.hub.subscribe(("trades", None, None)):
            stats = svc.statistics()
        by_name = {a.name: a for a in stats.actors}
        assert sorted(by_name) == ["hub", "writer", "ws-pump"]
        w = by_name["writer"]
        assert (w.role, w.state, w.restarts) == ("writer", "running", 0)
        assert (w.metrics.queue_depth, w.metrics.queue_high, w.metrics.credits) == (3, 4, 1)
        assert (w.metrics.items_in, w.metrics.items_out) == (4, 1)  # one part is on the 100 s disk
        ws = by_name["ws-pump"]
        assert (ws.role, ws.metrics.queue_depth, ws.metrics.items_out, ws.metrics.drops) == ("source", 0, 6, 7)
        assert by_name["hub"].role == "hub"
        assert stats.hub.subscribers == 1 and stats.uptime_s == 1.0
        await svc.stop_actor("ws-pump")
        assert "ws-pump" not in svc.supervisor
        svc.cancel()  # leave the block without waiting for the 100 s disk


async def test_control_events_reach_hub_subscribers(autojump_clock: Any) -> None:
    """Lifecycle and PartWritten events are emitted to on_event and published on the hub's events topic."""
    lake = FakeLake()
    log = EventLog()
    async with open_service(on_event=log) as svc, svc.hub.subscribe(EVENTS_TOPIC) as sub:
        writer = await svc.start_writer("writer", lake.write, max_rows=2, offload=lake.offload)
        writer.send(make_batch(2))
        await trio.sleep(1)
        first, second = sub.receive_nowait(), sub.receive_nowait()
    assert first == ActorStarted(name="writer", role="writer")
    assert isinstance(second, PartWritten) and second.rows == 2
    assert log.of(ActorStarted)[0].name == "hub"
    assert len(log.of(PartWritten)) == 1


async def test_metrics_are_exported_on_the_given_registry(autojump_clock: Any) -> None:
    """The collector registers on the caller's registry only, reports per-actor series, and leaves on exit."""
    registry = CollectorRegistry()
    lake = FakeLake(delay_s=100)
    async with open_service(registry=registry) as svc:
        writer = await svc.start_writer("writer", lake.write, max_rows=1, offload=lake.offload)
        writer.send(make_batch(1))
        writer.send(make_batch(1, start=1))
        await trio.sleep(1)
        text = generate_latest(registry).decode()
        svc.cancel()
    assert 'dccd_actor_restarts_total{actor="writer",role="writer"} 0.0' in text
    assert 'dccd_actor_state{actor="writer",role="writer",state="running"} 1.0' in text
    assert 'dccd_actor_queue_depth{actor="writer",role="writer"} 1.0' in text
    assert 'dccd_actor_items_in_total{actor="writer",role="writer"} 2.0' in text
    assert 'dccd_hub_subscribers{hub="hub"} 0.0' in text
    assert generate_latest(registry) == b""
    from prometheus_client import REGISTRY

    assert b"dccd_actor" not in generate_latest(REGISTRY)


async def test_serve_accepts_options_through_partial(autojump_clock: Any) -> None:
    """serve() forwards open_service options (here the hub's default buffer) given with functools.partial."""
    async with trio.open_nursery() as nursery:
        svc: Service = await nursery.start(partial(dccd.actors.serve, None, hub_maxlen=3))
        assert svc.hub.maxlen == 3 and svc.config is None and svc.storage_path is None
        svc.cancel()


async def test_data_reaches_live_subscribers_and_the_lake(autojump_clock: Any) -> None:
    """A source tees each batch to the hub (lossy, live) and the writer (gated, durable)."""
    lake = FakeLake(delay_s=0.5)
    async with open_service() as svc:
        writer = await svc.start_writer("writer", lake.write, max_rows=30, offload=lake.offload)

        async def stream(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            for i in range(6):
                await trio.sleep(0.25)
                batch = make_batch(10, start=10 * i, transport="ws")
                svc.hub.publish(("trades", "binance", "BTC/USDT"), batch)
                await writer.put(batch)
            await trio.sleep_forever()

        async with svc.hub.subscribe(("trades", "binance", "BTC/USDT")) as live:
            await svc.start_actor("stream", stream, role=Role.SOURCE)
            got = [await live.receive() for _ in range(6)]
            assert all(isinstance(b, Batch) for b in got)
        await trio.sleep(3)
    assert [b.records[0].ts for b in got if isinstance(b, Batch)] == [0, 10, 20, 30, 40, 50]
    assert lake.ts() == list(range(60)) and [len(r) for _, r in lake.calls] == [30, 30]


async def test_lifecycle_and_overflow_events_reach_the_bus_as_observables(autojump_clock: Any) -> None:
    """The supervisor's lifecycle stream is subscribed to the service bus: a probe on svc.events sees a started
    actor's ActorStarted, and a probe on sup.lifecycle sees the same message object."""
    from dccd.actors import ActorStarted

    on_bus: list[Any] = []
    on_lifecycle: list[Any] = []
    async with open_service() as svc:
        svc.events.subscribe(on_next=on_bus.append)
        svc.supervisor.lifecycle.subscribe(on_next=on_lifecycle.append)

        async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await trio.sleep_forever()

        await svc.start_actor("probe-target", idle)
    started = [m for m in on_lifecycle if isinstance(m, ActorStarted) and m.name == "probe-target"]
    assert len(started) == 1 and started[0] in on_bus
