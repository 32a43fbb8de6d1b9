"""The REST routes of DESIGN.md §4 over a real server: ops endpoints, catalog, jobs, streams, UI, schema."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from dccd.actors import PartWritten
from dccd.actors.streams import StreamInfo
from dccd.web import api_ops

from dccd.domain import Candle, DatasetId, DataType, Span
from dccd.sources.registry import list_adapters
from dccd.storage.writer import Provenance

from .conftest import BTC, Web, open_web

ROUTES = {
    "/health": {"get"}, "/ready": {"get"}, "/metrics": {"get"},
    "/api/v1/exchanges": {"get"}, "/api/v1/exchanges/{name}/symbols": {"get"}, "/api/v1/backfills": {"post"},
    "/api/v1/runs": {"get"}, "/api/v1/runs/{run_id}": {"get", "delete"},
    "/api/v1/streams": {"get", "post"}, "/api/v1/streams/{stream_id}": {"delete"},
    "/api/v1/jobs": {"get", "post"}, "/api/v1/jobs/{job_id}": {"delete"}, "/api/v1/jobs/{job_id}/run": {"post"},
    "/api/v1/inventory": {"get"}, "/api/v1/data/{data_type}/{exchange}/{symbol}": {"get"},
    "/api/v1/config": {"get"}, "/api/v1/live/trades": {"get"}, "/api/v1/live/candles": {"get"},
    "/api/v1/events": {"get"},
    "/api/v1/quality": {"get"},
    "/api/v1/snapshots": {"get", "post"}, "/api/v1/snapshots/diff": {"get"}, "/api/v1/snapshots/prune": {"post"},
    "/api/v1/snapshots/{ref}": {"get", "delete"},
    "/api/v1/query": {"post"},
    "/api/v1/scanners": {"get"}, "/api/v1/scans": {"post"}, "/api/v1/scans/{run_id}": {"get"},
    "/api/v1/signals": {"get"}, "/api/v1/live/signals": {"get"},
    "/api/v1/work": {"get"}, "/api/v1/work/backfills": {"post"},
}  # fmt: skip


async def test_openapi_schema_lists_exactly_the_design_routes(web: Web) -> None:
    """/schema/openapi.json documents every route of DESIGN.md §4 with its methods, and nothing else."""
    paths = (await web.client.get("/schema/openapi.json")).json()["paths"]
    assert {p: set(ops) for p, ops in paths.items()} == ROUTES


async def test_health_and_ready(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    """/health is liveness; /ready probes the storage and answers 503 with the reason when it cannot write."""
    assert (await web.client.get("/health")).json() == {"status": "ok"}
    assert (await web.client.get("/ready")).json() == {"ready": True, "reasons": []}
    meta = web.ctx.svc.operations.lake.root / "_dccd"
    assert not [p for p in meta.iterdir() if "ready-probe" in p.name]  # the probe cleans up

    def read_only(root: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(api_ops, "probe_writable", read_only)
    r = await web.client.get("/ready")
    assert r.status_code == 503
    assert r.json()["reasons"] == [f"storage: cannot write {meta}: Read-only file system"]


async def test_ready_reports_failed_streams_and_a_closing_service(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed stream, or a closed hub, makes /ready 503 naming it (down/silent streams: test_metrics_exposition)."""
    failed = StreamInfo("s1", "binance", ("BTC/USDT",), "trades", None, "failed", 0, 0, 0, 0, 0, "s1", 0, "boom")
    monkeypatch.setattr(web.svc, "list_streams", lambda: [failed])
    r = await web.client.get("/ready")
    assert (r.status_code, r.json()["reasons"]) == (503, ["stream s1 (binance BTC/USDT trades): failed: boom"])
    monkeypatch.setattr(web.svc, "list_streams", lambda: [])
    web.svc.hub.close()
    r = await web.client.get("/ready")
    assert (r.status_code, r.json()["reasons"]) == (503, ["supervisor: shutting down"])


def _metric(text: str, line_start: str) -> float:
    [value] = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(line_start)]
    return value


async def test_metrics_expose_actors_hub_http_and_rows_written(web: Web) -> None:
    """/metrics: the actor collector, HTTP request counters by route template, SSE gauges, rows from PartWritten."""
    await web.client.get("/api/v1/runs/abc")
    ds = DatasetId("binance", BTC, DataType.TRADES)
    web.svc.emit(PartWritten(ds, 120, "/x.parquet", 4096, 1, 2, 0.01))
    r = await web.client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert _metric(text, 'dccd_http_requests_total{method="GET",route="/api/v1/runs/{run_id}",status="404"}') == 1
    assert _metric(text, 'dccd_rows_written_total{exchange="binance",type="trades"}') == 120
    assert _metric(text, 'dccd_bytes_written_total{exchange="binance",type="trades"}') == 4096
    assert _metric(text, 'dccd_actor_state{actor="hub",role="hub",state="running"}') == 1
    assert _metric(text, 'dccd_hub_subscribers{hub="hub"}') == 0
    for kind in ("trades", "candles", "events"):
        assert _metric(text, f'dccd_sse_subscribers{{feed="{kind}"}}') == 0
        assert _metric(text, f'dccd_sse_dropped_events_total{{feed="{kind}"}}') == 0


