"""``dccd runs``: the run history (list, ``show ID``) and ``cancel ID``.

An ID is a run id or any unique prefix of one (the 12 characters the list
shows); a prefix that starts several runs is a usage error naming them.

``cancel`` decides by who owns the run:

1. a ``dccd serve`` answering at the configured address (or ``--server``)
   that runs it: the server cancels it (``DELETE /api/v1/runs/{id}``), its
   writer drains, what was written stays;
2. a run whose process is gone (same host, pid not alive): marked
   ``cancelled`` in the run store, nothing else to stop;
3. a run of another live process (a ``dccd backfill`` or ``dccd stream``
   in a terminal): exit 1 naming that process; stop it with SIGINT, which
   ends its runs cleanly. The CLI never signals a process itself.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import click
import msgspec
import trio

from dccd.cli.common import EXIT_FAILED, EXIT_USAGE, UsageProblem, common_options, data_root, fail, state
from dccd.cli.remote import ask_server, server_option, server_url
from dccd.domain.timeutil import ns_to_iso
from dccd.storage import RunStore
from dccd.storage.runs import STATES, TERMINAL, RunEvent, RunRecord, RunState

SHORT_ID = 12
CANCELLED_ORPHAN = "cancelled by dccd runs cancel: its process had exited"
_MAX_CANDIDATES = 5


def ambiguous_text(prefix: str, ids: list[str]) -> str:
    """``run_id: 'ab' starts several runs (...): give more characters`` (``ids``: up to 1 + the shown ones)."""
    shown = ", ".join(ids[:_MAX_CANDIDATES]) + (", ..." if len(ids) > _MAX_CANDIDATES else "")
    return f"run_id: {prefix!r} starts several runs ({shown}): give more characters"


def resolve(store: RunStore, text: str) -> str:
    """The one run id ``text`` names (a full id or a unique prefix).

    Raises:
        UsageProblem: no run, or several runs, start with ``text``.
    """
    ids = store.match_ids(text, limit=_MAX_CANDIDATES + 1)
    if not ids:
        raise UsageProblem(f"run_id: no run {text!r} in {store.path}")
    if len(ids) > 1:
        raise UsageProblem(ambiguous_text(text, ids))
    return ids[0]


def _store() -> RunStore:
    root = data_root()
    if not root.is_dir():
        fail(f"data directory {root} does not exist (set by --data, DCCD_DATA or storage.path)", EXIT_USAGE)
    return RunStore(root)


def _dataset(r: RunRecord) -> str:
    return " ".join(x for x in (r.exchange, r.symbol, r.data_type, r.span) if x)


def _doc(store: RunStore, r: RunRecord) -> dict[str, Any]:
    return {**msgspec.to_builtins(r), "events": msgspec.to_builtins(store.events(r.run_id))}


def _console() -> Any:
    import sys

    from rich.console import Console

    # Off a terminal rich would wrap to 80 columns and truncate timestamps.
    return Console() if sys.stdout.isatty() else Console(width=240)


@click.group("runs", invoke_without_command=True)
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with each run's gap/reconnect events).")
@click.option("--state", type=click.Choice([s.value for s in STATES]), default=None, help="Only runs in this state.")
@click.option("--limit", type=click.IntRange(min=1, max=100_000), default=20, show_default=True)
@click.pass_context
def runs_cmd(ctx: click.Context, as_json: bool, state: str | None, limit: int) -> None:
    """Show the run history, newest first (a failed run's error on its own line); see also show/cancel."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    store = _store()
    runs = store.list_runs(state=state, limit=limit) if store.path.exists() else []
    if as_json:
        click.echo(json.dumps([_doc(store, r) for r in runs]))
        return
    table = Table(title=f"{len(runs)} run(s)")
    for col in ("run", "operation", "dataset", "state", "rows", "quarantined", "started", "error"):
        # The error column stays one cell high; the full text follows the table.
        table.add_column(col, no_wrap=col != "dataset", overflow="ellipsis", max_width=48 if col == "error" else None)
    for r in runs:
        started = ns_to_iso(r.started_ns) if r.started_ns else ""
        table.add_row(r.run_id[:SHORT_ID], r.operation, _dataset(r), r.state, str(r.rows_written),
                      str(r.rows_quarantined), started, r.error or "")  # fmt: skip
    _console().print(table)
    for r in runs:
        if r.error and r.state is not RunState.SUCCEEDED:
            click.echo(f"{r.run_id[:SHORT_ID]} {r.state}: {r.error}")


def _show_lines(r: RunRecord, events: list[RunEvent]) -> list[str]:
    p = r.progress or {}
    lines = [
        f"run        {r.run_id}",
        f"operation  {r.operation}",
        f"dataset    {_dataset(r) or '-'}",
        f"state      {r.state}",
    ]
    if r.error:
        lines.append(f"error      {r.error}")
    lines.append(f"rows       {r.rows_written:,} written, {r.rows_quarantined:,} quarantined")
    if p:
        done = f"{p.get('done')}/{p.get('total')} {p.get('unit', '')}".strip() if "done" in p else ""
        extra = ", ".join(f"{k} {v}" for k, v in p.items() if k not in ("done", "total", "unit"))
        lines.append(f"progress   {', '.join(x for x in (done, extra) if x)}")
    for name, ns in (("created", r.created_ns), ("started", r.started_ns), ("ended", r.ended_ns)):
        if ns:
            lines.append(f"{name:<10} {ns_to_iso(ns)}")
    lines.append(f"process    pid {r.pid} on {r.host}")
    for e in events:
        span = f" {e.lo}..{e.hi}" if e.lo is not None or e.hi is not None else ""
        lines.append(f"event      {e.kind}{span}{' ' + e.detail if e.detail else ''} (at {ns_to_iso(e.at_ns)})")
    return lines


@runs_cmd.command("show")
@common_options
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the record with its events).")
def runs_show(run_id: str, as_json: bool) -> None:
    """Show one run: state, error, rows, progress, times, owner and events (RUN_ID may be a unique prefix)."""
    store = _store()
    rec = store.get(resolve(store, run_id))
    assert rec is not None
    if as_json:
        click.echo(json.dumps(_doc(store, rec)))
        return
    for line in _show_lines(rec, store.events(rec.run_id)):
        click.echo(line)


