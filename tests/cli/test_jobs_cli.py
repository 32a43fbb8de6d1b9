"""`dccd jobs list` / `dccd jobs run ID`: through an answering dccd serve, or locally when none answers.

The fake Binance and the server run on 127.0.0.1 in the test's Trio loop; the
CLI runs as the real console script in a subprocess (as users run it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import trio
from click.testing import CliRunner

from dccd.cli.jobs_cmds import local_jobs
from dccd.cli.main import cli
from dccd.config import parse_config
from dccd.domain.timeutil import parse_iso_ns
from dccd.jobs import StoredJob, write_jobs_file
from dccd.storage import RunStore
from tests.fake.binance import open_fake_binance
from tests.web.conftest import open_web

DCCD = str(Path(sys.executable).with_name("dccd"))
NO_SERVER = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback
JOBS = """
jobs:
  - {name: hourly, exchange: binance, symbols: [BTC/USDT], type: ohlc, span: 1m, start: "2024-01-01", end: "2024-01-01T02:00", every: 1h}
  - {name: nightly, exchange: binance, symbols: [BTC/USDT], type: ohlc, span: 1m, start: "2024-01-01", cron: "5 3 * * *"}
  - {name: by-hand, exchange: binance, symbols: [BTC/USDT, ETH/BTC], type: ohlc, span: 1h, start: "2024-01-01", end: "2024-01-02"}
"""


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:9") -> Path:
    """A config: the lake in tmp_path/lake, Binance at ``url`` (unthrottled), three backfill jobs."""
    path = tmp_path / "dccd.yaml"
    path.write_text(
        f"storage: {{path: '{tmp_path / 'lake'}'}}\n"
        f"exchanges: {{binance: {{rest_url: '{url}', ws_url: 'ws://127.0.0.1:9', rate_limit: 0}}}}\n" + JOBS
    )
    return path


async def dccd(cfg: Path, *args: str) -> tuple[int, str, str]:
    """Run the console script; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}
    with trio.fail_after(60):
        p = await trio.run_process(
            [DCCD, "--config", str(cfg), *args], capture_stdout=True, capture_stderr=True, check=False, env=env
        )
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_local_list_has_config_and_kept_jobs_with_next_fire_times(tmp_path: Path) -> None:
    """Without a server: config jobs, then jobs.json jobs, with the fire times a serve started now would use."""
    cfg = parse_config((write_config(tmp_path)).read_text(), env={})
    kept = {"exchange": "binance", "symbols": ["ETH/BTC"], "type": "trades", "start": "-1d", "every": "15m"}
    write_jobs_file(tmp_path / "lake" / "_dccd" / "jobs.json", [StoredJob("api-job", 1, kept)])
    now = parse_iso_ns("2024-06-01T10:20:00")
    jobs, warnings = local_jobs(cfg, now)
    assert warnings == []
    assert [(j["id"], j["source"], j["schedule"], j["next_fire_ns"]) for j in jobs] == [
        ("hourly", "config", "every", parse_iso_ns("2024-06-01T11:00")),
        ("nightly", "config", "cron", parse_iso_ns("2024-06-02T03:05")),
        ("by-hand", "config", "manual", None),
        ("api-job", "api", "every", parse_iso_ns("2024-06-01T10:30")),
    ]


def test_list_without_a_server_says_so(tmp_path: Path) -> None:
    """`jobs list --json` with nothing at the server address lists the local jobs and says whose times they are."""
    res = CliRunner().invoke(cli, ["--config", str(write_config(tmp_path)), "jobs", "list", "--json",
                                   "--server", NO_SERVER])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert [j["id"] for j in json.loads(res.stdout)] == ["hourly", "nightly", "by-hand"]
    assert res.stderr == f"no dccd serve answers at {NO_SERVER}: next fire times of a serve started now\n"


async def test_list_and_run_go_through_the_answering_server(tmp_path: Path) -> None:
    """With a dccd serve answering: list shows its jobs, run fires the job there (POST .../run), exit 0."""
    async with open_fake_binance() as fake:
        cfg_path = write_config(tmp_path, fake.url)
        cfg = parse_config(cfg_path.read_text(), env={})
        async with open_web(cfg) as web:
            code, out, err = await dccd(cfg_path, "jobs", "list", "--json", "--server", web.url)
            assert (code, err) == (0, f"jobs of the dccd serve at {web.url}\n")
            assert json.loads(out) == (await web.client.get("/api/v1/jobs")).json()
            code, out, err = await dccd(cfg_path, "jobs", "run", "by-hand", "--server", web.url)
            assert (code, err) == (0, ""), err
            run_ids = out.split("run(s) ")[1].split()
            assert out.startswith(f"job by-hand fired by the dccd serve at {web.url}: run(s) ") and len(run_ids) == 2
            with trio.fail_after(30):
                records = [await web.svc.wait_run(r) for r in run_ids]
            assert [r.state for r in records] == ["succeeded", "succeeded"]
            code, out, err = await dccd(cfg_path, "jobs", "run", "nope", "--server", web.url)
            assert (code, out, err) == (2, "", f"error: {web.url}: job_id: job 'nope' not found\n")


async def test_run_without_a_server_runs_the_job_here(tmp_path: Path) -> None:
    """No server answering: `jobs run` fires the backfill in-process, prints a line per run, exit 0; unknown id: 2."""
    async with open_fake_binance() as fake:
        cfg_path = write_config(tmp_path, fake.url)
        code, out, err = await dccd(cfg_path, "jobs", "run", "by-hand", "--server", NO_SERVER)
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 2 and lines[0].endswith("BTC/USDT: succeeded — 24 rows written")
        assert lines[1].endswith("ETH/BTC: succeeded — 24 rows written")
        assert {r.state for r in RunStore(tmp_path / "lake").list_runs()} == {"succeeded"}
        code, out, err = await dccd(cfg_path, "jobs", "run", "nope", "--server", NO_SERVER)
    assert (code, out) == (2, "")
    assert err == "error: job_id: no job 'nope' (jobs: hourly nightly by-hand)\n"
