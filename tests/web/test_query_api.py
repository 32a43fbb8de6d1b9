"""``POST /api/v1/query`` on a real server: read-only SQL over the lake views, refused or cut off when hostile."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import trio

from dccd.client import ApiError, Client
from dccd.domain import DatasetId, DataType, Span
from dccd.storage import Lake
from tests.storage.helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars
from tests.storage.helpers import trades as trade_records

from .conftest import TOKEN, Web, make_config, open_web

OKX_1M = DatasetId("okx", OHLC_1M.symbol, DataType.OHLC, Span.parse("1m"))
OUTSIDE = "secret-outside-the-lake"


def _fill(root: Path) -> None:
    """Two overlapping binance bar parts (the newer closes at 1.9), okx bars, trades repeated across parts."""
    lake = Lake(root)
    lake.write(OHLC_1M, bars(T0, 60), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + 30 * 60 * 10**9, 60, close=1.9), PROV, now_ns=NOW + 1)
    lake.write(OKX_1M, bars(T0, 10), PROV, now_ns=NOW)
    lake.write(TRADES, trade_records(0, 40), PROV, now_ns=NOW)
    lake.write(TRADES, trade_records(20, 40), PROV, now_ns=NOW)


@pytest.fixture
async def qweb(tmp_path: Path) -> AsyncIterator[Web]:
    """A server over a filled lake; a Parquet file and a text file wait outside the lake."""
    _fill(tmp_path / "lake")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "outside.parquet")
    (tmp_path / "outside.csv").write_text(f"x\n{OUTSIDE}\n")
    async with open_web(make_config(tmp_path / "lake")) as w:
        yield w


@pytest.fixture
async def qsecured(tmp_path: Path) -> AsyncIterator[Web]:
    _fill(tmp_path / "lake")
    async with open_web(make_config(tmp_path / "lake", token=TOKEN)) as w:
        yield w


async def _query(web: Web, sql: str, **body: object) -> tuple[int, dict[str, str], bytes]:
    r = await web.client.post("/api/v1/query", json={"sql": sql, **body})
    return r.status_code, dict(r.headers), r.content


async def test_a_query_reads_deduplicated_views_with_partition_columns(qweb: Web) -> None:
    """Bars stored twice count once (newest close wins), trades repeated across parts once; hive columns are there."""
    status, headers, body = await _query(
        qweb,
        "SELECT exchange, symbol, span, month, count(*) AS n, count(DISTINCT ts) AS distinct_ts, max(close) AS top "
        "FROM ohlc GROUP BY ALL ORDER BY exchange",
    )
    assert status == 200, body
    assert json.loads(body) == [
        {"exchange": "binance", "symbol": "BTC-USDT", "span": "1m", "month": "2024-01", "n": 90, "distinct_ts": 90,
         "top": 1.9},
        {"exchange": "okx", "symbol": "BTC-USDT", "span": "1m", "month": "2024-01", "n": 10, "distinct_ts": 10,
         "top": 1.5},
    ]  # fmt: skip
    assert headers["x-dccd-truncated"] == "false" and headers["x-dccd-rows"] == "2"
    status, _, body = await _query(qweb, "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(date) AS d FROM trades")
    assert json.loads(body) == [{"n": 60, "ids": 60, "d": "2024-01-01"}]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "arrow"])
async def test_results_come_in_every_read_format(qweb: Web, fmt: str) -> None:
    """The same rows in jsonl, csv, parquet and Arrow IPC (the formats of /api/v1/data), with their media types."""
    sql = "SELECT ts, close FROM ohlc WHERE exchange = 'okx' ORDER BY ts LIMIT 3"
    status, headers, body = await _query(qweb, sql, format=fmt)
    assert status == 200, body
    want = [{"ts": T0 + i * 60 * 10**9, "close": 1.5} for i in range(3)]
    if fmt == "jsonl":
        assert headers["content-type"].startswith("application/x-ndjson")
        assert [json.loads(line) for line in body.decode().splitlines()] == want
    else:
        if fmt == "csv":
            table = pacsv.read_csv(io.BytesIO(body))
        elif fmt == "parquet":
            table = pq.read_table(io.BytesIO(body))
        else:
            table = pa.ipc.open_stream(body).read_all()
        assert table.to_pylist() == want


async def test_the_row_limit_truncates_and_says_so(qweb: Web) -> None:
    """max_rows keeps that many rows and marks the answer truncated; a result that fits is not marked."""
    status, headers, body = await _query(qweb, "SELECT * FROM trades ORDER BY id::INT", max_rows=7, format="jsonl")
    assert status == 200
    assert [json.loads(x)["id"] for x in body.decode().splitlines()] == [str(i) for i in range(7)]
    assert headers["x-dccd-truncated"] == "true" and headers["x-dccd-rows"] == "7"
    assert headers["x-dccd-max-rows"] == "7"
    status, headers, _ = await _query(qweb, "SELECT * FROM trades", max_rows=60)
    assert headers["x-dccd-truncated"] == "false" and headers["x-dccd-rows"] == "60"


HOSTILE = [
    ("SELECT * FROM read_csv('{outside}/outside.csv')", 403, "Cannot access file"),
    ("SELECT * FROM read_csv('/etc/passwd')", 403, 'Cannot access file "/etc/passwd"'),
    ("SELECT * FROM read_text('/etc/hostname')", 403, "Cannot access file"),
    ("SELECT * FROM read_parquet('{outside}/outside.parquet')", 403, "Cannot access file"),
    ("SELECT * FROM read_parquet('{outside}/lake/**/*.parquet')", 403, "Cannot access file"),  # unpinned lake files
    ("SELECT * FROM glob('/*')", 403, 'Cannot access file "/*"'),
    ("SELECT * FROM '{outside}/outside.csv'", 403, "Cannot access file"),
    ("COPY (SELECT 1) TO '{outside}/lake/x.csv'", 400, "COPY statements are not allowed"),
    ("COPY ohlc TO '/tmp/x.parquet'", 400, "COPY statements are not allowed"),
    ("EXPORT DATABASE '{outside}/dump'", 400, "EXPORT statements are not allowed"),
    ("ATTACH '{outside}/x.duckdb' AS x", 400, "ATTACH statements are not allowed"),
    ("INSTALL httpfs", 400, "LOAD statements are not allowed"),
    ("LOAD httpfs", 400, "LOAD statements are not allowed"),
    ("SET enable_external_access = true", 400, "SET statements are not allowed"),
    ("RESET threads", 400, "SET statements are not allowed"),
    ("PRAGMA enable_profiling", 400, "PRAGMA statements are not allowed"),
    ("CREATE TABLE t AS SELECT 1", 400, "CREATE statements are not allowed"),
    ("CREATE MACRO m() AS 1", 400, "CREATE statements are not allowed"),
    ("INSERT INTO ohlc VALUES (1)", 400, "INSERT statements are not allowed"),
    ("DELETE FROM trades", 400, "DELETE statements are not allowed"),
    ("UPDATE trades SET price = 0", 400, "UPDATE statements are not allowed"),
    ("DROP VIEW trades", 400, "DROP statements are not allowed"),
    ("CALL pragma_version()", 400, "CALL statements are not allowed"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", 400, "COPY statements are not allowed"),
    ("SELECT 1; COPY (SELECT 1) TO 'x.csv'", 400, "2 statements"),
    ("SELECT 1; SELECT 2", 400, "2 statements"),
    ("SELECT * FROM query('COPY (SELECT 1) TO ''x.csv''')", 400, "Expected a single SELECT statement"),
    ("SELEC 1", 400, "syntax error"),
    ("SELECT * FROM nowhere", 400, "nowhere does not exist"),
    ("", 400, "sql: required"),
]


async def test_hostile_sql_is_refused_with_one_line_and_the_server_keeps_serving(qweb: Web, tmp_path: Path) -> None:
    """Each hostile statement answers its 4xx with one line naming why; a normal query works after each."""
    for template, status, fragment in HOSTILE:
        sql = template.format(outside=tmp_path)
        got, _, body = await _query(qweb, sql)
        error = json.loads(body)["error"]
        assert (got, fragment in error) == (status, True), (sql, got, error)
        assert error.startswith("sql: ") and "\n" not in error and OUTSIDE not in error
        ok, _, rows = await _query(qweb, "SELECT count(*) AS n FROM ohlc")
        assert (ok, json.loads(rows)) == (200, [{"n": 100}]), sql
    assert not (tmp_path / "lake" / "x.csv").exists() and not (tmp_path / "dump").exists()


async def test_a_query_that_runs_forever_is_cut_off_while_the_server_serves(qweb: Web) -> None:
    """A huge cross join is interrupted at its time limit (422); requests during it are answered at once."""
    sql = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"
    served: list[float] = []

    async def probe() -> None:
        await trio.sleep(0.2)
        for _ in range(3):
            t0 = trio.current_time()
            r = await qweb.client.get("/health")
            assert r.status_code == 200
            served.append(trio.current_time() - t0)
            await trio.sleep(0.1)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            t0 = trio.current_time()
            status, _, body = await _query(qweb, sql, timeout_s=1.5)
            took = trio.current_time() - t0
    assert status == 422 and json.loads(body) == {"error": "sql: the query ran past its time limit of 1.5s"}
    assert 1.4 <= took < 10
    assert len(served) == 3 and max(served) < 1.0
    status, _, body = await _query(qweb, "SELECT 42 AS answer")
    assert (status, json.loads(body)) == (200, [{"answer": 42}])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"sql": "SELECT 1", "format": "xml"}, "format: 'xml' is not one of"),
        ({"sql": "SELECT 1", "max_rows": 0}, "max_rows: 0 is not between 1"),
        ({"sql": "SELECT 1", "timeout_s": -1}, "timeout_s: -1 is not above 0"),
        ({"sql": "SELECT 1", "limit": 3}, "limit: unknown field"),
        ({"format": "json"}, "sql: required field is missing"),
    ],
)
async def test_bad_request_bodies_name_the_field(qweb: Web, body: dict[str, object], error: str) -> None:
    """A bad format, limit or field answers 400 naming it."""
    r = await qweb.client.post("/api/v1/query", json=body)
    assert r.status_code == 400 and r.json()["error"].startswith(error), r.text


async def test_a_configured_token_is_required(qsecured: Web) -> None:
    """With a server token, a query without it is 401, with a wrong one 403, with it 200."""
    r = await qsecured.client.post("/api/v1/query", json={"sql": "SELECT 1 AS one"})
    assert r.status_code == 401
    r = await qsecured.client.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=qsecured.auth("wrong"))
    assert r.status_code == 403
    r = await qsecured.client.post("/api/v1/query", json={"sql": "SELECT 1 AS one"}, headers=qsecured.auth())
    assert (r.status_code, r.json()) == (200, [{"one": 1}])


async def test_query_metrics_count_outcomes_rows_and_truncation(qweb: Web) -> None:
    """dccd_query_* count answers by outcome, rows returned and truncated results, and time them."""
    await _query(qweb, "SELECT * FROM trades", max_rows=5)
    await _query(qweb, "COPY (SELECT 1) TO 'x.csv'")
    await _query(qweb, "SELECT * FROM read_csv('/etc/passwd')")
    text = (await qweb.client.get("/metrics")).text
    assert 'dccd_query_requests_total{outcome="ok"} 1.0' in text
    assert 'dccd_query_requests_total{outcome="refused"} 1.0' in text
    assert 'dccd_query_requests_total{outcome="denied"} 1.0' in text
    assert "dccd_query_rows_total 5.0" in text and "dccd_query_truncated_total 1.0" in text
    assert 'dccd_query_duration_seconds_count{outcome="ok"} 1.0' in text


async def test_the_client_runs_sql_and_reports_truncation(qweb: Web) -> None:
    """Client.sql returns an Arrow table marked truncated or not, and raises ApiError with the server's line."""
    async with Client(qweb.url) as client:
        table = await client.sql("SELECT id FROM trades ORDER BY id::INT", max_rows=3)
        assert table.column("id").to_pylist() == ["0", "1", "2"]
        assert table.schema.metadata[b"dccd.truncated"] == b"true"
        whole = await client.sql("SELECT count(*) AS n FROM trades")
        assert whole.to_pylist() == [{"n": 60}] and whole.schema.metadata[b"dccd.truncated"] == b"false"
        with pytest.raises(ApiError) as err:
            await client.sql("ATTACH 'x.db'")
    assert err.value.status == 400 and "ATTACH statements are not allowed" in str(err.value)


