"""Lake commands: ``dccd read``, ``dccd inventory``, ``dccd compact``, ``dccd quarantine``."""

from __future__ import annotations

import collections
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

import click
import msgspec
from rich.console import Console
from rich.table import Table

from dccd.cli.common import EXIT_FAILED, EXIT_USAGE, common_options, data_root, fail
from dccd.domain import SPAN_LABELS, DatasetId, DataType, Span, Symbol, check_exchange_name
from dccd.domain.timeutil import ns_to_iso, parse_iso_ns
from dccd.storage import BadFile, Lake
from dccd.storage.inventory import DatasetInventory, GapRange
from dccd.storage.snapshots import SnapshotNotFound

_FORMATS = {"table": None, "csv": "csv", "json": "jsonl", "parquet": "parquet"}
_HEAD = 10
_GAPS_SHOWN = 20


def _dataset(exchange: str, symbol: str, data_type: str, span: str | None) -> DatasetId:
    """Build a DatasetId from CLI text; bad input exits 2 with one ``error:`` line."""
    try:
        check_exchange_name(exchange)
    except ValueError as exc:
        fail(f"EXCHANGE: {exc}", EXIT_USAGE)
    try:
        sym = Symbol.parse(symbol) if "/" in symbol else Symbol.from_slug(symbol)
    except ValueError as exc:
        fail(f"SYMBOL: {exc}", EXIT_USAGE)
    try:
        dt = DataType.parse(data_type)
    except ValueError as exc:
        fail(f"--type: {exc}", EXIT_USAGE)
    if dt is DataType.OHLC and span is None:
        fail("--span is required for --type ohlc", EXIT_USAGE)
    if dt is not DataType.OHLC and span is not None:
        fail(f"--span applies to ohlc only, not {dt.value}", EXIT_USAGE)
    try:
        return DatasetId(exchange, sym, dt, Span.parse(span) if span else None)
    except ValueError as exc:
        fail(f"--span: {exc}", EXIT_USAGE)


