"""`dccd runs`, `runs show ID`, `runs cancel ID`: short ids, ambiguous prefixes, errors shown, who cancels what.

Cancelling through a running server is in tests/web/test_runs_api.py (it needs the server's Trio loop).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from dccd.cli.main import cli
from dccd.cli.runs_cmds import CANCELLED_ORPHAN
from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.storage import RunStore

DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
A = "abc12345" + "0" * 24
B = "abd99999" + "1" * 24
LONG_ERROR = "binance rejected the request (HTTP 400): code -1121: " + "Invalid symbol, " * 12 + "end."
NO_SERVER = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


def run(root: Path, *args: str) -> Result:
    """Invoke dccd with --data root."""
    return CliRunner().invoke(cli, ["--data", str(root), *args])


def two_runs(root: Path) -> RunStore:
    """A store with run A failed (a long error) and run B running (owned by this test process)."""
    store = RunStore(root)
    store.create("backfill", DS, run_id=A, state="running", now_ns=1)
    store.finish(A, "failed", error=LONG_ERROR)
    store.create("backfill", DS, run_id=B, state="running", now_ns=2)
    return store


def test_the_list_prints_each_failed_runs_full_error(tmp_path: Path) -> None:
    """The table keeps one line per run; a failed run's whole error follows it on its own line."""
    two_runs(tmp_path)
    res = run(tmp_path, "runs")
    assert res.exit_code == 0, res.output
    assert f"{A[:12]} failed: {LONG_ERROR}\n" in res.stdout
    assert B[:12] in res.stdout and f"{B[:12]} running" not in res.stdout


def test_show_accepts_a_unique_prefix(tmp_path: Path) -> None:
    """`runs show PREFIX` prints the run with its error; --json gives the record and events."""
    two_runs(tmp_path)
    res = run(tmp_path, "runs", "show", "abc1")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"run        {A}" and f"error      {LONG_ERROR}" in lines and "state      failed" in lines
    doc = json.loads(run(tmp_path, "runs", "show", A[:12], "--json").stdout)
    assert (doc["run_id"], doc["error"], doc["events"]) == (A, LONG_ERROR, [])


def test_an_ambiguous_or_unknown_id_is_exit_2_naming_the_candidates(tmp_path: Path) -> None:
    """A prefix of several runs names them (exit 2, one line); an unknown id says so; both for show and cancel."""
    two_runs(tmp_path)
    for cmd in ("show", "cancel"):
        res = run(tmp_path, "runs", cmd, "ab")
        assert (res.exit_code, res.stdout) == (2, "")
        assert res.stderr == f"error: run_id: 'ab' starts several runs ({B}, {A}): give more characters\n"
        res = run(tmp_path, "runs", cmd, "zz")
        assert res.exit_code == 2 and res.stderr.startswith("error: run_id: no run 'zz' in ")


def test_cancel_of_an_ended_run_is_exit_1(tmp_path: Path) -> None:
    """Cancelling a run that already ended says so and changes nothing."""
    store = two_runs(tmp_path)
    res = run(tmp_path, "runs", "cancel", "abc", "--server", NO_SERVER)
    assert (res.exit_code, res.stderr) == (1, f"error: run {A[:12]} already ended (failed)\n")
    assert store.get(A).error == LONG_ERROR  # type: ignore[union-attr]


def test_cancel_of_a_run_whose_process_is_gone_marks_it_cancelled(tmp_path: Path) -> None:
    """A running run whose process (on this host) has exited is marked cancelled in the store."""
    store = two_runs(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE runs SET pid = ?, host = ? WHERE run_id = ?", (int(dead.stdout), socket.gethostname(), B))
    res = run(tmp_path, "runs", "cancel", B[:12], "--server", NO_SERVER)
    assert (res.exit_code, res.stdout) == (0, f"run {B[:12]}: cancelled (its process {int(dead.stdout)} had exited)\n")
    rec = store.get(B)
    assert rec is not None and (rec.state, rec.error) == ("cancelled", CANCELLED_ORPHAN)


def test_cancel_of_another_live_process_run_names_the_process(tmp_path: Path) -> None:
    """A run of a live process that no server runs is refused (exit 1) naming the pid to stop; nothing changes."""
    store = two_runs(tmp_path)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with sqlite3.connect(store.path) as con:
            con.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (owner.pid, B))
        res = run(tmp_path, "runs", "cancel", B[:12], "--server", NO_SERVER)
    finally:
        owner.kill()
        owner.wait()
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert res.stderr == (
        f"error: run {B[:12]} (backfill) belongs to process {owner.pid} on {socket.gethostname()} and no dccd"
        f" serve answers at {NO_SERVER}: stop that process with SIGINT (kill -INT {owner.pid}); what it wrote stays\n"
    )
    assert store.get(B).state == "running"  # type: ignore[union-attr]
