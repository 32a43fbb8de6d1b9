"""The CLI's error boundary: every user error is one line on stderr with exit 2 (usage) or 1 (operation).

Each case runs the real command in-process through click's runner; the
boundary (``dccd.cli.common.DccdGroup``) is the only thing between the
command and the user, as with the console script.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dccd.cli.common import DEBUG_HINT, describe
from dccd.cli.main import cli
from dccd.domain import Candle, DatasetId, DataType, Span, Symbol
from dccd.domain.timeutil import NS_PER_MIN, parse_iso_ns
from dccd.errors import ConfigError, ExchangeRejected
from dccd.storage import Lake, Provenance

DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
T0 = parse_iso_ns("2024-01-01")


def invoke(*args: str) -> Result:
    """Run ``dccd ARGS`` in-process."""
    return CliRunner().invoke(cli, list(args))


def one_line(res: Result, code: int, starts: str) -> str:
    """Assert exit ``code``, nothing on stdout, exactly one stderr line starting with ``starts``; return it."""
    assert res.exit_code == code, (res.exit_code, res.stderr)
    assert res.stdout == "", res.stdout
    assert res.stderr.count("\n") == 1 and res.stderr.endswith("\n"), res.stderr
    assert res.stderr.startswith(starts), res.stderr
    return res.stderr.rstrip("\n")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A lake holding ten 1m bars of binance BTC/USDT."""
    root = tmp_path / "data"
    bars = [Candle(T0 + i * NS_PER_MIN, 1.0, 2.0, 0.5, 1.5, 1.0) for i in range(10)]
    Lake(root).write(DS, bars, Provenance("binance", "rest"), now_ns=parse_iso_ns("2025-01-01"))
    return root


def test_read_into_a_missing_directory_is_one_line_exit_1(lake: Path, tmp_path: Path) -> None:
    """`read --out` into a directory that does not exist names the path: no traceback."""
    out = tmp_path / "nonexistent" / "dir" / "x.csv"
    res = invoke("--data", str(lake), "read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m",
                 "--format", "csv", "--out", str(out))  # fmt: skip
    assert one_line(res, 1, "error: ") == f"error: {out}: No such file or directory"


@pytest.mark.parametrize("command", ["backfill", "stream"])
def test_an_unusable_data_dir_is_one_line_exit_1_before_any_service(tmp_path: Path, command: str) -> None:
    """A lake root that cannot be created (its parent is a file) is one line naming it, before anything starts."""
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "data"
    args = ["--start", "-1h"] if command == "backfill" else ["--duration", "1"]
    res = invoke("--data", str(bad), command, "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", *args)
    assert one_line(res, 1, "error: ") == f"error: {bad}: Not a directory"


def test_serve_with_an_unusable_data_dir_is_one_line_exit_1(tmp_path: Path) -> None:
    """serve reports a bad storage path as that path, not as 'cannot serve on host:port'."""
    (tmp_path / "file").write_text("x")
    res = invoke("--data", str(tmp_path / "file" / "data"), "serve", "--port", "0")
    assert one_line(res, 1, "error: ") == f"error: {tmp_path / 'file' / 'data'}: Not a directory"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--concurrency", "0"],
         "error: --concurrency: 0 is not in the range 1<=x<=32"),
        (["backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m", "--concurrency", str(10**30)],
         f"error: --concurrency: {10**30} is not in the range 1<=x<=32"),
        (["backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "bogus"],
         "error: span: 'bogus' is not a span (1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M)"),
        (["runs", "--limit", "-1"], "error: --limit: -1 is not in the range 1<=x<=100000"),
        (["runs", "--limit", "x"], "error: --limit: 'x' is not a valid integer range"),
        (["stream", "binance", "BTC/USDT", "--type", "trades", "--duration", "-5"],
         "error: duration: must be a positive number of seconds (at most 315360000), got -5"),
        (["stream", "binance", "BTC/USDT", "--type", "trades", "--duration", "1e300"],
         "error: duration: must be a positive number of seconds (at most 315360000), got 1e+300"),
        (["serve", "--port", "70000"], "error: --port: 70000 is not in the range 0<=x<=65535"),
        (["nosuch"], "error: No such command 'nosuch' (see dccd --help)"),
        (["backfill", "binance"], "error: Missing argument 'SYMBOLS...' (see dccd backfill --help)"),
        (["read", "binance", "BTC/USDT"], "error: Missing option '--type' (see dccd read --help)"),
        (["runs", "--log-level", "loud"],
         "error: --log-level: 'loud' is not one of 'debug', 'info', 'warning', 'error'"),
    ],
)  # fmt: skip
def test_out_of_range_and_malformed_arguments_are_one_line_exit_2(tmp_path: Path, args: list[str], line: str) -> None:
    """Out-of-range numbers, bad choices, unknown commands and missing arguments: one line, exit 2, no usage text."""
    res = invoke("--data", str(tmp_path / "data"), *args)
    assert one_line(res, 2, "error: ") == line


