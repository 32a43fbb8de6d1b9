"""``dccd snapshot`` / ``dccd catalog`` commands and ``dccd read --as-of``."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from click.testing import CliRunner, Result

from dccd.cli.main import cli
from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.storage import Lake, Provenance, catalog

DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
T0 = 1_700_000_000_000_000_000
PROV = Provenance("test", "ws")
READ = ("read", "binance", "BTC/USDT", "--type", "trades")


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data", str(root), *args])


def _trades(first: int, n: int, price: float = 100.0) -> list[Trade]:
    return [Trade(T0 + i * 1_000_000, str(i), price + i % 3, 0.5, "buy", None) for i in range(first, first + n)]


def test_read_as_of_is_bit_identical_to_the_read_at_snapshot_time(tmp_path: Path) -> None:
    """csv and parquet output of ``read --as-of`` equal, byte for byte, what ``read`` gave when the snapshot
    was taken, after corrections, more rows and a compaction; the table view counts the same rows."""
    lake = Lake(tmp_path)
    for k in range(3):
        lake.write(DS, _trades(k * 10, 10), PROV, now_ns=T0 + 10**15)
    csv_then = run(tmp_path, *READ, "--format", "csv").stdout_bytes
    run(tmp_path, *READ, "--format", "parquet", "--out", str(tmp_path / "then.parquet"))
    res = run(tmp_path, "snapshot", "create", "--tag", "v1", "--note", "first cut")
    assert res.exit_code == 0 and res.stdout.startswith("snapshot 1 tag v1 at ")
    lake.write(DS, _trades(0, 10, price=5.0), PROV, now_ns=T0 + 10**15)
    lake.write(DS, _trades(30, 10), PROV, now_ns=T0 + 10**15)
    res = run(tmp_path, "compact")
    assert res.exit_code == 0, res.output
    assert run(tmp_path, *READ, "--format", "csv").stdout_bytes != csv_then
    for ref in ("v1", "1"):
        assert run(tmp_path, *READ, "--format", "csv", "--as-of", ref).stdout_bytes == csv_then
    run(tmp_path, *READ, "--format", "parquet", "--as-of", "v1", "--out", str(tmp_path / "now.parquet"))
    assert (tmp_path / "now.parquet").read_bytes() == (tmp_path / "then.parquet").read_bytes()
    assert "30 rows" in run(tmp_path, *READ, "--as-of", "v1").stdout
    res = run(tmp_path, *READ, "--as-of", "nope")
    assert res.exit_code == 2 and "--as-of: no snapshot 'nope'" in res.stderr


def test_snapshot_list_diff_prune_drop_and_export(tmp_path: Path) -> None:
    """The snapshot commands end to end: list shows counts, diff the changes, prune keeps tags, export is
    read by DuckDB alone, drop removes."""
    lake = Lake(tmp_path)
    lake.write(DS, _trades(0, 10), PROV, now_ns=T0 + 10**15)
    assert run(tmp_path, "snapshot", "create").exit_code == 0
    lake.write(DS, _trades(10, 10), PROV, now_ns=T0 + 10**15)
    assert run(tmp_path, "snapshot", "create", "--tag", "rel").exit_code == 0
    listed = json.loads(run(tmp_path, "snapshot", "list", "--json").stdout)
    assert [(s["snapshot_id"], s["tag"], s["rows"], s["parts"]) for s in listed] == [
        (1, None, 10, 1),
        (2, "rel", 20, 2),
    ]
    assert "rel" in run(tmp_path, "snapshot", "list").stdout
    (d,) = json.loads(run(tmp_path, "snapshot", "diff", "1", "rel", "--json").stdout)
    assert (d["rows_added"], d["rows_removed"], d["added_first_ts"]) == (10, 0, T0 + 10_000_000)
    assert "changed" in run(tmp_path, "snapshot", "diff", "1", "rel").stdout
    out = tmp_path / "exp"
    res = run(tmp_path, "snapshot", "export", "rel", str(out))
    assert res.exit_code == 0 and "20 rows" in res.stdout
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{out}/trades/**/*.parquet')").fetchone() == (
        20,
    )
    assert json.loads((out / "manifest.json").read_text())["tag"] == "rel"
    res = run(tmp_path, "snapshot", "prune", "--keep", "0")
    assert res.exit_code == 0 and res.stdout.startswith("dropped 1 snapshot(s)")
    assert [s["tag"] for s in json.loads(run(tmp_path, "snapshot", "list", "--json").stdout)] == ["rel"]
    assert run(tmp_path, "snapshot", "drop", "rel").exit_code == 0
    res = run(tmp_path, "snapshot", "drop", "rel")
    assert res.exit_code == 2 and "no snapshot 'rel'" in res.stderr
    res = run(tmp_path, "snapshot", "create", "--tag", "1abc")
    assert res.exit_code == 2 and "tag '1abc'" in res.stderr


def test_catalog_rebuild_and_status(tmp_path: Path) -> None:
    """``catalog rebuild`` after deleting catalog.db registers every part again; ``status`` counts them."""
    lake = Lake(tmp_path)
    for k in range(3):
        lake.write(DS, _trades(k * 10, 10), PROV, now_ns=T0 + 10**15)
    before = {f.path: (f.rows, f.checksum) for f in catalog.files_at(tmp_path, None)}
    catalog.forget(tmp_path)
    for f in (tmp_path / "_dccd").glob("catalog.db*"):
        f.unlink()
    res = run(tmp_path, "catalog", "rebuild")
    assert res.exit_code == 0 and "3 part(s) registered" in res.stdout
    catalog.forget(tmp_path)  # this process's connection predates the rebuild's file
    assert {f.path: (f.rows, f.checksum) for f in catalog.files_at(tmp_path, None)} == before
    doc = json.loads(run(tmp_path, "catalog", "status", "--json").stdout)
    assert doc["datasets"] == [
        {
            "dataset": "trades/exchange=binance/symbol=BTC-USDT",
            "parts": 3,
            "rows": 30,
            "bytes": doc["datasets"][0]["bytes"],
        }
    ]
