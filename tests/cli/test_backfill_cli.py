"""`dccd backfill` as users run it: exit codes, output lines, --json, Ctrl-C, against the fake Binance.

The fake runs on 127.0.0.1 in a thread of the test process (its own ``trio.run``);
runs that reach the service go through the real ``dccd`` console script in a
subprocess (logging and signals are process-wide), while usage errors, which
exit before any service starts, are checked in-process with click's runner.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from dccd.cli.main import cli
from dccd.domain.spans import SPAN_CHOICES
from dccd.sources.registry import list_adapters
from dccd.storage import RunStore
from tests.e2e.helpers import JAN1_MS, KLINES, MIN_MS, OHLC_COLUMNS, fake_klines, iso_ms, raw_rows, temp_files
from tests.fake.binance import FakeBinance, open_fake_binance
from tests.fake.exchange import open_rest
from tests.fake.kraken import FakeKraken

DCCD = str(Path(sys.executable).with_name("dccd"))
DAY = ["--start", "2024-01-01", "--end", "2024-01-02"]


class ThreadedFake:
    """The fake Binance served from its own thread and Trio run, so a sync test (or a subprocess) can use it."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = {"weight_limit": 10**9, **kwargs}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.fake: FakeBinance

    async def _main(self) -> None:
        async with open_fake_binance(**self._kwargs) as fake:
            self.fake = fake
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> FakeBinance:
        self._thread.start()
        assert self._ready.wait(10), "the fake Binance did not start"
        return self.fake

    def __exit__(self, *exc: object) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


class ThreadedKraken(ThreadedFake):
    """The fake Kraken (on the real clock) served from its own thread and Trio run."""

    async def _main(self) -> None:
        async with open_rest(FakeKraken()) as fake:
            self.fake = fake
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    """A fake Binance on 127.0.0.1 (no faults)."""
    with ThreadedFake() as f:
        yield f


def write_config(tmp_path: Path, url: str) -> Path:
    """A config file: the lake in tmp_path/data, Binance and Coinbase at ``url``, no proactive rate limit."""
    path = tmp_path / "dccd.yaml"
    path.write_text(
        f"storage: {{path: {tmp_path / 'data'}}}\n"
        "exchanges:\n"
        f'  binance: {{rest_url: "{url}", rate_limit: 0}}\n'
        f'  coinbase: {{rest_url: "{url}", rate_limit: 0}}\n'
        f'  kraken: {{rest_url: "{url}", rate_limit: 0}}\n'
    )
    return path


def env() -> dict[str, str]:
    """The environment without DCCD_* settings of the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}


def dccd(cfg: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the dccd console script."""
    return subprocess.run(
        [DCCD, "--config", str(cfg), *args], capture_output=True, text=True, timeout=timeout, env=env()
    )


def run_record(root: Path) -> Any:
    """The one run of the lake at ``root``."""
    (rec,) = RunStore(root).list_runs()
    return rec


# --- exit 0 / 1 and their output ------------------------------------------------------------------


