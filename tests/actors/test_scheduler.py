"""Scheduler actor: exact UTC fire times on Trio's clock, overlap skips, misfire coalescing, per-exchange limits,
run-now, stream jobs, and API jobs kept in jobs.json across restarts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from dccd.actors import open_service
from dccd.actors.messages import JobTriggered
from dccd.actors.scheduler import JobRunning, Scheduler, UnknownJob
from structlog.testing import capture_logs

from dccd.config import Config, Job, expand_jobs, parse_config
from dccd.domain.timeutil import NS_PER_S, ns_to_iso, parse_iso_ns
from dccd.errors import ConfigError, NoCapability
from dccd.ops import BackfillRequest, InvalidRequest, StreamRequest

MONDAY = parse_iso_ns("2024-01-01")  # a Monday, 00:00 UTC
HOUR = 3600.0
DAY = 24 * HOUR


class Record(msgspec.Struct, frozen=True):
    """The part of a RunRecord the scheduler reads."""

    run_id: str
    state: str
    error: str | None = None


class StubService:
    """start_actor / start_backfill / wait_run (and optionally streams) without HTTP: each run takes ``run_s``."""

    def __init__(self, nursery: trio.Nursery, run_s: float = 1.0) -> None:
        self.nursery = nursery
        self.run_s = run_s
        self.fail: Callable[[BackfillRequest], Exception | None] = lambda req: None
        self.calls: list[tuple[float, BackfillRequest]] = []
        self.done: dict[str, trio.Event] = {}
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.streams: list[StreamRequest] = []

    async def start_actor(self, name: str, fn: Any, *args: Any, **_: Any) -> Any:
        return await self.nursery.start(fn, *args)

    async def start_backfill(self, req: BackfillRequest) -> list[str]:
        if (exc := self.fail(req)) is not None:
            raise exc
        self.calls.append((trio.current_time(), req))
        ids = [f"r{len(self.calls)}-{s.slug}" for s in req.symbols]
        for run_id in ids:
            self.done[run_id] = trio.Event()
            self.nursery.start_soon(self._run, req.exchange, run_id)
        return ids

    async def _run(self, exchange: str, run_id: str) -> None:
        self.active[exchange] = self.active.get(exchange, 0) + 1
        self.peak[exchange] = max(self.peak.get(exchange, 0), self.active[exchange])
        await trio.sleep(self.run_s)
        self.active[exchange] -= 1
        self.done[run_id].set()

    async def wait_run(self, run_id: str) -> Record:
        await self.done[run_id].wait()
        return Record(run_id, "succeeded")

    def times(self, job_id: str | None = None) -> list[float]:
        return [t for t, req in self.calls if job_id is None or req.job_id == job_id]


class StreamingStub(StubService):
    """A stub that can also start streams."""

    async def start_stream(self, req: StreamRequest) -> str:
        self.streams.append(req)
        return f"s{len(self.streams)}"


def specs(*jobs: dict[str, Any]) -> list[Any]:
    """JobSpecs of config-style job mappings (named j0, j1, ... unless named)."""
    raw = [
        {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "name": f"j{i}", **j}
        for i, j in enumerate(jobs)
    ]
    return expand_jobs(Config(jobs=[msgspec.convert(j, Job) for j in raw]))


def make(svc: StubService, jobs: list[Any], wall0: int = MONDAY, **kw: Any) -> tuple[Scheduler, list[int]]:
    """A scheduler whose wall clock is ``wall0`` at Trio time 0 plus a mutable step (``offset[0]``, ns)."""
    offset = [0]
    sched = Scheduler(svc, jobs, wall_ns=lambda: wall0 + round(trio.current_time() * 1e9) + offset[0], **kw)
    return sched, offset


async def test_cron_jobs_fire_at_exact_utc_minutes_for_a_week(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """'*/15 * * * *' fires at every quarter hour and '5 0 * * 1' at Monday 00:05 UTC, exactly, over 8 days."""
    assert trio.current_time() == 0.0
    svc = StubService(nursery)
    sched, _ = make(svc, specs({"cron": "*/15 * * * *"}, {"cron": "5 0 * * 1"}), max_sleep_s=3600)
    assert [j.next_fire_ns for j in sched.list_jobs()] == [None, None]  # nothing is scheduled before start()
    await sched.start()
    assert [ns_to_iso(j.next_fire_ns or 0) for j in sched.list_jobs()] == [
        "2024-01-01T00:15:00Z",
        "2024-01-01T00:05:00Z",
    ]
    await trio.sleep(8 * DAY + 1)
    quarter = svc.times("j0")
    assert quarter == [900.0 * k for k in range(1, 8 * 96 + 1)]
    assert svc.times("j1") == [300.0, 7 * DAY + 300.0]
    assert [ns_to_iso(MONDAY + round(t * 1e9)) for t in svc.times("j1")] == [
        "2024-01-01T00:05:00Z",
        "2024-01-08T00:05:00Z",
    ]
    info = sched.get_job("j1")
    assert (info.fires, info.last_state, ns_to_iso(info.next_fire_ns or 0)) == (2, "succeeded", "2024-01-15T00:05:00Z")
    n = [i for i, (_, req) in enumerate(svc.calls, 1) if req.job_id == "j1"][-1]
    assert info.last_run_ids == (f"r{n}-BTC-USDT",)


async def test_every_jobs_are_aligned_to_the_clock(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """Started at 00:00:07, every: 90s fires at 00:01:30, 00:03:00 ... and every: 1h at 01:00, 02:00 (epoch-aligned)."""
    svc = StubService(nursery)
    sched, _ = make(svc, specs({"every": "90s"}, {"every": "1h"}), wall0=MONDAY + 7 * NS_PER_S)
    await sched.start()
    await trio.sleep(2 * HOUR)
    assert svc.times("j0")[:3] == [83.0, 173.0, 263.0]
    assert len(svc.times("j0")) == 80
    assert svc.times("j1") == [3593.0, 7193.0]


async def test_triggers_are_an_observable_of_job_triggered_messages(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """A probe on sched.triggers sees one JobTriggered per fire, with the slot's wall time, before the fire starts."""
    svc = StubService(nursery)
    sched, _ = make(svc, specs({"every": "90s"}, {"once": True}), wall0=MONDAY + 7 * NS_PER_S)
    seen: list[tuple[float, JobTriggered]] = []
    sched.triggers.subscribe(on_next=lambda t: seen.append((trio.current_time(), t)))
    await sched.start()
    await trio.sleep(200)
    assert [(t, m.job_id, m.due_ns) for t, m in seen] == [
        (0.0, "j1", None),
        (83.0, "j0", MONDAY + 90 * NS_PER_S),
        (173.0, "j0", MONDAY + 180 * NS_PER_S),
    ]
    assert svc.times("j0") == [83.0, 173.0]
    assert sched.get_job("j1").skipped == 0  # a once job is triggered once (it used to be twice, the second skipped)


