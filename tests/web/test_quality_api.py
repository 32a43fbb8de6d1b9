"""``GET /api/v1/quality``: the contract report over HTTP, DataValidated on the bus, dccd_contract_* metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dccd.actors.messages import DataValidated

from dccd.domain import Trade
from dccd.storage import Lake
from tests.contracts.helpers import BARS, NOW, PROV, TRADES, bars_of, walk_trades

from .conftest import Web


def _lake(web: Web) -> Lake:
    assert web.config is not None
    return Lake(web.config.data_root)


async def test_quality_reports_and_emits_data_validated(web: Web) -> None:
    """A clean lake answers ok; a planted bad tick answers the report naming it, one DataValidated per dataset
    reaches the bus, and the metrics count it and show the dataset failing."""
    lake = _lake(web)
    trades = walk_trades(3600)
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    lake.write(BARS, bars_of(trades), PROV, now_ns=NOW)
    seen: list[Any] = []
    web.svc.events.subscribe(on_next=seen.append)
    clean = await web.client.get("/api/v1/quality")
    assert clean.status_code == 200, clean.text
    assert (clean.json()["ok"], clean.json()["rows"], len(clean.json()["datasets"])) == (True, 3660, 2)
    lake.write(TRADES, [Trade(trades[-1].ts + 10**9, "3600", 500.0, 0.5, "buy")], PROV, now_ns=NOW)
    res = await web.client.get("/api/v1/quality", params={"dataset": "binance:BTC-USDT:trades"})
    doc = res.json()
    assert (res.status_code, doc["ok"], doc["violations"]) == (200, False, 1)
    (bad,) = [c for c in doc["datasets"][0]["contracts"] if c["status"] == "fail"]
    assert (bad["contract"], bad["days"][0]["day"], bad["days"][0]["examples"][0]["price"]) == (
        "bad_tick",
        "2024-01-01",
        500.0,
    )
    validated = [e for e in seen if isinstance(e, DataValidated)]
    assert validated == [
        DataValidated(str(BARS), "check", 60, {}),
        DataValidated(str(TRADES), "check", 3600, {}),
        DataValidated(str(TRADES), "check", 3601, {"bad_tick": 1}),
    ]
    metrics = (await web.client.get("/metrics")).text
    assert 'dccd_contract_failing{contract="bad_tick",dataset="binance:BTC/USDT:trades"} 1.0' in metrics
    assert (
        'dccd_contract_violations_total{contract="bad_tick",exchange="binance",scope="check",type="trades"} 1.0'
        in metrics
    )
    assert (
        'dccd_contract_validations_total{exchange="binance",result="pass",scope="check",type="trades"} 1.0' in metrics
    )
    assert 'dccd_contract_rows_checked_total{exchange="binance",scope="check",type="trades"} 7201.0' in metrics


async def test_quality_failing_gauge_returns_to_zero_and_batch_events_count(web: Web) -> None:
    """A later check without the violation sets its failing gauge back to 0; batch DataValidated events count
    under scope batch."""
    metrics = web.ctx.metrics
    metrics.on_event(DataValidated("binance:BTC/USDT:trades", "check", 10, {"stale_feed": 2}))
    metrics.on_event(DataValidated("binance:BTC/USDT:trades", "check", 10, {}))
    web.svc.emit(DataValidated("binance:BTC/USDT:perp:funding", "batch", 5, {"schema_units": 2}))
    text = (await web.client.get("/metrics")).text
    assert 'dccd_contract_failing{contract="stale_feed",dataset="binance:BTC/USDT:trades"} 0.0' in text
    assert (
        'dccd_contract_violations_total{contract="schema_units",exchange="binance",scope="batch",type="funding"} 2.0'
        in text
    )


async def test_quality_bad_input_is_400(web: Web) -> None:
    """A selector matching nothing and a bad start are 400 naming the parameter."""
    _lake(web).write(TRADES, walk_trades(5), PROV, now_ns=NOW)
    res = await web.client.get("/api/v1/quality", params={"dataset": "kraken"})
    assert res.status_code == 400 and res.json()["error"].startswith("dataset: 'kraken': no stored dataset matches")
    res = await web.client.get("/api/v1/quality", params={"start": "soon"})
    assert res.status_code == 400 and res.json()["error"].startswith("start: ")


async def test_quality_takes_repeated_and_comma_separated_selectors(web: Web, tmp_path: Path) -> None:
    """dataset=a&dataset=b and dataset=a,b pick the same datasets."""
    lake = _lake(web)
    lake.write(TRADES, walk_trades(5), PROV, now_ns=NOW)
    lake.write(BARS, bars_of(walk_trades(120)), PROV, now_ns=NOW)
    one = await web.client.get("/api/v1/quality?dataset=binance:BTC-USDT:trades&dataset=binance:BTC-USDT:ohlc")
    two = await web.client.get("/api/v1/quality?dataset=binance:BTC-USDT:trades,binance:BTC-USDT:ohlc")
    names = [d["dataset"] for d in one.json()["datasets"]]
    assert names == [d["dataset"] for d in two.json()["datasets"]] == [str(BARS), str(TRADES)]


async def test_quality_as_of_a_snapshot(web: Web) -> None:
    """?as_of=TAG checks the snapshot's view (its DataValidated carry the snapshot id); an unknown one is 404."""
    lake = _lake(web)
    trades = walk_trades(300)
    lake.write(TRADES, trades, PROV, now_ns=NOW)
    snap = lake.create_snapshot(tag="t1")
    lake.write(TRADES, [Trade(trades[-1].ts + 10**9, "300", 500.0, 0.5, "buy")], PROV, now_ns=NOW)
    seen: list[Any] = []
    web.svc.events.subscribe(on_next=seen.append)
    res = await web.client.get("/api/v1/quality", params={"as_of": "t1"})
    assert (res.status_code, res.json()["ok"], res.json()["rows"]) == (200, True, 300)
    assert [e for e in seen if isinstance(e, DataValidated)] == [
        DataValidated(str(TRADES), "check", 300, {}, str(snap.snapshot_id))
    ]
    missing = await web.client.get("/api/v1/quality", params={"as_of": "t9"})
    assert missing.status_code == 404 and missing.json()["error"].startswith("as_of: no snapshot 't9'")
