"""`dccd backfill`: history into the lake, with a progress bar per symbol on a terminal."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec
import trio

from dccd.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageProblem,
    common_options,
    prepare_data_dir,
    state,
)
from dccd.config import Config
from dccd.domain import DatasetId, DataType
from dccd.domain.timeutil import ns_to_iso
from dccd.ops import BackfillRequest, parse_backfill
from dccd.sources.archive import archive_origin
from dccd.sources.registry import list_adapters
from dccd.storage.runs import RunRecord, RunState


def _check_resume(root: Path, req: BackfillRequest) -> None:
    """``--start last`` (the default) on trades needs a stored trade to resume after: a usage problem otherwise.

    (OHLC and the series start at the exchange's first row when nothing is stored.)
    """
    if req.data_type is not DataType.TRADES or req.start not in (None, "last"):
        return
    from dccd.storage import Lake

    lake = Lake(root)
    for sym in req.symbols:
        ds = DatasetId(req.exchange, sym, req.data_type, req.span)
        if lake.last_ts(ds) is None:
            raise UsageProblem(
                f"start: nothing is stored for {ds}, so 'last' has nothing to resume;"
                " give --start ISO date, -30d or origin"
            )


async def _write_inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Writer offload for this command: write parts on the Trio thread, not in a worker thread.

    A backfill process serves nothing latency-sensitive, and a worker thread converting rows
    to Arrow competes for the GIL with the HTTP loop (each socket call then waits for the
    GIL). Measured on one year of 1m bars from a local fake that answers at once
    (tests/bench/backfill.py --fake memo): 2.2-2.4 s of CPU inline, 3.2-3.6 s threaded.

    Tables (archive files, derived bars) are the exception: their gates and Parquet encoding run in
    C++ without the GIL, so a worker thread writes them while the Trio thread downloads and hands over
    the next table (inline, each 500k-row write would stall every download for its duration).
    """
    import pyarrow as pa  # loaded by then (the lake); not at the CLI's import

    if args and isinstance(args[-1], pa.Table):
        return await trio.to_thread.run_sync(fn, *args)
    await trio.lowlevel.checkpoint()
    return fn(*args)


def _fmt_rate(rate: float) -> str:
    return f"{rate / 1000:.1f}k rows/s" if rate >= 1000 else f"{rate:.0f} rows/s"


async def _run(
    cfg: Config, req: BackfillRequest, *, show_progress: bool, concurrency: int
) -> tuple[list[RunRecord], bool]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from dccd.actors import EVENTS_TOPIC, open_service
    from dccd.actors.messages import ArchiveFetched, RunProgressed, RunStateChanged

    interrupted = False
    records: list[RunRecord] = []
    console = Console(stderr=True)
    ops = {"concurrency": concurrency, "writer_options": {"offload": _write_inline}}
    async with open_service(cfg, ops_options=ops) as svc, trio.open_nursery() as nursery:
        run_ids = await svc.start_backfill(req)
        names = dict(zip(run_ids, (str(s) for s in req.symbols), strict=True))
        progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not show_progress,
        )
        tasks = {r: progress.add_task(names[r], total=None, info="") for r in run_ids}

        async def watch(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with svc.hub.subscribe(EVENTS_TOPIC, maxlen=4096) as sub:
                task_status.started()
                async for ev in sub:
                    if isinstance(ev, ArchiveFetched) and ev.run_id in tasks:
                        info = f"{ev.files_done}/{ev.files_total} files · {ev.bytes_done / 1e6:,.1f} MB"
                        progress.update(tasks[ev.run_id], total=ev.files_total, completed=ev.files_done, info=info)
                    elif isinstance(ev, RunProgressed) and ev.run_id in tasks and ev.unit == "files":
                        pass  # the archive phase: ArchiveFetched carries files and bytes
                    elif isinstance(ev, RunProgressed) and ev.run_id in tasks:
                        info = f"{ev.pages} pages · {ev.rows:,} rows · {_fmt_rate(ev.rate_rows_s)}"
                        progress.update(tasks[ev.run_id], total=ev.total, completed=ev.done, info=info)
                    elif isinstance(ev, RunStateChanged) and ev.run_id in tasks and ev.state != RunState.RUNNING:
                        task = progress.tasks[tasks[ev.run_id]]
                        progress.update(tasks[ev.run_id], completed=task.total or task.completed, info=ev.state)

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
        with progress:
            await nursery.start(watch)
            for r in run_ids:
                records.append(await svc.wait_run(r))
        nursery.cancel_scope.cancel()
    return records, interrupted


@click.command()
@common_options
@click.argument("exchange")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--type", "data_type", required=True, help="trades | ohlc | book | funding | oi")
@click.option("--span", default=None, help="Bar span for ohlc: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M.")
@click.option("--start", default=None, help="ISO date/datetime, -30d, last (resume; default) or origin.")
@click.option("--end", default=None, help="ISO date/datetime, -1h or now (default).")
@click.option(
    "--concurrency", default=4, show_default=True, type=click.IntRange(1, 32), help="OHLC pages in flight per symbol."
)
@click.option(
    "--source",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "archive", "rest"]),
    help="History source: the exchange's bulk archives for whole days/months, then REST (auto), or only one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run records as JSON (for scripts).")
