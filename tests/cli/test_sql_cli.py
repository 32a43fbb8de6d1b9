"""``dccd sql``: read-only SQL over the local lake; hostile statements are one ``error:`` line and exit 2."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from dccd.cli.main import cli
from dccd.domain.timeutil import NS_PER_MIN
from dccd.storage import Lake
from tests.storage.helpers import NOW, OHLC_1M, PROV, T0, bars


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """30 bars in two overlapping parts (the newer, minutes 20-29, closes at 1.9)."""
    lk = Lake(tmp_path / "lake")
    lk.write(OHLC_1M, bars(T0, 25), PROV, now_ns=NOW)
    lk.write(OHLC_1M, bars(T0 + 20 * NS_PER_MIN, 10, close=1.9), PROV, now_ns=NOW + 1)
    return tmp_path / "lake"


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data", str(root), "sql", *args])


def test_json_output_is_deduplicated_with_partition_columns(lake: Path) -> None:
    """--format json prints the rows as one JSON array: 30 distinct bars, the newer part's closes, hive columns."""
    res = run(lake, "SELECT symbol, span, count(*) AS n, max(close) AS top FROM ohlc GROUP BY ALL", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == [{"symbol": "BTC-USDT", "span": "1m", "n": 30, "top": 1.9}]


def test_the_table_view_and_the_truncation_note(lake: Path) -> None:
    """The default table shows the rows; past --max-rows the rows are cut and stderr says so."""
    res = run(lake, "SELECT ts FROM ohlc ORDER BY ts", "--max-rows", "4")
    assert res.exit_code == 0, res.output
    assert "4 row(s) (truncated)" in res.stdout and str(T0 + 3 * NS_PER_MIN) in res.stdout
    assert str(T0 + 4 * NS_PER_MIN) not in res.stdout
    assert res.stderr.strip() == "note: truncated at 4 rows (--max-rows)"


def test_parquet_goes_to_a_file(lake: Path, tmp_path: Path) -> None:
    """--format parquet --out FILE writes the result and says how many rows."""
    out = tmp_path / "r.parquet"
    res = run(
        lake, "SELECT ts, close FROM ohlc WHERE close > 1.6 ORDER BY ts", "--format", "parquet", "--out", str(out)
    )
    assert res.exit_code == 0, res.output
    assert pq.read_table(io.BytesIO(out.read_bytes())).column("ts").to_pylist()[0] == T0 + 20 * NS_PER_MIN
    assert res.stderr.strip() == f"10 rows written to {out}"


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd"'),
        ("COPY ohlc TO 'out.csv'", "COPY statements are not allowed"),
        ("ATTACH 'x.duckdb'", "ATTACH statements are not allowed"),
        ("SET threads = 1", "SET statements are not allowed"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SELECT count(*) FROM range(1000000000) a, range(1000000000) b", "time limit of 0.5s"),
    ],
)
def test_hostile_sql_is_one_error_line_and_exit_2(lake: Path, sql: str, fragment: str) -> None:
    """Each refusal, engine denial or timeout prints one ``error: sql: ...`` line on stderr and exits 2."""
    res = run(lake, sql, "--timeout", "0.5")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sql: ") and fragment in lines[0], res.stderr
    assert res.stdout == ""


def test_a_missing_data_directory_is_a_usage_error(tmp_path: Path) -> None:
    """A --data directory that does not exist exits 2 naming it."""
    res = run(tmp_path / "nope", "SELECT 1")
    assert res.exit_code == 2 and "data directory" in res.stderr and "does not exist" in res.stderr
