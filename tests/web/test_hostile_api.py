"""Hostile API input against a real running ``dccd`` server: every request is a 4xx with one line of JSON, the
server and a live stream carry on, and nothing is written outside the data dir.

Requests go out as raw HTTP/1.1 bytes (h11 over a loopback socket), so encoded ``%2e%2e`` and ``%2f``, NUL bytes
and odd headers reach the server exactly as written (httpx would normalise the path and check the headers).
"""

from __future__ import annotations

import json
import socket
from functools import partial
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
from dccd.actors import open_service
from dccd.web import serve_http
from dccd.web.auth import AllowedHosts, check

from .conftest import FAST, make_config, open_web
from .test_hostile_isolation import open_streaming_web, wait_stream_messages

BIG = 100_000
GOOD = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1m", "start": "-1h"}
STREAM = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades"}
JOB = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "every": "1h"}
JSON = "application/json"
D = "/api/v1/data"


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# (method, target, JSON body or raw bytes or None, headers, expected status, expected start of the error text)
# Headers: "host" defaults to this server, "content-type" to application/json when there is a body;
# None removes a default. "{port}" and "{sid}" are filled in per run.
# fmt: off
CASES: list[tuple[str, str, Any, dict[str, str | None], int, str]] = [
    # --- traversal, in every path segment, encoded -------------------------------------------------
    ("GET", f"{D}/%2e%2e/binance/BTC-USDT", None, {}, 400, "type: '..' is not a data type"),
    ("GET", f"{D}/trades/%2e%2e/BTC-USDT", None, {}, 400, "exchange: '..' is not a known exchange"),
    ("GET", f"{D}/trades/binance/%2e%2e", None, {}, 400, "symbol: '..' is not a symbol slug"),
    ("GET", f"{D}/trades/binance/..%2f..%2f..%2fetc%2fpasswd", None, {}, 404, "path: no such resource"),
    ("GET", f"{D}/%2e%2e%2f%2e%2e%2f_dccd/binance/BTC-USDT", None, {}, 404, "path: no such resource"),
    ("GET", f"{D}/ohlc/binance/BTC-USDT?span=..%2f..%2fx", None, {}, 400, "span: '../../x' is not a span"),
    ("GET", f"{D}/trades/binance/BTC-USDT?format=..%2f..%2fcsv", None, {}, 400, "format: '../../csv' is not one of"),
    ("GET", "/api/v1/runs/%2e%2e", None, {}, 404, "run_id: run '..' not found"),
    ("GET", "/api/v1/runs/..%2f..%2f_dccd%2fruns.sqlite", None, {}, 404, "path: no such resource"),
    ("DELETE", "/api/v1/runs/%2e%2e", None, {}, 404, "run_id: run '..' not found"),
    ("DELETE", "/api/v1/streams/%2e%2e", None, {}, 404, "stream_id: running stream '..' not found"),
    ("DELETE", "/api/v1/jobs/..%2f..%2fjobs.json", None, {}, 404, "path: no such resource"),
    ("POST", "/api/v1/jobs/%2e%2e/run", None, {}, 404, "job_id: job '..' not found"),
    ("GET", "/api/v1/%2e%2e/%2e%2e/%2e%2e/etc/passwd", None, {}, 404, "path: no such resource"),
    ("GET", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", None, {}, 404, "path: no such resource"),
    ("GET", "/api/v1/inventory?exchange=..%2f..%2fetc", None, {}, 400, "exchange: '../../etc' is not a known exchange"),
    ("GET", "/api/v1/events?run_id=..%2f..%2fx", None, {}, 400, "run_id: '../../x' is not a run id"),
    ("GET", "/api/v1/live/trades?exchange=binance&symbol=..%2f..%2fx", None, {}, 400, "symbol: '../../x' is not a symbol"),
    ("POST", "/api/v1/backfills", {**GOOD, "exchange": "../../etc"}, {}, 400, "exchange: '../../etc' is not a known exchange"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": ["../../x/y"]}, {}, 400, "symbols[0]: '../../x/y' is not a symbol"),
    ("POST", "/api/v1/jobs", {**JOB, "name": "../../../tmp/evil"}, {}, 400, "name: '../../../tmp/evil' is not a job name"),
    ("POST", "/api/v1/streams", {**STREAM, "symbols": ["..%2f../BTC/USDT"]}, {}, 400, "symbols[0]: '..%2f../BTC/USDT' is not a symbol"),
    # --- NUL bytes ---------------------------------------------------------------------------------
    ("GET", f"{D}/trades/binance/BTC-USDT%00", None, {}, 400, "symbol: 'BTC-USDT\\x00' is not a symbol slug"),
    ("GET", "/api/v1/runs/abc%00def", None, {}, 400, "run_id: 'abc\\x00def' is not a run id"),
    ("GET", f"{D}/trades/binance/BTC-USDT?start=2024-01-01%00", None, {}, 400, "start: '2024-01-01\\x00' is not an ISO-8601"),
    ("POST", "/api/v1/backfills", {**GOOD, "exchange": "binance\x00"}, {}, 400, "exchange: 'binance\\x00' is not a known exchange"),
    ("POST", "/api/v1/jobs", {**JOB, "name": "a\x00b"}, {}, 400, "name: 'a\\x00b' is not a job name"),
    # --- 100 KB strings ----------------------------------------------------------------------------
    ("POST", "/api/v1/backfills", {**GOOD, "exchange": "A" * BIG}, {}, 400, "exchange: 'AAAA"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": ["B" * BIG + "/USDT"]}, {}, 400, "symbols[0]: "),
    ("POST", "/api/v1/backfills", {**GOOD, "start": "-" + "9" * BIG + "d"}, {}, 400, "start: '-9999"),
    ("POST", "/api/v1/jobs", {**JOB, "every": "1" * BIG + "s"}, {}, 400, "every: '1111"),
    ("POST", "/api/v1/streams", {**STREAM, "type": "x" * BIG}, {}, 400, "type: 'xxxx"),
    ("GET", f"{D}/trades/binance/BTC-USDT?start={'9' * 8000}", None, {}, 400, "start: '9999"),
    # --- extreme timestamps ------------------------------------------------------------------------
    ("POST", "/api/v1/backfills", {**GOOD, "start": "0001-01-01"}, {}, 400, "start: '0001-01-01' is before 2009-01-03"),
    ("POST", "/api/v1/backfills", {**GOOD, "start": "-99999999d"}, {}, 400, "start: '-99999999d' is before 2009-01-03"),
    ("POST", "/api/v1/backfills", {**GOOD, "start": "1677-09-21T00:12:43Z"}, {}, 400, "start: '1677-09-21T00:12:43Z' is before"),
    ("POST", "/api/v1/backfills", {**GOOD, "end": "2262-04-12"}, {}, 400, "end: '2262-04-12' is more than 24h in the future"),
    ("POST", "/api/v1/backfills", {**GOOD, "end": "9999-12-31T23:59:59.999999999Z"}, {}, 400, "end: '9999-12-31T23:59:59.999999999Z' is more"),
    ("POST", "/api/v1/jobs", {**JOB, "start": "0001-01-01"}, {}, 400, "start: '0001-01-01' is before 2009-01-03"),
    ("GET", f"{D}/trades/binance/BTC-USDT?end=9999999999999999999", None, {}, 400, "end: '9999999999999999999' is outside the int64"),
    ("GET", f"{D}/trades/binance/BTC-USDT?start=0001-01-01", None, {}, 400, "start: '0001-01-01' is outside the int64"),
    # --- wrong content types -----------------------------------------------------------------------
    ("POST", "/api/v1/backfills", GOOD, {"content-type": "text/plain"}, 415, "content-type: a request body must be application/json (got 'text/plain')"),
    ("POST", "/api/v1/jobs", b"exchange=binance&type=trades", {"content-type": "application/x-www-form-urlencoded"}, 415, "content-type:"),
    ("POST", "/api/v1/streams", STREAM, {"content-type": "multipart/form-data; boundary=x"}, 415, "content-type:"),
    ("POST", "/api/v1/backfills", GOOD, {"content-type": None}, 415, "content-type: a request body must be application/json (got none)"),
    ("POST", "/api/v1/jobs/some-job/run", b"", {"content-type": "text/plain"}, 415, "content-type:"),
    # --- nested bodies -----------------------------------------------------------------------------
    ("POST", "/api/v1/backfills", b"[" * BIG + b"]" * BIG, {}, 400, "body: JSON is nested too deeply"),
    ("POST", "/api/v1/jobs", nested(20_000), {}, 400, "body: JSON is nested too deeply"),
    ("POST", "/api/v1/streams", b'{"exchange":' + b"[" * 5000 + b"]" * 5000 + b"}", {}, 400, "body: JSON is nested too deeply"),
    ("POST", "/api/v1/backfills", b'{"exchange": "binance", "symbols": [', {}, 400, "body: JSON is malformed"),
    # --- bad Host (DNS rebinding) ------------------------------------------------------------------
    ("GET", "/api/v1/runs", None, {"host": "evil.example"}, 421, "host: 'evil.example' is not a name of this server"),
    ("POST", "/api/v1/backfills", GOOD, {"host": "evil.example:{port}"}, 421, "host: 'evil.example:{port}'"),
    ("GET", "/health", None, {"host": "127.0.0.1:1"}, 421, "host: '127.0.0.1:1'"),
    ("GET", f"{D}/trades/binance/BTC-USDT", None, {"host": "localhost.evil.example:{port}"}, 421, "host:"),
    ("GET", "/api/v1/runs", None, {"host": None}, 400, "host: the Host header is required"),
    # --- foreign Origin ----------------------------------------------------------------------------
    ("POST", "/api/v1/backfills", GOOD, {"origin": "http://evil.example"}, 403, "origin: 'http://evil.example' is another site"),
    ("POST", "/api/v1/jobs", JOB, {"origin": "null"}, 403, "origin: 'null' is another site"),
    ("DELETE", "/api/v1/streams/{sid}", None, {"origin": "http://localhost:3000"}, 403, "origin: 'http://localhost:3000'"),
    ("POST", "/api/v1/jobs/some-job/run", None, {"origin": "http://127.0.0.1.evil.example:{port}"}, 403, "origin:"),
]
# fmt: on


async def raw_request(
    port: int, method: str, target: str, body: bytes | None, headers: list[tuple[str, str]]
) -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh loopback connection, bytes as given (HTTP/1.0 when there is no Host header);
    returns (status, headers, body). h11 parses the answer; the request bytes are written here."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target=target, headers=[("host", "x")]))  # h11's state: request sent
    conn.send(h11.EndOfMessage())
    version = "1.1" if any(k == "host" for k, _ in headers) else "1.0"
    if body is not None:
        headers = [*headers, ("content-length", str(len(body)))]
    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    with trio.fail_after(15):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all((head + "connection: close\r\n\r\n").encode("latin-1") + (body or b""))
            status, resp_headers, chunks = 0, {}, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    resp_headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, resp_headers, b"".join(chunks)


def listing(root: Path, skip: Path) -> set[str]:
    """Every path under ``root`` except those inside ``skip`` (the data dir)."""
    return {str(p) for p in root.rglob("*") if skip != p and skip not in p.parents}


def test_the_table_is_large() -> None:
    """At least 50 hostile inputs, covering every kind the issue names."""
    assert len(CASES) >= 50


@pytest.mark.timeout(170)
async def test_hostile_inputs_are_refused_and_the_server_carries_on(tmp_path: Path) -> None:
    """Each of CASES answers its 4xx with one short line of JSON naming the problem; afterwards /health is 200,
    the stream still receives, no run/job/stream was created or stopped, and nothing appeared outside the lake."""
    lake = tmp_path / "lake"
    async with open_streaming_web(lake) as (web, _):
        port = int(web.url.rsplit(":", 1)[1])
        [stream] = (await web.client.get("/api/v1/streams")).json()
        before = listing(tmp_path.parent, lake)
        problems = []
        for method, target, payload, extra, status, expected in CASES:
            fill = {"{port}": str(port), "{sid}": stream["id"]}
            for key, value in fill.items():
                target, expected = target.replace(key, value), expected.replace(key, value)
            body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
            headers: dict[str, str | None] = {"host": f"127.0.0.1:{port}"}
            if body is not None:
                headers["content-type"] = "application/json"
            for key, value in extra.items():
                headers[key] = value if value is None else value.replace("{port}", str(port))
            sent = [(k, v) for k, v in headers.items() if v is not None]
            got, resp_headers, raw = await raw_request(port, method, target, body, sent)
            try:
                error = json.loads(raw)["error"] if resp_headers.get("content-type") == JSON else None
            except (ValueError, KeyError, TypeError):
                error = None
            ok = (
                got == status
                and isinstance(error, str)
                and json.loads(raw) == {"error": error}
                and "\n" not in error
                and len(error) <= 400
                and error.startswith(expected)
            )
            if not ok:
                problems.append((method, target[:80], got, raw[:300]))
        assert problems == [], "\n".join(map(repr, problems))

        r = await web.client.get("/health")
        assert r.status_code == 200
        info = await wait_stream_messages(web.client, stream["id"], stream["messages"] + 20)  # connected, receiving
        assert (info["error"], info["reconnects"]) == (None, 0)
        assert [s["id"] for s in (await web.client.get("/api/v1/streams")).json()] == [stream["id"]]
        assert (await web.client.get("/api/v1/jobs")).json() == []
        assert [r["run_id"] for r in (await web.client.get("/api/v1/runs")).json()] == [stream["run_id"]]
        assert listing(tmp_path.parent, lake) == before
        assert not (lake / "ohlc").exists()


def scope(method: str = "GET", server: tuple[str, int] | None = ("127.0.0.1", 8080), **headers: str) -> dict[str, Any]:
    """An ASGI HTTP scope (headers given as keyword arguments, ``_`` for ``-``)."""
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": method, "scheme": "http", "server": server, "headers": raw, "query_string": b""}


def status(s: dict[str, Any], token: bytes | None = None, hosts: AllowedHosts | None = None) -> int | None:
    refused = check(s, token, hosts)
    return None if refused is None else refused[0]


def test_default_hosts_are_loopback_and_the_bind_address_on_the_server_port() -> None:
    """By default localhost, 127.0.0.1, [::1], the bind host and the local address pass, on the port the request
    came in on (80 when the Host has none); other names, other ports and a missing port on 8080 are 421."""
    hosts = AllowedHosts(None, "dccd.lan")
    for host in ("localhost:8080", "LOCALHOST:8080", "127.0.0.1:8080", "[::1]:8080", "dccd.lan:8080"):
        assert status(scope(host=host), hosts=hosts) is None, host
    assert status(scope(server=("10.0.0.5", 8080), host="10.0.0.5:8080"), hosts=hosts) is None  # 0.0.0.0 binds
    for host in ("evil.example:8080", "localhost:8081", "localhost", "127.0.0.1.nip.io:8080", "[::2]:8080", "a b"):
        assert status(scope(host=host), hosts=hosts) == 421, host
    assert status(scope(server=("127.0.0.1", 80), host="localhost"), hosts=hosts) is None


def test_configured_hosts_replace_the_default() -> None:
    """server.allowed_hosts: a bare name matches any port, name:port only that port, '*' everything."""
    hosts = AllowedHosts(["dccd.example", "box:9000"], "127.0.0.1")
    assert status(scope(host="dccd.example"), hosts=hosts) is None
    assert status(scope(host="DCCD.example:443"), hosts=hosts) is None
    assert status(scope(host="box:9000"), hosts=hosts) is None
    assert status(scope(host="box:8080"), hosts=hosts) == 421
    assert status(scope(host="127.0.0.1:8080"), hosts=hosts) == 421  # the default set no longer applies
    assert status(scope(host="anything.example:1"), hosts=AllowedHosts(["*"])) is None


def test_mutating_requests_need_a_json_body_and_a_same_site_origin() -> None:
    """POSTs: same-site Origin and application/json (any parameters, any case) pass; a body of another type, or a
    Content-Type without a body, is 415; a foreign or null Origin 403; GETs are not checked for either."""
    ok = {"host": "127.0.0.1:8080", "content_length": "2"}
    assert status(scope("POST", **ok, content_type="application/json")) is None
    assert status(scope("POST", **ok, content_type="Application/JSON; charset=utf-8")) is None
    assert status(scope("POST", **ok, content_type="application/json", origin="http://localhost:8080")) is None
    assert status(scope("POST", host="127.0.0.1:8080", content_length="0")) is None  # POST .../run: no body
    assert status(scope("DELETE", host="127.0.0.1:8080")) is None
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json-seq", "application/jsonx"):
        assert status(scope("POST", **ok, content_type=ctype)) == 415, ctype
    assert status(scope("POST", **ok)) == 415  # a body without a Content-Type
    assert status(scope("POST", host="127.0.0.1:8080", transfer_encoding="chunked")) == 415
    assert status(scope("POST", host="127.0.0.1:8080", content_type="text/plain")) == 415
    for origin in ("http://evil.example", "null", "http://localhost:3000", "file://", "http://127.0.0.1:8080.evil"):
        assert status(scope("POST", **ok, content_type="application/json", origin=origin)) == 403, origin
    assert status(scope("GET", host="127.0.0.1:8080", origin="http://evil.example", content_type="text/plain")) is None


def test_checks_run_in_order_and_the_token_comes_after_the_origin() -> None:
    """Host before everything (421), then the URL-token rule, Origin (403) before the bearer token (401),
    the body type (415) last."""
    bad_host = scope("POST", host="evil.example:8080", origin="http://evil.example")
    assert status(bad_host, b"secret-token") == 421
    foreign = scope("POST", host="127.0.0.1:8080", origin="http://evil.example", content_type="text/plain")
    assert status(foreign, b"secret-token") == 403
    plain = scope("POST", host="127.0.0.1:8080", content_type="text/plain")
    assert status(plain, b"secret-token") == 401
    assert (
        status(
            scope("POST", host="127.0.0.1:8080", content_type="text/plain", authorization="Bearer secret-token"),
            b"secret-token",
        )
        == 415
    )


async def test_a_configured_allowed_host_is_served(tmp_path: Path) -> None:
    """server.allowed_hosts from the config reaches the running server: its name is served, 127.0.0.1 is not."""
    config = make_config(tmp_path / "lake", extra="server: {allowed_hosts: [dccd.test]}\n")
    async with open_web(config) as web:
        r = await web.client.get("/health", headers={"Host": "dccd.test"})
        assert r.status_code == 200, r.text
        r = await web.client.get("/health")
        assert r.status_code == 421
        assert r.json() == {
            "error": f"host: '{web.url.removeprefix('http://')}' is not a name of this server "
            "(server.allowed_hosts: dccd.test)"
        }


async def test_the_bind_host_given_to_serve_is_an_allowed_name(tmp_path: Path) -> None:
    """`dccd serve --host NAME` (serve_http's host) makes NAME a served Host, though the config says 127.0.0.1."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    config = make_config(tmp_path / "lake")
    async with open_service(config) as svc, trio.open_nursery() as nursery:
        urls = await nursery.start(partial(serve_http, svc, config, host=name, port=0, options=FAST))
        port = int(urls[0].rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=f"http://{address}:{port}", timeout=10) as client:
            assert (await client.get("/health", headers={"Host": f"{name}:{port}"})).status_code == 200
            assert (await client.get("/health", headers={"Host": f"other-{name}:{port}"})).status_code == 421
        nursery.cancel_scope.cancel()
