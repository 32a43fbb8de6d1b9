"""/metrics as Prometheus reads it, and /ready naming streams that are not receiving.

A real service and server on 127.0.0.1 stream Kraken trades from the fake
exchange (REST and WebSocket). The whole exposition is parsed strictly: every
metric name declared once (HELP and TYPE), every sample under the family declared
before it, unique family names; ``promtool check metrics`` runs too when installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from dccd.actors.streams import StreamInfo, StreamOptions
from dccd.web import api_ops
from dccd.web.api_ops import stream_problems
from dccd.web.metrics import DuplicateMetric, render_registries
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from dccd.config import Config, ExchangeSettings, Storage
from dccd.domain.backoff import RestartPolicy
from tests.e2e.helpers import request
from tests.fake import kraken as fkr
from tests.fake import tape
from tests.fake.exchange import WsFaults, open_rest, open_ws

from .conftest import Web, open_web

NOW_S = tape.TAPE_EPOCH_MS / 1000 + 86_400  # the REST fake's clock: a day of tape has traded, refills are served
STREAM = {"exchange": "kraken", "symbols": ["BTC/USD"], "type": "trades"}
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created")}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def strict_families(text: str) -> dict[str, Metric]:
    """Parse an exposition, failing on what Prometheus rejects or a lenient parser would merge silently."""
    helps: Tally[str] = Tally()
    types: dict[str, list[str]] = {}
    declared: tuple[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps[line.split(" ", 3)[2]] += 1
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types.setdefault(name, []).append(kind)
            declared = (name, kind)
        elif line and not line.startswith("#"):
            match = _NAME.match(line)
            assert match and declared, f"sample before any TYPE: {line}"
            base = declared[0].removesuffix("_total") if declared[1] == "counter" else declared[0]
            allowed = {base + s for s in SUFFIXES.get(declared[1], ("",))}
            assert match.group() in allowed, f"sample {match.group()} under family {declared}"
    assert [n for n, c in helps.items() if c > 1] == []
    assert [n for n, k in types.items() if len(k) > 1] == []
    assert set(helps) == set(types)
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert [n for n, c in Tally(names).items() if c > 1] == []
    return {f.name: f for f in families}


def value(families: dict[str, Metric], family: str, sample: str | None = None, **labels: str) -> float | None:
    """The value of the sample of ``family`` with exactly these labels (None if absent)."""
    found = [s.value for s in families[family].samples if s.name == (sample or family) and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


def promtool_check(text: str) -> None:
    """``promtool check metrics`` on ``text`` when promtool is installed (Debian package ``prometheus``)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()


@asynccontextmanager
async def kraken_web(tmp_path: Path, faults: WsFaults) -> AsyncIterator[tuple[Web, Any]]:
    """A service + server with Kraken at the fakes (REST, and WS with ``faults``); yields (web, fake ws)."""
    options = {"backoff": RestartPolicy(initial_s=0.05, jitter=0.0), "options": StreamOptions(settle_s=0.2)}
    fake_ws = fkr.FakeKrakenWs(rate_per_s=200, faults=faults)
    async with open_rest(fkr.FakeKraken(clock=lambda: NOW_S)) as rest, open_ws(fake_ws) as ws:
        settings = ExchangeSettings(rest_url=rest.url, ws_url=ws.url, rate_limit=0.0)
        config = Config(storage=Storage(path=str(tmp_path / "lake")), exchanges={"kraken": settings})
        async with open_web(config, stream_options=options) as web:
            yield web, fake_ws


async def wait_for(check: Callable[[], Any], timeout_s: float = 15.0) -> None:
    with trio.fail_after(timeout_s):
        while not check():
            await trio.sleep(0.05)