async def test_as_of_names_a_snapshot_or_is_refused(qweb: Web) -> None:
    """An as_of naming no snapshot answers 404 (400 in a build without the lake catalog), one line under as_of."""
    from dccd.storage.views import snapshots_module

    r = await qweb.client.post("/api/v1/query", json={"sql": "SELECT count(*) FROM ohlc", "as_of": "nope"})
    error = r.json()["error"]
    if snapshots_module() is None:
        assert (r.status_code, error) == (400, "as_of: this dccd has no lake catalog (snapshots)")
    else:
        assert r.status_code == 404 and error.startswith("as_of: no snapshot 'nope'"), error
    r = await qweb.client.post("/api/v1/query", json={"sql": "SELECT 1", "as_of": "x" * 81})
    assert r.status_code == 400 and r.json()["error"].startswith("as_of: a snapshot id")


async def test_queries_past_the_concurrency_limit_wait_then_get_429(qweb: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every slot taken for longer than its time limit, a query answers 429; the running one goes on."""
    from dccd.web import api_query

    monkeypatch.setattr(api_query, "CONCURRENT_QUERIES", 1)
    results: dict[str, tuple[int, dict[str, str], bytes]] = {}

    async def long() -> None:
        results["long"] = await _query(
            qweb, "SELECT count(*) FROM range(1000000000) a, range(1000000000) b", timeout_s=3
        )

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(long)
            await trio.sleep(0.5)
            status, _, body = await _query(qweb, "SELECT 1", timeout_s=0.5)
    assert (
        status == 429
        and json.loads(body)["error"] == "sql: all 1 query slots stayed busy for the whole 0.5s time limit"
    )
    assert results["long"][0] == 422
    assert 'dccd_query_requests_total{outcome="busy"} 1.0' in (await qweb.client.get("/metrics")).text
