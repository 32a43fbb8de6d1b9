"""``dccd sql "SELECT ..."``: read-only SQL over the local lake's views (the same checks and limits as the API)."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click
from rich.console import Console
from rich.table import Table

from dccd.cli.common import EXIT_USAGE, common_options, data_root, fail
from dccd.errors import QueryError
from dccd.storage import query as q

_FORMATS = ("table", *q.FORMATS)
_SHOWN = 50


def _print_table(result: q.QueryResult) -> None:
    table = result.table
    out = Table(title=f"{table.num_rows} row(s)" + (" (truncated)" if result.truncated else ""))
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.slice(0, _SHOWN).to_pylist():
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    if table.num_rows > _SHOWN:
        out.add_row(*(["…"] * len(table.column_names)))
    # Off a terminal rich would wrap to 80 columns.
    (Console() if sys.stdout.isatty() else Console(width=240)).print(out)


@click.command("sql")
@common_options
@click.argument("statement")
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True)
@click.option(
    "--max-rows",
    type=click.IntRange(1, q.MAX_ROWS),
    default=q.DEFAULT_MAX_ROWS,
    show_default=True,
    help="Rows kept; more are cut (and said so on stderr).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0, q.MAX_TIMEOUT_S, min_open=True),
    default=q.DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds before the query is interrupted.",
)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None, help="Output file.")
@click.option(
    "--as-of", "as_of", default=None, metavar="SNAPSHOT", help="Query the lake as of a snapshot (id, tag or ISO time)."
)
def sql_cmd(statement: str, fmt: str, max_rows: int, timeout_s: float, out: str | None, as_of: str | None) -> None:
    """Run one read-only DuckDB STATEMENT over the lake views.

    Views: trades, ohlc, book, funding, oi, signals; deduplicated, with the partition columns
    exchange, symbol (slug, BTC-USDT), span (ohlc), date or month. Anything but one query
    (COPY, ATTACH, SET, CREATE, ...) and any file outside the lake is refused (exit 2).

    \b
    dccd sql "SELECT symbol, max(high) FROM ohlc WHERE span = '1h' GROUP BY symbol"
    """
    if fmt == "table" and out is not None:
        fail("--out needs --format csv, json, jsonl, parquet or arrow", EXIT_USAGE)
    if out is None and fmt in ("parquet", "arrow") and sys.stdout.isatty():
        fail(f"--format {fmt} writes binary: give --out FILE or redirect stdout", EXIT_USAGE)
    root = data_root()
    if not root.is_dir():
        fail(f"data directory {root} does not exist (set by --data, DCCD_DATA or storage.path)", EXIT_USAGE)
    try:
        result = q.run_query(root, statement, max_rows=max_rows, timeout_s=timeout_s, as_of=as_of)
    except QueryError as exc:
        fail(str(exc) if str(exc).startswith("as_of: ") else f"sql: {exc}", EXIT_USAGE)
    for bad in result.skipped:
        click.echo(f"warning: skipped {bad.path}: {bad.reason}", err=True)
    if fmt == "table":
        _print_table(result)
    else:
        chunks = q.encode(result.table, fmt)
        if out is not None:
            with open(out, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            click.echo(f"{result.table.num_rows} rows written to {out}", err=True)
        else:
            stdout: BinaryIO = sys.stdout.buffer
            for chunk in chunks:
                stdout.write(chunk)
            if fmt == "json":
                stdout.write(b"\n")
            stdout.flush()
    if result.truncated:
        click.echo(f"note: truncated at {max_rows} rows (--max-rows)", err=True)


COMMANDS = [sql_cmd]
