"""The contract lake: parts written by plain pyarrow with foreign names in the documented layout read back
deduplicated and sorted through ``dccd read`` and the HTTP API, and inventory reports the exact hole."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from dccd.cli.main import cli
from dccd.domain.timeutil import NS_PER_MIN, parse_iso_ns

T0 = parse_iso_ns("2024-03-31T23:00")  # the bars cross a month, the trades a day
TRADE_IDS = range(5000, 5400)


def _write(root: Path, rel: str, rows: list[dict[str, object]]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def build_contract_lake(root: Path) -> tuple[list[int], list[str]]:
    """A lake no dccd code wrote: bars 23:00..01:00 minus a 10-minute hole; trades over midnight in four
    overlapping parts (ids repeated across parts and across the two days). Returns the expected bar ts and ids."""
    bar_ts = [T0 + i * NS_PER_MIN for i in range(120) if not 70 <= i < 80]  # hole [00:10, 00:20) on April 1st

    def bar(t: int) -> dict[str, object]:
        return {"ts": t, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}

    ohlc = "ohlc/exchange=binance/symbol=BTC-USDT/span=1m"
    march = [t for t in bar_ts if t < parse_iso_ns("2024-04-01")]
    april = [t for t in bar_ts if t >= parse_iso_ns("2024-04-01")]
    _write(root, f"{ohlc}/month=2024-03/part-00000-1f7c2d.c000.snappy.parquet", [bar(t) for t in reversed(march)])
    _write(root, f"{ohlc}/month=2024-04/part-00000-8e1b.parquet", [bar(t) for t in april[:40]])
    _write(root, f"{ohlc}/month=2024-04/part-00001-8e1b.parquet", [bar(t) for t in april[30:]])  # 10 bars again

    def trade(i: int) -> dict[str, object]:
        return {"ts": T0 + (i - 5000) * 20_000_000_000, "id": str(i), "price": 100.0, "amount": 1.0, "side": "buy",
                "recv_ts": None}  # fmt: skip

    trades = "trades/exchange=binance/symbol=BTC-USDT"
    day1 = [i for i in TRADE_IDS if trade(i)["ts"] < parse_iso_ns("2024-04-01")]  # type: ignore[operator]
    day2 = [i for i in TRADE_IDS if i not in day1]
    _write(root, f"{trades}/date=2024-03-31/part-0.parquet", [trade(i) for i in day1[:100]])
    _write(root, f"{trades}/date=2024-03-31/part-1.parquet", [trade(i) for i in day1[50:]])
    # a user's export put the last March trades in the April partition too: the same ids on two dates
    _write(root, f"{trades}/date=2024-04-01/part-a.parquet", [trade(i) for i in day1[-20:] + day2[:100]])
    _write(root, f"{trades}/date=2024-04-01/part-b.parquet", [trade(i) for i in reversed(day2[90:])])
    return bar_ts, [str(i) for i in TRADE_IDS]


def test_cli_reads_the_contract_lake_deduplicated_and_sorted_and_inventory_finds_the_hole(tmp_path: Path) -> None:
    """dccd read gives each bar and trade once, in ts order; dccd inventory --json reports [00:10, 00:20) exactly."""
    bar_ts, ids = build_contract_lake(tmp_path)
    runner = CliRunner()
    base = ["--data", str(tmp_path), "read", "binance", "BTC/USDT", "--format", "json"]
    bars = [json.loads(x) for x in runner.invoke(cli, [*base, "--type", "ohlc", "--span", "1m"]).stdout.splitlines()]
    assert [b["ts"] for b in bars] == bar_ts
    res = runner.invoke(cli, [*base, "--type", "trades"])
    assert res.exit_code == 0 and res.stderr == ""
    assert [json.loads(x)["id"] for x in res.stdout.splitlines()] == ids
    inv = {
        d["data_type"]: d
        for d in json.loads(runner.invoke(cli, ["--data", str(tmp_path), "inventory", "--json"]).stdout)
    }
    hole = (parse_iso_ns("2024-04-01T00:10"), parse_iso_ns("2024-04-01T00:20"))
    assert inv["ohlc"]["gaps"] == [list(hole)] and inv["ohlc"]["missing"] == 10 and inv["ohlc"]["rows"] == 110
    assert inv["trades"]["gap_kind"] == "id" and inv["trades"]["gaps"] == [] and inv["trades"]["rows"] == 400
    assert inv["ohlc"]["skipped"] == inv["trades"]["skipped"] == []


async def test_api_reads_the_contract_lake(tmp_path: Path) -> None:
    """GET /api/v1/data returns the same deduplicated, sorted rows; /api/v1/inventory the same hole."""
    from tests.web.conftest import make_config, open_web

    bar_ts, ids = build_contract_lake(tmp_path / "lake")
    async with open_web(make_config(tmp_path / "lake")) as web:
        bars = (await web.client.get("/api/v1/data/ohlc/binance/BTC-USDT", params={"span": "1m"})).json()
        trades = (await web.client.get("/api/v1/data/trades/binance/BTC-USDT")).json()
        inv = (await web.client.get("/api/v1/inventory", params={"type": "ohlc"})).json()
    assert [b["ts"] for b in bars] == bar_ts and [t["id"] for t in trades] == ids
    assert [(g["from"], g["to"], g["count"]) for g in inv[0]["gap_ranges"]] == [
        ("2024-04-01T00:10:00Z", "2024-04-01T00:20:00Z", 10)
    ]
