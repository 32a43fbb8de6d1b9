"""dccd.client against a small Litestar server on 127.0.0.1 with the API's shapes: every route, errors,
the bearer token, Arrow reads, and SSE feeds that resume with Last-Event-ID after a drop (Trio and asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sys
from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from litestar import Litestar, Request, Response, delete, get, post
from litestar.response import ServerSentEvent, ServerSentEventMessage

from dccd.client import ApiError, Client, Lagged, reconnect_delay_s
from dccd.domain.records import Trade

TOKEN = "s3cret-token-value"
TRADES = [
    Trade(ts=1_000 + i, id=str(i), price=100.0 + i, amount=0.5, side="buy", recv_ts=2_000 + i) for i in range(1, 7)
]


def trade_json(*ids: int) -> str:
    return json.dumps([{f: getattr(TRADES[i - 1], f) for f in Trade.__struct_fields__} for i in ids])


class Server:
    """What the fake server saw."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # method, path?query, authorization
        self.bodies: list[Any] = []
        self.sse_connects: list[str | None] = []  # Last-Event-ID of each live/trades connection
        self.drop_abruptly = False


def app(srv: Server) -> Litestar:
    """The API's shapes (web/ answers the same way): JSON, {"error": "field: message"}, SSE with ids."""

    def refuse(request: Request[Any, Any, Any]) -> Response[Any] | None:
        auth = request.headers.get("authorization")
        if auth is None:
            return Response(
                {"error": "authorization: this route needs the header Authorization: Bearer <token>"}, status_code=401
            )
        if auth != f"Bearer {TOKEN}":
            return Response({"error": "authorization: the bearer token is not valid"}, status_code=403)
        return None

    async def body(request: Request[Any, Any, Any]) -> Any:
        data = await request.json()
        srv.bodies.append(data)
        return data

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready")
    async def ready() -> Response[Any]:
        return Response({"error": "streams: 1 of 2 disconnected"}, status_code=503)

    @get("/api/v1/exchanges")
    async def exchanges() -> list[dict[str, Any]]:
        return [{"name": "binance", "capabilities": [{"data_type": "ohlc", "transport": "rest"}]}]

    @post("/api/v1/backfills", status_code=202)
    async def backfills(request: Request[Any, Any, Any]) -> Response[Any]:
        if (no := refuse(request)) is not None:
            return no
        data = await body(request)
        if data["exchange"] != "binance":
            return Response(
                {"error": f"exchange: {data['exchange']!r} is not a known exchange (binance)"}, status_code=400
            )
        ids = [f"run-{i}" for i, _ in enumerate(data["symbols"], 1)]
        return Response({"run_ids": ids, "runs": [f"/api/v1/runs/{r}" for r in ids]}, status_code=202)

    @get("/api/v1/runs")
    async def runs(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        return [
            {"run_id": "run-1", "state": request.query_params.get("state"), "limit": request.query_params.get("limit")}
        ]

    @get("/api/v1/runs/{run_id:str}")
    async def run(run_id: str) -> Response[Any]:
        if run_id != "run-1":
            return Response({"error": f"run_id: no run {run_id!r}"}, status_code=404)
        return Response({"run_id": run_id, "state": "running", "progress": {"done": 5, "total": 10}})

    @delete("/api/v1/runs/{run_id:str}", status_code=200)
    async def cancel(request: Request[Any, Any, Any], run_id: str) -> Response[Any]:
        return refuse(request) or Response({"run_id": run_id, "state": "cancelled"})

    @get("/api/v1/streams")
    async def streams() -> list[dict[str, Any]]:
        return [{"id": "stream-1", "state": "connected"}]

    @post("/api/v1/streams", status_code=201)
    async def start_stream(request: Request[Any, Any, Any]) -> Response[Any]:
        if (no := refuse(request)) is not None:
            return no
        await body(request)
        return Response({"stream_id": "stream-2", "run_id": "run-9"}, status_code=201)

    @delete("/api/v1/streams/{stream_id:str}", status_code=200)
    async def stop_stream(request: Request[Any, Any, Any], stream_id: str) -> Response[Any]:
        return refuse(request) or Response({"stream_id": stream_id, "stopped": True})

    @get("/api/v1/jobs")
    async def jobs() -> list[dict[str, Any]]:
        return [{"id": "hourly", "source": "config", "next_fire_ns": 1}]

    @post("/api/v1/jobs", status_code=201)
    async def create_job(request: Request[Any, Any, Any]) -> Response[Any]:
        if (no := refuse(request)) is not None:
            return no
        data = await body(request)
        if data.get("span") == "7m":
            return Response({"error": "span: '7m' is not a span (1s 1m 3m ...)"}, status_code=400)
        return Response({"id": "api-binance-backfill-ohlc-1m", "source": "api", **data}, status_code=201)

    @delete("/api/v1/jobs/{job_id:str}", status_code=200)
    async def delete_job(request: Request[Any, Any, Any], job_id: str) -> Response[Any]:
        if (no := refuse(request)) is not None:
            return no
        if job_id == "hourly":
            return Response(
                {"error": "job_id: job 'hourly' comes from the config file: remove it there"}, status_code=409
            )
        return Response({"deleted": job_id})

    @post("/api/v1/jobs/{job_id:str}/run", status_code=202)
    async def run_job(request: Request[Any, Any, Any], job_id: str) -> Response[Any]:
        return refuse(request) or Response({"run_ids": [f"{job_id}-run"]}, status_code=202)

    @get("/api/v1/inventory")
    async def inventory() -> list[dict[str, Any]]:
        return [{"exchange": "binance", "symbol": "BTC-USDT", "rows": 3}]

    @get("/api/v1/config")
    async def config() -> dict[str, Any]:
        return {"server": {"token": "***"}}

    @get("/api/v1/data/{type:str}/{exchange:str}/{symbol:str}")
    async def data(request: Request[Any, Any, Any], type: str, exchange: str, symbol: str) -> Response[bytes]:
        q = request.query_params
        if symbol != "BTC-USDT":
            return Response({"error": f"symbol: no data for {symbol}"}, status_code=404)  # type: ignore[arg-type]
        table = pa.table({"ts": [1, 2, 3], "price": [1.5, 2.5, 3.5]}).replace_schema_metadata(
            {"query": json.dumps({"type": type, "exchange": exchange, **dict(q)})}
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1)
        return Response(sink.getvalue().to_pybytes(), media_type="application/vnd.apache.arrow.stream")

    @get("/api/v1/live/trades")
    async def live_trades(request: Request[Any, Any, Any], exchange: str, symbol: str) -> ServerSentEvent:
        last = request.headers.get("last-event-id")
        srv.sse_connects.append(last)

        async def events() -> AsyncIterator[ServerSentEventMessage]:
            if last is None:  # first connection: three events, a heartbeat, then the connection drops
                for i in (1, 2, 3):
                    yield ServerSentEventMessage(event="trades", id=str(i), data=trade_json(i))
                yield ServerSentEventMessage(comment="keep-alive")
                if srv.drop_abruptly:
                    raise RuntimeError("connection lost")  # the response is cut without its final chunk
                return
            assert last == "3", last
            yield ServerSentEventMessage(event="lagged", data='{"n":2}')  # 4 and 5 aged out of the ring
            yield ServerSentEventMessage(event="trades", id="6", data=trade_json(6))
            await trio.sleep_forever()

        return ServerSentEvent(events())

    @get("/api/v1/events")
    async def events(request: Request[Any, Any, Any]) -> ServerSentEvent:
        run_id = request.query_params.get("run_id")

        async def gen() -> AsyncIterator[ServerSentEventMessage]:
            msg = {"type": "run_state_changed", "run_id": run_id, "state": "running"}
            yield ServerSentEventMessage(event="run_state_changed", id="1", data=json.dumps(msg))
            yield ServerSentEventMessage(event="run_progressed", id="2", data=json.dumps({"run_id": run_id, "done": 1}))
            await trio.sleep_forever()

        return ServerSentEvent(gen())

    @get("/api/v1/broken")
    async def broken() -> Response[bytes]:
        return Response(b"<html>bad gateway</html>", status_code=502, media_type="text/html")

    async def log_request(request: Request[Any, Any, Any]) -> None:
        url = request.url
        srv.requests.append(
            (request.method, url.path + (f"?{url.query}" if url.query else ""), request.headers.get("authorization"))
        )

    handlers = [health, ready, exchanges, backfills, runs, run, cancel, streams, start_stream, stop_stream, jobs]
    handlers += [create_job, delete_job, run_job, inventory, config, data, live_trades, events, broken]
    return Litestar(handlers, before_request=log_request, logging_config=None, openapi_config=None)


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[str, Server]]:
    """The fake API on an ephemeral port (hypercorn's Trio worker in the test's nursery)."""
    srv = Server()
    cfg = HypercornConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.errorlog = logging.getLogger("tests.client.server")
    cfg.accesslog = None
    cfg.graceful_timeout = 0.1
    asgi: Any = app(srv)
    binds = await nursery.start(lambda task_status: serve(asgi, cfg, task_status=task_status))
    yield binds[0], srv


