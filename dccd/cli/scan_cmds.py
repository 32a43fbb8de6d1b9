"""Scanner commands: ``dccd scan NAME ...`` and ``dccd scanners``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from dccd.cli.common import EXIT_USAGE, common_options, data_root, fail
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import ConfigError
from dccd.scan.contract import describe, get_scanner, list_scanners
from dccd.scan.engine import ScanSpec, prepare, run_scans
from dccd.scan.signals import StoredSignal, signal_values, write_signals


def _param(text: str) -> tuple[str, Any]:
    """``k=v``: the value as JSON when it parses (numbers, true, lists), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        fail(f"--param: {text!r} is not key=value", EXIT_USAGE)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


@click.command("scan")
@common_options
@click.argument("name")
@click.option("--exchange", "exchanges", multiple=True, help="Only these exchanges (repeatable).")
@click.option("--symbol", "symbols", multiple=True, help="Only these symbols, BASE/QUOTE (repeatable).")
@click.option("--quote", "quotes", multiple=True, help="Only these quote currencies (repeatable).")
@click.option("--min-quote-volume", type=float, help="Only symbols trading at least this over the last 24 h of bars.")
@click.option("--span", default="1h", show_default=True, help="Bar span scanned.")
@click.option("--param", "params", multiple=True, help="Scanner parameter key=value (repeatable; values as JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of signal objects.")
@click.option("--no-store", is_flag=True, help="Do not append the signals to {data}/signals.")
def scan_cmd(
    name: str,
    exchanges: tuple[str, ...],
    symbols: tuple[str, ...],
    quotes: tuple[str, ...],
    min_quote_volume: float | None,
    span: str,
    params: tuple[str, ...],
    as_json: bool,
    no_store: bool,
) -> None:
    """Run scanner NAME over the lake's newest bars and print its signals (see `dccd scanners`)."""
    root = data_root()
    if not root.is_dir():
        fail(f"data directory {root} does not exist (set by --data, DCCD_DATA or storage.path)", EXIT_USAGE)
    universe = {"exchanges": list(exchanges), "symbols": list(symbols), "quotes": list(quotes)}
    if min_quote_volume is not None:
        universe["min_quote_volume"] = min_quote_volume  # type: ignore[assignment]
    raw = {"scanner": name, "span": span, "params": dict(_param(p) for p in params), "universe": universe}
    try:
        spec = msgspec.convert(raw, ScanSpec)
        prepared = prepare(spec)
    except ConfigError as exc:
        fail(_option_text(exc), EXIT_USAGE)
    except msgspec.ValidationError as exc:
        fail(str(exc), EXIT_USAGE)
    [result] = run_scans(root, [prepared])
    now = time.time_ns()
    rows = [
        {"exchange": h["exchange"], "symbol": h["symbol"], "ts": h["ts"], "time": ns_to_iso(h["ts"]), "scanner": name}
        | signal_values(h)
        for h in result.hits
    ]
    if not no_store and result.hits:
        run_id, res = f"cli-{now:x}", result
        common = {"scanner": res.scanner, "version": res.version, "params_hash": res.params_hash, "span": res.span}
        stored = [
            StoredSignal(
                ts=h["ts"],
                exchange=h["exchange"],
                symbol=h["symbol"],
                values=signal_values(h),
                snapshot="",
                run_id=run_id,
                scanned_ns=now,
                **common,
            )
            for h in res.hits
        ]
        write_signals(root, stored, now)
    click.echo(
        f"{name}: {len(rows)} signal(s) over {result.symbols} {span} series in {result.elapsed_s:.2f} s", err=True
    )
    if as_json or not sys.stdout.isatty():
        click.echo(json.dumps(rows, default=str))
        return
    table = Table(show_header=True)
    cols = list(rows[0]) if rows else ["exchange", "symbol", "time"]
    cols = [c for c in cols if c not in ("ts", "scanner")]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in cols))
    Console().print(table)


def _option_text(exc: ConfigError) -> str:
    """``params.lookback: ...`` -> ``--param lookback: ...`` (the option the user typed)."""
    path = exc.path
    if path.startswith("params."):
        return f"--param {path.removeprefix('params.')}: {exc.message}"
    if path.startswith("universe.symbols"):
        return f"--symbol: {exc.message}"
    if path in ("scanner", "span"):
        return f"{'NAME' if path == 'scanner' else '--span'}: {exc.message}"
    return str(exc)


def _cell(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else "" if v is None else str(v)


@click.command("scanners")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with each scanner's JSON Schema).")
def scanners_cmd(as_json: bool) -> None:
    """List the scanners (built-in and plugins) with their parameters and defaults."""
    out = []
    for name in list_scanners():
        try:
            out.append(describe(get_scanner(name)))
        except ConfigError as exc:
            out.append({"name": name, "error": exc.message})
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for s in out:
        if "error" in s:
            click.echo(f"{s['name']}: unavailable ({s['error']})")
            continue
        spans = f" spans: {' '.join(s['spans'])}" if s["spans"] else ""
        click.echo(f"{s['name']} (v{s['version']}): {s['summary']}{spans}")
        for key, value in s["defaults"].items():
            click.echo(f"    {key} = {json.dumps(value)}")


COMMANDS = (scan_cmd, scanners_cmd)
