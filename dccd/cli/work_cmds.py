"""``dccd work backfill ...`` (plan a backfill into units on the bus's work queue) and ``dccd work status``.

The units run on the collectors whose config has ``bus.work_queue: true`` (``dccd serve``); this command
only plans (it never pulls units, and never holds shard leases) and follows the planner runs until every
unit is done or dead-lettered (interrupted, the units stay queued for the workers; the planner runs end
``cancelled``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import msgspec
import trio

from dccd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options, prepare_data_dir, state
from dccd.config import Config
from dccd.ops import BackfillRequest, parse_backfill


def _bus_config(cfg: Config) -> Config:
    if cfg.bus is None:
        click.echo("error: bus.url: work units travel on the NATS bus; set bus.url in the config", err=True)
        sys.exit(EXIT_USAGE)
    return msgspec.structs.replace(cfg, shard=None, bus=msgspec.structs.replace(cfg.bus, work_queue=False), jobs=[])


async def _plan(cfg: Config, req: BackfillRequest) -> list[msgspec.Struct]:
    from dccd.actors import open_service

    async with open_service(cfg) as svc:
        await svc.work.wait_connected(15.0)
        run_ids = await svc.work.distribute(req)
        return [await svc.wait_run(rid) for rid in run_ids]


@click.group("work")
@common_options
def work_group() -> None:
    """Backfills spread over collectors through the bus's work queue."""


@work_group.command("backfill")
@common_options
@click.argument("exchange")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--type", "data_type", required=True, help="trades | ohlc | book | funding | oi")
@click.option("--span", default=None, help="Bar span for ohlc.")
@click.option("--start", required=True, help="ISO date/datetime or -30d (a time: the range is cut into units).")
@click.option("--end", default=None, help="ISO date/datetime, -1h or now (default).")
@click.option("--source", type=click.Choice(["auto", "archive", "rest"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the planner run records as JSON.")
def work_backfill(
    exchange: str,
    symbols: tuple[str, ...],
    data_type: str,
    span: str | None,
    start: str,
    end: str | None,
    source: str,
    as_json: bool,
) -> None:
    """Cut a backfill of SYMBOLS into units (one per day, bus.work_unit) that every worker collector pulls."""
    from dccd.sources.registry import list_adapters

    st = state()
    cfg = _bus_config(st.config())
    req = parse_backfill(
        exchange, list(symbols), data_type, known_exchanges=list_adapters(), span=span, start=start, end=end,
        now_ns=time.time_ns(), source=source,
    )  # fmt: skip
    prepare_data_dir(cfg.data_root)
    st.setup_logging("WARNING")
    records = trio.run(lambda: _plan(cfg, req))
    rows = [msgspec.to_builtins(r) for r in records]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for r in rows:
            w = (r.get("progress") or {}).get("work") or {}
            total = (r.get("progress") or {}).get("total")
            units = f"{w.get('done', 0)}/{total} units done, {w.get('dead', 0)} dead"
            line = f"{r['run_id']} {r['symbol']}: {r['state']} — {units}, {r['rows_written']:,} rows"
            click.echo(line + (f" — {r['error']}" if r.get("error") else ""))
    failed = any(r["state"] != "succeeded" for r in rows)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@work_group.command("status")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def work_status(as_json: bool) -> None:
    """The shared work queue: units waiting, delivered and unacked, redelivered, and unit states by status."""
    from dccd.actors.work import read_queue
    from dccd.bus.link import NatsLink

    cfg = _bus_config(state().config())
    assert cfg.bus is not None
    url = cfg.bus.url

    async def run() -> dict[str, Any]:
        async with NatsLink.open(url, name="dccd-work-status") as link:
            got: dict[str, Any] = await read_queue(link)
            return got

    out = trio.run(run)
    if as_json:
        click.echo(json.dumps(out))
        return
    units = ", ".join(f"{k} {v}" for k, v in sorted(out["units"].items())) or "none"
    click.echo(f"queued {out['queued']}, unacked {out['unacked']}, redelivered {out['redelivered']}; units: {units}")


COMMANDS = (work_group,)
