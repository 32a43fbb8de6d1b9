"""``dccd check``: exit 0 clean, 1 on a violation, 2 on bad input; text and --json reports."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from dccd.cli.main import cli
from dccd.domain import Trade
from dccd.storage import Lake
from tests.contracts.helpers import BARS, NOW, PROV, TRADES, bars_of, walk_trades


def run(root: Path, *args: str, config: Path | None = None) -> Result:
    extra = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, ["--data", str(root), *extra, "check", *args])


def _clean(root: Path) -> None:
    lake = Lake(root)
    trades = walk_trades(3600)
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    lake.write(BARS, bars_of(trades), PROV, now_ns=NOW)


def test_clean_lake_exits_0(tmp_path: Path) -> None:
    """Every contract passing: one ok line per dataset, a summary, exit 0."""
    _clean(tmp_path)
    res = run(tmp_path)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "binance:BTC/USDT:ohlc:1m  60 rows  ok"
    assert lines[1] == "binance:BTC/USDT:trades  3,600 rows  ok"
    assert lines[2].startswith("2 dataset(s), 3,660 rows, 0 violation(s) in ")


def test_a_violation_exits_1_naming_contract_day_and_example(tmp_path: Path) -> None:
    """A bad tick: the dataset line says FAIL with the contract and count, then the day and its example."""
    _clean(tmp_path)
    Lake(tmp_path).write(TRADES, [Trade(walk_trades(3600)[-1].ts + 10**9, "3600", 500.0, 0.5, "buy")], PROV, now_ns=NOW)
    res = run(tmp_path, "binance:BTC-USDT:trades")
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    assert lines[0] == "binance:BTC/USDT:trades  3,601 rows  FAIL  bad_tick 1"
    assert lines[1] == "  bad_tick 2024-01-01: 1"
    assert lines[2] == "    ts=2024-01-01T01:00:00Z id=3600 price=500.0 median=100.01 mad=0.01"
    assert lines[-1].endswith("— FAILED")


def test_json_report_shape(tmp_path: Path) -> None:
    """--json prints one CheckReport: ok, counts, and per dataset its contracts with status, days and examples."""
    _clean(tmp_path)
    res = run(tmp_path, "--json", "binance:BTC/USDT:ohlc")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == {"ok", "violations", "rows", "datasets", "checked_at", "elapsed_s", "start", "end", "as_of"}
    (ds,) = doc["datasets"]
    assert {k: ds[k] for k in ("dataset", "exchange", "symbol", "type", "span", "rows", "violations")} == {
        "dataset": "binance:BTC/USDT:ohlc:1m", "exchange": "binance", "symbol": "BTC/USDT", "type": "ohlc",
        "span": "1m", "rows": 60, "violations": 0,
    }  # fmt: skip
    assert [c["contract"] for c in ds["contracts"]] == [
        "schema_units", "unique_key", "ohlc_invariants", "bar_grid", "bar_count", "bars_vs_trades", "cross_exchange",
        "bad_tick",
    ]  # fmt: skip
    assert set(ds["contracts"][0]) == {"contract", "status", "violations", "days", "note"}


def test_bad_input_exits_2(tmp_path: Path) -> None:
    """A selector matching nothing, a bad --start, --start after --end, a missing data dir and a bad contracts
    config each exit 2 with one line."""
    _clean(tmp_path)
    for args, text in (
        (("kraken",), "error: DATASET 'kraken': no stored dataset matches (stored: binance:BTC/USDT:ohlc:1m, "
                      "binance:BTC/USDT:trades)"),
        (("--start", "yesterday"), "error: --start: "),
        (("--start", "2024-02-01", "--end", "2024-01-01"), "error: --start must be before --end"),
    ):  # fmt: skip
        res = run(tmp_path, *args)
        assert res.exit_code == 2 and res.output.startswith(text) and len(res.output.splitlines()) == 1, res.output
    missing = run(tmp_path / "nope")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("contracts: {bad_tick: {window: 1}}\n")
    bad = run(tmp_path, config=cfg)
    assert (
        bad.exit_code == 2
        and bad.output == "config error: contracts.bad_tick.window: 1 is not between 3 and 10001 rows\n"
    )


def test_as_of_checks_a_snapshot(tmp_path: Path) -> None:
    """--as-of TAG checks the snapshot (exit 0 and its name) while the current lake fails; an unknown one exits 2."""
    _clean(tmp_path)
    Lake(tmp_path).create_snapshot(tag="good")
    Lake(tmp_path).write(TRADES, [Trade(walk_trades(3600)[-1].ts + 10**9, "3600", 500.0, 0.5, "buy")], PROV, now_ns=NOW)
    assert run(tmp_path).exit_code == 1
    res = run(tmp_path, "--as-of", "good")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-2].startswith("as of snapshot ") and "(good)" in res.output
    bad = run(tmp_path, "--as-of", "nope")
    assert bad.exit_code == 2 and bad.output.startswith("error: --as-of: no snapshot 'nope'")
