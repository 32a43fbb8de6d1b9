"""The config contract through the real CLI: every bad config exits 2 with one exact line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dccd.cli.main import cli
from dccd.config import (
    check_url,
    expand_jobs,
    load_config,
    parse_config,
    parse_duration_s,
    resolve_end,
    resolve_start,
)
from dccd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example.yaml"
EXCHANGES = "binance bitfinex bitmex bybit coinbase kraken okx"
SPANS = "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M"
JOB_KEYS = (
    "exchange symbols type operation name span start end every cron once derive_from scanner params on_new_bars source"
    " distribute"
)
TRADES = "  - {exchange: binance, symbols: [BTC/USDT], type: trades"  # close with "}\n"


def job(extra: str = "") -> str:
    """A one-job config: binance BTC/USDT trades plus ``extra`` flow-mapping keys."""
    return f"jobs:\n{TRADES}{', ' + extra if extra else ''}}}\n"


def make_runner(env: dict[str, str] | None = None) -> CliRunner:
    """A CliRunner whose result.stderr is separate from stdout on any click version."""
    try:
        return CliRunner(mix_stderr=False, env=env)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        return CliRunner(env=env)  # click >= 8.2 always keeps stderr apart


def dccd_script() -> str:
    """The installed `dccd` console script of this interpreter's environment."""
    found = shutil.which("dccd", path=str(Path(sys.executable).parent)) or shutil.which("dccd")
    assert found, "the dccd console script is not installed"
    return found


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DCCD_* from the outer shell, and a scratch cwd so ./data never lands in the repo."""
    for key in list(os.environ):
        if key.startswith("DCCD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


# (id, YAML text, env, expected stderr line). "{path}" stands for the config file's path.
BAD: list[tuple[str, str, dict[str, str], str]] = [
    (
        "unknown-top-level-key",
        "storage: {path: x}\nfoo: 1\n",
        {},
        "foo: unknown key (expected one of: storage server exchanges jobs alerts contracts bus shard)",
    ),
    (
        "unknown-storage-key",
        "storage: {pth: x}\n",
        {},
        "storage.pth: unknown key (expected one of: path compact_every compact_min_age compact_fan_in s3 cache_dir)",
    ),
    (
        "unknown-server-key",
        "server: {hots: 0.0.0.0}\n",
        {},
        "server.hots: unknown key (expected one of: host port token allowed_hosts)",
    ),
    (
        "unknown-exchange-key",
        "exchanges: {kraken: {rest: 'https://x'}}\n",
        {},
        "exchanges.kraken.rest: unknown key (expected one of: rest_url ws_url rate_limit archive_url)",
    ),
    (
        "unknown-job-key",
        f"jobs:\n{TRADES}}}\n{TRADES}, spn: 1m}}\n",
        {},
        f"jobs[1].spn: unknown key (expected one of: {JOB_KEYS})",
    ),
    (
        "port-as-string",
        "server: {port: '8080'}\n",
        {},
        "server.port: expected a TCP port number (0-65535), got a string",
    ),
    (
        "symbols-not-a-list",
        "jobs:\n  - {exchange: binance, symbols: BTC/USDT, type: trades}\n",
        {},
        "jobs[0].symbols: expected a list of symbols such as [BTC/USDT], got a string",
    ),
    (
        "symbol-not-a-string",
        "jobs:\n  - {exchange: binance, symbols: [1], type: trades}\n",
        {},
        "jobs[0].symbols[0]: expected a symbol such as BTC/USDT, got an integer",
    ),
    ("jobs-a-mapping", "jobs: {exchange: binance}\n", {}, "jobs: expected a list of jobs, got a mapping"),
    ("storage-a-list", "storage: [./data]\n", {}, "storage: expected a mapping, got a list"),
    ("once-not-bool", job("once: sometimes"), {}, "jobs[0].once: expected true or false, got a string"),
    (
        "every-a-number",
        job("every: 3600"),
        {},
        "jobs[0].every: expected a duration such as 90s 15m 1h 1d, got an integer",
    ),
    (
        "missing-exchange",
        "jobs:\n  - {symbols: [BTC/USDT], type: trades}\n",
        {},
        "jobs[0].exchange: required key is missing",
    ),
    (
        "bad-operation",
        job("operation: live"),
        {},
        "jobs[0].operation: 'live' is not an operation (backfill stream scan)",
    ),
    (
        "bad-span",
        f"jobs:\n{TRADES}}}\n  - {{exchange: binance, symbols: [BTC/USDT], type: ohlc, span: 7m}}\n",
        {},
        f"jobs[1].span: '7m' is not a span ({SPANS})",
    ),
    ("span-on-trades", job("span: 1m"), {}, "jobs[0].span: only ohlc jobs take a span, and this is a trades job"),
    (
        "ohlc-without-span",
        "jobs:\n  - {exchange: binance, symbols: [BTC/USDT], type: ohlc}\n",
        {},
        f"jobs[0].span: ohlc jobs need a span ({SPANS})",
    ),
    (
        "bad-symbol",
        "jobs:\n  - {exchange: binance, symbols: [BTCUSDT], type: trades}\n",
        {},
        "jobs[0].symbols[0]: 'BTCUSDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)",
    ),
    (
        "bad-market",
        "jobs:\n  - {exchange: binance, symbols: ['BTC/USDT:fut'], type: trades}\n",
        {},
        "jobs[0].symbols[0]: 'BTC/USDT:fut' has unknown market 'fut' (expected one of: perp)",
    ),
    (
        "duplicate-symbol",
        "jobs:\n  - {exchange: binance, symbols: [BTC/USDT, ETH/USDT, btc/usdt], type: trades}\n",
        {},
        "jobs[0].symbols[2]: 'btc/usdt' is listed twice (also symbols[0])",
    ),
    (
        "empty-symbols",
        "jobs:\n  - {exchange: binance, symbols: [], type: trades}\n",
        {},
        "jobs[0].symbols: must list at least one symbol",
    ),
    (
        "unknown-exchange-in-job",
        "jobs:\n  - {exchange: binanse, symbols: [BTC/USDT], type: trades}\n",
        {},
        f"jobs[0].exchange: 'binanse' is not a known exchange ({EXCHANGES})",
    ),
    (
        "unknown-exchange-section",
        "exchanges: {ftx: {rate_limit: 0.5}}\n",
        {},
        f"exchanges.ftx: 'ftx' is not a known exchange ({EXCHANGES})",
    ),
    (
        "bad-type",
        "jobs:\n  - {exchange: binance, symbols: [BTC/USDT], type: candles}\n",
        {},
        "jobs[0].type: 'candles' is not a data type (trades ohlc book funding oi)",
    ),
    (
        "stream-with-every",
        job("operation: stream, every: 1h"),
        {},
        "jobs[0].every: streams run supervised forever and take no schedule",
    ),
    (
        "stream-with-once",
        job("operation: stream, once: true"),
        {},
        "jobs[0].once: streams run supervised forever and take no schedule",
    ),
    (
        "stream-with-start",
        job("operation: stream, start: '2024-01-01'"),
        {},
        "jobs[0].start: streams take no start/end",
    ),
    (
        "stream-of-funding",
        "jobs:\n  - {exchange: binance, symbols: ['BTC/USDT:perp'], type: funding, operation: stream}\n",
        {},
        "jobs[0].type: 'funding' cannot be streamed (trades ohlc book)",
    ),
    (
        "two-schedules",
        job("every: 1h, cron: '5 * * * *'"),
        {},
        "jobs[0].cron: a job has one schedule, but every and cron are set",
    ),
    ("every-zero", job("every: 0s"), {}, "jobs[0].every: '0s' is not a positive duration (e.g. 90s 15m 1h 1d 1w)"),
    ("every-bad-unit", job("every: 1y"), {}, "jobs[0].every: '1y' is not a positive duration (e.g. 90s 15m 1h 1d 1w)"),
    (
        "cron-four-fields",
        job("cron: '5 * * *'"),
        {},
        "jobs[0].cron: '5 * * *' is not a cron expression: it has 4 fields, not 5 (minute hour day month weekday)",
    ),
    (
        "cron-word",
        job("cron: hourly"),
        {},
        "jobs[0].cron: 'hourly' is not a cron expression: it has 1 field, not 5 (minute hour day month weekday)",
    ),
    (
        "cron-minute-61",
        job("cron: '61 * * * *'"),
        {},
        "jobs[0].cron: '61 * * * *' is not a cron expression: error validating expression '61': the last value (61) is higher than the maximum value (59)",
    ),
    (
        "cron-month-13",
        job("cron: '0 0 1 13 *'"),
        {},
        "jobs[0].cron: '0 0 1 13 *' is not a cron expression: error validating expression '13': the last value (13) is higher than the maximum value (12)",
    ),
    (
        "cron-bad-weekday",
        job("cron: '0 0 * * funday'"),
        {},
        "jobs[0].cron: '0 0 * * funday' is not a cron expression: 'funday' is not a weekday (0-7 or sun-sat)",
    ),
    (
        "cron-zero-step",
        job("cron: '*/0 * * * *'"),
        {},
        "jobs[0].cron: '*/0 * * * *' is not a cron expression: increment must be higher than 0",
    ),
    ("cron-never-fires", job("cron: '0 0 30 2 *'"), {}, "jobs[0].cron: '0 0 30 2 *' never fires (no such date)"),
    (
        "bad-start",
        job("start: yesterday"),
        {},
        "jobs[0].start: 'yesterday' is not a start (ISO date/datetime, -30d, last or origin)",
    ),
    (
        "impossible-start-date",
        job("start: 2024-02-30"),
        {},
        "jobs[0].start: '2024-02-30' is not a start (ISO date/datetime, -30d, last or origin)",
    ),
    ("bad-end", job("end: last"), {}, "jobs[0].end: 'last' is not an end (ISO date/datetime, -1h or now)"),
    (
        "end-before-start",
        job("start: 2024-02-01, end: 2024-01-31T23:59:59Z"),
        {},
        "jobs[0].end: '2024-01-31T23:59:59Z' is not after start '2024-02-01'",
    ),
    ("relative-end-before-start", job("start: -1h, end: -2h"), {}, "jobs[0].end: '-2h' is not after start '-1h'"),
    (
        "start-year-1",  # an int64-ns overflow: `serve` used to exit 1 at every start
        job("start: 0001-01-01"),
        {},
        "jobs[0].start: '0001-01-01' is before 2009-01-03 (the first Bitcoin block): no exchange has data that old; use origin for the exchange's first data",
    ),
    (
        "start-relative-overflow",
        job("start: -99999999d"),
        {},
        "jobs[0].start: '-99999999d' is before 2009-01-03 (the first Bitcoin block): no exchange has data that old; use origin for the exchange's first data",
    ),
    ("end-far-future", job("end: 9999-01-01"), {}, "jobs[0].end: '9999-01-01' is more than 24h in the future"),
    (
        "allowed-host-with-path",
        "server: {allowed_hosts: [localhost, 'evil.com/x']}\n",
        {},
        "server.allowed_hosts[1]: 'evil.com/x' is not a host name or host:port (or * for any)",
    ),
    (
        "allowed-hosts-not-a-list",
        "server: {allowed_hosts: localhost}\n",
        {},
        "server.allowed_hosts: expected a list of host names such as [localhost, dccd.lan:8080], got a string",
    ),
    (
        "rest-url-wrong-scheme",
        "exchanges: {binance: {rest_url: 'ws://127.0.0.1:9000'}}\n",
        {},
        "exchanges.binance.rest_url: 'ws://127.0.0.1:9000' is not a URL like https://host[:port][/prefix] (scheme http or https)",
    ),
    (
        "ws-url-wrong-scheme",
        "exchanges: {okx: {ws_url: 'https://ws.okx.com'}}\n",
        {},
        "exchanges.okx.ws_url: 'https://ws.okx.com' is not a URL like wss://host[:port][/prefix] (scheme ws or wss)",
    ),
    (
        "url-with-query",
        "exchanges: {binance: {rest_url: 'https://x/api?key=1'}}\n",
        {},
        "exchanges.binance.rest_url: 'https://x/api?key=1' is not a URL like https://host[:port][/prefix] (scheme http or https)",
    ),
    (
        "url-bad-port",
        "exchanges: {binance: {rest_url: 'http://127.0.0.1:99999'}}\n",
        {},
        "exchanges.binance.rest_url: 'http://127.0.0.1:99999' has port 99999, not 1-65535",
    ),
    (
        "rate-limit-above-1",
        "exchanges: {binance: {rate_limit: 1.5}}\n",
        {},
        "exchanges.binance.rate_limit: 1.5 is not a share between 0 and 1 (e.g. 0.8)",
    ),
    (
        "rate-limit-negative",
        "exchanges: {kraken: {rate_limit: -0.1}}\n",
        {},
        "exchanges.kraken.rate_limit: -0.1 is not a share between 0 and 1 (e.g. 0.8)",
    ),
    (
        "rate-limit-nan",
        "exchanges: {kraken: {rate_limit: .nan}}\n",
        {},
        "exchanges.kraken.rate_limit: nan is not a share between 0 and 1 (e.g. 0.8)",
    ),
    ("port-above-65535", "server: {port: 70000}\n", {}, "server.port: 70000 is not a TCP port (0-65535)"),
    ("port-negative", "server: {port: -1}\n", {}, "server.port: -1 is not a TCP port (0-65535)"),
    ("short-token", "server: {token: abc}\n", {}, "server.token: must be at least 8 characters"),
    ("empty-storage-path", "storage: {path: ''}\n", {}, "storage.path: must not be empty"),
    (
        "bad-compact-every",
        "storage: {compact_every: soon}\n",
        {},
        "storage.compact_every: 'soon' is not a positive duration (e.g. 90s 15m 1h 1d 1w)",
    ),
    ("compact-fan-in-one", "storage: {compact_fan_in: 1}\n", {}, "storage.compact_fan_in: 1 is not between 2 and 1000"),
    (
        "invalid-yaml",
        "jobs:\n  - {exchange: binance\n  x: [\n",
        {},
        "{path}: invalid YAML: expected ',' or '}', but got ':' at line 3, column 4",
    ),
    (
        "yaml-tab-indent",
        "storage:\n\tpath: x\n",
        {},
        "{path}: invalid YAML: found character '\\t' that cannot start any token at line 2, column 1",
    ),
    (
        "yaml-duplicate-key",
        "storage: {path: a}\nserver: {port: 1}\nstorage: {path: b}\n",
        {},
        "{path}: invalid YAML: duplicate key 'storage' at line 3, column 1",
    ),
    (
        "yaml-python-tag",
        "storage: !!python/object:os.system {}\n",
        {},
        "{path}: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system' at line 1, column 10",
    ),
    (
        "top-level-list",
        "- storage\n- jobs\n",
        {},
        "(top level): expected a mapping of sections (storage server exchanges jobs alerts contracts bus shard), got a list",
    ),
    (
        "top-level-scalar",
        "just text\n",
        {},
        "(top level): expected a mapping of sections (storage server exchanges jobs alerts contracts bus shard), got a string",
    ),
    (
        "duplicate-job-names",
        f"jobs:\n{TRADES}, name: a}}\n{TRADES}, name: b}}\n{TRADES}, name: a}}\n",
        {},
        "jobs[2].name: job id 'a' is already used by jobs[0]",
    ),
    (
        "name-clashes-with-generated-id",
        f"jobs:\n{TRADES}}}\n{TRADES}, name: job1-binance-backfill-trades}}\n",
        {},
        "jobs[1].name: job id 'job1-binance-backfill-trades' is already used by jobs[0]",
    ),
    (
        "bad-job-name",
        job("name: 'my job'"),
        {},
        "jobs[0].name: 'my job' is not a job name (1-64 letters, digits, _ . -)",
    ),
    (
        "env-rest-url",
        "",
        {"DCCD_BINANCE_REST_URL": "ftp://x"},
        "exchanges.binance.rest_url (from DCCD_BINANCE_REST_URL): 'ftp://x' is not a URL like https://host[:port][/prefix] (scheme http or https)",
    ),
    (
        "env-ws-url-over-file",
        "exchanges: {binance: {ws_url: 'wss://stream.binance.com:9443'}}\n",
        {"DCCD_BINANCE_WS_URL": "http://127.0.0.1:1"},
        "exchanges.binance.ws_url (from DCCD_BINANCE_WS_URL): 'http://127.0.0.1:1' is not a URL like wss://host[:port][/prefix] (scheme ws or wss)",
    ),
    (
        "env-unknown-exchange",
        "",
        {"DCCD_FTX_WS_URL": "wss://x"},
        f"exchanges.ftx (from DCCD_FTX_WS_URL): 'ftx' is not a known exchange ({EXCHANGES})",
    ),
    ("env-short-token", "", {"DCCD_TOKEN": "zq7"}, "server.token (from DCCD_TOKEN): must be at least 8 characters"),
    (
        "env-data-over-bad-storage",
        "storage: [./data]\n",
        {"DCCD_DATA": "/lake"},
        "storage: expected a mapping, got a list",
    ),
    (
        "env-url-over-bad-exchange",
        "exchanges: {binance: [1]}\n",
        {"DCCD_BINANCE_REST_URL": "https://x"},
        "exchanges.binance: expected a mapping, got a list",
    ),
    (
        "env-url-over-bad-exchanges",
        "exchanges: [binance]\n",
        {"DCCD_BINANCE_WS_URL": "wss://x"},
        "exchanges: expected a mapping, got a list",
    ),
    (
        "unknown-exchange-in-file-and-env",
        "exchanges: {ftx: {rate_limit: 0.5}}\n",
        {"DCCD_FTX_REST_URL": "https://x"},
        f"exchanges.ftx: 'ftx' is not a known exchange ({EXCHANGES})",
    ),
]


@pytest.mark.parametrize(("text", "env", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    """`dccd validate` on a bad config exits 2 and prints exactly `config error: <key path>: <what>`."""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = make_runner(env).invoke(cli, ["validate", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"config error: {expected.replace('{path}', str(path))}\n"


def test_bad_config_cases_cover_the_contract() -> None:
    """The table above keeps at least 30 distinct bad-config cases."""
    assert len(BAD) >= 30
    assert len({c[0] for c in BAD}) == len(BAD)


def test_missing_config_file(tmp_path: Path) -> None:
    """--config naming a file that does not exist is a one-line config error, exit 2."""
    missing = tmp_path / "nope.yaml"
    result = make_runner().invoke(cli, ["validate", "--config", str(missing)])
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        f"config error: {missing}: no such config file\n",
    )


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    """--config naming a directory is a one-line config error, exit 2."""
    result = make_runner().invoke(cli, ["validate", "--config", str(tmp_path)])
    assert (result.exit_code, result.stderr) == (2, f"config error: {tmp_path}: is a directory, not a config file\n")


def test_config_not_utf8(tmp_path: Path) -> None:
    """A config file that is not UTF-8 text is a one-line config error, exit 2."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"storage: {path: caf\xe9}\n")
    result = make_runner().invoke(cli, ["validate", "--config", str(path)])
    assert (result.exit_code, result.stderr) == (
        2,
        f"config error: {path}: not UTF-8 text (invalid continuation byte at byte 19)\n",
    )


