"""End to end over HTTP: a POSTed backfill against the fake Binance, its events on SSE, and the data read back."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx_sse
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import trio

from dccd.domain import DatasetId, DataType, Span
from dccd.storage import Provenance
from dccd.storage.schema import LOOSE_SCHEMAS

from .conftest import BTC, Web, trades

BODY = {
    "exchange": "binance",
    "symbols": ["BTC/USDT"],
    "type": "ohlc",
    "span": "1m",
    "start": "2024-01-01",
    "end": "2024-01-03",
}
OHLC_1M = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))


async def _collect_run_events(web: Web, seen: list[Any], ready: trio.Event, run_ids: list[str]) -> None:
    async with httpx_sse.aconnect_sse(web.client, "GET", "/api/v1/events") as es:
        ready.set()
        async for ev in es.aiter_sse():
            data = json.loads(ev.data)
            seen.append((ev.id, ev.event, data))
            if ev.event == "run_state_changed" and data["run_id"] in run_ids and data["state"] != "running":
                return


async def test_posted_backfill_reports_progress_on_sse_and_reads_back_exactly(web: Web) -> None:
    """POST /backfills -> 202 run ids; run_progressed/run_state_changed arrive on /api/v1/events with ids; the run succeeds."""
    seen: list[Any] = []
    run_ids: list[str] = []
    ready = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect_run_events, web, seen, ready, run_ids)
            await ready.wait()
            r = await web.client.post("/api/v1/backfills", json=BODY)
            assert r.status_code == 202, r.text
            run_ids.extend(r.json()["run_ids"])
    assert len(run_ids) == 1
    run = run_ids[0]
    names = [name for _, name, data in seen if data.get("run_id") == run]
    assert "run_progressed" in names and names[-1] == "run_state_changed"
    assert seen[-1][2]["state"] == "succeeded"
    ids = [int(i) for i, _, _ in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # monotonic event ids
    detail = (await web.client.get(f"/api/v1/runs/{run}")).json()
    assert detail["state"] == "succeeded" and detail["rows_written"] == 2880
    assert detail["progress"]["done"] == detail["progress"]["total"] == 2880
    listed = (await web.client.get("/api/v1/runs", params={"state": "succeeded", "operation": "backfill"})).json()
    assert [r["run_id"] for r in listed] == [run]
    await _reads_back_exactly(web)


def _parse(fmt: str, body: bytes) -> list[dict[str, Any]]:
    schema = LOOSE_SCHEMAS[DataType.OHLC]
    rows: list[dict[str, Any]]
    if fmt == "json":
        rows = json.loads(body)
        return rows
    if fmt == "jsonl":
        return [json.loads(line) for line in body.splitlines()]
    if fmt == "csv":
        table = pacsv.read_csv(io.BytesIO(body), convert_options=pacsv.ConvertOptions(column_types=schema))
    elif fmt == "parquet":
        table = pq.read_table(io.BytesIO(body))
    else:
        table = pa.ipc.open_stream(body).read_all()
    rows = table.to_pylist()
    return rows


async def _reads_back_exactly(web: Web) -> None:
    stored = (await web.ctx.svc.operations.lake.aread_table(OHLC_1M)).table.to_pylist()
    assert len(stored) == 2880
    for fmt in ("json", "jsonl", "csv", "parquet", "arrow"):
        r = await web.client.get("/api/v1/data/ohlc/binance/BTC-USDT", params={"span": "1m", "format": fmt})
        assert r.status_code == 200, r.text
        assert _parse(fmt, r.content) == stored, fmt
    window = {"span": "1m", "start": "2024-01-02T00:00Z", "end": "2024-01-02T01:00Z", "format": "parquet"}
    part = pq.read_table(
        io.BytesIO((await web.client.get("/api/v1/data/ohlc/binance/btc-usdt", params=window)).content)
    )
    assert part.column("ts").to_pylist() == [r["ts"] for r in stored[1440:1500]]


async def test_data_read_of_a_never_collected_dataset_is_404_and_an_empty_range_is_empty(web: Web) -> None:
    """A dataset never collected answers 404 naming what is stored nearest; a collected one with no rows in the
    range answers [] (json) and a header-only CSV."""
    r = await web.client.get("/api/v1/data/trades/binance/ETH-BTC")
    assert r.status_code == 404
    assert r.json() == {"error": "dataset: no binance ETH/BTC trades stored (the lake holds no binance data)"}
    await web.ctx.svc.operations.lake.awrite(
        DatasetId("binance", BTC, DataType.TRADES), trades(3).records, Provenance("test", "ws")
    )
    r = await web.client.get("/api/v1/data/trades/binance/ETH-BTC")
    assert r.status_code == 404
    assert r.json() == {"error": "dataset: no binance ETH/BTC trades stored; nearest: binance BTC/USDT trades"}
    empty = {"start": "2020-01-01", "end": "2020-01-02"}
    r = await web.client.get("/api/v1/data/trades/binance/BTC-USDT", params=empty)
    assert r.status_code == 200 and r.json() == []
    r = await web.client.get("/api/v1/data/trades/binance/BTC-USDT", params={**empty, "format": "csv"})
    assert r.text.splitlines() == ['"ts","id","price","amount","side","recv_ts"']
    assert r.headers["content-disposition"] == 'attachment; filename="binance_BTC-USDT_trades.csv"'


async def _cancel_running_backfill(web: Web) -> tuple[str, Any]:
    body = {**BODY, "start": "2019-01-01", "end": "2024-01-01"}  # years of bars: still running when cancelled
    r = await web.client.post("/api/v1/backfills", json=body)
    run = r.json()["run_ids"][0]
    with trio.fail_after(10):
        while (await web.client.get(f"/api/v1/runs/{run}")).json()["rows_written"] == 0:
            await trio.sleep(0.02)
        assert (await web.client.get(f"/api/v1/runs/{run}")).json()["active"] is True
        return run, await web.client.delete(f"/api/v1/runs/{run}")


async def test_delete_run_stops_a_running_backfill_and_returns_its_final_record(web: Web) -> None:
    """DELETE /runs/{id} cancels a running backfill and answers its final record; again is 409; unknown is 404."""
    run, r = await _cancel_running_backfill(web)
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["active"] is False and final["state"] == "cancelled" and final["ended_ns"] is not None
    assert 0 < final["rows_written"] < 2_629_440  # stopped part-way; what was written stays
    again = await web.client.delete(f"/api/v1/runs/{run}")
    assert again.status_code == 409 and again.json() == {
        "error": f"run_id: run {run!r} already ended ({final['state']})"
    }
    missing = await web.client.delete("/api/v1/runs/0123456789abcdef")
    assert missing.status_code == 404 and missing.json() == {"error": "run_id: run '0123456789abcdef' not found"}
