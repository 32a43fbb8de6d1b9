"""`dccd stream` as users run it: SIGTERM and --duration stop cleanly with everything received stored.

The fake Binance WebSocket and REST servers run on 127.0.0.1 in a thread of
the test process (their own ``trio.run``); the command runs as the real
``dccd`` console script in a subprocess (signals are process-wide). Usage
errors exit before any service starts and are checked in-process.
"""

from __future__ import annotations

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

import pyarrow.parquet as pq
import pytest
import trio
from click.testing import CliRunner
from dccd.actors.streams import StreamInfo

from dccd.cli.main import cli
from dccd.cli.stream_cmds import status_text, summary_text
from dccd.storage import RunStore
from tests.fake.binance import open_fake_binance
from tests.fake.binance_ws import FakeBinanceWs, open_fake_binance_ws
from tests.fake.tape import TAPE_EPOCH_MS, TAPE_STEP_MS, trade_at

DCCD = str(Path(sys.executable).with_name("dccd"))
SUMMARY = re.compile(r"^stream (\w+): stopped, (\d+) messages, (\d+) rows, 0 reconnects, 0 gaps filled, 0 gaps open$")


class ThreadedFakes:
    """Fake Binance WS (``rate_per_s`` trades/s) + REST serving the same tape, in their own thread."""

    def __init__(self, rate_per_s: float, **ws_options: Any) -> None:
        self.rate_per_s = rate_per_s
        self.ws_options = ws_options
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.ws: FakeBinanceWs
        self.rest_url = ""

    async def _main(self) -> None:
        async with open_fake_binance_ws(rate_per_s=self.rate_per_s, **self.ws_options) as ws:

            def clock() -> float:
                head = ws.first_id + (trio.current_time() - ws.t0) * self.rate_per_s
                return (TAPE_EPOCH_MS + head * TAPE_STEP_MS) / 1000

            async with open_fake_binance(source="shared", clock=clock, weight_limit=10**9) as rest:
                self.ws, self.rest_url = ws, rest.url
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._ready.set()
                await self._stop.wait()

    def __enter__(self) -> ThreadedFakes:
        self._thread.start()
        assert self._ready.wait(10), "the fakes did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


def write_config(tmp_path: Path, fakes: ThreadedFakes) -> Path:
    path = tmp_path / "dccd.yaml"
    path.write_text(
        f"storage: {{path: {tmp_path / 'data'}}}\n"
        "exchanges:\n"
        f'  binance: {{rest_url: "{fakes.rest_url}", ws_url: "{fakes.ws.url}", rate_limit: 0}}\n'
    )
    return path


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}


def stored_trades(root: Path) -> list[dict[str, Any]]:
    """Every trade row in every part on disk (no deduplication), sorted by id."""
    rows: list[dict[str, Any]] = []
    for part in (root / "trades").rglob("*.parquet"):
        rows.extend(pq.read_table(part).to_pylist())
    return sorted(rows, key=lambda r: int(r["id"]))


@pytest.fixture
def fakes() -> Iterator[ThreadedFakes]:
    with ThreadedFakes(rate_per_s=200) as f:
        yield f


