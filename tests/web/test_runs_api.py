"""Runs over the API: short (prefix) ids on GET/DELETE, ambiguous prefixes, a failed run's error, cancel by prefix."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from dccd.domain import DatasetId, DataType, Span
from dccd.storage import RunStore
from tests.fake.binance import open_fake_binance

from .conftest import BTC, Web, make_config, open_web

DS = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))
A = "abc12345" + "0" * 24
B = "abd99999" + "1" * 24
DCCD = str(Path(sys.executable).with_name("dccd"))


def _runs(web: Web) -> RunStore:
    store: RunStore = web.ctx.svc.operations.runs
    return store


async def test_a_unique_prefix_names_the_run(web: Web) -> None:
    """GET /runs/{prefix} answers the one run starting with it, events included; the full id still works."""
    _runs(web).create("backfill", DS, run_id=A)
    _runs(web).create("backfill", DS, run_id=B)
    for text in ("abc", "abc12345", A):
        r = await web.client.get(f"/api/v1/runs/{text}")
        assert r.status_code == 200, r.text
        assert r.json()["run_id"] == A and r.json()["events"] == []


async def test_an_ambiguous_prefix_is_a_400_naming_the_candidates(web: Web) -> None:
    """A prefix starting several runs is 400 listing them (GET and DELETE); no match is 404."""
    _runs(web).create("backfill", DS, run_id=A)
    _runs(web).create("backfill", DS, run_id=B)
    for method in ("GET", "DELETE"):
        r = await web.client.request(method, "/api/v1/runs/ab")
        assert r.status_code == 400, r.text
        assert r.json() == {"error": f"run_id: 'ab' starts several runs ({B}, {A}): give more characters"}
    r = await web.client.get("/api/v1/runs/abz")
    assert r.status_code == 404 and r.json()["error"] == "run_id: run 'abz' not found"


async def test_a_failed_runs_error_is_in_the_list_and_the_detail(web: Web) -> None:
    """A failed run carries its error in GET /runs and GET /runs/{id}."""
    _runs(web).create("backfill", DS, run_id=A, state="running")
    _runs(web).finish(A, "failed", error="binance rejected the request (HTTP 400): code -1121: Invalid symbol.")
    [listed] = (await web.client.get("/api/v1/runs", params={"state": "failed"})).json()
    detail = (await web.client.get(f"/api/v1/runs/{A[:12]}")).json()
    assert listed["error"] == detail["error"] == "binance rejected the request (HTTP 400): code -1121: Invalid symbol."
    assert (listed["state"], detail["state"]) == ("failed", "failed")


async def test_delete_by_prefix_cancels_the_running_run(tmp_path: Path) -> None:
    """DELETE /runs/{8-char prefix} cancels a running backfill of this server and answers its final record."""
    async with (
        open_fake_binance(delay_s=0.5) as fake,
        open_web(make_config(tmp_path / "lake", fake_url=fake.url)) as web,
    ):
        body = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1m",
                "start": "2024-01-01", "end": "2024-03-01"}  # fmt: skip
        r = await web.client.post("/api/v1/backfills", json=body)
        [run_id] = r.json()["run_ids"]
        with trio.fail_after(20):
            while (await web.client.get(f"/api/v1/runs/{run_id}")).json()["state"] != "running":
                await trio.sleep(0.05)
            r = await web.client.delete(f"/api/v1/runs/{run_id[:8]}")
        assert r.status_code == 200, r.text
        assert (r.json()["run_id"], r.json()["state"], r.json()["active"]) == (run_id, "cancelled", False)


async def test_cli_runs_cancel_goes_through_the_answering_server(tmp_path: Path) -> None:
    """`dccd runs cancel PREFIX --server URL` cancels a run of that dccd serve through its API (exit 0)."""
    root = tmp_path / "lake"
    async with open_fake_binance(delay_s=0.5) as fake, open_web(make_config(root, fake_url=fake.url)) as web:
        body = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1m",
                "start": "2024-01-01", "end": "2024-03-01"}  # fmt: skip
        [run_id] = (await web.client.post("/api/v1/backfills", json=body)).json()["run_ids"]
        with trio.fail_after(30):
            while (await web.client.get(f"/api/v1/runs/{run_id}")).json()["state"] != "running":
                await trio.sleep(0.05)
            proc = await trio.run_process(
                [DCCD, "--data", str(root), "runs", "cancel", run_id[:12], "--server", web.url],
                capture_stdout=True, capture_stderr=True, check=False,
                env={k: v for k, v in os.environ.items() if not k.startswith("DCCD_")},
            )  # fmt: skip
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert (proc.returncode, err) == (0, ""), err
        assert out.startswith(f"run {run_id[:12]}: cancelled by {web.url}")
        assert _runs(web).get(run_id).state == "cancelled"  # type: ignore[union-attr]