async def test_exposition_with_a_stream_is_strict_and_exposes_the_stream(tmp_path: Path) -> None:
    """A stream through one drop: strict parse, promtool, per-stream series equal to the stream's snapshot."""
    async with kraken_web(tmp_path, WsFaults(drop_after=100, fault_connections=1)) as (web, _):
        r = await web.client.post("/api/v1/streams", json=STREAM)
        assert r.status_code == 201, r.text
        sid = r.json()["stream_id"]
        stream = web.svc.streams.get(sid)
        await wait_for(lambda: stream.reconnects >= 1 and stream.rows_written >= 150)
        await web.client.get("/api/v1/runs/nope")  # an inbound 404 next to the outbound exchange requests
        r = await web.client.get("/metrics")
        text = r.text
        live = strict_families(text)
        promtool_check(text)
        labels = {"stream": sid, "exchange": "kraken", "type": "trades", "symbols": "BTC/USD"}
        assert value(live, "dccd_stream_connected", **labels) == 1
        assert value(live, "dccd_stream_connections_up", **labels) == 1
        assert 0 <= (value(live, "dccd_stream_seconds_since_data", **labels) or -1) < 5
        assert (await web.client.get("/ready")).json() == {"ready": True, "reasons": []}
        # Both request families, apart: inbound API (route template), outbound exchange (endpoint).
        assert value(live, "dccd_http_requests", "dccd_http_requests_total", method="GET",
                     route="/api/v1/runs/{run_id}", status="404") == 1  # fmt: skip
        outbound = [s for s in live["dccd_exchange_requests"].samples if s.labels.get("exchange") == "kraken"]
        assert outbound and all(s.labels["status"] == "200" for s in outbound)

        assert await web.svc.stop_stream(sid)
        (info,) = web.svc.list_streams()
        text = (await web.client.get("/metrics")).text
    ended = strict_families(text)
    promtool_check(text)
    expected = {
        "dccd_stream_connected": 0,  # an ended stream never lingers as connected
        "dccd_stream_connections_up": 0,
        "dccd_stream_connections": info.connections,
        "dccd_stream_messages": info.messages,
        "dccd_stream_rows": info.rows,
        "dccd_stream_reconnects": info.reconnects,
        "dccd_stream_reconnect_attempts": info.reconnect_attempts,
        "dccd_stream_reconnect_failures": info.reconnect_failures,
        "dccd_stream_watchdog_trips": info.watchdog_trips,
        "dccd_stream_gaps_open": info.gaps_open,
    }
    got = {}
    for family in expected:
        sample = family + "_total" if ended[family].type == "counter" else family
        got[family] = value(ended, family, sample, **labels)
    assert got == expected
    assert info.messages > 100 and info.rows >= 150 and info.reconnects == 1 and info.reconnect_attempts >= 1
    refills = {r: value(ended, "dccd_stream_refills", "dccd_stream_refills_total", **labels, result=r)
               for r in ("done", "failed")}  # fmt: skip
    assert refills == {"done": info.refills_done, "failed": info.refills_failed}
    assert value(ended, "dccd_stream_seconds_since_data", **labels) is None  # no silence alert for a stopped stream


