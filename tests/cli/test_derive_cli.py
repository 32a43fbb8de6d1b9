"""`dccd backfill --derive-from trades` as users run it: 1s bars from stored trades, resumed with --start last."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from dccd.cli.main import cli
from dccd.domain import DatasetId, DataType, Span, Symbol, Trade
from dccd.storage import Lake, Provenance

DCCD = str(Path(sys.executable).with_name("dccd"))
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z
S = 1_000_000_000
BTC = Symbol.parse("BTC/USDT")
TRADES = DatasetId("binance", BTC, DataType.TRADES)
BARS_1S = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1s"))


def _trades(root: Path, seconds: list[int]) -> None:
    rows = [Trade(T0 + s * S + 1, str(s), 100.0 + s, 1.0, "buy") for s in seconds]
    Lake(root).write(TRADES, rows, Provenance("binance", "rest"))


def _dccd(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DCCD, "--data", str(root), *args], capture_output=True, text=True, timeout=120)


def test_derive_then_resume_with_start_last(tmp_path: Path) -> None:
    """Trades in seconds 0..4 give bars 0..3 (4 holds the newest trade); trades to second 9 arrive, and
    `--start last` derives bars 4..8 only (nothing twice)."""
    _trades(tmp_path, [0, 1, 2, 3, 4])
    args = ["backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1s", "--derive-from", "trades"]
    first = _dccd(tmp_path, *args, "--start", "2024-01-01", "--end", "2024-01-02")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("BTC/USDT: succeeded — 4 rows written, 0 quarantined, ")
    _trades(tmp_path, [5, 6, 7, 8, 9])
    resumed = _dccd(tmp_path, *args, "--start", "last")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("BTC/USDT: succeeded — 5 rows written, ")
    ts = Lake(tmp_path).read_table(BARS_1S).table["ts"].to_pylist()
    assert ts == [T0 + s * S for s in range(9)]


def test_derive_with_nothing_stored_fails_naming_the_trades_backfill(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    res = _dccd(tmp_path, "backfill", "kraken", "BTC/USD", "--type", "ohlc", "--span", "1m", "--derive-from",
                "trades", "--start", "2024-01-01", "--end", "2024-01-02")  # fmt: skip
    assert res.returncode == 1
    assert "kraken:BTC/USD:trades: no trades stored to derive bars from; backfill them first" in res.stdout


def test_derive_from_on_trades_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["--data", str(tmp_path), "backfill", "binance", "BTC/USDT", "--type", "trades",
                                   "--derive-from", "trades", "--start", "2024-01-01"])  # fmt: skip
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == ["error: derive_from: only ohlc bars are derived, not trades"]


def test_reconcile_of_a_dataset_never_stored_is_one_line(tmp_path: Path) -> None:
    _trades(tmp_path, [0, 1])
    res = CliRunner().invoke(cli, ["--data", str(tmp_path), "reconcile", "binance", "BTC/USDT", "--span", "1m"])
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: no binance BTC/USDT ohlc 1m stored in ")
