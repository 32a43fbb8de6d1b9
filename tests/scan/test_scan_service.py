"""Scans in the service: events on the bus, signals in the lake and on the hub, jobs, the new-bars trigger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from dccd.actors import Message, PartWritten, open_service
from dccd.actors.messages import ScanCompleted, SignalGenerated
from dccd.actors.scans import SIGNALS_TOPIC

from dccd.config import parse_config
from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.errors import ConfigError
from dccd.scan.engine import ScanSpec
from dccd.scan.signals import read_signals
from tests.scan import synth


def plant_spikes(root: Path, spiking: set[str], calm: set[str]) -> None:
    """Series whose newest 1h bar trades 5× (spiking) or 1× (calm) the mean of the 20 before."""
    for i, sym in enumerate(sorted(spiking | calm)):
        b = synth.walk(60, seed=i, vol_sigma=0.05)
        if sym in spiking:
            b["volume"][-1] = 5 * b["volume"][-21:-1].mean()
        synth.write(root, "binance", sym, b)


def list_parts(root: Path) -> list[Path]:
    return list(root.rglob("signals/**/part-*.parquet"))


def config(root: Path, extra: str = "") -> Any:
    return parse_config(f"storage: {{path: '{root}'}}\n{extra}", env={})


async def test_a_scan_publishes_each_hit_and_its_completion_and_stores_them(tmp_path: Path) -> None:
    """One SignalGenerated per hit then ScanCompleted, on the bus and (signals) on the hub; the lake keeps them."""
    plant_spikes(tmp_path, {"A/USDT", "B/USDT"}, {"C/USDT"})
    seen: list[Message] = []
    async with open_service(config(tmp_path), on_event=seen.append) as svc:
        assert svc.scans is not None
        async with svc.hub.subscribe(SIGNALS_TOPIC) as live:
            run = await svc.scans.run([ScanSpec("relative_volume", params={"at_time_days": 0})], trigger="test")
            with trio.fail_after(5):
                live_sigs = [await live.__anext__(), await live.__anext__()]
        svc.cancel()
    assert run.error is None and run.state.value == "succeeded"
    sigs = [m for m in seen if isinstance(m, SignalGenerated)]
    done = [m for m in seen if isinstance(m, ScanCompleted)]
    assert [(s.symbol, s.scanner, s.run_id) for s in sigs] == [
        ("A/USDT", "relative_volume", run.run_id),
        ("B/USDT", "relative_volume", run.run_id),
    ]
    assert live_sigs == sigs
    assert sigs[0].values["rvol"] == pytest.approx(5.0, rel=1e-12)
    assert [(d.run_id, d.symbols, d.hits, d.error) for d in done] == [(run.run_id, 3, 2, None)]
    assert seen.index(done[0]) > seen.index(sigs[-1])
    stored = read_signals(tmp_path, scanner="relative_volume")
    assert sorted((s.symbol, s.run_id, s.params_hash) for s in stored) == [
        ("A/USDT", run.run_id, sigs[0].params_hash),
        ("B/USDT", run.run_id, sigs[0].params_hash),
    ]
    assert stored[0].values["rvol"] == pytest.approx(5.0, rel=1e-12)
    parts = sorted(p.relative_to(tmp_path).parts[:3] for p in list_parts(tmp_path))
    assert parts == [("signals", "scanner=relative_volume", "date=2025-01-03")]


async def test_a_bad_spec_is_refused_before_any_run(tmp_path: Path) -> None:
    """Unknown scanner or parameter: a one-line ConfigError naming the field, and no run is made."""
    async with open_service(config(tmp_path)) as svc:
        assert svc.scans is not None
        with pytest.raises(ConfigError, match=r"^params.lookback: Expected `int`, got `str`$"):
            await svc.scans.start([msgspec.convert({"scanner": "breakout", "params": {"lookback": "x"}}, ScanSpec)])
        with pytest.raises(ConfigError, match=r"^scanner: 'nope' is not a scanner \(breakout relative_volume"):
            await svc.scans.start([ScanSpec("nope")])
        assert svc.scans.runs == {}
        svc.cancel()


async def test_a_scan_job_fires_on_its_schedule_and_on_new_bars(tmp_path: Path) -> None:
    """A once scan job runs at scheduler start; an on_new_bars job runs once per burst of written bars (debounced)."""
    plant_spikes(tmp_path, {"A/USDT"}, {"C/USDT"})
    yaml = (
        "jobs:\n"
        "  - {name: spikes, exchange: binance, symbols: [], type: ohlc, span: 1h, operation: scan,"
        " scanner: relative_volume, params: {at_time_days: 0}, once: true}\n"
        "  - {name: on-bars, exchange: binance, symbols: [C/USDT], type: ohlc, span: 1h, operation: scan,"
        " scanner: relative_volume, params: {min_rvol: 0.0, at_time_days: 0}, on_new_bars: true}\n"
    )
    seen: list[Message] = []
    async with open_service(config(tmp_path, yaml), on_event=seen.append, scan_options={"debounce_s": 0.2}) as svc:
        assert svc.scheduler is not None
        await svc.scheduler.start()
        with trio.fail_after(10):
            while not any(isinstance(m, ScanCompleted) for m in seen):
                await trio.sleep(0.02)
        first = [m for m in seen if isinstance(m, ScanCompleted)]
        assert [(m.scanner, m.hits) for m in first] == [("relative_volume", 1)]
        assert svc.scheduler.get_job("spikes").last_state == "succeeded"
        ds = DatasetId("binance", Symbol.parse("C/USDT"), DataType.OHLC, Span.parse("1h"))
        other = DatasetId("binance", Symbol.parse("A/USDT"), DataType.OHLC, Span.parse("1h"))
        for _ in range(5):  # a burst of parts: one fire
            svc.emit(PartWritten(ds, 1, None, 1, 0, 0, 0.0))
            svc.emit(PartWritten(other, 1, None, 1, 0, 0, 0.0))  # not this job's dataset
            await trio.sleep(0.05)
        with trio.fail_after(10):
            while sum(isinstance(m, ScanCompleted) for m in seen) < 2:
                await trio.sleep(0.02)
        await trio.sleep(0.5)
        done = [m for m in seen if isinstance(m, ScanCompleted)]
        assert [(m.scanner, m.symbols, m.hits) for m in done[1:]] == [("relative_volume", 1, 1)]
        job = svc.scheduler.get_job("on-bars")
        assert job.fires == 1 and job.last_state == "succeeded"
        svc.cancel()
