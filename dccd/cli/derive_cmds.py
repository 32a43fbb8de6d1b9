"""``dccd reconcile`` (derived bars vs stored bars) and ``dccd import`` (a dccd 3.x data directory)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from dccd.cli.common import EXIT_FAILED, EXIT_USAGE, common_options, fail, prepare_data_dir, state
from dccd.cli.lake_cmds import _dataset, _lake, _time
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import sole_leaf


def _value(v: Any) -> str:
    return "null" if v is None else repr(v)


@click.command("reconcile")
@common_options
@click.argument("exchange")
@click.argument("symbol")
@click.option("--span", required=True, help="Bar span (1s 1m ... 1M).")
@click.option("--start", default=None, help="ISO date/datetime (default: the first stored bar).")
@click.option("--end", default=None, help="ISO date/datetime (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reconcile_cmd(exchange: str, symbol: str, span: str, start: str | None, end: str | None, as_json: bool) -> None:
    """Compare bars derived from the stored trades of EXCHANGE SYMBOL with its stored bars.

    Prints one line per differing field of each bar (derived value, stored value), then a
    summary; exit 1 when any bar differs, 0 when all compared bars agree.
    """
    from dccd.storage import RunStore
    from dccd.storage.derive import reconcile

    ds = _dataset(exchange, symbol, "ohlc", span)
    lake = _lake()
    lo = _time("--start", start)
    hi = _time("--end", end)
    if lo is None:
        stored = lake.stored_range(ds)
        if stored is None:
            fail(lake.missing_message(ds), EXIT_USAGE)
        lo = stored[0]
    now = time.time_ns()
    report = reconcile(lake.root, ds, lo, hi if hi is not None else now, runs=RunStore(lake.root), now_ns=now)
    if as_json:
        doc = {
            "dataset": str(ds),
            "start": report.start_ns,
            "end": report.end_ns,
            "compared": report.compared,
            "differing_bars": report.differing_bars,
            "diffs": [{"ts": d.ts, "field": d.field, "derived": d.derived, "stored": d.stored} for d in report.diffs],
            "only_derived": report.only_derived,
            "only_stored": report.only_stored,
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for d in report.diffs:
            click.echo(f"{ns_to_iso(d.ts)} {d.field}: derived {_value(d.derived)}, stored {_value(d.stored)}")
        click.echo(
            f"{ds}: {report.compared:,} bars compared from {ns_to_iso(report.start_ns)} to"
            f" {ns_to_iso(report.end_ns)}: {report.differing_bars:,} differ,"
            f" {len(report.only_derived):,} only derived (no stored bar),"
            f" {len(report.only_stored):,} only stored (no stored trade in the period)"
        )
    if report.diffs:
        raise SystemExit(EXIT_FAILED)


@click.command("import")
@common_options
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_cmd(path: str, as_json: bool) -> None:
    """Import the data directory PATH of a dccd 3.x installation into the lake.

    Every row goes through the quality gates; the predecessor's known fidelity bugs are
    fixed on the way (Coinbase sides, BitMEX close-time bars, Kraken float-second times,
    bars still open when written) and counted. Rows the lake already holds are skipped,
    so a second import imports nothing. The import is one run (``dccd runs``), written
    through a writer actor.
    """
    from pathlib import Path

    import trio

    from dccd.actors import open_service
    from dccd.actors.imports import run_import
    from dccd.storage.importer import ImportFailed, ImportReport, check_source, discover
    from dccd.storage.runs import RunRecord

    st = state()
    cfg = st.config()
    try:  # a bad PATH is one line, before anything (the lake directory included) is created
        check_source(Path(path), cfg.data_root)
        discover(Path(path), ImportReport())
    except ImportFailed as exc:
        fail(f"PATH: {exc}", EXIT_USAGE)
    st.setup_logging("WARNING")
    prepare_data_dir(cfg.data_root)

    async def main() -> tuple[RunRecord, ImportReport]:
        async with open_service(cfg) as svc:
            done: tuple[RunRecord, ImportReport] = await run_import(svc, Path(path))
            return done

    started = time.perf_counter()
    try:
        record, report = trio.run(main)
    except ImportFailed as exc:
        fail(f"PATH: {exc}", EXIT_USAGE)
    except BaseExceptionGroup as group:  # the service's nursery wraps it
        found = sole_leaf(group)
        if isinstance(found, ImportFailed):
            fail(f"PATH: {found}", EXIT_USAGE)
        raise
    elapsed = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({"run_id": record.run_id, "state": record.state, **report.to_dict()}, indent=2))
    else:
        click.echo(f"run {record.run_id}: {record.state}")
        for line in report.lines():
            click.echo(line)
        rate = report.rows_read / elapsed if elapsed > 0 else 0.0
        click.echo(f"{elapsed:.1f}s, {rate:,.0f} rows/s")
    if record.state != "succeeded":
        raise SystemExit(EXIT_FAILED)


COMMANDS = (reconcile_cmd, import_cmd)
