"""`dccd serve` as a real process: serves the API against the fake Binance, SIGTERM drains and exits 0 quickly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from tests.fake.binance import FakeBinance


async def _started_url(stderr: trio.abc.ReceiveStream, lines: list[dict[str, object]]) -> str:
    """Read the JSON log lines until ``serve.started`` and return its first URL."""
    buf = b""
    while True:
        chunk = await stderr.receive_some(65536)
        assert chunk, f"dccd serve exited early: {lines}"
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            line = json.loads(raw)
            lines.append(line)
            if line.get("event") == "serve.started":
                urls = line["urls"]
                assert isinstance(urls, list)
                return str(urls[0])


async def test_dccd_serve_answers_and_exits_0_on_sigterm(tmp_path: Path, fake: FakeBinance) -> None:
    """The process serves /health and a backfill against the fake; SIGTERM ends it with exit 0 in under 2 s."""
    cfg = tmp_path / "dccd.yaml"
    cfg.write_text(
        f"storage: {{path: '{tmp_path / 'lake'}'}}\n"
        "server: {host: 127.0.0.1, port: 0}\n"
        f"exchanges: {{binance: {{rest_url: '{fake.url}', ws_url: 'ws://127.0.0.1:9', rate_limit: 0}}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}
    cmd = [sys.executable, "-c", "from dccd.cli.main import main; main()", "serve", "--config", str(cfg)]
    lines: list[dict[str, object]] = []
    proc = await trio.lowlevel.open_process(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    try:
        assert proc.stderr is not None
        with trio.fail_after(20):
            url = await _started_url(proc.stderr, lines)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/health")).json() == {"status": "ok"}
            body = {
                "exchange": "binance",
                "symbols": ["BTC/USDT"],
                "type": "ohlc",
                "span": "1h",
                "start": "2024-01-01",
                "end": "2024-01-08",
            }
            [run] = (await client.post("/api/v1/backfills", json=body)).json()["run_ids"]
            with trio.fail_after(10):
                while (record := (await client.get(f"/api/v1/runs/{run}")).json())["state"] == "running":
                    await trio.sleep(0.05)
            assert (record["state"], record["rows_written"]) == ("succeeded", 168)
        t0 = trio.current_time()
        proc.send_signal(signal.SIGTERM)

        async def drain() -> None:  # keep reading stderr so the process never blocks on a full pipe
            assert proc.stderr is not None
            while await proc.stderr.receive_some(65536):
                pass

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                rc = await proc.wait()
        elapsed = trio.current_time() - t0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 0
    assert elapsed < 2.0
