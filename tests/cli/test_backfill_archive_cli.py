"""`dccd backfill --source ...` as a user runs it: the console script against the fake Binance REST and archive."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import trio

from tests.cli.test_backfill_cli import DCCD, ThreadedFake, write_config
from tests.fake.binance import FakeBinance
from tests.fake.binance_archive import FakeBinanceArchive, open_fake_archive


class ThreadedArchive:
    """The fake archive of a fake Binance, served from its own thread and Trio run."""

    def __init__(self, rest: FakeBinance, **kwargs: Any) -> None:
        self._rest, self._kwargs = rest, kwargs
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.fake: FakeBinanceArchive

    async def _main(self) -> None:
        async with open_fake_archive(self._rest, **self._kwargs) as fake:
            self.fake = fake
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> FakeBinanceArchive:
        self._thread.start()
        assert self._ready.wait(10), "the fake archive did not start"
        return self.fake

    def __exit__(self, *exc: object) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


def run(cfg: Path, archive_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}
    if archive_url is not None:
        env["DCCD_BINANCE_ARCHIVE_URL"] = archive_url
    cmd = [DCCD, "--config", str(cfg), "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_cli_source_archive_via_env_override(tmp_path: Path) -> None:
    """``--source archive`` with ``DCCD_BINANCE_ARCHIVE_URL`` fetches daily files only, says how many in its
    summary line, and the run record counts them; without the override (rest_url is a fake) it is a
    one-line config error (exit 2) and nothing is asked."""
    with ThreadedFake() as rest, ThreadedArchive(rest) as archive:
        cfg = write_config(tmp_path, rest.url)
        res = run(cfg, None, "--start", "2024-03-01", "--end", "2024-03-03", "--source", "archive")
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith("config error: exchanges.binance.archive_url")
        assert archive.requests == []
        res = run(cfg, archive.url, "--start", "2024-03-01", "--end", "2024-03-03", "--source", "archive", "--json")
        assert res.returncode == 0, res.stderr
        (rec,) = json.loads(res.stdout)
        assert rec["rows_written"] == 2 * 1440
        assert rec["progress"]["archive_files"] == 2
        assert archive.count(".zip") == 2
        assert rest.count("/api/v3/klines") == 0
        res = run(cfg, archive.url, "--start", "2024-03-03", "--end", "2024-03-04", "--source", "archive")
        assert res.returncode == 0, res.stderr
        assert "1 archive files (" in res.stdout.splitlines()[0]


async def test_backfill_writes_tables_in_a_worker_thread_and_records_inline() -> None:
    """The CLI's writer offload writes record batches on the Trio thread but tables (archive files) in a
    worker thread, so a 500k-row Parquet write never stalls the downloads and the next table's hand-over."""
    import pyarrow as pa

    from dccd.cli.backfill_cmds import _write_inline

    def where(_ds: object, _rows: object) -> int:
        return threading.get_ident()

    trio_thread = threading.get_ident()
    assert await _write_inline(where, "ds", [object()]) == trio_thread
    assert await _write_inline(where, "ds", pa.table({"ts": [1]})) != trio_thread
