"""Bearer-token auth on every mutating route; the token never travels in URLs, bodies or logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from dccd.logging import configure_logging

from .conftest import TOKEN, Web

# Bodies that pass auth and then fail validation, so the right token starts nothing.
MUTATING = [
    ("POST", "/api/v1/backfills", {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc"}),
    ("DELETE", "/api/v1/runs/0123456789abcdef", None),
    ("POST", "/api/v1/streams", {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "funding"}),
    ("DELETE", "/api/v1/streams/0123456789abcdef", None),
    ("POST", "/api/v1/jobs", {"exchange": "nope", "symbols": ["BTC/USDT"], "type": "trades", "every": "1h"}),
    ("DELETE", "/api/v1/jobs/some-job", None),
    ("POST", "/api/v1/jobs/some-job/run", None),
    ("POST", "/api/v1/scans", {"scanner": "nope"}),
]
READS = ["/", "/health", "/ready", "/metrics", "/schema/openapi.json", "/api/v1/config", "/api/v1/exchanges",
         "/api/v1/runs", "/api/v1/inventory", "/api/v1/streams", "/api/v1/jobs", "/api/v1/scanners",
         "/api/v1/signals"]  # fmt: skip


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every structlog and stdlib log line (hypercorn access log included) as JSON, restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def test_every_mutating_route_needs_the_bearer_token(secured: Web) -> None:
    """No header -> 401 with a Bearer challenge; another scheme -> 401; a wrong token -> 403; the right one passes auth."""
    for method, path, body in MUTATING:
        r = await secured.client.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="dccd"'
        assert r.json() == {"error": "authorization: this route needs the header Authorization: Bearer <token>"}
        r = await secured.client.request(method, path, json=body, headers={"Authorization": f"Basic {TOKEN}"})
        assert r.status_code == 401, (method, path)
        r = await secured.client.request(method, path, json=body, headers={"Authorization": "Bearer not-the-token"})
        assert (r.status_code, r.json()) == (403, {"error": "authorization: the bearer token is not valid"}), path
        r = await secured.client.request(method, path, json=body, headers=secured.auth(TOKEN + "x"))
        assert r.status_code == 403, path  # a longer token with the right prefix is still wrong
        r = await secured.client.request(method, path, json=body, headers=secured.auth())
        assert r.status_code in (400, 404), (method, path, r.text)  # past auth: validation or lookup answers


async def test_reads_stay_open_and_a_token_in_the_url_is_refused(secured: Web) -> None:
    """GET routes need no token; ?token= / ?access_token= are 400 on every route, even with the right value."""
    assert (await secured.client.get("/api/v1/runs")).status_code == 200
    for method, path in [("GET", "/api/v1/runs"), ("GET", "/health"), ("POST", "/api/v1/backfills")]:
        for key in ("token", "access_token", "Token"):
            r = await secured.client.request(method, path, params={key: TOKEN}, headers=secured.auth())
            assert r.status_code == 400, (method, path, key)
            assert r.json()["error"].startswith(f"{key}: never put a token in a URL")
    assert (await secured.client.get("/api/v1/runs", params={"tokens": "x"})).status_code == 200


async def test_the_token_never_appears_in_responses_or_logs(secured: Web, captured_logs: io.StringIO) -> None:
    """The config shows '***'; no response body, header or log line (access log included) contains the token."""
    config = (await secured.client.get("/api/v1/config")).json()
    assert config["server"]["token"] == "***"
    seen: list[str] = []
    for path in READS:
        r = await secured.client.get(path, headers=secured.auth())
        assert r.status_code in (200, 503), path
        seen.append(r.text + repr(dict(r.headers)))
    for method, path, body in MUTATING:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, secured.auth()):
            r = await secured.client.request(method, path, json=body, headers=headers)
            seen.append(r.text + repr(dict(r.headers)))
    r = await secured.client.get("/api/v1/runs", params={"token": TOKEN})
    seen.append(r.text)
    await secured.client.get("/health")  # the access line of the request before is written by now
    assert not [s for s in seen if TOKEN in s]
    logs = captured_logs.getvalue()
    access = [json.loads(line)["event"] for line in logs.splitlines() if '"hypercorn.access"' in line]
    assert any('"GET /api/v1/config 1.1" 200' in e for e in access)  # the access log was captured...
    assert any('"GET /api/v1/runs 1.1" 400' in e for e in access)
    assert TOKEN not in logs  # ...and never shows the token, not even the one sent in a URL
