"""CLI lake commands: read (table/csv/json/parquet), inventory, runs, compact, and one-line usage errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from dccd.cli.main import cli
from dccd.domain import Candle, DatasetId, DataType, Span, Symbol
from dccd.domain.timeutil import NS_PER_MIN, parse_iso_ns
from dccd.storage import Lake, Provenance, RunStore

DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
T0 = parse_iso_ns("2024-01-01")
NOW = parse_iso_ns("2025-01-01")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A lake with 30 one-minute bars (minute 5 missing) in two overlapping parts."""
    lk = Lake(tmp_path)
    bars = [Candle(T0 + i * NS_PER_MIN, 1.0, 2.0, 0.5, 1.5, float(i)) for i in range(31) if i != 5]
    lk.write(DS, bars[:20], Provenance("binance", "rest"), now_ns=NOW)
    lk.write(DS, bars[15:], Provenance("binance", "rest"), now_ns=NOW)
    return tmp_path


def run(root: Path, *args: str) -> Result:
    """Invoke dccd with --data root."""
    return CliRunner().invoke(cli, ["--data", str(root), *args])


def test_read_table_shows_count_head_and_tail(lake: Path) -> None:
    """The table view prints the row count, the first and last rows (ISO ts) and elides the middle."""
    res = run(lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m")
    assert res.exit_code == 0, res.output
    assert "30 rows" in res.stdout and "2024-01-01T00:00:00Z" in res.stdout and "2024-01-01T00:30:00Z" in res.stdout
    assert "2024-01-01T00:15:00Z" not in res.stdout and "…" in res.stdout


def test_read_csv_streams_to_stdout_with_range(lake: Path) -> None:
    """CSV goes to stdout: header then rows in [start, end), ts as int ns; the slug form of a symbol works too."""
    res = run(lake, "read", "binance", "BTC-USDT", "--type", "ohlc", "--span", "1m", "--format", "csv",
              "--start", "2024-01-01T00:04", "--end", "2024-01-01T00:07")  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith('"ts","open"') and [int(x.split(",")[0]) for x in lines[1:]] == [
        T0 + 4 * NS_PER_MIN,
        T0 + 6 * NS_PER_MIN,
    ]


def test_read_json_and_parquet_to_files(lake: Path, tmp_path: Path) -> None:
    """JSON lines and Parquet land in --out, deduplicated (30 rows)."""
    out = tmp_path / "x.jsonl"
    res = run(
        lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--format", "json", "--out", str(out)
    )
    assert res.exit_code == 0 and "30 rows written" in res.stderr
    assert [json.loads(line)["volume"] for line in out.read_text().splitlines()][:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 6.0]
    pout = tmp_path / "x.parquet"
    res = run(
        lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--format", "parquet", "--out", str(pout)
    )
    assert res.exit_code == 0 and pq.read_table(pout).num_rows == 30


def test_read_parquet_to_a_pipe(lake: Path) -> None:
    """Without --out and off a terminal, Parquet bytes go to stdout."""
    res = run(lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--format", "parquet")
    assert res.exit_code == 0 and pq.read_table(io.BytesIO(res.stdout_bytes)).num_rows == 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["binance", "BTC/USDT", "--type", "candles"], "error: --type: 'candles' is not a data type"),
        (["binance", "BTC/USDT", "--type", "ohlc"], "error: --span is required for --type ohlc"),
        (["binance", "BTC/USDT", "--type", "trades", "--span", "1m"], "error: --span applies to ohlc only"),
        (["binance", "BTC/USDT", "--type", "ohlc", "--span", "7m"], "error: --span: '7m' is not a span"),
        (["binance", "BTCUSDT", "--type", "trades"], "error: SYMBOL: 'BTCUSDT' is not a symbol slug"),
        (["Binance!", "BTC/USDT", "--type", "trades"], "error: EXCHANGE: 'Binance!' is not an exchange name"),
        (["binance", "BTC/USDT", "--type", "trades", "--start", "soon"], "error: --start: 'soon' is not an ISO-8601"),
        (["binance", "BTC/USDT", "--type", "trades", "--start", "2024-02-01", "--end", "2024-01-01"],
         "error: --start must be before --end"),
        (["binance", "BTC/USDT", "--type", "trades", "--out", "x.csv"], "error: --out needs --format"),
    ],
)  # fmt: skip
def test_bad_read_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    """Each bad argument gives exit 2 and a single 'error: ...' line naming it."""
    res = run(tmp_path, "read", *args)
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(message)


