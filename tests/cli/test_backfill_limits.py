"""`dccd backfill` honours rate-limit deadlines an earlier process recorded in the lake: it says it waits, or fails.

Real subprocesses of the console script against the fake Binance on 127.0.0.1;
the deadline is written with the lake's own state file, as a previous run would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dccd.domain.ratelimit import LimitDeadline
from dccd.domain.timeutil import ns_to_iso
from dccd.storage.limits import LimitStateFile
from tests.cli.test_backfill_cli import DAY, ThreadedFake, dccd, run_record, write_config

S = 10**9


def test_a_recorded_429_pause_is_announced_and_waited_out(tmp_path: Path) -> None:
    """A pause recorded 3 s into the future: stderr says the backfill waits and why; no request goes out before it."""
    with ThreadedFake() as fake:
        cfg = write_config(tmp_path, fake.url)
        until_ns = time.time_ns() + 3 * S
        LimitStateFile(tmp_path / "data").record(
            "binance", fake.url.rstrip("/"), LimitDeadline("pause", until_ns, "code -1003: Too many requests", 0)
        )
        res = dccd(cfg, "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", *DAY)
        first_t = fake.requests[0].t
    assert res.returncode == 0, res.stderr
    (line,) = [json.loads(x) for x in res.stderr.splitlines() if "ratelimit.restored" in x]
    assert (line["level"], line["exchange"], line["kind"], line["action"]) == ("warning", "binance", "pause", "waiting")
    assert 0 < line["remaining_s"] <= 3 and line["until"] == ns_to_iso(until_ns)
    assert first_t >= until_ns / S


def test_a_recorded_long_ban_fails_the_run_naming_its_end_without_a_request(tmp_path: Path) -> None:
    """A ban 2 h ahead: exit 1 at once, the symbol's line names the ban's end, and the exchange sees nothing."""
    with ThreadedFake() as fake:
        cfg = write_config(tmp_path, fake.url)
        until_ns = time.time_ns() + 7200 * S
        detail = "(HTTP 418 on klines: code -1003: Way too much request weight used)"
        LimitStateFile(tmp_path / "data").record(
            "binance", fake.url.rstrip("/"), LimitDeadline("ban", until_ns, detail, 0)
        )
        started = time.monotonic()
        res = dccd(cfg, "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", *DAY)
        assert time.monotonic() - started < 30
        assert fake.requests == []
    assert res.returncode == 1, res.stderr
    line, done = res.stdout.splitlines()
    until = ns_to_iso(until_ns)
    assert line.startswith("BTC/USDT: failed — 0 rows written")
    assert "binance banned this IP for 7" in line
    assert line.endswith(
        f"(until {until}, recorded by an earlier process: HTTP 418 on klines: code -1003: Way too much request weight used)"
    )
    assert done.endswith(": 0/1 succeeded")
    assert run_record(tmp_path / "data").state == "failed"
