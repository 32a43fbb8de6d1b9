"""``POST /api/v1/backfills`` with ``derive_from: trades``: 1s bars from stored trades, and bad bodies refused."""

from __future__ import annotations

from pathlib import Path

import trio

from dccd.domain import DatasetId, DataType, Span, Trade
from dccd.storage import Lake, Provenance

from .conftest import BTC, Web

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z
S = 1_000_000_000


def _store_trades(root: Path) -> None:
    """Trades at 0.0 s, 0.5 s, 2.0 s and 4.0 s: seconds 1 and 3 have none; 4 is the newest (not final)."""
    rows = [(0, 100.0, 1.0), (S // 2, 101.0, 2.0), (2 * S, 99.0, 0.5), (4 * S, 98.0, 1.0)]
    trades = [Trade(T0 + dt, str(i), p, a, "buy") for i, (dt, p, a) in enumerate(rows)]
    Lake(root).write(DatasetId("binance", BTC, DataType.TRADES), trades, Provenance("binance", "rest"))


async def test_posted_derive_builds_1s_bars_of_complete_seconds_only(web: Web) -> None:
    """Seconds 0 and 2 get bars (1 and 3 had no trade: no bar; 4 holds the newest trade: not final yet)."""
    root = web.svc.lake_root
    assert root is not None
    _store_trades(root)
    body = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1s", "derive_from": "trades",
            "start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:01:00Z"}  # fmt: skip
    r = await web.client.post("/api/v1/backfills", json=body)
    assert r.status_code == 202, r.text
    (run_id,) = r.json()["run_ids"]
    with trio.fail_after(20):
        record = await web.svc.wait_run(run_id)
    assert (record.state, record.rows_written) == ("succeeded", 2)
    assert record.progress["empty_periods"] == 2 and record.progress["derived_until"] == T0 + 4 * S
    bars = Lake(root).read_table(DatasetId("binance", BTC, DataType.OHLC, Span.parse("1s"))).table.to_pylist()
    assert bars == [
        {"ts": T0, "open": 100.0, "high": 101.0, "low": 100.0, "close": 101.0, "volume": 3.0,
         "quote_volume": 302.0, "trades": 2},
        {"ts": T0 + 2 * S, "open": 99.0, "high": 99.0, "low": 99.0, "close": 99.0, "volume": 0.5,
         "quote_volume": 49.5, "trades": 1},
    ]  # fmt: skip


async def test_bad_derive_from_is_a_400_naming_the_field(web: Web) -> None:
    base = {"exchange": "binance", "symbols": ["BTC/USDT"], "span": "1m"}
    r = await web.client.post("/api/v1/backfills", json={**base, "type": "ohlc", "derive_from": "book"})
    assert r.status_code == 400 and "derive_from" in r.text and "'book' is not a source" in r.text
    r = await web.client.post(
        "/api/v1/backfills", json={**base, "span": None, "type": "trades", "derive_from": "trades"}
    )
    assert r.status_code == 400 and "only ohlc bars are derived, not trades" in r.text
