"""``dccd import PATH``: a dccd 3.8.1 data directory into the lake, every row once, its fidelity bugs fixed and counted.

The default tests import a directory written by :mod:`tests.storage.dccd3_layout` in
3.8.1's exact layout. ``test_real_dccd_3_8_1_writes_the_same_files_and_imports_the_same``
checks that claim against dccd 3.8.1 itself: it needs a Python with ``dccd==3.8.1``
(``DCCD3_PYTHON=/path/to/python``, or ``DCCD_TEST_INSTALL_DCCD3=1`` to pip-install it
into a venv under the session's tmp dir; the package index must be reachable) and is
skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from dccd.cli.main import cli
from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.storage import Lake
from tests.storage import dccd3_layout as v3

S = v3.S


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data", str(root), *args])


def _ds(exchange: str, symbol: str, dtype: DataType, span: str | None = None) -> DatasetId:
    return DatasetId(exchange, Symbol.parse(symbol), dtype, Span.parse(span) if span else None)


def _expected(datasets: list[v3.V3Dataset]) -> dict[str, object]:
    """The report the fixture must give: every row read; the 3 that are not bars or fail a gate not imported."""
    by = {(d.exchange, d.kind, d.market): d for d in datasets}
    coinbase = by["coinbase", "trades", "spot"].records
    kraken = by["kraken", "trades", "spot"].records
    rows = sum(len(d.records) if d.kind != "orderbook" else 10 * len(d.records) for d in datasets) + v3.LEGACY_ROWS
    noisy = sum(1 for r in kraken if r["ts"] % 1000 and r["amount"] > 0)
    return {
        "rows_read": rows,
        "rows_imported": rows - 3,  # the BitMEX empty bin, the forming 1h bar, the negative amount
        "rows_skipped": 0,
        "rows_quarantined": 1,
        "fixed": {
            "bitmex_close_time": 1439,
            "coinbase_side": sum(r["side"] is not None for r in coinbase),
            "kraken_float_time": noisy + (1 if kraken[500]["ts"] % 1000 else 0),
            "ts_unit": v3.LEGACY_ROWS,
        },
        "dropped": {"bitmex_empty_bin": 1, "open_bar": 1},
        "quarantined": {"amount_non_negative": 1},
    }


def _check_report(doc: dict[str, object], want: dict[str, object]) -> None:
    assert {k: doc[k] for k in want} == want


def _check_lake(root: Path) -> None:
    """Spot checks of the imported values: each fix applied, nothing else changed."""
    lake = Lake(root)
    cb = lake.read_table(_ds("coinbase", "BTC/USD", DataType.TRADES)).table
    src = {r["tid"]: r for r in v3.spec()[0].records}
    flip = {"buy": "sell", "sell": "buy", None: None}
    assert cb.num_rows == 5760
    assert all(r["side"] == flip[src[r["id"]]["side"]] and r["ts"] == src[r["id"]]["ts"] for r in cb.to_pylist())
    kr = lake.read_table(_ds("kraken", "BTC/USD", DataType.TRADES)).table
    assert kr.num_rows == 999 and all(t % 1000 == 0 for t in kr["ts"].to_pylist())
    assert kr["ts"][0].as_py() == 1_704_067_200_000_000_000  # i=0: 0 µs past the second
    bm = lake.read_table(_ds("bitmex", "BTC/USD:perp", DataType.OHLC, "1m")).table
    assert bm.num_rows == 1439 and bm["ts"][0].as_py() == v3.T0  # the close-time label moved to the open
    assert v3.T0 + 100 * 60 * S not in bm["ts"].to_pylist()  # the empty bin: no bar
    bn = lake.read_table(_ds("binance", "BTC/USDT", DataType.OHLC, "1h")).table
    assert bn.num_rows == 47 and bn["ts"][-1].as_py() == v3.T0 + 46 * 3600 * S  # 23:00 of Jan 2 was still open
    legacy = lake.read_table(_ds("bitfinex", "BTC/USD", DataType.OHLC, "1d")).table
    assert legacy["ts"][0].as_py() == v3.parse_day_ms("2023-06-01") * 1_000_000
    assert legacy["quote_volume"].to_pylist() == [324_000.0] * v3.LEGACY_ROWS
    book = lake.read_table(_ds("binance", "BTC/USDT", DataType.BOOK)).table
    assert book.num_rows == 100 and set(book["side"].to_pylist()) == {"bid", "ask"}
    assert lake.read_table(_ds("okx", "BTC/USDT:perp", DataType.OI)).table.num_rows == 288
    assert lake.read_table(_ds("binance", "BTC/USDT:perp", DataType.FUNDING)).table.num_rows == 30
    part = next((root / "trades").rglob("part-*.parquet"))
    assert json.loads(pq.read_metadata(part).metadata[b"dccd.provenance"])["transport"] == "import:dccd-3"


def test_import_of_a_3_8_1_dir_imports_every_row_once_with_its_fixes_counted(tmp_path: Path) -> None:
    src = v3.write_v3_dir(tmp_path / "old")
    lake = tmp_path / "lake"
    first = run(lake, "import", str(src), "--json")
    assert first.exit_code == 0, first.output
    _check_report(json.loads(first.stdout), _expected(v3.spec()))
    _check_lake(lake)
    again = run(lake, "import", str(src))
    assert again.exit_code == 0, again.output
    *_, summary, timing = again.stdout.splitlines()
    assert summary == (  # the quarantined row counts as present too: nothing is quarantined twice
        "9 files, 8 datasets: 8,696 rows read, 0 imported, 0 fixed, 0 quarantined, 8,694 skipped (already present),"
        " 2 dropped (bitmex_empty_bin 1, open_bar 1)"
    )
    assert timing.endswith("rows/s")


def test_import_skips_rows_the_lake_already_holds(tmp_path: Path) -> None:
    """Half of the Coinbase trades collected by dccd already: only the other half is imported."""
    src = v3.write_v3_dir(tmp_path / "old", [v3.spec()[0]], legacy=False)
    half = tmp_path / "half"
    records = v3.spec()[0].records
    v3.write_v3_dir(
        half, [v3.V3Dataset("coinbase", "BTC", "USD", "spot", "trades", None, records[:2880])], legacy=False
    )
    lake = tmp_path / "lake"
    assert run(lake, "import", str(half)).exit_code == 0
    res = run(lake, "import", str(src), "--json")
    doc = json.loads(res.stdout)
    assert (doc["rows_read"], doc["rows_imported"], doc["rows_skipped"]) == (5760, 2880, 2880)
    assert Lake(lake).read_table(_ds("coinbase", "BTC/USD", DataType.TRADES)).table.num_rows == 5760


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is not a directory"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no dccd 3.x data (expected EXCHANGE/"),
    ],
    ids=["missing", "file", "not-v3"],
)
def test_bad_path_is_one_line_and_nothing_is_written(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    res = run(tmp_path / "lake", "import", str(path))
    assert res.exit_code == 2
    (line,) = res.stderr.splitlines()
    assert line.startswith("error: PATH: ") and message in line
    assert not (tmp_path / "lake").exists()


def _dccd3_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with dccd 3.8.1 (see the module docstring), or skip."""
    given = os.environ.get("DCCD3_PYTHON")
    if given:
        return given
    if os.environ.get("DCCD_TEST_INSTALL_DCCD3") != "1":
        pytest.skip("needs dccd 3.8.1: set DCCD3_PYTHON, or DCCD_TEST_INSTALL_DCCD3=1 to pip-install it")
    venv = tmp_path_factory.getbasetemp() / "venv-dccd3"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "dccd==3.8.1"], check=True, timeout=600)
    return str(venv / "bin" / "python")