def _process_gone(r: RunRecord) -> bool:
    """The run's process is known to be dead (same host, pid not alive); False when it cannot be told."""
    if r.host != socket.gethostname() or r.pid == os.getpid():
        return False
    try:
        os.kill(r.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@runs_cmd.command("cancel")
@common_options
@server_option
@click.argument("run_id")
def runs_cancel(run_id: str, server: str | None) -> None:
    """Cancel a pending or running run (RUN_ID may be a unique prefix); rows already written stay.

    A run of the local dccd serve is cancelled through its API; a run whose
    process is gone is marked cancelled; a run of another live dccd process
    is refused, naming the process to stop (SIGINT).
    """
    from dccd.client import ApiError

    store = _store()
    rid = resolve(store, run_id)
    rec = store.get(rid)
    assert rec is not None
    short = rid[:SHORT_ID]
    if rec.state in TERMINAL:
        fail(f"run {short} already ended ({rec.state})", EXIT_FAILED)
    cfg = state().config()
    url = server_url(cfg, server)
    try:
        answered, final = trio.run(ask_server, cfg, url, lambda c: c.cancel(rid))
    except ApiError as exc:
        if exc.status not in (404, 409):  # 404: another lake; 409: not running in that server
            fail(f"{url} refused to cancel run {short}: {exc.message}", EXIT_FAILED)
        answered, final = True, None
    if isinstance(final, dict):
        click.echo(f"run {short}: {final.get('state')} by {url}, {final.get('rows_written', 0):,} rows written")
        return
    if _process_gone(rec):
        if store.finish(rid, RunState.CANCELLED, error=CANCELLED_ORPHAN):
            click.echo(f"run {short}: cancelled (its process {rec.pid} had exited)")
            return
        fail(f"run {short} ended meanwhile", EXIT_FAILED)
    where = f"the dccd serve at {url} does not run it" if answered else f"no dccd serve answers at {url}"
    fail(
        f"run {short} ({rec.operation}) belongs to process {rec.pid} on {rec.host} and {where}:"
        f" stop that process with SIGINT (kill -INT {rec.pid}); what it wrote stays",
        EXIT_FAILED,
    )


COMMANDS = (runs_cmd,)
