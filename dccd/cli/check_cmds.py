"""``dccd check``: run the data contracts over stored datasets; exit 0 clean, 1 violations, 2 bad input."""

from __future__ import annotations

import click
import msgspec

from dccd.cli.common import EXIT_FAILED, EXIT_USAGE, common_options, data_root, fail, state
from dccd.contracts.check import SelectorError, check
from dccd.contracts.report import FAIL, CheckReport
from dccd.contracts.rules import resolve
from dccd.domain.timeutil import parse_iso_ns
from dccd.storage.snapshots import SnapshotNotFound

_EXAMPLES_SHOWN = 3


def _time(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_iso_ns(text)
    except ValueError as exc:
        fail(f"{option}: {exc}", EXIT_USAGE)


def _example(example: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in example.items())


def print_report(report: CheckReport) -> None:
    """The report as text: one line per dataset, then per failing contract and day, then a summary."""
    for ds in report.datasets:
        failed = [c for c in ds.contracts if c.status == FAIL]
        verdict = "ok" if not failed and not ds.skipped_files else "FAIL"
        line = f"{ds.dataset}  {ds.rows:,} rows  {verdict}"
        if failed:
            line += "  " + ", ".join(f"{c.contract} {c.violations:,}" for c in failed)
        click.echo(line)
        for c in failed:
            for day in c.days:
                click.echo(f"  {c.contract} {day.day}: {day.count:,}")
                for ex in day.examples[:_EXAMPLES_SHOWN]:
                    click.echo(f"    {_example(ex)}")
        for bad in ds.skipped_files:
            click.echo(f"  unreadable part {bad.path}: {bad.reason}")
    n = len(report.datasets)
    if report.as_of:
        click.echo(f"as of snapshot {report.as_of}")
    click.echo(
        f"{n} dataset(s), {report.rows:,} rows, {report.violations:,} violation(s) in {report.elapsed_s:.2f} s"
        + ("" if report.ok else " — FAILED")
    )


@click.command("check")
@common_options
@click.argument("datasets", nargs=-1)
@click.option("--start", default=None, help="Check rows from this ISO date/datetime (UTC), inclusive.")
@click.option("--end", default=None, help="Check rows before this ISO date/datetime (UTC).")
@click.option("--as-of", "as_of", default=None, help="Check a snapshot: its id, tag or an ISO time (dccd snapshot).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_cmd(datasets: tuple[str, ...], start: str | None, end: str | None, as_of: str | None, as_json: bool) -> None:
    """Run the data contracts over stored DATASETs (EXCHANGE[:SYMBOL[:TYPE[:SPAN]]], all when none given).

    Exit 0 when every contract passes, 1 when one fails (or a part is unreadable), 2 on bad input.
    """
    rules = resolve(state().config().contracts)  # a bad contracts section: config error, exit 2
    start_ns, end_ns = _time("--start", start), _time("--end", end)
    if start_ns is not None and end_ns is not None and start_ns >= end_ns:
        fail("--start must be before --end", EXIT_USAGE)
    root = data_root()
    if not root.is_dir():
        fail(f"data directory {root} does not exist (set by --data, DCCD_DATA or storage.path)", EXIT_USAGE)
    try:
        report = check(root, rules, datasets, start_ns=start_ns, end_ns=end_ns, as_of=as_of)
    except SelectorError as exc:
        fail(str(exc), EXIT_USAGE)
    except SnapshotNotFound as exc:
        fail(f"--as-of: {exc}", EXIT_USAGE)
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        print_report(report)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


COMMANDS = (check_cmd,)