@click.option("--progress/--no-progress", "show", default=None, help="Progress bars (default: on a terminal).")
@click.option(
    "--derive-from",
    "derive_from",
    type=click.Choice(["trades"]),
    default=None,
    help="ohlc only: build the bars (any span, 1s too) from the stored trades instead of fetching them.",
)
def backfill(
    exchange: str,
    symbols: tuple[str, ...],
    data_type: str,
    span: str | None,
    start: str | None,
    end: str | None,
    concurrency: int,
    source: str,
    as_json: bool,
    show: bool | None,
    derive_from: str | None = None,
) -> None:
    """Backfill history of SYMBOLS (BASE/QUOTE) from EXCHANGE into the lake.

    Only what is missing is fetched: re-running writes no duplicates, and gaps
    inside the range are repaired. Exit 0 only if every symbol succeeded; a
    symbol whose range the exchange serves only in part ends "partial" (exit 1).
    """
    # Errors raised here (bad input: exit 2; the disk or the exchange: exit 1) become one line
    # in dccd.cli.common.DccdGroup, also when a Trio nursery wrapped them in a group.
    st = state()
    cfg = st.config()
    req = parse_backfill(
        exchange,
        list(symbols),
        data_type,
        known_exchanges=list_adapters(),
        span=span,
        start=start,
        end=end,
        now_ns=time.time_ns(),
        derive_from=derive_from,
        source=source,
    )
    from dccd.actors.operations import check_backfill

    check_backfill(req, archive_origin(cfg))  # before any service, run or request
    _check_resume(cfg.data_root, req)
    prepare_data_dir(cfg.data_root)
    show_progress = (sys.stderr.isatty() if show is None else show) and not st.quiet
    st.setup_logging("WARNING" if show_progress else "INFO")
    records, interrupted = trio.run(lambda: _run(cfg, req, show_progress=show_progress, concurrency=concurrency))
    failed = [r for r in records if r.state is not RunState.SUCCEEDED]
    if as_json:
        click.echo(json.dumps([msgspec.to_builtins(r) for r in records], indent=2))
    else:
        for r in records:
            p = r.progress or {}
            # partial: the exchange does not serve part of the range; the reason leads the line
            head = f"{r.symbol}: partial: {r.error}" if r.state is RunState.PARTIAL else f"{r.symbol}: {r.state}"
            line = (
                f"{head} — {r.rows_written:,} rows written"
                f", {r.rows_quarantined:,} quarantined, {p.get('pages', 0)} pages"
            )
            if p.get("page_retries"):
                line += f", {p['page_retries']} page retries"
            if p.get("archive_files"):
                line += f", {p['archive_files']} archive files ({p.get('archive_bytes', 0) / 1e6:,.1f} MB)"
            if r.started_ns and r.ended_ns:
                line += f", {(r.ended_ns - r.started_ns) / 1e9:.1f}s"
            if r.error and r.state is not RunState.PARTIAL:
                line += f" — {r.error}"
            click.echo(line)
        if records:
            partial = sum(r.state is RunState.PARTIAL for r in records)
            also = f", {partial} partial" if partial else ""
            click.echo(
                f"done at {ns_to_iso(time.time_ns())}: {len(records) - len(failed)}/{len(records)} succeeded{also}"
            )
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)