def test_success_exits_0_and_json_parses(fake: FakeBinance, tmp_path: Path) -> None:
    """A successful backfill exits 0; --json prints the run records; a re-run writes 0 rows and says so."""
    cfg = write_config(tmp_path, fake.url)
    res = dccd(cfg, "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", *DAY, "--json")
    assert res.returncode == 0, res.stderr
    (rec,) = json.loads(res.stdout)
    assert (rec["symbol"], rec["state"], rec["rows_written"], rec["error"]) == ("BTC/USDT", "succeeded", 1440, None)
    again = dccd(cfg, "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", *DAY)
    assert again.returncode == 0, again.stderr
    line, done = again.stdout.splitlines()
    assert line.startswith("BTC/USDT: succeeded — 0 rows written, 0 quarantined, 0 pages, ")
    assert done.startswith("done at ") and done.endswith(": 1/1 succeeded")
    assert raw_rows(tmp_path / "data", "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, JAN1_MS + 1440 * MIN_MS)


def test_a_failed_symbol_exits_1_with_its_error_line(fake: FakeBinance, tmp_path: Path) -> None:
    """One unknown symbol among two: exit 1, its line carries the error, the other symbol is stored."""
    cfg = write_config(tmp_path, fake.url)
    res = dccd(cfg, "backfill", "binance", "BTC/USDT", "NOPE/USDT", "--type", "ohlc", "--span", "1m", *DAY)
    assert res.returncode == 1, res.stderr
    btc, nope, done = res.stdout.splitlines()
    assert btc.startswith("BTC/USDT: succeeded — 1,440 rows written, 0 quarantined, 2 pages, ")
    assert nope.startswith("NOPE/USDT: failed — 0 rows written, 0 quarantined, 0 pages, ")
    assert nope.endswith("s — binance: symbol NOPE/USDT is not listed (3 markets listed)")
    assert done.endswith(": 1/2 succeeded")
    assert [p["symbol"] for p in (r.params for r in fake.requests if r.path == KLINES)] == ["BTCUSDT"] * 2


def test_partial_range_exits_1_with_the_reason_and_counts_on_its_line(tmp_path: Path) -> None:
    """Kraken 1m bars all older than its last 720: exit 1, one line saying partial, why and how many; served: exit 0."""
    now_min = time.time_ns() // 60_000_000_000
    old = ["--start", iso_ms((now_min - 2000) * MIN_MS), "--end", iso_ms((now_min - 1000) * MIN_MS)]
    recent = ["--start", iso_ms((now_min - 100) * MIN_MS), "--end", iso_ms((now_min - 10) * MIN_MS)]
    with ThreadedKraken() as fake:
        cfg = write_config(tmp_path, fake.url)
        res = dccd(cfg, "backfill", "kraken", "BTC/USD", "--type", "ohlc", "--span", "1m", *old)
        served = dccd(cfg, "backfill", "kraken", "BTC/USD", "--type", "ohlc", "--span", "1m", *recent)
    assert res.returncode == 1, res.stderr
    line, done = res.stdout.splitlines()
    assert re.fullmatch(
        r"BTC/USD: partial: kraken serves only the last 720 bars \(from \S+Z\); 1,000 of 1,000 bars unavailable"
        r"; older bars: backfill --type trades, then --type ohlc --derive-from trades"
        r" — 0 rows written, 0 quarantined, 0 pages, [0-9.]+s",  # the probe is not a data page
        line,
    ), line
    assert done.endswith(": 0/1 succeeded, 1 partial")
    assert served.returncode == 0, served.stderr
    assert served.stdout.startswith("BTC/USD: succeeded — 90 rows written, 0 quarantined, 1 pages, ")


def test_malformed_page_exits_1_naming_the_page_and_keeps_what_was_written(tmp_path: Path) -> None:
    """A 4th page truncated at all 5 attempts: exit 1, the error line names it, DuckDB reads the 3 pages before it."""
    with ThreadedFake(malformed={n: "truncated" for n in range(5, 10)}) as fake:
        cfg = write_config(tmp_path, fake.url)
        week = ["--start", "2024-01-01", "--end", "2024-01-08", "--concurrency", "1"]
        res = dccd(cfg, "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", *week)
        bad = fake.requests[4]
    assert res.returncode == 1, res.stderr
    page = "&".join(f"{k}={v}" for k, v in bad.params.items())
    (line, _) = res.stdout.splitlines()
    assert f"s — page /api/v3/klines?{page} failed: binance klines: unexpected payload: invalid JSON" in line
    assert bad.params["startTime"] == str(JAN1_MS + 3000 * MIN_MS)
    rec = run_record(tmp_path / "data")
    assert (rec.state, rec.rows_written) == ("failed", 3000)
    assert raw_rows(tmp_path / "data", "ohlc", OHLC_COLUMNS) == fake_klines(fake, JAN1_MS, JAN1_MS + 3000 * MIN_MS)
    assert temp_files(tmp_path / "data") == []


# --- exit 2: usage errors, one line each ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["binance", "BTC/USDT", "--type", "ohlc", "--span", "7m"], f"span: '7m' is not a span ({SPAN_CHOICES})"),
        (["binance", "BTC/USDT", "--type", "ohlc"], f"span: ohlc needs a span ({SPAN_CHOICES})"),
        (
            ["binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--start", "2024-13-01"],
            "start: '2024-13-01' is not a start (ISO date/datetime, -30d, last or origin)",
        ),
        (
            ["binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--start", "2024-01-02", "--end", "2024-01-01"],
            "end: '2024-01-01' is not after start '2024-01-02'",
        ),
        (["krakenx", "BTC/USDT", "--type", "ohlc", "--span", "1m"], None),  # message built from the registry
        (
            ["binance", "BTCUSDT", "--type", "ohlc", "--span", "1m"],
            "symbols[0]: 'BTCUSDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    fake: FakeBinance, tmp_path: Path, args: list[str], message: str | None
) -> None:
    """Bad span, date, exchange or symbol: exit 2 with exactly one line naming the field, and no request."""
    if message is None:
        message = f"exchange: 'krakenx' is not a known exchange ({' '.join(list_adapters())})"
    res = CliRunner().invoke(cli, ["--config", str(write_config(tmp_path, fake.url)), "backfill", *args])
    assert (res.exit_code, res.stderr, res.stdout) == (2, f"error: {message}\n", "")
    assert fake.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["binance", "BTC/USDT", "--type", "funding"], "binance does not offer funding for spot markets"),
        (["coinbase", "BTC/USD", "--type", "ohlc", "--span", "3m"], "coinbase does not offer ohlc span 3m over rest"),
    ],
)
def test_no_capability_exits_2_before_any_request(
    fake: FakeBinance, tmp_path: Path, args: list[str], message: str
) -> None:
    """A type, market or span the exchange does not offer: exit 2, one line, no request, no run recorded."""
    res = CliRunner().invoke(cli, ["--config", str(write_config(tmp_path, fake.url)), "backfill", *args])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: {message}") and res.stderr.count("\n") == 1
    assert fake.count() == 0 and not (tmp_path / "data").exists()


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_sigint_stops_cleanly_with_130_and_keeps_what_was_written(tmp_path: Path) -> None:
    """SIGINT mid-run: the backfill drains its writer, records 'cancelled', exits 130; DuckDB reads every row."""
    with ThreadedFake(delay_s=0.05) as fake:  # ~80 pages/s at 4 in flight: a year takes seconds
        cfg = write_config(tmp_path, fake.url)
        args = ["backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--start", "2023-01-01"]
        proc = subprocess.Popen(
            [DCCD, "--config", str(cfg), *args, "--end", "2024-01-01"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        deadline = time.monotonic() + 30
        while fake.count(KLINES) < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        sent = fake.count(KLINES)
    assert proc.returncode == 130, err
    assert out.splitlines()[0].startswith("BTC/USDT: cancelled — ")
    rec = run_record(tmp_path / "data")
    rows = raw_rows(tmp_path / "data", "ohlc", OHLC_COLUMNS)
    assert (rec.state, rec.error) == ("cancelled", "cancelled")
    # 12 pages were asked for; up to 4 were still in flight when the signal came and are not stored.
    assert (12 - 4) * 1000 <= len(rows) == rec.rows_written <= sent * 1000 < 525_600
    first_ms, last_ms = rows[0][0] // 1_000_000, rows[-1][0] // 1_000_000
    expected = {r[0]: r for r in fake_klines(fake, first_ms, last_ms + MIN_MS)}
    assert first_ms >= parse_ms("2023-01-01") and len({r[0] for r in rows}) == len(rows)
    assert all(expected[r[0]] == r for r in rows)
    assert temp_files(tmp_path / "data") == []


def parse_ms(text: str) -> int:
    """ISO date to ms."""
    from dccd.domain.timeutil import parse_iso_ns

    return parse_iso_ns(text) // 1_000_000