def _time(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_iso_ns(text)
    except ValueError as exc:
        fail(f"{option}: {exc}", EXIT_USAGE)


def _lake() -> Lake:
    """The lake of this invocation; a data directory that does not exist is a usage error (exit 2)."""
    root = data_root()
    if not root.is_dir():
        fail(f"data directory {root} does not exist (set by --data, DCCD_DATA or storage.path)", EXIT_USAGE)
    return Lake(root)


def _note_empty(lake: Lake, ds: DatasetId) -> None:
    """After a read of zero rows: say what the dataset holds, on stderr."""
    rng = lake.stored_range(ds)
    if rng is None:
        click.echo(f"note: {ds} holds no readable rows", err=True)
    else:
        click.echo(f"note: no rows in the range; {ds} holds {ns_to_iso(rng[0])} .. {ns_to_iso(rng[1])}", err=True)


def _console() -> Console:
    # Off a terminal rich would wrap to 80 columns and truncate timestamps.
    return Console() if sys.stdout.isatty() else Console(width=240)


def _warn_skipped(skipped: Sequence[BadFile]) -> None:
    for bad in skipped:
        click.echo(f"warning: skipped {bad.path}: {bad.reason}", err=True)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in ("ts", "recv_ts") and isinstance(value, int):
        return ns_to_iso(value)
    return str(value)


def _print_table(lake: Lake, ds: DatasetId, start: int | None, end: int | None, as_of: str | None = None) -> int:
    """Head and tail rows plus the count, streaming (memory stays bounded)."""
    head: list[dict[str, Any]] = []
    tail: collections.deque[dict[str, Any]] = collections.deque(maxlen=_HEAD)
    rows = 0
    with lake.open_reader(ds, start, end, as_of=as_of) as stream:
        names = stream.reader.schema.names
        for batch in stream.reader:
            if len(head) < _HEAD:
                head.extend(batch.slice(0, _HEAD - len(head)).to_pylist())
            tail.extend(batch.slice(max(0, batch.num_rows - _HEAD)).to_pylist())
            rows += batch.num_rows
        skipped = stream.skipped
    _warn_skipped(skipped)
    table = Table(title=f"{ds}: {rows} rows", show_lines=False)
    for n in names:
        table.add_column(n, justify="left" if n in ("ts", "id", "side") else "right", no_wrap=n in ("ts", "id"))
    shown = head + [r for i, r in enumerate(tail) if rows - len(tail) + i >= len(head)]
    for i, row in enumerate(shown):
        if i == len(head) and rows > len(shown):
            table.add_row(*(["…"] * len(names)))
        table.add_row(*(_cell(n, row[n]) for n in names))
    _console().print(table)
    return rows


@click.command("read")
@common_options
@click.argument("exchange")
@click.argument("symbol")
@click.option("--type", "data_type", required=True, help="trades | ohlc | book | funding | oi")
@click.option("--span", default=None, help=f"Bar span for ohlc ({' '.join(SPAN_LABELS)}).")
@click.option("--start", default=None, help="ISO date/datetime (UTC), inclusive.")
@click.option("--end", default=None, help="ISO date/datetime (UTC), exclusive.")
@click.option("--format", "fmt", type=click.Choice(list(_FORMATS)), default="table", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None, help="Output file.")
@click.option("--as-of", "as_of", default=None, help="Read a snapshot: its id, tag or an ISO time (dccd snapshot).")
def read_cmd(
    exchange: str,
    symbol: str,
    data_type: str,
    span: str | None,
    start: str | None,
    end: str | None,
    fmt: str,
    out: str | None,
    as_of: str | None = None,
) -> None:
    """Print or export stored data, deduplicated and sorted by ts.

    A dataset never collected fails (exit 1) naming the nearest stored datasets; a read of
    zero rows from a collected dataset succeeds and says on stderr what range it holds.
    """
    ds = _dataset(exchange, symbol, data_type, span)
    start_ns, end_ns = _time("--start", start), _time("--end", end)
    if start_ns is not None and end_ns is not None and start_ns >= end_ns:
        fail("--start must be before --end", EXIT_USAGE)
    export_fmt = _FORMATS[fmt]
    if export_fmt is None and out is not None:
        fail("--out needs --format csv, json or parquet", EXIT_USAGE)
    if out is None and export_fmt == "parquet" and sys.stdout.isatty():
        fail("--format parquet writes binary: give --out FILE or redirect stdout", EXIT_USAGE)
    lake = _lake()
    if as_of is not None:
        try:
            snap = lake.snapshot(as_of)
        except SnapshotNotFound as exc:
            fail(f"--as-of: {exc}", EXIT_USAGE)
        as_of = str(snap.snapshot_id)  # resolved once: every step below reads the same snapshot
    elif not lake.has_dataset(ds):
        fail(lake.missing_message(ds), EXIT_FAILED)
    if export_fmt is None:
        if _print_table(lake, ds, start_ns, end_ns, as_of) == 0 and as_of is None:
            _note_empty(lake, ds)
        return
    if out is not None:
        rows, skipped = lake.export_to(ds, export_fmt, out, start_ns, end_ns, as_of=as_of)
    else:
        stdout: BinaryIO = sys.stdout.buffer
        rows, skipped = lake.export_to(ds, export_fmt, stdout, start_ns, end_ns, as_of=as_of)
        stdout.flush()
    _warn_skipped(skipped)
    if out is not None:
        click.echo(f"{rows} rows written to {out}", err=True)
    if rows == 0 and as_of is None:
        _note_empty(lake, ds)


@click.command("inventory")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inventory_cmd(as_json: bool) -> None:
    """List datasets with rows, first/last ts, size and exact gaps."""
    items = _lake().inventory()
    for item in items:
        _warn_skipped(item.skipped)
    if as_json:
        click.echo(msgspec.json.encode(items).decode())
        return
    table = Table(title=f"{len(items)} dataset(s)")
    for col in ("exchange", "symbol", "type", "rows", "first", "last", "parts", "MB", "gaps", "missing"):
        table.add_column(col, justify="right" if col in ("rows", "parts", "MB", "gaps", "missing") else "left")
    for it in items:
        kind = f"{it.data_type} {it.span}" if it.span else it.data_type
        gaps = str(len(it.gaps)) if it.gap_kind else "-"
        first = ns_to_iso(it.first_ts) if it.first_ts is not None else ""
        last = ns_to_iso(it.last_ts) if it.last_ts is not None else ""
        table.add_row(
            it.exchange, it.symbol, kind, str(it.rows), first, last, str(it.parts), f"{it.bytes / 1e6:.1f}", gaps,
            f"{it.missing:,}" if it.gap_kind else "-",
        )  # fmt: skip
    _console().print(table)
    for it in items:
        name = " ".join(x for x in (it.exchange, it.symbol, it.data_type, it.span) if x)
        for g in it.gap_ranges[:_GAPS_SHOWN]:
            click.echo(f"gap {name}: {_gap_text(it, g)}")
        if len(it.gap_ranges) > _GAPS_SHOWN:
            click.echo(f"gap {name}: … and {len(it.gap_ranges) - _GAPS_SHOWN} more (see --json)")
        if it.gap_kind is None and it.gap_note and it.rows:
            click.echo(f"note {name}: {it.gap_note}")


def _gap_text(it: DatasetInventory, g: GapRange) -> str:
    """One gap as text: exact bounds, count and where it came from."""
    if g.unit == "id":
        around = f"; between {ns_to_iso(g.first_ts)} and {ns_to_iso(g.last_ts)}" if g.first_ts and g.last_ts else ""
        text = f"trade ids {g.lo}..{g.hi} ({g.count:,} missing{around})"
    else:
        unit = "bar" if it.data_type == "ohlc" else "print"
        count = f"{g.count:,} {unit}{'s' if g.count != 1 else ''} missing" if g.count is not None else "time hole"
        text = f"[{ns_to_iso(g.lo)}, {ns_to_iso(g.hi)}) ({count})"
    if g.source == "unavailable":
        text += " not served by the exchange"
    return text + (f" — {g.detail}" if g.detail else "") + f" [{g.source}]"


@click.command("compact")
@common_options
@click.argument("exchange", required=False)
@click.argument("symbol", required=False)
@click.option("--type", "data_type", default=None, help="trades | ohlc | book | funding | oi")
@click.option("--span", default=None, help="Bar span for ohlc.")
def compact_cmd(exchange: str | None, symbol: str | None, data_type: str | None, span: str | None) -> None:
    """Merge each partition's parts into one (all datasets, or EXCHANGE SYMBOL --type T)."""
    ds = None
    if exchange is not None or symbol is not None or data_type is not None:
        if exchange is None or symbol is None or data_type is None:
            raise click.UsageError("give EXCHANGE SYMBOL --type T (and --span for ohlc), or nothing for all datasets")
        ds = _dataset(exchange, symbol, data_type, span)
    elif span is not None:
        raise click.UsageError("--span needs EXCHANGE SYMBOL --type ohlc")
    results = _lake().compact(ds)
    for r in results:
        _warn_skipped(r.skipped)
        click.echo(f"{r.partition}: {r.inputs} parts -> 1 ({r.rows} rows)")
    click.echo(f"compacted {len(results)} partition(s)")


@click.command("quarantine")
@common_options
@click.argument("path")
def quarantine_cmd(path: str) -> None:
    """Move a damaged part out of the data into {root}/_dccd/quarantine/, keeping its relative path."""
    lake = _lake()
    try:
        dest = lake.quarantine(path)
    except ValueError as exc:
        fail(f"PATH: {exc}", EXIT_USAGE)
    except OSError as exc:
        fail(f"moving {path}: {exc.strerror or exc}", EXIT_FAILED)
    click.echo(f"quarantined {path} -> {dest}")


COMMANDS = (read_cmd, inventory_cmd, compact_cmd, quarantine_cmd)  # runs: dccd/cli/runs_cmds.py