def test_sigterm_flushes_everything_received_and_exits_0(fakes: ThreadedFakes, tmp_path: Path) -> None:
    """SIGTERM mid-stream: exit 0, every trade received is in the lake once, equal to the tape; the run succeeded."""
    cfg = write_config(tmp_path, fakes)
    proc = subprocess.Popen(
        [DCCD, "--config", str(cfg), "stream", "binance", "BTC/USDT", "--type", "trades"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    deadline = time.monotonic() + 30
    while fakes.ws.sent < 300 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    sent_at_signal = fakes.ws.sent
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    sent_at_exit = fakes.ws.sent
    assert proc.returncode == 0, err
    match = SUMMARY.match(out.strip().splitlines()[-1])
    assert match is not None, out
    run_id, messages, rows = match.group(1), int(match.group(2)), int(match.group(3))
    trades = stored_trades(tmp_path / "data")
    ids = [int(t["id"]) for t in trades]
    # Frames in flight when the connection closed were never received; nothing received is missing.
    assert sent_at_signal - 2 <= messages <= sent_at_exit
    assert len(trades) == rows == messages and ids == list(range(ids[0], ids[0] + messages))
    for t in trades[:: max(1, len(trades) // 20)]:
        tape = trade_at("BTCUSDT", int(t["id"]))
        assert (t["price"], t["amount"], t["ts"]) == (float(tape.price), float(tape.qty), tape.time_ms * 1_000_000)
    record = RunStore(tmp_path / "data").get(run_id)
    assert record is not None and (record.operation, record.state, record.rows_written) == ("stream", "succeeded", rows)
    assert '"event": "stream.stopping"' in err and '"signal": "SIGTERM"' in err


def test_duration_ends_the_stream(fakes: ThreadedFakes, tmp_path: Path) -> None:
    """--duration 1.5 stops by itself after ~1.5 s of streaming and exits 0 with the summary line."""
    cfg = write_config(tmp_path, fakes)
    t0 = time.monotonic()
    res = subprocess.run(
        [DCCD, "--config", str(cfg), "stream", "binance", "BTC/USDT", "--type", "trades", "--duration", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 >= 1.5
    match = SUMMARY.match(res.stdout.strip().splitlines()[-1])
    assert match is not None and 100 <= int(match.group(3)) == len(stored_trades(tmp_path / "data"))


def test_refused_subscription_exits_1(tmp_path: Path) -> None:
    """The exchange answers with an error reply: the run fails, the summary says why, exit 1."""
    script = tmp_path / "script.rec"
    script.write_text('1.0: {"error":{"code":2,"msg":"Invalid request: too many streams"},"id":1}\n')
    with ThreadedFakes(rate_per_s=200, replay=script) as fakes:
        cfg = write_config(tmp_path, fakes)
        res = subprocess.run(
            [DCCD, "--config", str(cfg), "stream", "binance", "BTC/USDT", "--type", "trades"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
        )
    assert res.returncode == 1, res.stderr
    assert re.match(r"^stream \w+: failed \(binance rejected .*too many streams.*\), 1 messages", res.stdout.strip())


def test_unlisted_symbol_exits_2(fakes: ThreadedFakes, tmp_path: Path) -> None:
    """A symbol the exchange does not list is refused before any run: one error line, exit 2."""
    cfg = write_config(tmp_path, fakes)
    res = subprocess.run(
        [DCCD, "--config", str(cfg), "stream", "binance", "NOPE/USDT", "--type", "trades"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    assert res.returncode == 2 and res.stdout == ""
    errors = [line for line in res.stderr.splitlines() if not line.startswith("{")]  # the rest is the JSON log
    assert errors == ["error: binance: symbol NOPE/USDT is not listed (3 markets listed)"]
    assert RunStore(tmp_path / "data").list_runs() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "ohlc"], "span: ohlc needs a span"),
        (["--type", "funding"], "type: 'funding' is not supported here"),
        (["--type", "trades", "--span", "1m"], "span: only ohlc takes a span"),
        (["--type", "trades", "--duration", "0"], "duration: must be a positive number of seconds"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    """Bad options exit 2 with one 'error: <field>: ...' line, before any service or connection."""
    res = CliRunner().invoke(cli, ["--data", str(tmp_path / "data"), "stream", "binance", "BTC/USDT", *args])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: {message}") and res.stderr.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_unstreamable_symbol_exits_2(tmp_path: Path) -> None:
    """A perpetual on Binance spot is refused by the adapter's capabilities with one line, exit 2."""
    res = CliRunner().invoke(cli, ["--data", str(tmp_path), "stream", "binance", "BTC/USDT:perp", "--type", "trades"])
    assert res.exit_code == 2 and res.stderr == "error: binance does not offer trades for perp markets\n"


def test_status_and_summary_lines() -> None:
    """The status line shows state, msg/s, rows, reconnects and gaps; the summary the final counts."""
    info = StreamInfo("abc", "binance", ("BTC/USDT",), "ohlc", "1m", "connected", 1200, 1100, 1, 2, 0, "abc", 0)
    assert status_text(info, 1500.4) == (
        "binance BTC/USDT ohlc 1m: connected | 1,500 msg/s | 1,200 messages | 1,100 rows written"
        " | 1 reconnects | 2 gaps filled | 0 open"
    )
    assert summary_text(info) == (
        "stream abc: connected, 1200 messages, 1100 rows, 1 reconnects, 2 gaps filled, 0 gaps open"
    )