def test_start_last_with_nothing_stored_is_a_usage_error(tmp_path: Path) -> None:
    """`backfill --type trades` resuming ('last', the default) with no stored trade is exit 2, before any request."""
    res = invoke("--data", str(tmp_path / "data"), "backfill", "binance", "BTC/USDT", "--type", "trades")
    line = one_line(res, 2, "error: start: ")
    assert "nothing is stored for binance:BTC/USDT:trades" in line and "origin" in line
    assert not (tmp_path / "data" / "_dccd").exists()  # no run was recorded


COMMANDS = [
    ["validate"],
    ["config", "show"],
    ["serve", "--port", "0"],
    ["stream", "binance", "BTC/USDT", "--type", "trades"],
    ["backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m"],
    ["read", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1m"],
    ["inventory"],
    ["runs"],
    ["compact"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_reports_a_bad_config_in_one_line(tmp_path: Path, args: list[str]) -> None:
    """A config file that does not exist: `config error: ...` on one line and exit 2, whatever the command."""
    missing = tmp_path / "missing.yaml"
    res = invoke("--config", str(missing), *args)
    assert one_line(res, 2, "config error: ") == f"config error: {missing}: no such config file"


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_reports_an_unknown_option_in_one_line(tmp_path: Path, args: list[str]) -> None:
    """An unknown option after any command: one line naming it, exit 2."""
    res = invoke("--data", str(tmp_path), *args, "--bogus")
    assert one_line(res, 2, "error: No such option '--bogus'")


def test_a_bug_is_one_line_with_the_debug_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception is one line naming its type plus the hint; --log-level debug adds the traceback."""

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("dccd.storage.RunStore.list_runs", broken)
    (tmp_path / "_dccd").mkdir()
    (tmp_path / "_dccd" / "runs.db").touch()
    res = invoke("--data", str(tmp_path), "runs")
    assert one_line(res, 1, "error: ") == f"error: unexpected RuntimeError: boom (a bug in dccd; {DEBUG_HINT})"
    res = invoke("--data", str(tmp_path), "runs", "--log-level", "debug")
    assert res.exit_code == 1 and "Traceback (most recent call last)" in res.stderr
    assert res.stderr.rstrip("\n").splitlines()[-1] == "error: unexpected RuntimeError: boom (a bug in dccd)"


def test_describe_finds_the_real_error_inside_nested_groups() -> None:
    """A Trio nursery's nested ExceptionGroup is reported by the leaf the user can act on, with its exit code."""
    disk = FileNotFoundError(2, "No such file or directory", "/proc/nope")
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [disk])])
    assert describe(group) == ("error: /proc/nope: No such file or directory", 1)
    mixed = ExceptionGroup("x", [RuntimeError("teardown"), ConfigError("storage.path", "not a directory")])
    assert describe(mixed) == ("config error: storage.path: not a directory (and 1 more error(s))", 2)
    rejected = ExchangeRejected("binance", -1121, "Invalid symbol.\nmore", status=400)
    assert describe(ExceptionGroup("x", [rejected])) == (
        "error: binance rejected the request (HTTP 400): code -1121: Invalid symbol. more",
        1,
    )
    assert describe(BaseExceptionGroup("x", [KeyboardInterrupt()])) == ("interrupted", 130)