def test_corrupt_parts_warn_but_succeed(lake: Path) -> None:
    """A corrupt part is named in a warning on stderr; the read still exits 0."""
    part = sorted(lake.rglob("part-*.parquet"))[0]
    part.write_bytes(b"garbage" * 20)
    res = run(lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--format", "csv")
    assert res.exit_code == 0 and f"warning: skipped {part}" in res.stderr
    assert len(res.stdout.splitlines()) == 1 + 15  # the second part's 15 rows


def test_inventory_json_lists_rows_and_gaps(lake: Path) -> None:
    """inventory --json gives rows, range and the exact missing bar interval."""
    res = run(lake, "inventory", "--json")
    assert res.exit_code == 0, res.output
    (item,) = json.loads(res.stdout)
    assert item["rows"] == 30 and item["gaps"] == [[T0 + 5 * NS_PER_MIN, T0 + 6 * NS_PER_MIN]]
    assert item["first_ts"] == T0 and item["last_ts"] == T0 + 30 * NS_PER_MIN and item["parts"] == 2
    table = run(lake, "inventory")
    assert table.exit_code == 0 and "BTC/USDT" in table.stdout and "ohlc 1m" in table.stdout


def test_runs_json_filters_and_includes_events(tmp_path: Path) -> None:
    """runs --json lists runs newest first with events; --state filters; --limit caps."""
    store = RunStore(tmp_path)
    a = store.create("backfill", DS, state="running", now_ns=1)
    b = store.create("stream", DS, state="running", now_ns=2)
    store.event(b, "reconnect", detail="1006")
    store.finish(a, "failed", error="boom")
    docs = json.loads(run(tmp_path, "runs", "--json").stdout)
    assert [d["run_id"] for d in docs] == [b, a] and docs[0]["events"][0]["kind"] == "reconnect"
    assert [d["run_id"] for d in json.loads(run(tmp_path, "runs", "--json", "--state", "failed").stdout)] == [a]
    assert len(json.loads(run(tmp_path, "runs", "--json", "--limit", "1").stdout)) == 1
    text = run(tmp_path, "runs")
    assert text.exit_code == 0 and "boom" in text.stdout
    assert run(tmp_path, "runs", "--state", "done").exit_code == 2


def test_runs_on_a_fresh_lake_creates_nothing(tmp_path: Path) -> None:
    """Listing runs of a lake without history prints an empty list and creates no database."""
    res = run(tmp_path, "runs", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == [] and not (tmp_path / "_dccd").exists()


def test_compact_all_and_one_dataset(lake: Path) -> None:
    """compact merges every partition; naming a dataset needs EXCHANGE SYMBOL --type."""
    res = run(lake, "compact", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m")
    assert res.exit_code == 0 and "compacted 1 partition(s)" in res.stdout
    assert len(list(lake.rglob("part-*.parquet"))) == 1
    assert "compacted 0 partition(s)" in run(lake, "compact").stdout
    bad = run(lake, "compact", "binance")
    assert bad.exit_code == 2 and "EXCHANGE SYMBOL --type" in bad.stderr


@pytest.mark.parametrize(
    "args",
    [["read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m"], ["inventory"], ["inventory", "--json"],
     ["runs"], ["compact"]],
)  # fmt: skip
def test_a_data_dir_that_does_not_exist_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    """read/inventory/runs/compact on a missing data dir exit 2 with one line naming it, and create nothing."""
    res = run(tmp_path / "nope", *args)
    assert res.exit_code == 2, res.output
    assert (
        res.stderr
        == f"error: data directory {tmp_path / 'nope'} does not exist (set by --data, DCCD_DATA or storage.path)\n"
    )
    assert res.stdout == "" and not (tmp_path / "nope").exists()


def test_reading_a_never_collected_dataset_fails_naming_the_nearest(lake: Path) -> None:
    """A dataset never collected exits 1 with one line listing what the lake holds for that exchange/symbol."""
    res = run(lake, "read", "binance", "BTC/USDT", "--type", "trades", "--format", "csv")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr == f"error: no binance BTC/USDT trades stored in {lake}; nearest: binance BTC/USDT ohlc 1m\n"
    other = run(lake, "read", "binance", "ETH/USDT", "--type", "ohlc", "--span", "1m")
    assert other.exit_code == 1 and other.stderr.endswith("; nearest: binance BTC/USDT ohlc 1m\n")


def test_an_empty_range_of_a_collected_dataset_says_what_is_stored(lake: Path) -> None:
    """Zero rows in the asked range is a success, with the stored range on stderr."""
    res = run(lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--start", "2023-01-01",
              "--end", "2023-02-01", "--format", "csv")  # fmt: skip
    assert res.exit_code == 0 and res.stdout.count("\n") == 1
    assert (
        "note: no rows in the range; binance:BTC/USDT:ohlc:1m holds 2024-01-01T00:00:00Z .. 2024-01-01T00:30:00Z"
        in res.stderr
    )
    table = run(lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--start", "2023-01-01",
                "--end", "2023-02-01")  # fmt: skip
    assert table.exit_code == 0 and "0 rows" in table.stdout and "note: no rows in the range" in table.stderr


def test_quarantine_moves_a_corrupt_part_keeping_its_relative_path(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dccd quarantine PATH moves the part under _dccd/quarantine/; reads then stop warning about it."""
    part = sorted(lake.rglob("part-*.parquet"))[0]
    part.write_bytes(b"garbage" * 20)
    assert "warning: skipped" in run(lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m").stderr
    monkeypatch.chdir(part.parent)
    res = run(lake, "quarantine", part.name)
    dest = lake / "_dccd" / "quarantine" / part.relative_to(lake)
    assert res.exit_code == 0, res.output
    assert res.stdout == f"quarantined {part.name} -> {dest}\n"
    assert dest.read_bytes() == b"garbage" * 20 and not part.exists()
    after = run(lake, "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--format", "csv")
    assert after.exit_code == 0 and after.stderr == "" and len(after.stdout.splitlines()) == 1 + 15


@pytest.mark.parametrize(
    ("target", "message"),
    [("outside", "is not inside the lake"), ("meta", "is dccd's own state, not data"), ("dir", "is not a file"),
     ("missing", "is not a file")],
)  # fmt: skip
def test_quarantine_refuses_paths_outside_the_data(lake: Path, tmp_path_factory: pytest.TempPathFactory,
                                                   target: str, message: str) -> None:  # fmt: skip
    """Only a file under the lake root (not _dccd) can be quarantined; anything else exits 2 in one line."""
    outside = tmp_path_factory.mktemp("elsewhere") / "part-x.parquet"
    outside.write_bytes(b"x")
    (lake / "_dccd").mkdir(exist_ok=True)
    (lake / "_dccd" / "runs.db").write_bytes(b"")
    paths = {"outside": outside, "meta": lake / "_dccd" / "runs.db", "dir": lake / "ohlc",
             "missing": lake / "ohlc" / "part-none.parquet"}  # fmt: skip
    res = run(lake, "quarantine", str(paths[target]))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.output


def test_inventory_prints_each_gap_range_with_its_count(lake: Path) -> None:
    """The table view lists every gap as an exact range with its count, not only how many there are."""
    res = run(lake, "inventory")
    assert res.exit_code == 0, res.output
    assert (
        "gap binance BTC/USDT ohlc 1m: [2024-01-01T00:05:00Z, 2024-01-01T00:06:00Z) (1 bar missing) [bars]"
        in res.stdout
    )
    (item,) = json.loads(run(lake, "inventory", "--json").stdout)
    assert item["gap_ranges"] == [
        {"lo": T0 + 5 * NS_PER_MIN, "hi": T0 + 6 * NS_PER_MIN, "unit": "ns", "count": 1, "source": "bars",
         "detail": "", "first_ts": None, "last_ts": None}
    ] and item["missing"] == 1  # fmt: skip