async def test_ready_names_a_stream_whose_connections_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every handshake refused: past the down grace /ready is 503 naming the stream; /metrics shows the failures."""
    monkeypatch.setattr(api_ops, "DOWN_GRACE_S", 0.5)
    async with kraken_web(tmp_path, WsFaults(refuse_connections=10**6)) as (web, fake_ws):
        sid = (await web.client.post("/api/v1/streams", json=STREAM)).json()["stream_id"]
        await wait_for(lambda: fake_ws.refused >= 3)
        with trio.fail_after(15):
            while (r := await web.client.get("/ready")).status_code == 200:
                await trio.sleep(0.1)
        assert r.status_code == 503
        [reason] = r.json()["reasons"]
        assert re.fullmatch(rf"stream {sid} \(kraken BTC/USD trades\): no connection up, no data \d+s ago", reason)
        assert (await web.client.get("/health")).json() == {"status": "ok"}  # liveness is not readiness
        text = (await web.client.get("/metrics")).text
        families = strict_families(text)
        promtool_check(text)
        labels = {"stream": sid, "exchange": "kraken", "type": "trades", "symbols": "BTC/USD"}
        assert value(families, "dccd_stream_connected", **labels) == 0
        assert (value(families, "dccd_stream_seconds_since_data", **labels) or 0) > 0.5
        failures = value(families, "dccd_stream_reconnect_failures", "dccd_stream_reconnect_failures_total", **labels)
        assert (failures or 0) >= 2
        assert value(families, "dccd_stream_messages", "dccd_stream_messages_total", **labels) == 0
        assert await web.svc.stop_stream(sid)
        assert (await web.client.get("/ready")).json() == {"ready": True, "reasons": []}  # stopped: not a problem


def info(**fields: Any) -> StreamInfo:
    """A running single-connection trade stream started at t=0 s, overridden by ``fields``."""
    base: dict[str, Any] = {
        "id": "s1", "exchange": "binance", "symbols": ("BTC/USDT", "ETH/USDT"), "type": "trades", "span": None,
        "state": "connected", "messages": 10, "rows": 10, "reconnects": 0, "gaps_filled": 0, "gaps_open": 0,
        "run_id": "s1", "started_ns": 0, "connections": 1, "connections_up": 1,
    }  # fmt: skip
    return StreamInfo(**(base | fields))


S = 1_000_000_000


def test_stream_problems_down_silent_and_ended() -> None:
    """Down past the grace, silent past the threshold (a bar's span more for candles), failed: named; else fine."""
    name = "stream s1 (binance BTC/USDT,ETH/USDT trades)"
    down = {"state": "reconnecting", "connections_up": 0}
    assert stream_problems([info(last_data_ns=100 * S)], 159 * S) == []
    assert stream_problems([info(last_data_ns=100 * S)], 161 * S) == [
        f"{name}: silent, 1/1 connections up, last data 61s ago"
    ]
    assert stream_problems([info(**down, last_data_ns=100 * S)], 129 * S) == []
    assert stream_problems([info(**down, last_data_ns=100 * S)], 131 * S) == [
        f"{name}: no connection up, last data 31s ago"
    ]
    assert stream_problems([info(**down)], 45 * S) == [f"{name}: no connection up, no data 45s ago"]
    assert stream_problems([info(state="reconnecting", connections=2, last_data_ns=100 * S)], 150 * S) == []
    candles = {"type": "ohlc", "span": "1h", "last_data_ns": 0}
    assert stream_problems([info(**candles)], 3600 * S + 59 * S) == []
    assert len(stream_problems([info(**candles)], 3600 * S + 61 * S)) == 1
    assert stream_problems([info(state="stopped", connections_up=0, last_data_ns=0)], 10**6 * S) == []
    assert stream_problems([info(state="failed", connections_up=0, error="ExchangeRejected: no")], 1) == [
        f"{name}: failed: ExchangeRejected: no"
    ]


def test_render_refuses_a_name_declared_twice() -> None:
    """Two registries each happy alone but declaring one name: the joined render raises naming it."""
    api, exchange = CollectorRegistry(), CollectorRegistry()
    Counter("dccd_http_requests", "inbound", ["route"], registry=api).labels("/x").inc()
    Counter("dccd_http_requests", "outbound", ["endpoint"], registry=exchange).labels("klines").inc()
    Gauge("dccd_other", "fine", registry=exchange).set(1)
    with pytest.raises(DuplicateMetric, match=r"declared twice in /metrics: dccd_http_requests_created, "
                                              r"dccd_http_requests_total$"):  # fmt: skip
        render_registries((api, exchange))
    assert b"dccd_other 1.0" in render_registries((exchange,))


async def test_metrics_answers_500_naming_a_clash_across_registries(tmp_path: Path) -> None:
    """A collector on the app's registry reusing an outbound exchange family name: /metrics 500 names it."""
    async with kraken_web(tmp_path, WsFaults()) as (web, _):
        sid = (await web.client.post("/api/v1/streams", json=STREAM)).json()["stream_id"]  # REST: symbol listing
        strict_families((await web.client.get("/metrics")).text)
        Counter("dccd_exchange_requests", "a clash", registry=web.ctx.metrics.registry).inc()
        r = await web.client.get("/metrics")
        assert (r.status_code, r.text) == (
            500,
            "metric names declared twice in /metrics: dccd_exchange_requests_created, dccd_exchange_requests_total\n",
        )
        assert await web.svc.stop_stream(sid)


async def test_a_failed_run_is_logged_at_error_a_good_one_at_info(web: Web) -> None:
    """backfill.finished: error for a failed run (operators alert on error lines), info for a succeeded one."""
    with capture_logs() as logs:
        nope, btc = await web.svc.backfill(
            request(["NOPE/USDT", "BTC/USDT"], start="2024-01-01", end="2024-01-01T01:00")
        )
    assert (nope.state, btc.state) == ("failed", "succeeded")
    finished = {e["run_id"]: e["log_level"] for e in logs if e["event"] == "backfill.finished"}
    assert finished == {nope.run_id: "error", btc.run_id: "info"}
