"""Snapshots over HTTP and the client: ``/api/v1/snapshots`` and ``?as_of=`` reads, against a real server."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pyarrow as pa

from dccd.client import ApiError, Client
from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.storage import Lake, Provenance

from .conftest import TOKEN, make_config, open_web

DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
PATH = "/api/v1/data/trades/binance/BTC-USDT"
T0 = 1_700_000_000_000_000_000
PROV = Provenance("test", "ws")


def _trades(first: int, n: int, price: float = 100.0) -> list[Trade]:
    return [Trade(T0 + i * 1_000_000, str(i), price + i % 3, 0.5, "buy", None) for i in range(first, first + n)]


async def test_as_of_reads_over_http_and_the_client_are_identical_to_reads_at_snapshot_time(tmp_path: Path) -> None:
    """A snapshot created over HTTP, then corrections, more rows and a compaction: ``?as_of=`` answers the
    very bytes (arrow, csv) and the client the very table read when it was taken; unknown ones are 404."""
    lake = Lake(tmp_path)
    for k in range(4):
        lake.write(DS, _trades(k * 10, 10), PROV, now_ns=T0 + 10**15)
    async with open_web(make_config(tmp_path, token=TOKEN)) as web, Client(web.url, TOKEN) as client:
        h = web.auth()
        arrow_then = (await web.client.get(PATH, params={"format": "arrow"}, headers=h)).content
        csv_then = (await web.client.get(PATH, params={"format": "csv"}, headers=h)).content
        table_then = await client.read("trades", "binance", "BTC/USDT")
        created = await client.create_snapshot(tag="v1", note="before")
        assert created["tag"] == "v1" and created["note"] == "before"

        lake.write(DS, _trades(0, 10, price=7.0), PROV, now_ns=T0 + 10**15)
        lake.write(DS, _trades(40, 10), PROV, now_ns=T0 + 10**15)
        lake.compact(DS)
        now = await client.read("trades", "binance", "BTC/USDT")
        assert now.num_rows == 50 and not now.equals(table_then)

        for ref in ("v1", str(created["snapshot_id"]), created["time"]):
            r = await web.client.get(PATH, params={"format": "arrow", "as_of": ref}, headers=h)
            assert r.status_code == 200 and r.content == arrow_then
        r = await web.client.get(PATH, params={"format": "csv", "as_of": "v1"}, headers=h)
        assert r.content == csv_then
        got = await client.read("trades", "binance", "BTC/USDT", as_of="v1")
        assert isinstance(got, pa.Table) and got.equals(table_then)

        r = await web.client.get(PATH, params={"as_of": "nope"}, headers=h)
        assert r.status_code == 404 and "no snapshot 'nope'" in r.text
        try:
            await client.read("trades", "binance", "BTC/USDT", as_of="2000-01-01")
            raise AssertionError("expected a 404")
        except ApiError as exc:
            assert exc.status == 404 and "at or before" in str(exc)

        listed = await client.snapshots()
        assert [(s["tag"], s["parts"], s["rows"]) for s in listed] == [("v1", 4, 40)]
        await client.create_snapshot(tag="v2")
        r = await web.client.get("/api/v1/snapshots/diff", params={"a": "v1", "b": "v2"}, headers=h)
        (d,) = r.json()
        assert (d["status"], d["rows_added"], d["rows_removed"]) == ("changed", 20, 10)
        r = await web.client.get("/api/v1/snapshots/v2", headers=h)
        assert r.status_code == 200 and r.json()["tag"] == "v2"
        r = await web.client.post("/api/v1/snapshots", json={"tag": "v2"}, headers=h)
        assert r.status_code == 400 and "taken" in r.text
        r = await web.client.post("/api/v1/snapshots", json={"tag": "9"}, headers=h)
        assert r.status_code == 400
        r = await web.client.delete("/api/v1/snapshots/v1", headers=h)
        assert r.status_code == 200 and r.json()["parts_deleted"] == 4
        r = await web.client.delete("/api/v1/snapshots/v1", headers=h)
        assert r.status_code == 404
        await client.create_snapshot()
        await client.create_snapshot(keep=5)
        r = await web.client.post("/api/v1/snapshots/prune", params={"keep": "1"}, headers=h)
        assert r.status_code == 200 and len(r.json()["dropped"]) == 1
        r = await web.client.post("/api/v1/snapshots/prune", params={"keep": "-1"}, headers=h)
        assert r.status_code == 400
        r = await web.client.get("/api/v1/snapshots", headers=h)
        assert [s["tag"] for s in r.json()] == ["v2", None]
        assert r.headers["content-type"].startswith("application/json")
        msgspec.json.decode(r.content)


async def test_creating_and_dropping_snapshots_needs_the_token(tmp_path: Path) -> None:
    """Without the bearer token, create and drop answer 401 and change nothing (listing is a read)."""
    Lake(tmp_path).write(DS, _trades(0, 5), PROV, now_ns=T0 + 10**15)
    async with open_web(make_config(tmp_path, token=TOKEN)) as web:
        assert (await web.client.post("/api/v1/snapshots", json={})).status_code == 401
        assert (await web.client.post("/api/v1/snapshots", json={}, headers=web.auth())).status_code == 201
        assert (await web.client.delete("/api/v1/snapshots/1")).status_code == 401
        assert len((await web.client.get("/api/v1/snapshots")).json()) == 1
