"""Archive rows without exchange ids merged into a partly stored day: matched by counts, never doubled."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from dccd.domain import DatasetId, DataType, Symbol
from dccd.domain.timeutil import parse_iso_ns
from dccd.storage import Lake
from dccd.storage.archive_dedup import dedup_counted
from dccd.storage.writer import Provenance

DAY = parse_iso_ns("2024-01-03")
DS = DatasetId("bybit", Symbol.parse("BTC/USDT"), DataType.TRADES, None)


def trades(rows: list[tuple[int, str, float, float, str]]) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([DAY + r[0] for r in rows], pa.int64()),
            "id": [r[1] for r in rows],
            "price": [r[2] for r in rows],
            "amount": [r[3] for r in rows],
            "side": [r[4] for r in rows],
            "recv_ts": pa.nulls(len(rows), pa.int64()),
        }
    )


def test_rows_alike_in_ts_price_amount_side_are_matched_by_count(tmp_path: Path) -> None:
    """Two stored trades alike in (ts, price, amount, side) remove two of the file's three such rows (the third
    is a trade the stream missed); a row the stream stored once is removed once; the rest stay, in file order."""
    lake = Lake(tmp_path)
    stored = [(1, "e1", 10.0, 1.0, "buy"), (1, "e2", 10.0, 1.0, "buy"), (2, "e3", 11.0, 2.0, "sell")]
    lake.write_table(DS, trades(stored), Provenance("bybit", "ws"))
    archive = trades(
        [
            (0, "d:1", 9.0, 1.0, "buy"),
            (1, "d:2", 10.0, 1.0, "buy"),
            (1, "d:3", 10.0, 1.0, "buy"),
            (1, "d:4", 10.0, 1.0, "buy"),
            (2, "d:5", 11.0, 2.0, "sell"),
            (2, "d:6", 11.0, 2.0, "buy"),  # another side: another trade
            (3, "d:7", 12.0, 1.0, "sell"),
        ]
    )
    kept = dedup_counted(lake, DataType.TRADES, archive, DS, DAY, DAY + 86_400 * 10**9)
    assert kept["id"].to_pylist() == ["d:1", "d:4", "d:6", "d:7"]
    assert kept.schema == archive.schema
    empty = Lake(tmp_path / "empty")
    assert dedup_counted(empty, DataType.TRADES, archive, DS, DAY, DAY + 86_400 * 10**9).equals(archive)