def test_dccd_config_env_names_the_file(tmp_path: Path) -> None:
    """DCCD_CONFIG picks the config file; a missing one is reported like --config."""
    missing = tmp_path / "env.yaml"
    result = make_runner({"DCCD_CONFIG": str(missing)}).invoke(cli, ["validate"])
    assert (result.exit_code, result.stderr) == (2, f"config error: {missing}: no such config file\n")


def test_config_show_bad_config_exits_2(tmp_path: Path) -> None:
    """`dccd config show` rejects a bad config the same way validate does."""
    path = tmp_path / "bad.yaml"
    path.write_text("server: {port: 70000}\n", encoding="utf-8")
    result = make_runner().invoke(cli, ["config", "show", "--config", str(path)])
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        "config error: server.port: 70000 is not a TCP port (0-65535)\n",
    )


SUBPROCESS_CASES = [c for c in BAD if c[0] in ("unknown-top-level-key", "bad-span", "env-rest-url", "invalid-yaml")]


@pytest.mark.parametrize(
    ("text", "env", "expected"), [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES]
)
def test_bad_config_via_console_script(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    """The installed `dccd` script exits 2 with exactly one stderr line, as the CLI runner does."""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [dccd_script(), "validate", "--config", str(path)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"config error: {expected.replace('{path}', str(path))}\n"


EXAMPLE_JOBS = [
    "config ok: 5 job(s), data in ./data",
    "  btc-1m: backfill binance ohlc span=1m [BTC/USDT,ETH/USDT] start=2024-01-01 end=now — every 3600s",
    "  btc-trades-nightly: backfill binance trades [BTC/USDT] start=last end=now — cron '5 0 * * *' UTC",
    "  eth-daily-history: backfill binance ohlc span=1d [ETH/USDT] start=origin end=2025-01-01 — once at start",
    "  live-trades: stream binance trades [BTC/USDT,ETH/USDT] — supervised stream",
    "  breakouts: scan binance ohlc span=1h [] scanner=breakout — every 3600s",
]


def test_example_config_validates() -> None:
    """config/example.yaml validates and prints its five jobs expanded."""
    result = make_runner().invoke(cli, ["validate", "--config", str(EXAMPLE)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines() == EXAMPLE_JOBS


def test_default_config_validates() -> None:
    """With no --config the embedded default.yaml is used: a trades stream and an hourly 1m backfill."""
    result = make_runner().invoke(cli, ["validate"])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "config ok: 2 job(s), data in ./data",
        "  binance-trades: stream binance trades [BTC/USDT,ETH/USDT] — supervised stream",
        "  binance-ohlc-1m: backfill binance ohlc span=1m [BTC/USDT,ETH/USDT] start=-30d end=now — every 3600s",
    ]


def test_example_config_via_console_script(tmp_path: Path) -> None:
    """The installed script validates example.yaml with exit 0 and the same job list."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}
    proc = subprocess.run(
        [dccd_script(), "validate", "--config", str(EXAMPLE)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == EXAMPLE_JOBS
    version = subprocess.run([dccd_script(), "--version"], env=env, capture_output=True, text=True, timeout=60)
    from dccd import __version__

    assert (version.returncode, version.stdout) == (0, f"dccd, version {__version__}\n")


def test_validate_writes_nothing(tmp_path: Path) -> None:
    """validate and config show create neither the --data dir nor anything in the cwd."""
    lake = tmp_path / "lake"
    before = sorted(tmp_path.iterdir())
    for args in (["validate"], ["validate", "--config", str(EXAMPLE)], ["config", "show"]):
        result = make_runner().invoke(cli, [*args, "--data", str(lake)])
        assert result.exit_code == 0, result.output
    assert not lake.exists()
    assert sorted(tmp_path.iterdir()) == before


def show(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `dccd config show --json` with ``args`` and return the parsed effective config."""
    result = make_runner(env).invoke(cli, ["config", "show", "--json", *args])
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_env_overrides_are_applied() -> None:
    """DCCD_DATA, DCCD_TOKEN and DCCD_<EXCHANGE>_REST_URL/WS_URL override the file."""
    env = {
        "DCCD_DATA": "/srv/lake",
        "DCCD_TOKEN": "0123456789abcdef",
        "DCCD_BINANCE_REST_URL": "http://127.0.0.1:8001",
        "DCCD_BINANCE_WS_URL": "ws://127.0.0.1:8002/prefix",
        "DCCD_KRAKEN_REST_URL": "https://kraken.example:8443",
    }
    cfg = load_config(EXAMPLE, env)
    assert cfg.storage.path == "/srv/lake"
    assert cfg.server.token == "0123456789abcdef"
    assert cfg.exchange("binance").rest_url == "http://127.0.0.1:8001"
    assert cfg.exchange("binance").ws_url == "ws://127.0.0.1:8002/prefix"
    assert cfg.exchange("binance").rate_limit == 0.8  # the file's other keys stay
    assert cfg.exchange("kraken").rate_limit == 0.5
    assert cfg.exchange("kraken").rest_url == "https://kraken.example:8443"
    data = show(["--config", str(EXAMPLE)], env)
    assert data["storage"]["path"] == "/srv/lake"
    assert data["exchanges"]["binance"]["rest_url"] == "http://127.0.0.1:8001"
    assert data["exchanges"]["binance"]["ws_url"] == "ws://127.0.0.1:8002/prefix"


@pytest.mark.parametrize("as_json", [False, True], ids=["yaml", "json"])
def test_config_show_masks_the_token(as_json: bool) -> None:
    """config show prints the token as *** and never its value, in YAML and JSON."""
    secret = "s3cr3t-T0KEN-value"
    result = make_runner({"DCCD_TOKEN": secret}).invoke(cli, ["config", "show", *(["--json"] if as_json else [])])
    assert (result.exit_code, result.stderr) == (0, "")
    assert secret not in result.output
    data = json.loads(result.stdout) if as_json else yaml.safe_load(result.stdout)
    assert data["server"]["token"] == "***"
    assert data["jobs"][0]["name"] == "binance-trades"


def test_config_show_unset_token_stays_null() -> None:
    """With no token configured, config show says null rather than a mask."""
    assert show([])["server"]["token"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "{lake}", "config", "show", "--json"],
        ["config", "show", "--json", "--data", "{lake}"],
        ["--data", "/elsewhere", "config", "show", "--json", "--data", "{lake}"],
    ],
    ids=["before", "after", "after-wins"],
)
def test_data_option_before_or_after_subcommand(tmp_path: Path, argv: list[str]) -> None:
    """--data is accepted before and after the subcommand (the later one wins) and sets storage.path."""
    lake = str(tmp_path / "lake")
    result = make_runner().invoke(cli, [a.replace("{lake}", lake) for a in argv])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["storage"]["path"] == lake


def test_command_line_beats_env(tmp_path: Path) -> None:
    """--data/--config given before the subcommand win over DCCD_DATA/DCCD_CONFIG."""
    other = tmp_path / "other.yaml"
    other.write_text("storage: {path: /from/other}\n", encoding="utf-8")
    env = {"DCCD_DATA": "/from/env", "DCCD_CONFIG": str(other)}
    result = make_runner(env).invoke(cli, ["--data", "/from/cli", "--config", str(EXAMPLE), "config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["storage"]["path"] == "/from/cli"
    assert data["jobs"][0]["name"] == "btc-1m"  # example.yaml, not other.yaml
    assert show([], env)["storage"]["path"] == "/from/env"  # env still applies without the option


def test_null_sections_are_empty() -> None:
    """A section whose entries are all commented out (null) means the defaults."""
    cfg = parse_config("storage:\nserver:\nexchanges:\njobs:\n", env={})
    assert (cfg.storage.path, cfg.server.port, cfg.exchanges, cfg.jobs) == ("./data", 8080, {}, [])


def test_dates_stay_exact_text() -> None:
    """An unquoted YAML date or datetime reaches the job as the text written (no YAML timestamp)."""
    cfg = parse_config(job("start: 2024-01-01, end: 2024-01-02T00:00:00.123456789Z"), env={})
    assert (cfg.jobs[0].start, cfg.jobs[0].end) == ("2024-01-01", "2024-01-02T00:00:00.123456789Z")


def test_expand_jobs_ids_and_schedules() -> None:
    """expand_jobs gives named jobs their name, others job<N>-<exchange>-<op>-<type>[-span], and typed fields."""
    text = (
        "jobs:\n"
        "  - {exchange: kraken, symbols: [BTC/USD], type: ohlc, span: 1M, cron: '0 0 1 * *'}\n"
        "  - {exchange: bybit, symbols: ['BTC/USDT:perp'], type: trades, operation: stream}\n"
        "  - {name: oi, exchange: okx, symbols: ['ETH/USDT:perp'], type: oi, every: 90s}\n"
        "  - {exchange: binance, symbols: [ETH/BTC], type: book, once: true}\n"
        "  - {exchange: binance, symbols: [ETH/BTC], type: trades}\n"
    )
    specs = expand_jobs(parse_config(text, env={}))
    assert [(s.id, s.schedule, s.every_s, s.cron) for s in specs] == [
        ("job1-kraken-backfill-ohlc-1M", "cron", None, "0 0 1 * *"),
        ("job2-bybit-stream-trades", "stream", None, None),
        ("oi", "every", 90, None),
        ("job4-binance-backfill-book", "once", None, None),
        ("job5-binance-backfill-trades", "manual", None, None),
    ]
    assert specs[0].span is not None and specs[0].span.label == "1M"
    assert str(specs[1].symbols[0]) == "BTC/USDT:perp"


def test_parse_duration_s() -> None:
    """Durations are a positive integer and one unit of s m h d w."""
    assert [parse_duration_s(t) for t in ("90s", "15m", "1h", "1d", "2w")] == [90, 900, 3600, 86400, 1209600]
    for bad in ("0m", "1h\n", "1.5h", "-1h", "1 h", "h", "1M", "１h"):
        with pytest.raises(ValueError, match="is not a positive duration"):
            parse_duration_s(bad)


def test_resolve_start_and_end() -> None:
    """start/end resolve ISO exactly, -N<unit> against now, and keep last/origin."""
    now = 1_710_000_000_123_456_789  # 2024-03-09
    assert resolve_start("-30d", now) == now - 30 * 86_400 * 10**9
    assert resolve_start("last", now) == "last"
    assert resolve_start("origin", now) == "origin"
    assert resolve_start(None, now) is None
    assert resolve_start("2024-01-01T00:00:00.000000001Z", now) == 1_704_067_200_000_000_001
    assert resolve_end(None, now) == now
    assert resolve_end("now", now) == now
    assert resolve_end("-1h", now) == now - 3_600 * 10**9
    with pytest.raises(ValueError, match="is not an end"):
        resolve_end("origin", now)
    with pytest.raises(ValueError, match="is not a start"):
        resolve_start("-1h\n", now)


@pytest.mark.parametrize(
    ("resolve", "text", "expected"),
    [
        (resolve_start, "0001-01-01", "'0001-01-01' is before 2009-01-03 (the first Bitcoin block): no exchange has data that old; use origin for the exchange's first data"),
        (resolve_start, "-99999999d", "'-99999999d' is before 2009-01-03 (the first Bitcoin block): no exchange has data that old; use origin for the exchange's first data"),
        (resolve_start, "2009-01-02T23:59:59.999999999Z", "'2009-01-02T23:59:59.999999999Z' is before 2009-01-03 (the first Bitcoin block): no exchange has data that old; use origin for the exchange's first data"),
        (resolve_start, "9999-12-31", "'9999-12-31' is more than 24h in the future"),
        (resolve_start, "-" + "9" * 100_000 + "d", "'-" + "9" * 63 + "'... is not a start (ISO date/datetime, -30d, last or origin)"),
        (resolve_end, "0001-01-01", "'0001-01-01' is before 2009-01-03 (the first Bitcoin block): no exchange has data that old"),
        (resolve_end, "2024-03-10T16:00:00.123456790Z", "'2024-03-10T16:00:00.123456790Z' is more than 24h in the future"),
        (resolve_end, "-999999999999999w", "'-999999999999999w' is before 2009-01-03 (the first Bitcoin block): no exchange has data that old"),
    ],
)  # fmt: skip
def test_times_outside_exchange_history_are_refused(resolve: Any, text: str, expected: str) -> None:
    """A start/end before 2009-01-03 or over a day after now (the int64 overflows among them) is one line naming it."""
    now = 1_710_000_000_123_456_789  # 2024-03-09T16:00:00.123456789Z
    with pytest.raises(ValueError) as err:
        resolve(text, now)
    assert str(err.value) == expected
    assert resolve_start("2009-01-03", now) == 1_230_940_800 * 10**9  # the bounds themselves are fine
    assert resolve_end("2024-03-10T16:00:00.123456789Z", now) == now + 86_400 * 10**9


def test_check_url() -> None:
    """Origins may carry a port and a path prefix; a trailing / is dropped; no query, userinfo or newline."""
    assert check_url("https://api.binance.com/", ("http", "https")) == "https://api.binance.com"
    assert check_url("http://[::1]:8080/p/q", ("http", "https")) == "http://[::1]:8080/p/q"
    for bad in ("https://u:p@host", "https://host\n", "https://ho st", "host:80", "https://host:0"):
        with pytest.raises(ValueError):
            check_url(bad, ("http", "https"))


def test_error_messages_are_single_lines() -> None:
    """A key containing a newline still yields a one-line ConfigError."""
    with pytest.raises(ConfigError) as info:
        parse_config('"a\\nb": 1\n', env={})
    assert (
        str(info.value)
        == "'a\\nb': unknown key (expected one of: storage server exchanges jobs alerts contracts bus shard)"
    )
    assert len(str(info.value).splitlines()) == 1


def test_plugin_exchange_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exchange installed as a ``dccd.sources`` entry-point plugin may be named in exchanges: and jobs:, and
    is listed among the known exchanges (the registry is the one list)."""
    from importlib.metadata import EntryPoint

    from dccd.sources import registry

    plugin = EntryPoint("fakex", "fake_pkg.fakex:FakexAdapter", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [plugin] if group == registry.ENTRY_POINT_GROUP else [])
    text = (
        "exchanges:\n  fakex: {rest_url: 'http://127.0.0.1:9'}\n"
        "jobs:\n  - {exchange: fakex, symbols: [BTC/USDT], type: trades}\n"
    )
    cfg = parse_config(text, env={})
    assert cfg.exchange("fakex").rest_url == "http://127.0.0.1:9"
    assert [j.exchange for j in expand_jobs(cfg)] == ["fakex"]
    with pytest.raises(ConfigError) as info:
        parse_config("jobs:\n  - {exchange: ftx, symbols: [BTC/USDT], type: trades}\n", env={})
    known = "binance bitfinex bitmex bybit coinbase fakex kraken okx"
    assert str(info.value) == f"jobs[0].exchange: 'ftx' is not a known exchange ({known})"


def test_config_package_public_surface() -> None:
    """dccd.config re-exports its public names from the modules it is split into (schema, time expressions, env
    overlay, validation, loading), and every one of them resolves."""
    import dccd.config as config

    assert sorted(config.__all__) == sorted(
        [
            "OPERATIONS",
            "STREAM_TYPES",
            "Alert",
            "Config",
            "ExchangeSettings",
            "Job",
            "JobSpec",
            "Server",
            "Storage",
            "apply_env",
            "check_job",
            "check_url",
            "default_config_text",
            "exchange_names",
            "expand_jobs",
            "load_config",
            "masked",
            "parse_config",
            "parse_duration_s",
            "resolve_end",
            "resolve_start",
            "schema_error",
            "shown",
            "validate",
        ]
    )
    assert all(getattr(config, name) is not None for name in config.__all__)
    assert config.Config.__module__ == "dccd.config.schema"
    assert config.resolve_start.__module__ == "dccd.config.timeexpr"
    assert config.apply_env.__module__ == "dccd.config.env"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bus: {url: 'http://x:4222'}", "bus.url: 'http://x:4222' is not a URL like nats://host[:port][/prefix]"),
        ("bus: {url: 'nats://127.0.0.1:4222', max_age: 'soon'}", "bus.max_age: "),
        ("bus: {url: 'nats://127.0.0.1:4222', max_queue: 0}", "bus.max_queue: 0 is not a positive number of messages"),
        ("shard: 2/2\nbus: {url: 'nats://127.0.0.1:4222'}", "shard: '2/2': shard K must be 0..N-1 with N >= 1"),
        ("shard: 0/2", "shard: needs bus.url: shards hold their leases in the bus's key-value store"),
    ],
)
def test_bus_and_shard_errors_are_one_line(text: str, message: str) -> None:
    from dccd.config import parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_bus_and_shard_parse() -> None:
    from dccd.config import parse_config

    cfg = parse_config("shard: 1/3\nbus: {url: 'nats://127.0.0.1:4222', format: msgpack}", env={})
    assert cfg.shard == "1/3" and cfg.bus is not None and cfg.bus.format == "msgpack" and cfg.bus.lease_ttl == "10s"