async def test_every_route_sends_and_decodes_the_api_shapes(server: tuple[str, Server]) -> None:
    """Each client method calls its route with the right method, path, query and body, and returns the payload."""
    url, srv = server
    async with Client(url, TOKEN) as c:
        assert await c.health() == {"status": "ok"}
        assert (await c.exchanges())[0]["name"] == "binance"
        assert await c.backfill("binance", ["BTC/USDT", "ETH/USDT"], "ohlc", span="1m", start="-30d") == [
            "run-1",
            "run-2",
        ]
        assert await c.backfill("binance", "BTC/USDT", "trades") == ["run-1"]
        assert await c.run("run-1") == {"run_id": "run-1", "state": "running", "progress": {"done": 5, "total": 10}}
        assert await c.runs(state="failed", limit=5) == [{"run_id": "run-1", "state": "failed", "limit": "5"}]
        assert (await c.cancel("run-1"))["state"] == "cancelled"
        assert await c.streams() == [{"id": "stream-1", "state": "connected"}]
        assert await c.start_stream("binance", ["BTC/USDT"], "trades") == "stream-2"
        assert await c.stop_stream("stream-2") == {"stream_id": "stream-2", "stopped": True}
        assert (await c.jobs())[0]["id"] == "hourly"
        job = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1m", "every": "1h"}
        assert (await c.create_job(job))["id"] == "api-binance-backfill-ohlc-1m"
        assert await c.delete_job("api-binance-backfill-ohlc-1m") == {"deleted": "api-binance-backfill-ohlc-1m"}
        assert await c.run_job("hourly") == ["hourly-run"]
        assert (await c.inventory())[0]["rows"] == 3
        assert await c.config() == {"server": {"token": "***"}}
    assert srv.bodies == [
        {"exchange": "binance", "symbols": ["BTC/USDT", "ETH/USDT"], "type": "ohlc", "span": "1m", "start": "-30d"},
        {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades"},
        {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades"},
        job,
    ]
    assert [(m, p) for m, p, _ in srv.requests] == [
        ("GET", "/health"),
        ("GET", "/api/v1/exchanges"),
        ("POST", "/api/v1/backfills"),
        ("POST", "/api/v1/backfills"),
        ("GET", "/api/v1/runs/run-1"),
        ("GET", "/api/v1/runs?state=failed&limit=5"),
        ("DELETE", "/api/v1/runs/run-1"),
        ("GET", "/api/v1/streams"),
        ("POST", "/api/v1/streams"),
        ("DELETE", "/api/v1/streams/stream-2"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("DELETE", "/api/v1/jobs/api-binance-backfill-ohlc-1m"),
        ("POST", "/api/v1/jobs/hourly/run"),
        ("GET", "/api/v1/inventory"),
        ("GET", "/api/v1/config"),
    ]


async def test_the_token_goes_in_the_header_only(server: tuple[str, Server]) -> None:
    """The token is sent as Authorization: Bearer, never in a URL, never in repr; without it a mutation is a 401."""
    url, srv = server
    async with Client(url, TOKEN) as c:
        await c.backfill("binance", ["BTC/USDT"], "trades")
        assert TOKEN not in repr(c) and repr(c) == f"Client({url!r}, token=***)"
    assert srv.requests[-1][2] == f"Bearer {TOKEN}"
    assert all(TOKEN not in path for _, path, _ in srv.requests)
    async with Client(url) as anonymous:
        assert repr(anonymous) == f"Client({url!r}, token=None)"
        with pytest.raises(ApiError) as info:
            await anonymous.backfill("binance", ["BTC/USDT"], "trades")
    assert (info.value.status, info.value.message) == (
        401,
        "authorization: this route needs the header Authorization: Bearer <token>",
    )
    async with Client(url, "wrong-token") as wrong:
        with pytest.raises(ApiError, match=r"^HTTP 403: authorization: the bearer token is not valid$"):
            await wrong.run_job("hourly")


async def test_errors_carry_the_status_and_the_servers_message(server: tuple[str, Server]) -> None:
    """4xx/5xx raise ApiError(status, message) with the server's one-line text (or the body of a non-JSON answer)."""
    url, _ = server
    async with Client(url, TOKEN) as c:
        with pytest.raises(ApiError) as missing:
            await c.run("nope")
        assert (missing.value.status, str(missing.value)) == (404, "HTTP 404: run_id: no run 'nope'")
        with pytest.raises(ApiError) as bad:
            await c.backfill("mtgox", ["BTC/USD"], "trades")
        assert bad.value.message == "exchange: 'mtgox' is not a known exchange (binance)"
        with pytest.raises(ApiError) as bad_job:
            await c.create_job({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "7m"})
        assert (bad_job.value.status, bad_job.value.message) == (400, "span: '7m' is not a span (1s 1m 3m ...)")
        with pytest.raises(ApiError) as config_job:
            await c.delete_job("hourly")
        assert config_job.value.status == 409
        with pytest.raises(ApiError) as not_ready:
            await c.ready()
        assert (not_ready.value.status, not_ready.value.message) == (503, "streams: 1 of 2 disconnected")
        with pytest.raises(ApiError) as gateway:
            await c._call("GET", "/api/v1/broken")
        assert (gateway.value.status, gateway.value.message) == (502, "<html>bad gateway</html>")
        with pytest.raises(ApiError) as no_data:
            await c.read("trades", "binance", "ETH/USDT")
        assert (no_data.value.status, no_data.value.message) == (404, "symbol: no data for ETH-USDT")


async def test_read_decodes_an_arrow_stream_into_a_table(server: tuple[str, Server]) -> None:
    """read() asks for format=arrow with the symbol as a slug and returns the rows as one pyarrow Table."""
    url, _ = server
    async with Client(url) as c:
        table = await c.read(
            "ohlc", "binance", "BTC/USDT", span="1m", start="2024-01-01", end=1_700_000_000_000_000_000
        )
    assert table.to_pydict() == {"ts": [1, 2, 3], "price": [1.5, 2.5, 3.5]}
    assert json.loads((table.schema.metadata or {})[b"query"]) == {
        "type": "ohlc",
        "exchange": "binance",
        "span": "1m",
        "start": "2024-01-01",
        "end": "1700000000000000000",
        "format": "arrow",
    }


async def test_polars_and_pandas_readers_say_what_to_install(
    server: tuple[str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without polars/pandas the converters raise ImportError naming the package and the pyarrow alternative."""
    url, _ = server
    monkeypatch.setitem(sys.modules, "polars", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    async with Client(url) as c:
        with pytest.raises(ImportError, match=r"^read_polars needs polars: pip install polars \(or use read\(\)"):
            await c.read_polars("ohlc", "binance", "BTC/USDT", span="1m")
        with pytest.raises(ImportError, match=r"^read_pandas needs pandas: pip install pandas \(or use read\(\)"):
            await c.read_pandas("ohlc", "binance", "BTC/USDT", span="1m")


async def collect_live(url: str, n: int) -> list[Any]:
    """The first ``n`` items of live_trades (runs under Trio or asyncio)."""
    out: list[Any] = []
    async with Client(url) as c, contextlib.aclosing(c.live_trades("binance", "BTC/USDT")) as feed:
        async for item in feed:
            out.append(item)
            if len(out) == n:
                break
    return out


EXPECTED_LIVE = [[TRADES[0]], [TRADES[1]], [TRADES[2]], Lagged(2), [TRADES[5]]]


@pytest.mark.parametrize("abrupt", [False, True])
async def test_live_trades_resume_with_last_event_id_after_a_drop(server: tuple[str, Server], abrupt: bool) -> None:
    """After the stream ends or is cut mid-way, the client reconnects with Last-Event-ID: 3 and yields the lagged notice."""
    url, srv = server
    srv.drop_abruptly = abrupt
    with trio.fail_after(10):
        items = await collect_live(url, 5)
    assert items == EXPECTED_LIVE
    assert srv.sse_connects == [None, "3"]


async def test_live_trades_under_asyncio(server: tuple[str, Server]) -> None:
    """The same client works under asyncio (asyncio.run in a thread): routes, Arrow reads and SSE resume."""
    url, srv = server

    async def main() -> tuple[list[str], list[int], list[Any]]:
        async with Client(url, TOKEN) as c:
            run_ids = await c.backfill("binance", ["BTC/USDT"], "trades")
            ts = (await c.read("trades", "binance", "BTC/USDT")).column("ts").to_pylist()
        return run_ids, ts, await collect_live(url, 5)

    with trio.fail_after(10):
        run_ids, ts, items = await trio.to_thread.run_sync(lambda: asyncio.run(main()))
    assert (run_ids, ts, items) == (["run-1"], [1, 2, 3], EXPECTED_LIVE)
    assert srv.sse_connects == [None, "3"]


async def test_events_yield_dicts_named_by_type(server: tuple[str, Server]) -> None:
    """events(run_id) filters by run on the server and yields each event's JSON with its type."""
    url, srv = server
    async with Client(url) as c, contextlib.aclosing(c.events(run_id="run-1")) as feed:
        got = []
        async for ev in feed:
            got.append(ev)
            if len(got) == 2:
                break
    assert got == [
        {"type": "run_state_changed", "run_id": "run-1", "state": "running"},
        {"type": "run_progressed", "run_id": "run-1", "done": 1},
    ]
    assert srv.requests[-1][:2] == ("GET", "/api/v1/events?run_id=run-1")


def test_reconnect_delay_doubles_to_a_cap_with_jitter() -> None:
    """Reconnect delays are 0.25 s doubling up to the cap, jittered over the upper half."""
    assert [reconnect_delay_s(a, 30.0, 0.0) for a in range(9)] == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert [reconnect_delay_s(a, 30.0, 0.999999) for a in (0, 8, 1000)] == pytest.approx([0.25, 30.0, 30.0])
    rng = random.Random(7)
    spread = {round(reconnect_delay_s(3, 30.0, rng.random()), 3) for _ in range(50)}
    assert len(spread) > 40 and min(spread) >= 1.0 and max(spread) < 2.0
