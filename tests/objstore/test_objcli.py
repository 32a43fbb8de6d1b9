"""The CLI over an s3 lake from a machine that never saw it (an empty cache): read, sql, snapshots, refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dccd.storage import Lake
from tests.storage.helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars, trades

DCCD = str(Path(sys.executable).parent / "dccd")


def _dccd(uri: str, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DCCD_DATA": uri, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([DCCD, "-q", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_reads_an_s3_lake_from_a_fresh_cache(s3_uri: str, tmp_path: Path) -> None:
    """``dccd read``, ``sql``, ``inventory`` and ``snapshot`` work from another cache; what is not offered says so."""
    lake = Lake(s3_uri)
    lake.write(TRADES, trades(0, 100), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0, 30), PROV, now_ns=NOW)
    other = tmp_path / "other-machine"
    res = _dccd(s3_uri, other, "read", "binance", "BTC/USDT", "--type", "trades", "--format", "csv")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith('"ts","id"') and len(lines) == 101
    res = _dccd(s3_uri, other, "sql", "SELECT count(*) AS n FROM ohlc", "--format", "csv")
    assert res.returncode == 0 and res.stdout.splitlines()[-1] == "30", res.stderr
    assert _dccd(s3_uri, other, "snapshot", "create", "--tag", "t1").returncode == 0
    lake.write(TRADES, trades(100, 50), PROV, now_ns=NOW)
    res = _dccd(s3_uri, other, "read", "binance", "BTC/USDT", "--type", "trades", "--format", "csv", "--as-of", "t1")
    assert len(res.stdout.splitlines()) == 101
    assert [s.tag for s in lake.list_snapshots()] == ["t1"]  # taken through the other cache, seen here
    for args in (("quarantine", "x"), ("catalog", "rebuild")):
        res = _dccd(s3_uri, other, *args)
        assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "object-store lake" in res.stderr


@pytest.mark.parametrize("endpoint", ["http://10.9.9.9:9000", "ftp://x"])
def test_cli_config_errors_are_one_line(endpoint: str, tmp_path: Path) -> None:
    """A bad endpoint in the environment stops the command with one line naming the key, exit 2."""
    env = {**os.environ, "DCCD_DATA": "s3://b/p", "AWS_ENDPOINT_URL": endpoint, "XDG_CACHE_HOME": str(tmp_path)}
    res = subprocess.run([DCCD, "inventory"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "storage.s3.endpoint_url" in res.stderr