async def test_exchanges_list_every_adapter_with_its_capabilities(web: Web) -> None:
    """Every registered adapter is listed with its capability matrix (type, transport, history, spans)."""
    listed = (await web.client.get("/api/v1/exchanges")).json()
    assert [e["name"] for e in listed] == list_adapters()
    assert [e["name"] for e in listed] == ["binance", "bitfinex", "bitmex", "bybit", "coinbase", "kraken", "okx"]
    for entry in listed:  # every exchange streams trades and backfills OHLC over REST
        pairs = {(c["data_type"], c["transport"]) for c in entry["capabilities"]}
        assert {("trades", "ws"), ("ohlc", "rest")} <= pairs, entry["name"]
    perps = {e["name"] for e in listed if any(c["data_type"] == "funding" for c in e["capabilities"])}
    assert perps == {"binance", "bitmex", "bybit", "okx"}
    binance = next(e for e in listed if e["name"] == "binance")
    ohlc_rest = next(c for c in binance["capabilities"] if (c["data_type"], c["transport"]) == ("ohlc", "rest"))
    assert ohlc_rest["history"] == "full" and "1m" in ohlc_rest["spans"]


async def test_inventory_shows_rows_range_and_exact_gaps(web: Web) -> None:
    """/inventory reports rows, ISO range and the missing bar interval of a dataset written with a hole."""
    ds = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))
    minute = 60_000_000_000
    t0 = 1_704_067_200_000_000_000  # 2024-01-01
    bars = [Candle(ts=t0 + i * minute, open=1, high=1, low=1, close=1, volume=1) for i in range(10) if i not in (4, 5)]
    await web.ctx.svc.operations.lake.awrite(ds, bars, Provenance("binance", "rest", "test"))
    [item] = (await web.client.get("/api/v1/inventory", params={"exchange": "binance", "type": "ohlc"})).json()
    assert (item["symbol"], item["span"], item["rows"]) == ("BTC/USDT", "1m", 8)
    assert (item["first"], item["last"]) == ("2024-01-01T00:00:00Z", "2024-01-01T00:09:00Z")
    assert (item["gap_kind"], item["gaps"]) == ("ts", [[t0 + 4 * minute, t0 + 6 * minute]])
    assert item["gap_ranges"] == [
        {"lo": t0 + 4 * minute, "hi": t0 + 6 * minute, "unit": "ns", "count": 2, "source": "bars", "detail": "",
         "first_ts": None, "last_ts": None, "from": "2024-01-01T00:04:00Z", "to": "2024-01-01T00:06:00Z"}
    ] and item["missing"] == 2  # fmt: skip
    assert (await web.client.get("/api/v1/inventory", params={"type": "trades"})).json() == []


async def test_jobs_round_trip(web: Web) -> None:
    """POST /jobs creates a job, GET lists it, /run starts its runs against the fake, DELETE removes it (then 404)."""
    body = {
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "type": "ohlc",
        "span": "1d",
        "start": "2024-01-01",
        "end": "2024-02-01",
    }
    r = await web.client.post("/api/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    job = r.json()
    assert [j["id"] for j in (await web.client.get("/api/v1/jobs")).json()] == [job["id"]]
    r = await web.client.post(f"/api/v1/jobs/{job['id']}/run")
    assert r.status_code == 202, r.text
    [run] = r.json()["run_ids"]
    record = await web.svc.wait_run(run)
    assert (record.state, record.rows_written) == ("succeeded", 31)
    assert (await web.client.delete(f"/api/v1/jobs/{job['id']}")).status_code == 200
    assert (await web.client.delete(f"/api/v1/jobs/{job['id']}")).status_code == 404
    assert (await web.client.post(f"/api/v1/jobs/{job['id']}/run")).status_code == 404


async def test_streams_start_list_and_stop(web: Web) -> None:
    """POST /streams starts a recording (its WebSocket endpoint is a closed local port: it reconnects), DELETE stops it."""
    body = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades"}
    r = await web.client.post("/api/v1/streams", json=body)
    assert r.status_code == 201, r.text
    sid = r.json()["stream_id"]
    [info] = (await web.client.get("/api/v1/streams")).json()
    assert (info["id"], info["exchange"], info["symbols"], info["type"]) == (sid, "binance", ["BTC/USDT"], "trades")
    assert info["state"] in ("reconnecting", "connected")
    assert (await web.client.get(f"/api/v1/runs/{sid}")).json()["active"] is True
    r = await web.client.delete(f"/api/v1/streams/{sid}")
    assert (r.status_code, r.json()) == (200, {"stopped": sid})
    assert (await web.client.delete(f"/api/v1/streams/{sid}")).status_code == 404


async def test_without_storage_the_storage_routes_answer_503(tmp_path: Path) -> None:
    """A service without storage still serves health/exchanges/live, and names what is missing elsewhere."""
    async with open_web(None) as web:
        assert (await web.client.get("/ready")).status_code == 200
        assert (await web.client.get("/api/v1/config")).json() == {}
        expected = {
            "/api/v1/runs": "storage: storage (config storage.path) is not available in this service",
            "/api/v1/inventory": "storage: storage (config storage.path) is not available in this service",
            "/api/v1/streams": "streams: live streams is not available in this service",
            "/api/v1/jobs": "jobs: the job scheduler is not available in this service",
            "/api/v1/data/trades/binance/BTC-USDT": "storage: storage (config storage.path) is not available in this service",
        }
        for path, error in expected.items():
            r = await web.client.get(path)
            assert (r.status_code, r.json()) == (503, {"error": error}), path


async def test_unknown_paths_and_methods_are_json_errors(web: Web) -> None:
    """404 and 405 answer in the same {"error": ...} shape as every other error."""
    r = await web.client.get("/api/v1/nothing")
    assert (r.status_code, r.json()) == (404, {"error": "path: no such resource /api/v1/nothing"})
    r = await web.client.put("/api/v1/runs")
    assert (r.status_code, r.json()) == (405, {"error": "method: PUT is not allowed on /api/v1/runs"})
