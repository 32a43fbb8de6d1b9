"""A third-party scanner installed through the ``dccd.scanners`` entry point: CLI, API, client, scheduled job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from dccd.actors import Message
from dccd.actors.messages import ScanCompleted, SignalGenerated

from dccd.client import Client
from dccd.config import parse_config
from dccd.scan import contract
from tests.scan import synth
from tests.web.conftest import open_web

PLUGIN = textwrap.dedent(
    '''
    """gap_up: a plugin scanner taking an Arrow table per batch of symbols."""
    import msgspec
    import pyarrow as pa


    class GapConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        min_gap: float = 0.02


    class GapUp:
        """Gap up: the newest bar opens min_gap above the previous close."""

        name = "gap_up"
        version = "0.1"
        Config = GapConfig
        data_type = "ohlc"
        spans = ("1h", "4h")

        def tail_bars(self, config, span_s):
            return 2

        def scan_batch(self, table, config):
            rows = table.to_pylist()
            out = []
            for i in range(1, len(rows)):
                a, b = rows[i - 1], rows[i]
                last = i == len(rows) - 1 or rows[i + 1]["symbol"] != b["symbol"]
                if last and a["symbol"] == b["symbol"] and b["open"] > a["close"] * (1 + config.min_gap):
                    out.append({"exchange": b["exchange"], "symbol": b["symbol"], "ts": b["ts"],
                                "gap": b["open"] / a["close"] - 1})
            return pa.Table.from_pylist(out, schema=pa.schema(
                [("exchange", pa.string()), ("symbol", pa.string()), ("ts", pa.int64()), ("gap", pa.float64())]))
    '''
)


def install_plugin(site: Path) -> None:
    """A module and its dist-info (with the entry point) in ``site``, as ``pip install`` would leave them."""
    (site / "dccd_gap_plugin.py").write_text(PLUGIN)
    info = site / "dccd_gap_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dccd-gap-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dccd.scanners]\ngap_up = dccd_gap_plugin:GapUp\n")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site)
    monkeypatch.syspath_prepend(str(site))
    contract._cache.clear()
    yield site
    contract._cache.pop("gap_up", None)
    sys.modules.pop("dccd_gap_plugin", None)


def plant_gaps(root: Path) -> None:
    """GAP1 and GAP2 open 5 % above their previous close on the newest bar; FLAT does not."""
    for i, sym in enumerate(["GAP1/USDT", "GAP2/USDT", "FLAT/USDT"]):
        b = synth.walk(30, seed=i)
        b["open"] = b["open"].copy()
        b["open"][-1] = b["close"][-2] * (1.05 if sym.startswith("GAP") else 1.0)
        b["high"][-1] = max(b["high"][-1], b["open"][-1])
        synth.write(root, "binance", sym, b)


def run_cli(site: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "from dccd.cli.main import main; main()", "--data", str(root), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_plugin_scanner_is_listed_and_runs_from_the_cli(plugin: Path, tmp_path: Path) -> None:
    """`dccd scanners` lists the installed plugin with its parameters; `dccd scan gap_up --json` finds the gaps."""
    root = tmp_path / "lake"
    plant_gaps(root)
    listed = run_cli(plugin, root, "scanners", "--json")
    assert listed.returncode == 0, listed.stderr
    gap = next(s for s in json.loads(listed.stdout) if s["name"] == "gap_up")
    assert gap["version"] == "0.1" and gap["defaults"] == {"min_gap": 0.02}
    assert gap["params"]["$defs"]["GapConfig"]["properties"]["min_gap"]["type"] == "number"
    res = run_cli(plugin, root, "scan", "gap_up", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["symbol"], r["scanner"]) for r in rows] == [("GAP1/USDT", "gap_up"), ("GAP2/USDT", "gap_up")]
    assert rows[0]["gap"] == pytest.approx(0.05, rel=1e-9)
    assert {"exchange", "symbol", "ts", "scanner"} <= set(rows[0])
    bad = run_cli(plugin, root, "scan", "gap_up", "--param", "min_gap=big")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: --param min_gap: Expected `float`, got `str`"
    )
    wrong_span = run_cli(plugin, root, "scan", "gap_up", "--span", "1d")
    assert wrong_span.returncode == 2 and "--span: gap_up scans 1h 4h bars, not 1d" in wrong_span.stderr


async def test_plugin_scanner_runs_through_the_api_client_and_live_feed(plugin: Path, tmp_path: Path) -> None:
    """GET /scanners lists it; POST /scans answers 202 + run id; its signals come back stored and live."""
    plant_gaps(tmp_path)
    async with open_web(parse_config(f"storage: {{path: '{tmp_path}'}}\n", env={})) as web:
        listed = (await web.client.get("/api/v1/scanners")).json()
        assert "gap_up" in [s["name"] for s in listed]
        bad = await web.client.post("/api/v1/scans", json={"scanner": "gap_up", "params": {"min_gap": "x"}})
        assert bad.status_code == 400 and "params.min_gap" in bad.text
        async with Client(web.url) as client:
            live: list[object] = []

            progress: list[object] = []

            async def follow() -> None:
                async for item in client.live_signals():
                    live.append(item)

            async def follow_events() -> None:
                async for item in client.events():
                    if isinstance(item, dict) and item.get("type") in ("scan_completed", "signal_generated"):
                        progress.append(item)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                nursery.start_soon(follow_events)
                await trio.sleep(0.3)  # the feed is subscribed before the scan runs
                resp = await web.client.post("/api/v1/scans", json={"scanner": "gap_up", "params": {"min_gap": 0.03}})
                assert resp.status_code == 202
                run_id = resp.json()["run_id"]
                run = (await web.client.get(f"/api/v1/scans/{run_id}", params={"wait": "true"})).json()
                assert run["state"] == "succeeded" and run["scans"][0]["hits"] == 2
                with trio.fail_after(5):
                    while len(live) < 2 or len(progress) < 3:
                        await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
            stored = await client.signals("gap_up", run_id=run_id)
            again = await client.scan("gap_up", universe={"symbols": ["GAP2/USDT", "FLAT/USDT"]})
        web.svc.cancel()
    assert sorted(s["symbol"] for s in stored) == ["GAP1/USDT", "GAP2/USDT"]
    assert stored[0]["values"]["gap"] == pytest.approx(0.05, rel=1e-9)
    assert [(x["type"], x["symbol"], x["run_id"]) for x in live] == [  # type: ignore[index]
        ("signal_generated", "GAP1/USDT", run_id),
        ("signal_generated", "GAP2/USDT", run_id),
    ]
    assert [s["symbol"] for s in again] == ["GAP2/USDT"]
    assert [(p["type"], p["run_id"]) for p in progress] == [  # type: ignore[index]
        ("signal_generated", run_id),
        ("signal_generated", run_id),
        ("scan_completed", run_id),
    ]
    assert progress[-1]["hits"] == 2  # type: ignore[index]


async def test_plugin_scanner_runs_as_a_scheduled_job(plugin: Path, tmp_path: Path) -> None:
    """A config job with operation: scan and the plugin's name fires and publishes the plugin's signals."""
    plant_gaps(tmp_path)
    yaml = (
        f"storage: {{path: '{tmp_path}'}}\n"
        "jobs:\n  - {name: gaps, exchange: binance, symbols: [], type: ohlc, span: 1h, operation: scan,"
        " scanner: gap_up, params: {min_gap: 0.04}, every: 1s}\n"
    )
    seen: list[Message] = []
    async with open_web(parse_config(yaml, env={}), on_event=seen.append) as web:
        assert web.svc.scheduler is not None
        await web.svc.scheduler.start()
        with trio.fail_after(15):
            while not any(isinstance(m, ScanCompleted) for m in seen):
                await trio.sleep(0.05)
        jobs = (await web.client.get("/api/v1/jobs")).json()
        web.svc.cancel()
    done = next(m for m in seen if isinstance(m, ScanCompleted))
    assert (done.scanner, done.version, done.hits, done.error) == ("gap_up", "0.1", 2, None)
    assert sorted(m.symbol for m in seen if isinstance(m, SignalGenerated) and m.run_id == done.run_id) == [
        "GAP1/USDT",
        "GAP2/USDT",
    ]
    assert next(j for j in jobs if j["id"] == "gaps")["operation"] == "scan"


def test_a_bad_scan_job_or_alert_is_one_line(plugin: Path, tmp_path: Path) -> None:
    """Config errors for scan jobs and alerts name the key and say what is wrong, on one line."""
    from dccd.errors import ConfigError

    job = "jobs:\n  - {exchange: binance, symbols: [], type: ohlc, span: 1h, operation: scan, %s}\n"
    cases = {
        job % "scanner: nope": "jobs[0].scanner: 'nope' is not a scanner (breakout gap_up relative_volume technical)",
        job % "scanner: gap_up, params: {min_gap: x}": "jobs[0].params.min_gap: Expected `float`, got `str`",
        job.replace("span: 1h", "span: 1d") % "scanner: gap_up": "jobs[0].span: gap_up scans 1h 4h bars, not 1d",
        job.replace("type: ohlc", "type: trades").replace("span: 1h, ", "") % "scanner: gap_up": (
            "jobs[0].type: scan jobs read ohlc bars, not trades"
        ),
        "alerts:\n  - {url: 'ftp://x'}\n": "alerts[0].url: 'ftp://x' is not a URL like https://host[:port][/prefix]"
        " (scheme http or https)",
        "alerts:\n  - {url: 'http://127.0.0.1:9/h', scanners: [nope]}\n": "alerts[0].scanners[0]: 'nope' is not a"
        " scanner (breakout gap_up relative_volume technical)",
        "alerts:\n  - {url: 'http://127.0.0.1:9/h', retries: 99}\n": "alerts[0].retries: 99 is not between 0 and 20",
        "alerts:\n  - {url: 'http://127.0.0.1:9/h', colour: red}\n": "alerts[0].colour: unknown key (expected one of:"
        " url scanners timeout_s retries)",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text, env={})
        assert str(info.value) == message
        assert len(str(info.value).splitlines()) == 1


def test_dccd_jobs_run_fires_a_scan_job_in_this_process(plugin: Path, tmp_path: Path) -> None:
    """With no serve answering, `dccd jobs run` runs the scan job here and prints its signals count and state."""
    from click.testing import CliRunner

    from dccd.cli.main import cli

    plant_gaps(tmp_path / "lake")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"storage: {{path: '{tmp_path / 'lake'}'}}\n"
        "server: {port: 9}\n"
        "jobs:\n  - {name: gaps, exchange: binance, symbols: [], type: ohlc, span: 1h, operation: scan,"
        " scanner: gap_up}\n"
    )
    res = CliRunner().invoke(cli, ["--config", str(cfg), "jobs", "run", "gaps", "--server", "http://127.0.0.1:9"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].endswith("gap_up: 2 signal(s) over 3 1h series") and lines[1].endswith(": succeeded")
