"""One run's failure is that run's: a bug in a backfill never stops a running stream or the HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from dccd.config import parse_config
from dccd.sources.base import Request
from dccd.sources.registry import get_adapter
from tests.fake.binance import open_fake_binance
from tests.fake.binance_ws import FakeBinanceWs, open_fake_binance_ws

from .conftest import Web, open_web

STREAM = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades"}
BACKFILL = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1m", "start": "-10m"}


@asynccontextmanager
async def open_streaming_web(root: Path) -> AsyncIterator[tuple[Web, FakeBinanceWs]]:
    """Service + server with Binance REST and WebSocket at loopback fakes, and one trades stream receiving data."""
    async with open_fake_binance() as rest, open_fake_binance_ws(rate_per_s=50.0) as ws:
        text = (
            f"storage: {{path: '{root}'}}\n"
            f"exchanges: {{binance: {{rest_url: '{rest.url}', ws_url: '{ws.url}', rate_limit: 0}}}}\n"
        )
        async with open_web(parse_config(text, env={})) as web:
            r = await web.client.post("/api/v1/streams", json=STREAM)
            assert r.status_code == 201, r.text
            await wait_stream_messages(web.client, r.json()["stream_id"], 5)
            yield web, ws


async def stream_info(client: httpx.AsyncClient, stream_id: str) -> dict[str, Any]:
    """The stream's entry in GET /api/v1/streams."""
    r = await client.get("/api/v1/streams")
    assert r.status_code == 200, r.text
    [info] = [s for s in r.json() if s["id"] == stream_id]
    return info


async def wait_stream_messages(client: httpx.AsyncClient, stream_id: str, more_than: int) -> dict[str, Any]:
    """Poll until the stream is connected and has received more than ``more_than`` frames (fails after 15 s)."""
    with trio.fail_after(15):
        while True:
            info = await stream_info(client, stream_id)
            if info["state"] == "connected" and info["messages"] > more_than:
                return info
            await trio.sleep(0.05)


async def test_a_bug_in_one_backfill_fails_that_run_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter raising OverflowError mid-backfill marks that run failed with the error; the stream keeps
    receiving, the server keeps answering, and the next backfill succeeds."""
    async with open_streaming_web(tmp_path / "lake") as (web, _):
        [stream] = (await web.client.get("/api/v1/streams")).json()
        before = stream["messages"]
        adapter = get_adapter("binance")
        real_parse = adapter.parse_ohlc

        def boom(request: Request, body: bytes) -> Any:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

        monkeypatch.setattr(adapter, "parse_ohlc", boom)
        with capture_logs() as logs:
            r = await web.client.post("/api/v1/backfills", json=BACKFILL)
            assert r.status_code == 202, r.text
            [run_id] = r.json()["run_ids"]
            record = await web.svc.wait_run(run_id)
        [crash] = [e for e in logs if e["event"] == "backfill.crashed"]  # logged at error, with the traceback
        assert (crash["log_level"], crash["run_id"], type(crash["exc_info"])) == ("error", run_id, OverflowError)
        assert (record.state, record.error) == (
            "failed",
            "OverflowError: Python int too large to convert to SQLite INTEGER",
        )
        r = await web.client.get(f"/api/v1/runs/{run_id}")
        assert (r.status_code, r.json()["state"], r.json()["active"]) == (200, "failed", False)

        assert (await web.client.get("/health")).status_code == 200
        info = await wait_stream_messages(web.client, stream["id"], before + 20)  # still receiving after the bug
        assert (info["state"], info["error"]) == ("connected", None)

        monkeypatch.setattr(adapter, "parse_ohlc", real_parse)
        r = await web.client.post("/api/v1/backfills", json=BACKFILL)
        assert r.status_code == 202, r.text
        [again] = r.json()["run_ids"]
        assert (await web.svc.wait_run(again)).state == "succeeded"


async def test_a_backfill_failing_before_it_runs_leaves_no_writer_and_no_pending_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose start fails (its record cannot be marked running) is answered 500 in one line, ends failed with
    the error, and leaves no writer actor or active entry behind; the stream and the server carry on."""
    async with open_streaming_web(tmp_path / "lake") as (web, _):
        [stream] = (await web.client.get("/api/v1/streams")).json()
        ops = web.svc.operations

        async def broken_start(run_id: str) -> None:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

        monkeypatch.setattr(ops.runs, "astart", broken_start)
        with capture_logs():
            r = await web.client.post("/api/v1/backfills", json=BACKFILL)
        monkeypatch.undo()
        assert (r.status_code, r.json()) == (500, {"error": "internal: OverflowError (logged on the server)"})
        [run] = [x for x in (await web.client.get("/api/v1/runs")).json() if x["operation"] == "backfill"]
        assert (run["state"], run["error"], run["active"]) == (
            "failed",
            "OverflowError: Python int too large to convert to SQLite INTEGER",
            False,
        )
        assert ops.active == {}
        assert [n for n in web.svc.supervisor.names() if n.startswith("writer:")] == [f"writer:{stream['id']}"]
        assert (await web.client.get("/health")).status_code == 200
        await wait_stream_messages(web.client, stream["id"], stream["messages"] + 20)