def test_real_dccd_3_8_1_writes_the_same_files_and_imports_the_same(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """dccd 3.8.1's own ParquetStore.save, given the fixture's records, writes the very files the fixture writes
    (same paths, columns, types, values, modification times); importing its directory gives the same report."""
    python = _dccd3_python(tmp_path_factory)
    mine = v3.write_v3_dir(tmp_path / "mine", legacy=False)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(v3.spec_json())
    real = tmp_path / "real"
    subprocess.run([python, "-I", "-c", v3.V3_SCRIPT, str(real), str(spec_file)], check=True, timeout=300)
    files = sorted(p.relative_to(mine) for p in mine.rglob("*.parquet"))
    assert files == sorted(p.relative_to(real) for p in real.rglob("*.parquet"))
    for rel in files:
        a, b = pq.read_table(mine / rel), pq.read_table(real / rel)
        keys = [(c, "ascending") for c in a.column_names if c != "is_snapshot"]
        assert a.schema.remove_metadata() == b.schema.remove_metadata(), rel
        assert a.sort_by(keys).replace_schema_metadata(None).equals(b.sort_by(keys).replace_schema_metadata(None))
        assert (mine / rel).stat().st_mtime_ns == (real / rel).stat().st_mtime_ns
    v3.write_legacy_v2(real)
    res = run(tmp_path / "lake", "import", str(real), "--json")
    assert res.exit_code == 0, res.output
    _check_report(json.loads(res.stdout), _expected(v3.spec()))
    _check_lake(tmp_path / "lake")


def test_an_unreadable_file_is_listed_and_the_others_are_imported(tmp_path: Path) -> None:
    src = v3.write_v3_dir(tmp_path / "old", [v3.spec()[0]], legacy=False)
    bad = src / "coinbase" / "trades" / "BTC-USD" / "2024-01-03.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    (src / "coinbase" / "trades" / "BTC-USD" / "notes.txt").write_text("not data")
    res = run(tmp_path / "lake", "import", str(src))
    assert res.exit_code == 1
    run_line, failed, summary, _timing = res.stdout.splitlines()
    assert run_line.startswith("run ") and run_line.endswith(": failed")
    assert failed.startswith("failed coinbase/trades/BTC-USD/2024-01-03.parquet: ArrowInvalid: ")
    assert summary.startswith("2 files, 1 datasets: 5,760 rows read, 5,760 imported, ")


def test_import_is_one_run_with_its_counts(tmp_path: Path) -> None:
    """Each ``dccd import`` is one run in ``dccd runs`` (operation ``import``) whose record holds the
    report's counts (imported, fixed, quarantined, skipped), and whose parts carry its run id: the rows went
    through the run's writer actor."""
    src = v3.write_v3_dir(tmp_path / "old")
    lake = tmp_path / "lake"
    first = json.loads(run(lake, "import", str(src), "--json").stdout)
    again = json.loads(run(lake, "import", str(src), "--json").stdout)
    res = run(lake, "runs", "--json")
    assert res.exit_code == 0, res.output
    runs = {r["run_id"]: r for r in json.loads(res.stdout) if r["operation"] == "import"}
    assert set(runs) == {first["run_id"], again["run_id"]}
    one, two = runs[first["run_id"]], runs[again["run_id"]]
    assert one["state"] == two["state"] == "succeeded"
    assert one["rows_written"] == one["progress"]["imported"] == first["rows_imported"] > 8_000
    assert one["rows_quarantined"] == one["progress"]["quarantined"] == 1
    assert one["progress"]["fixed"] == sum(first["fixed"].values()) > 7_000
    assert one["progress"]["skipped"] == 0 and one["progress"]["done"] == one["progress"]["total"] == 9
    assert two["rows_written"] == two["progress"]["imported"] == 0
    assert two["progress"]["skipped"] == first["rows_imported"] + 1  # the quarantined row counts as present
    parts = list((lake / "trades").rglob("part-*.parquet"))
    assert parts and {json.loads(pq.read_metadata(p).metadata[b"dccd.provenance"])["run_id"] for p in parts} == {
        first["run_id"]
    }
