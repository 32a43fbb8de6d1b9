"""Exports: CSV, JSON lines, Parquet and Arrow carry the same rows as read_table, exactly, streamed in chunks."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dccd.domain import Candle, Trade
from dccd.domain.timeutil import NS_PER_MIN
from dccd.storage import Lake

from .helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """A lake with overlapping trade parts (so the export dedups) and awkward floats and nulls."""
    lk = Lake(tmp_path)
    rows = [
        Trade(T0 + i, str(i), 0.1 + 0.2 * i, 1e-9 * (i + 1), "buy" if i % 3 else None, T0 + i if i % 2 else None)
        for i in range(3000)
    ]
    lk.write(TRADES, rows[:2000], PROV, now_ns=NOW)
    lk.write(TRADES, rows[1000:], PROV, now_ns=NOW)
    return lk


def _expected(lake: Lake) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = lake.read_table(TRADES).table.to_pylist()
    return rows


def test_csv_export_round_trips_exactly(lake: Lake) -> None:
    """CSV has a header, ts as int ns, floats that parse back bit-identical, nulls as empty cells."""
    buf = io.BytesIO()
    rows, skipped = lake.export_to(TRADES, "csv", buf)
    parsed = list(csv.DictReader(io.StringIO(buf.getvalue().decode())))
    assert rows == 3000 == len(parsed) and skipped == []
    exp = _expected(lake)
    for got, want in zip(parsed, exp, strict=True):
        assert int(got["ts"]) == want["ts"] and float(got["price"]) == want["price"]
        assert float(got["amount"]) == want["amount"] and (got["side"] or None) == want["side"]
        assert (int(got["recv_ts"]) if got["recv_ts"] else None) == want["recv_ts"]


def test_jsonl_export_is_one_exact_object_per_line_in_order(lake: Lake) -> None:
    """JSON lines: one object per row, sorted by ts, exact ints and floats, JSON nulls."""
    buf = io.BytesIO()
    lake.export_to(TRADES, "jsonl", buf)
    lines = buf.getvalue().decode().splitlines()
    assert [json.loads(line) for line in lines] == _expected(lake)


def test_parquet_and_arrow_exports_equal_the_read(lake: Lake, tmp_path: Path) -> None:
    """Parquet (to a file) and Arrow IPC (to a stream) hold the same table as read_table."""
    out = tmp_path / "x.parquet"
    lake.export_to(TRADES, "parquet", out)
    assert pq.read_table(out).to_pylist() == _expected(lake)
    buf = io.BytesIO()
    lake.export_to(TRADES, "arrow", buf)
    assert pa.ipc.open_stream(buf.getvalue()).read_all().to_pylist() == _expected(lake)


def test_exports_stream_in_chunks_with_a_range(tmp_path: Path) -> None:
    """An export yields several byte chunks (one per batch) and honours [start, end)."""
    lk = Lake(tmp_path)
    lk.write(OHLC_1M, bars(T0, 5000), PROV, now_ns=NOW)
    exp = lk.export(OHLC_1M, "csv", T0 + 10 * NS_PER_MIN, T0 + 4010 * NS_PER_MIN)
    exp.batch_rows = 1000
    chunks = list(exp)
    assert len(chunks) >= 4 and exp.rows == 4000
    assert b"".join(chunks).count(b"\n") == 4001


def test_empty_exports_are_well_formed(tmp_path: Path) -> None:
    """No data: CSV has just the header, JSON lines nothing, Parquet a valid empty file."""
    lk = Lake(tmp_path)
    buf = io.BytesIO()
    lk.export_to(OHLC_1M, "csv", buf)
    assert buf.getvalue().decode().strip() == '"ts","open","high","low","close","volume","quote_volume","trades"'
    buf = io.BytesIO()
    assert lk.export_to(OHLC_1M, "jsonl", buf)[0] == 0 and buf.getvalue() == b""
    buf = io.BytesIO()
    lk.export_to(OHLC_1M, "parquet", buf)
    assert pq.read_table(io.BytesIO(buf.getvalue())).num_rows == 0


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    """An unknown export format is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="csv jsonl columns parquet arrow"):
        Lake(tmp_path).export(OHLC_1M, "xml")


def test_ohlc_nulls_survive_csv(tmp_path: Path) -> None:
    """Null quote_volume/trades stay empty in CSV; present values are printed."""
    lk = Lake(tmp_path)
    lk.write(OHLC_1M, [Candle(T0, 1.0, 2.0, 0.5, 1.5, 3.0, None, 7)], PROV, now_ns=NOW)
    buf = io.BytesIO()
    lk.export_to(OHLC_1M, "csv", buf)
    assert buf.getvalue().decode().splitlines()[1] == f"{T0},1,2,0.5,1.5,3,,7"