async def test_once_fires_once_at_start(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """A once job fires when the scheduler starts and never again; manual jobs never fire by themselves."""
    svc = StubService(nursery)
    sched, _ = make(svc, specs({"once": True, "start": "-30d"}, {}))
    await trio.sleep(10.0)
    await sched.start()
    await trio.sleep(2 * DAY)
    assert svc.times("j0") == [10.0]
    assert svc.calls[0][1] == BackfillRequest(
        "binance", svc.calls[0][1].symbols, svc.calls[0][1].data_type, None, "-30d", None, "j0"
    )
    assert svc.times("j1") == []
    assert [(j.schedule, j.next_fire_ns, j.fires) for j in sched.list_jobs()] == [
        ("once", None, 1),
        ("manual", None, 0),
    ]


async def test_a_fire_while_the_previous_run_goes_on_is_skipped(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """every: 1m with 150 s runs fires at 60 s, skips 120 s and 180 s (logged job.skipped), fires at 240 s, skips 300, 360."""
    svc = StubService(nursery, run_s=150.0)
    sched, _ = make(svc, specs({"every": "1m"}))
    with capture_logs() as logs:
        await sched.start()
        await trio.sleep(400.0)
    assert svc.times() == [60.0, 240.0]
    skipped = [e for e in logs if e["event"] == "job.skipped"]
    assert [(e["job_id"], e["reason"], e["run_ids"]) for e in skipped] == [
        ("j0", "previous run still running", ["r1-BTC-USDT"]),
        ("j0", "previous run still running", ["r1-BTC-USDT"]),
        ("j0", "previous run still running", ["r2-BTC-USDT"]),
        ("j0", "previous run still running", ["r2-BTC-USDT"]),
    ]
    assert sched.get_job("j0").skipped == 4


async def test_fires_missed_during_a_clock_jump_are_coalesced(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """When the wall clock leaps 3 h (suspend, NTP step), the 12 missed quarter hours become one run, then the grid resumes."""
    svc = StubService(nursery)
    sched, offset = make(svc, specs({"cron": "*/15 * * * *"}), max_sleep_s=60.0, grace_s=60.0)
    await sched.start()
    with capture_logs() as logs:
        await trio.sleep(1000.0)
        offset[0] = round(3 * HOUR * 1e9)  # the machine "slept" 3 h: wall clock now 3 h ahead of Trio's
        await trio.sleep(900.0)
    assert svc.times() == [900.0, 1020.0, 1800.0]  # 1020 = the first wake-up that sees the jump
    missed = [e for e in logs if e["event"] == "job.misfired"]
    assert [(e["slots"], e["late_s"]) for e in missed] == [(12, 3 * HOUR + 1020 - 1800)]
    assert [e["event"] for e in logs if e["event"] == "scheduler.clock_stepped"] == ["scheduler.clock_stepped"]
    assert sched.get_job("j0").misfires == 1


async def test_scheduled_fires_share_a_per_exchange_limit(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """Three binance jobs with limit 2 run at most 2 at once (the third queues); another exchange is not held up."""
    svc = StubService(nursery, run_s=100.0)
    jobs = specs(
        {"every": "5m", "symbols": ["BTC/USDT"]},
        {"every": "5m", "symbols": ["ETH/USDT"]},
        {"every": "5m", "symbols": ["SOL/USDT"]},
        {"every": "5m", "exchange": "kraken"},
    )
    sched, _ = make(svc, jobs, limit_per_exchange=2)
    await sched.start()
    await trio.sleep(350.0)
    states = {j.id: j.last_state for j in sched.list_jobs()}
    assert list(states.values()).count("queued") == 1 and list(states.values()).count("running") == 3
    await trio.sleep(HOUR)
    assert svc.peak == {"binance": 2, "kraken": 1}
    assert sorted(svc.times())[:4] == [300.0, 300.0, 300.0, 400.0]  # two binance + kraken at once, third after


async def test_run_now_returns_run_ids_and_refuses_while_running(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """run_now starts a manual job at once (even before start()), refuses a second while it runs, and reports errors."""
    svc = StubService(nursery, run_s=30.0)
    sched, _ = make(svc, specs({}, {"operation": "stream"}))
    assert await sched.run_now("j0") == ["r1-BTC-USDT"]
    assert sched.get_job("j0").running
    with pytest.raises(JobRunning) as busy:
        await sched.run_now("j0")
    assert str(busy.value) == "job_id: job 'j0' is already running (r1-BTC-USDT)"
    await trio.sleep(31.0)
    assert (sched.get_job("j0").running, sched.get_job("j0").last_state) == (False, "succeeded")
    with pytest.raises(UnknownJob) as unknown:
        await sched.run_now("nope")
    assert str(unknown.value) == "no job 'nope'"
    with pytest.raises(InvalidRequest, match=r"^job_id: job 'j1' is a stream"):
        await sched.run_now("j1")
    svc.fail = lambda req: NoCapability("binance", "trades over rest")
    with pytest.raises(NoCapability):
        await sched.run_now("j0")
    info = sched.get_job("j0")
    assert (info.running, info.last_state, info.last_error) == (
        False,
        "failed",
        "binance does not offer trades over rest",
    )


async def test_a_failing_fire_is_recorded_and_the_schedule_goes_on(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """A scheduled fire whose backfill cannot start is logged job.failed and the next slot still fires."""
    svc = StubService(nursery)
    fails = [True]
    svc.fail = lambda req: ValueError("exchange down") if fails.pop() else None
    fails.insert(0, False)
    sched, _ = make(svc, specs({"every": "1m"}))
    with capture_logs() as logs:
        await sched.start()
        await trio.sleep(61.0)
        assert sched.get_job("j0").last_state == "failed"
        await trio.sleep(61.0)
    assert [e["error"] for e in logs if e["event"] == "job.failed"] == ["exchange down"]
    assert svc.times() == [120.0]
    assert sched.get_job("j0").last_state == "succeeded"


async def test_a_bug_in_one_fire_fails_that_job_only(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """A fire whose start raises a non-dccd error (an OverflowError bug) marks that job failed, logged at error with
    the traceback; the scheduler keeps firing it and the other job, and run_now hands the bug to its caller."""
    svc = StubService(nursery)
    svc.fail = lambda req: OverflowError("int too large") if req.job_id == "j0" else None
    sched, _ = make(svc, specs({"every": "1m"}, {"every": "1m"}))
    with capture_logs() as logs:
        await sched.start()
        await trio.sleep(121.0)
        with pytest.raises(OverflowError):
            await sched.run_now("j0")
        await trio.sleep(60.0)
    info = sched.get_job("j0")
    assert (info.fires, info.running, info.last_state, info.last_error) == (
        4,
        False,
        "failed",
        "OverflowError: int too large",
    )
    crashed = [e for e in logs if e["event"] == "job.crashed"]
    assert [(e["job_id"], e["log_level"], type(e["exc_info"])) for e in crashed] == [("j0", "error", OverflowError)] * 4
    assert svc.times("j1") == [60.0, 120.0, 180.0]


async def test_stream_jobs_start_through_the_service(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """Stream jobs start via svc.start_stream at start(); without it they fail with a clear error (stub service)."""
    svc = StreamingStub(nursery)
    sched, _ = make(svc, specs({"operation": "stream", "symbols": ["BTC/USDT", "ETH/USDT"]}))
    await sched.start()
    await trio.testing.wait_all_tasks_blocked()
    assert [(r.exchange, [str(s) for s in r.symbols], r.job_id) for r in svc.streams] == [
        ("binance", ["BTC/USDT", "ETH/USDT"], "j0")
    ]
    info = sched.get_job("j0")
    assert (info.stream_id, info.last_state, info.running) == ("s1", "streaming", True)

    plain = StubService(nursery)
    sched2, _ = make(plain, specs({"operation": "stream"}))
    with capture_logs() as logs:
        await sched2.start()
        await trio.testing.wait_all_tasks_blocked()
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["job.stream_unavailable"]
    assert sched2.get_job("j0").last_error == "this service cannot run streams (no start_stream)"


async def test_start_can_leave_config_jobs_alone(autojump_clock: Any, nursery: trio.Nursery) -> None:
    """start(run_config_jobs=False) schedules only API jobs; an API job created while running is scheduled at once."""
    svc = StubService(nursery)
    sched, _ = make(svc, specs({"every": "1m"}))
    await sched.start(run_config_jobs=False)
    info = await sched.create_job({"exchange": "binance", "symbols": ["ETH/USDT"], "type": "trades", "every": "2m"})
    assert (info.id, info.source, ns_to_iso(info.next_fire_ns or 0)) == (
        "api-binance-backfill-trades",
        "api",
        "2024-01-01T00:02:00Z",
    )
    await trio.sleep(300.0)
    assert [req.job_id for _, req in svc.calls] == ["api-binance-backfill-trades"] * 2
    with pytest.raises(RuntimeError, match="already started"):
        await sched.start()


# --- a real service: jobs.json, restarts, and one end-to-end fire against the fake Binance -----------


def config(tmp_path: Path, jobs: str = "", rest_url: str = "http://127.0.0.1:9") -> Config:
    """A config with storage in tmp_path and binance pointed at ``rest_url``."""
    text = f"storage: {{path: '{tmp_path}'}}\nexchanges: {{binance: {{rest_url: '{rest_url}', rate_limit: 0}}}}\n"
    return parse_config(text + (f"jobs:\n{jobs}" if jobs else ""), env={})


HOURLY = "  - {name: hourly, exchange: binance, symbols: [BTC/USDT], type: ohlc, span: 1m, start: -1h, every: 1h}\n"


async def test_api_jobs_persist_across_restarts_and_can_be_deleted(tmp_path: Path) -> None:
    """An API job is written to _dccd/jobs.json, reloaded by the next service, and deleted from both; config jobs stay."""
    cfg = config(tmp_path, HOURLY)
    raw = {"exchange": "binance", "symbols": ["ETH/USDT"], "type": "trades", "cron": "5 0 * * 1", "start": "-7d"}
    async with open_service(cfg) as svc:
        assert svc.scheduler is not None
        created = await svc.scheduler.create_job(raw)
        assert created.id == "api-binance-backfill-trades"
        with pytest.raises(ConfigError) as dup:
            await svc.scheduler.create_job({**raw, "name": "hourly"})
        assert str(dup.value) == "name: job id 'hourly' is already used"
    path = tmp_path / "_dccd" / "jobs.json"
    stored = msgspec.json.decode(path.read_bytes())
    assert [(j["id"], j["job"]) for j in stored["jobs"]] == [
        ("api-binance-backfill-trades", {**raw, "name": created.id})
    ]
    assert list(path.parent.glob(".*.tmp")) == []

    async with open_service(cfg) as svc:
        assert svc.scheduler is not None
        assert [(j.id, j.source, j.schedule, j.cron) for j in svc.scheduler.list_jobs()] == [
            ("hourly", "config", "every", None),
            ("api-binance-backfill-trades", "api", "cron", "5 0 * * 1"),
        ]
        with pytest.raises(InvalidRequest) as cfg_job:
            await svc.scheduler.delete_job("hourly")
        assert str(cfg_job.value) == "job_id: job 'hourly' comes from the config file: remove it there"
        assert await svc.scheduler.delete_job("api-binance-backfill-trades") is True
        assert await svc.scheduler.delete_job("api-binance-backfill-trades") is False
    assert msgspec.json.decode(path.read_bytes())["jobs"] == []
    async with open_service(cfg) as svc:
        assert svc.scheduler is not None
        assert [j.id for j in svc.scheduler.list_jobs()] == ["hourly"]


async def test_api_job_capabilities_are_checked_before_keeping_it(tmp_path: Path) -> None:
    """A job the exchange cannot serve is refused (NoCapability) and nothing is written."""
    async with open_service(config(tmp_path)) as svc:
        assert svc.scheduler is not None
        with pytest.raises(NoCapability, match=r"^binance does not offer funding"):
            await svc.scheduler.create_job({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "funding"})
    assert not (tmp_path / "_dccd" / "jobs.json").exists()


async def test_an_unreadable_jobs_file_is_kept_and_blocks_changes(tmp_path: Path) -> None:
    """A corrupt jobs.json does not stop the service, is never overwritten, and create_job says which file to fix."""
    path = tmp_path / "_dccd" / "jobs.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{oops")
    async with open_service(config(tmp_path, HOURLY)) as svc:
        assert svc.scheduler is not None
        assert [j.id for j in svc.scheduler.list_jobs()] == ["hourly"]
        with pytest.raises(ConfigError) as info:
            await svc.scheduler.create_job({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades"})
    assert str(info.value).startswith(f"{path}: cannot change API jobs: not a jobs file: ")
    assert str(info.value).endswith("; fix or remove the file")
    assert path.read_bytes() == b"{oops"


async def test_open_service_alone_fires_no_config_job(tmp_path: Path) -> None:
    """A service (e.g. the CLI's backfill) never fires configured jobs unless scheduler.start() is called."""
    once = "  - {name: boot, exchange: binance, symbols: [BTC/USDT], type: trades, once: true}\n"
    async with open_service(config(tmp_path, once)) as svc:
        assert svc.scheduler is not None and svc.has_operations
        await trio.sleep(0.2)
        assert [(j.id, j.fires, j.next_fire_ns) for j in svc.scheduler.list_jobs()] == [("boot", 0, None)]
        assert await svc.operations.runs.alist_runs() == []


async def test_an_every_job_backfills_bars_from_the_fake_binance(tmp_path: Path) -> None:
    """End to end: a started scheduler fires an every-job, the real service backfills 1m bars from the fake Binance."""
    from tests.fake.binance import open_fake_binance

    job = "  - {name: bars, exchange: binance, symbols: [BTC/USDT], type: ohlc, span: 1m, start: -1h, every: 1s}\n"
    async with open_fake_binance() as fake, open_service(config(tmp_path, job, fake.url)) as svc:
        assert svc.scheduler is not None and svc.has_operations
        await svc.scheduler.start()
        with trio.fail_after(15):
            while svc.scheduler.get_job("bars").last_state not in ("succeeded", "failed"):
                await trio.sleep(0.02)
        info = svc.scheduler.get_job("bars")
        assert (info.last_state, info.last_error) == ("succeeded", None)
        (run_id,) = info.last_run_ids
        record = await svc.operations.runs.aget(run_id)
        assert record is not None and record.state == "succeeded"
        ds = expand_jobs(svc.config)[0]
        from dccd.domain.dataset import DatasetId

        table = (
            await svc.operations.lake.aread_table(DatasetId("binance", ds.symbols[0], ds.data_type, ds.span))
        ).table
        assert 59 <= table.num_rows == record.rows_written
        assert fake.count("/api/v3/klines") >= 1


async def test_a_stored_job_that_no_longer_validates_is_kept_as_it_was(tmp_path: Path) -> None:
    """An entry of jobs.json that fails validation is reported, not loaded, and written back unchanged on the next save."""
    path = tmp_path / "_dccd" / "jobs.json"
    path.parent.mkdir(parents=True)
    good = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "every": "1h", "name": "good"}
    bad = {"exchange": "mtgox", "symbols": ["BTC/USD"], "type": "trades", "name": "old", "future_key": 1}
    doc = {
        "version": 1,
        "jobs": [{"id": "good", "created_ns": 1, "job": good}, {"id": "old", "created_ns": 2, "job": bad}],
    }
    path.write_bytes(msgspec.json.encode(doc))
    with capture_logs() as logs:
        async with open_service(config(tmp_path)) as svc:
            assert svc.scheduler is not None
            assert [j.id for j in svc.scheduler.list_jobs()] == ["good"]
            await svc.scheduler.create_job(
                {"exchange": "binance", "symbols": ["ETH/USDT"], "type": "trades", "name": "new"}
            )
    invalid = [e for e in logs if e["event"] == "jobs.entry_invalid"]
    assert [(e["job_id"], e["error"]) for e in invalid] == [
        (
            "old",
            "future_key: unknown key (expected one of: exchange symbols type operation name span start end every cron once derive_from scanner params on_new_bars source distribute)",
        )
    ]
    stored = msgspec.json.decode(path.read_bytes())["jobs"]
    assert [(j["id"], j["job"]) for j in stored] == [
        ("good", good),
        ("new", {"exchange": "binance", "symbols": ["ETH/USDT"], "type": "trades", "name": "new"}),
        ("old", bad),
    ]


async def test_stream_jobs_run_as_supervised_streams_of_the_real_service(tmp_path: Path) -> None:
    """A config stream job starts a recording at start(); an API stream job starts on creation and stops on delete."""
    from tests.fake.binance import open_fake_binance
    from tests.fake.binance_ws import open_fake_binance_ws

    job = "  - {name: live, exchange: binance, symbols: [BTC/USDT], type: trades, operation: stream}\n"
    async with open_fake_binance_ws(rate_per_s=200) as ws, open_fake_binance(source="shared") as rest:
        text = (
            f"storage: {{path: '{tmp_path}'}}\n"
            f"exchanges: {{binance: {{rest_url: '{rest.url}', ws_url: '{ws.url}', rate_limit: 0}}}}\n"
            f"jobs:\n{job}"
        )
        async with open_service(parse_config(text, env={})) as svc:
            assert svc.scheduler is not None
            await svc.scheduler.start()
            created = await svc.scheduler.create_job(
                {"exchange": "binance", "symbols": ["ETH/BTC"], "type": "trades", "operation": "stream", "name": "eth"}
            )
            assert created.schedule == "stream"
            with trio.fail_after(10):
                while not all(j.stream_id for j in svc.scheduler.list_jobs()):
                    await trio.sleep(0.02)
                streams = {s.id: s for s in svc.list_streams()}
                while streams[svc.scheduler.get_job("live").stream_id or ""].rows == 0:
                    await trio.sleep(0.05)
                    streams = {s.id: s for s in svc.list_streams()}
            live, eth = svc.scheduler.get_job("live"), svc.scheduler.get_job("eth")
            assert (live.last_state, live.running, eth.last_state) == ("streaming", True, "streaming")
            assert [str(s) for s in streams[live.stream_id or ""].symbols] == ["BTC/USDT"]
            assert await svc.scheduler.delete_job("eth")
            assert {s.id: s.state for s in svc.list_streams()}[eth.stream_id or ""] == "stopped"
            assert {s.id: s.state for s in svc.list_streams()}[live.stream_id or ""] != "stopped"
