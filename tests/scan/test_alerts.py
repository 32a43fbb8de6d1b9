"""Webhook alerts against a real HTTP receiver on 127.0.0.1: once per signal, retries with backoff, metrics."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trio
from dccd.actors import open_service
from dccd.actors.messages import SignalGenerated

from dccd.config import parse_config
from dccd.scan.engine import ScanSpec
from tests.scan.test_scan_service import plant_spikes
from tests.web.conftest import open_web


class Receiver:
    """An HTTP server recording each POST (time, JSON body) and answering the next scripted status."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.posts: list[tuple[float, dict[str, Any], int]] = []
        self.lock = threading.Lock()

    @contextmanager
    def serve(self) -> Iterator[str]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.posts.append((time.monotonic(), body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/hook"
        finally:
            server.shutdown()
            server.server_close()

    def delivered(self) -> list[dict[str, Any]]:
        return [b for _, b, status in self.posts if status < 300]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(root: Path, alerts: str) -> Any:
    return parse_config(f"storage: {{path: '{root}'}}\nalerts:\n{alerts}", env={})


async def wait_for(cond: Any, timeout_s: float = 10.0) -> None:
    with trio.fail_after(timeout_s):
        while not cond():
            await trio.sleep(0.02)


async def test_each_signal_reaches_the_webhooks_that_want_it_once(tmp_path: Path) -> None:
    """Three hits: the receiver for relative_volume gets each signal's JSON exactly once; the breakout-only one none."""
    plant_spikes(tmp_path, {"A/USDT", "B/USDT", "C/USDT"}, {"D/USDT"})
    rv, bo = Receiver(), Receiver()
    with rv.serve() as rv_url, bo.serve() as bo_url:
        alerts = (
            f"  - {{url: '{rv_url}', scanners: [relative_volume]}}\n  - {{url: '{bo_url}', scanners: [breakout]}}\n"
        )
        async with open_web(config(tmp_path, alerts)) as web:
            assert web.svc.scans is not None
            run = await web.svc.scans.run([ScanSpec("relative_volume", params={"at_time_days": 0})])
            await wait_for(lambda: len(rv.posts) >= 3)
            await trio.sleep(0.3)  # nothing more arrives
            metrics = (await web.client.get("/metrics")).text
            web.svc.cancel()
    got = rv.delivered()
    assert sorted(b["symbol"] for b in got) == ["A/USDT", "B/USDT", "C/USDT"]
    assert len(rv.posts) == 3 and bo.posts == []
    assert {b["type"] for b in got} == {"signal_generated"} and {b["run_id"] for b in got} == {run.run_id}
    port = rv_url.split(":")[2].split("/")[0]
    assert f'dccd_alert_deliveries_total{{outcome="sent",target="127.0.0.1:{port}"}} 3.0' in metrics


async def test_a_failing_receiver_is_retried_with_backoff_and_a_4xx_is_final(tmp_path: Path) -> None:
    """500, 503 then 200: delivered once after two retries spaced by the doubling backoff; a 400 is not retried."""
    plant_spikes(tmp_path, {"A/USDT"}, {"D/USDT"})
    flaky, refusing = Receiver([500, 503, 200]), Receiver([400, 200])
    with flaky.serve() as url, refusing.serve() as url2:
        options = {"alert_options": {"backoff_s": 0.2}}
        async with open_service(
            config(tmp_path, f"  - {{url: '{url}'}}\n  - {{url: '{url2}'}}\n"), scan_options=options
        ) as svc:
            assert svc.scans is not None
            await svc.scans.run([ScanSpec("relative_volume", params={"at_time_days": 0})])
            await wait_for(lambda: len(flaky.posts) >= 3)
            await trio.sleep(0.5)
            counts = {t: (c.sent, c.failed, c.retries) for t, c in svc.scans.alerts.counts.items()}
            svc.cancel()
    assert [s for _, _, s in flaky.posts] == [500, 503, 200]
    t = [at for at, _, _ in flaky.posts]
    assert t[1] - t[0] >= 0.2 and t[2] - t[1] >= 0.4  # backoff_s × 2^attempt
    assert len({json.dumps(b, sort_keys=True) for _, b, _ in flaky.posts}) == 1  # the same signal each time
    assert [s for _, _, s in refusing.posts] == [400]
    target = svc.scans.alerts.target
    assert counts == {target(url): (1, 0, 2), target(url2): (0, 1, 0)}


async def test_a_dead_receiver_never_blocks_the_bus(tmp_path: Path) -> None:
    """With the webhook's port closed, publishing 20,000 signals stays a queue push each (overflow dropped and
    counted), and the deliveries fail after their retries without stopping the service."""
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hook"
    async with open_service(
        config(tmp_path, f"  - {{url: '{url}', retries: 2}}\n"),
        scan_options={"alert_options": {"backoff_s": 0.01, "queue": 100}},
    ) as svc:
        assert svc.scans is not None
        sig = SignalGenerated("r", "relative_volume", "1", "h", "binance", "A/USDT", 1, {"rvol": 3.0})
        t0 = time.perf_counter()
        for _ in range(20_000):
            svc.emit(sig)
        elapsed = time.perf_counter() - t0
        counts = svc.scans.alerts.counts[svc.scans.alerts.target(url)]
        assert counts.dropped >= 20_000 - 101  # the queue holds 100, one may be in flight
        await wait_for(lambda: counts.failed >= 1)
        svc.cancel()
    assert elapsed < 2.0  # ~20 µs a signal on this machine: no network wait on the bus
