"""``dccd jobs list`` and ``dccd jobs run ID``: the configured and API-created jobs.

Both ask the ``dccd serve`` answering at the configured address (or
``--server URL``) first: it owns the scheduler, so it knows the real next
fire times and last results, and a job it fires runs under its supervision
(``POST /api/v1/jobs/{id}/run``). When no server answers:

- ``list`` reads the config's jobs and those kept in ``{root}/_dccd/jobs.json``
  and shows the next fire times a ``dccd serve`` started now would use;
- ``run`` fires the backfill job in this process (the same code path a
  server uses) and waits for its runs, printing one line per run; exit 0
  only if every run succeeded.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import click
import msgspec
import trio

from dccd.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageProblem,
    common_options,
    fail,
    prepare_data_dir,
    state,
)
from dccd.cli.remote import ask_server, server_option, server_url
from dccd.config import Config, expand_jobs
from dccd.domain.timeutil import ns_to_iso
from dccd.storage.runs import RunState


def local_jobs(cfg: Config, now_ns: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The jobs a ``dccd serve`` of this config would load, with the next fire times it would compute now.

    Returns:
        The jobs (the API's JSON shape) and one warning per jobs-file entry that no longer validates.
    """
    from dccd.jobs import JobState, decode_jobs_file, read_jobs_file, validate_stored

    states = [JobState(spec, "config") for spec in expand_jobs(cfg)]
    warnings: list[str] = []
    path = cfg.data_root / "_dccd" / "jobs.json"
    data = read_jobs_file(path)
    if data is not None:
        try:
            stored = decode_jobs_file(data)
        except ValueError as exc:
            warnings.append(f"{path}: {exc}")
            stored = []
        valid, invalid = validate_stored(stored, [s.spec.id for s in states])
        states += [JobState(spec, "api", entry) for entry, spec in valid]
        warnings += [f"{path}: job {entry.id!r} is invalid: {error}" for entry, error in invalid]
    out = []
    for job in states:
        job.next_fire_ns = job.nf.after(now_ns) if job.nf.periodic else None
        out.append(msgspec.to_builtins(job.info()))
    return out, warnings


def _when(job: dict[str, Any]) -> str:
    schedule = job["schedule"]
    if job.get("next_fire_ns"):
        return ns_to_iso(job["next_fire_ns"])
    return {"once": "at serve start", "manual": "on run only", "stream": "supervised stream"}.get(schedule, "-")


def _schedule(job: dict[str, Any]) -> str:
    if job["schedule"] == "every":
        return f"every {job['every_s']}s"
    if job["schedule"] == "cron":
        return f"cron '{job['cron']}'"
    return str(job["schedule"])


@click.group("jobs")
@common_options
def jobs_group() -> None:
    """Configured and API-created jobs: list them, or run one now."""


@jobs_group.command("list")
@common_options
@server_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the shape of GET /api/v1/jobs).")
def jobs_list(server: str | None, as_json: bool) -> None:
    """List the jobs with their schedule, next fire time (UTC) and last result."""
    from rich.console import Console
    from rich.table import Table

    st = state()
    cfg = st.config()
    url = server_url(cfg, server)
    answered, jobs = trio.run(ask_server, cfg, url, lambda c: c.jobs())
    if answered:
        note = f"jobs of the dccd serve at {url}"
    else:
        jobs, warnings = local_jobs(cfg, time.time_ns())
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        note = f"no dccd serve answers at {url}: next fire times of a serve started now"
    if not st.quiet:
        click.echo(note, err=True)
    assert jobs is not None
    if as_json:
        click.echo(json.dumps(jobs))
        return
    table = Table(title=f"{len(jobs)} job(s)")
    for col in ("job", "source", "operation", "dataset", "symbols", "schedule", "next fire", "last"):
        table.add_column(col, no_wrap=col in ("job", "next fire"))
    for j in jobs:
        kind = f"{j['exchange']} {j['type']}{' ' + j['span'] if j.get('span') else ''}"
        last = j.get("last_state") or ""
        if j.get("last_error"):
            last += f": {j['last_error']}"
        table.add_row(j["id"], j["source"], j["operation"], kind, ",".join(j["symbols"]), _schedule(j), _when(j), last)
    import sys

    (Console() if sys.stdout.isatty() else Console(width=240)).print(table)


async def _run_here(cfg: Config, job_id: str) -> tuple[list[Any], bool]:
    """Fire ``job_id`` in this process and wait for its runs (SIGINT/SIGTERM cancel them; written rows stay)."""
    from dccd.actors import open_service
    from dccd.actors.scheduler import UnknownJob

    interrupted = False
    async with open_service(cfg) as svc, trio.open_nursery() as nursery:
        assert svc.scheduler is not None
        try:
            run_ids = await svc.scheduler.run_now(job_id)
        except UnknownJob:
            known = " ".join(j.id for j in svc.scheduler.list_jobs()) or "none"
            raise UsageProblem(f"job_id: no job {job_id!r} (jobs: {known})") from None

        async def signals(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal interrupted
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                task_status.started()
                async for _ in sigs:
                    interrupted = True
                    for r in run_ids:
                        nursery.start_soon(svc.cancel_run, r)
                    return

        await nursery.start(signals)
        scans = svc.scans
        if scans is not None and all(r in scans.runs for r in run_ids):  # a scan job: in-memory scan runs
            records: list[Any] = [await scans.wait(r) for r in run_ids]
        else:
            records = [await svc.wait_run(r) for r in run_ids]
        nursery.cancel_scope.cancel()
    return records, interrupted


@jobs_group.command("run")
@common_options
@server_option
@click.argument("job_id")
def jobs_run(job_id: str, server: str | None) -> None:
    """Fire backfill job JOB_ID now: through the answering dccd serve, else in this process (waiting for it)."""
    from dccd.client import ApiError

    st = state()
    cfg = st.config()
    url = server_url(cfg, server)
    try:
        answered, run_ids = trio.run(ask_server, cfg, url, lambda c: c.run_job(job_id))
    except ApiError as exc:
        fail(f"{url}: {exc.message}", EXIT_USAGE if exc.status in (400, 404) else EXIT_FAILED)
    if answered:
        assert run_ids is not None
        click.echo(f"job {job_id} fired by the dccd serve at {url}: run(s) {' '.join(run_ids)}")
        return
    prepare_data_dir(cfg.data_root)
    records, interrupted = trio.run(_run_here, cfg, job_id)
    for r in records:
        if hasattr(r, "results"):  # a scan run
            for res in r.results:
                click.echo(f"{r.run_id} {res.scanner}: {len(res.hits)} signal(s) over {res.symbols} {res.span} series")
            line = f"{r.run_id}: {r.state}"
        else:
            line = f"{r.run_id[:12]} {r.symbol}: {r.state} — {r.rows_written:,} rows written"
        click.echo(line + (f" — {r.error}" if r.error else ""))
    if interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    if any(r.state is not RunState.SUCCEEDED for r in records):
        raise SystemExit(EXIT_FAILED)


COMMANDS = (jobs_group,)
