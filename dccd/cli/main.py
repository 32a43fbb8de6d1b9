"""`dccd` command line: the entry point and the config commands.

Exit codes: 0 success, 1 operation failed, 2 usage or config error, 130 interrupted;
every error is one line on stderr (:class:`~dccd.cli.common.DccdGroup` is the boundary).
"""

from __future__ import annotations

import json

import click
import yaml

from dccd import __version__
from dccd.cli.common import DccdGroup, common_options, state
from dccd.config import expand_jobs, masked


@click.group("dccd", cls=DccdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dccd")
@common_options
def cli() -> None:
    """dccd: crypto market data, complete and exact, on your own disks."""
    state().setup_logging()  # commands that log more by default (serve, stream, backfill) raise it


@cli.command()
@common_options
def validate() -> None:
    """Check the config and print the expanded job list (writes nothing)."""
    cfg = state().config()
    jobs = expand_jobs(cfg)
    click.echo(f"config ok: {len(jobs)} job(s), data in {cfg.storage.path}")
    for j in jobs:
        sched = {
            "every": f"every {j.every_s}s",
            "cron": f"cron '{j.cron}' UTC",
            "once": "once at start",
            "stream": "supervised stream",
            "manual": "manual (API / run now)",
        }[j.schedule]
        span = f" span={j.span}" if j.span else ""
        window = ""
        if j.operation == "backfill":
            window = f" start={j.start or 'last'} end={j.end or 'now'}"
        elif j.operation == "scan":
            window = f" scanner={j.scanner}" + (" on new bars" if j.on_new_bars else "")
        syms = ",".join(str(s) for s in j.symbols)
        click.echo(f"  {j.id}: {j.operation} {j.exchange} {j.data_type.value}{span} [{syms}]{window} — {sched}")


@cli.group("config")
@common_options
def config_group() -> None:
    """Inspect the effective config."""


@config_group.command("show")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def config_show(as_json: bool) -> None:
    """Print the effective config (env overrides applied, secrets masked)."""
    data = masked(state().config())
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


# Commands from other modules register here.
from dccd.cli.backfill_cmds import backfill  # noqa: E402

cli.add_command(backfill)
from dccd.cli.serve_cmds import serve  # noqa: E402

cli.add_command(serve)
from dccd.cli.stream_cmds import stream_cmd  # noqa: E402

cli.add_command(stream_cmd)
from dccd.cli.bus_cmds import COMMANDS as BUS_COMMANDS  # noqa: E402
from dccd.cli.check_cmds import COMMANDS as CHECK_COMMANDS  # noqa: E402
from dccd.cli.derive_cmds import COMMANDS as DERIVE_COMMANDS  # noqa: E402
from dccd.cli.jobs_cmds import COMMANDS as JOBS_COMMANDS  # noqa: E402
from dccd.cli.lake_cmds import COMMANDS as LAKE_COMMANDS  # noqa: E402
from dccd.cli.runs_cmds import COMMANDS as RUNS_COMMANDS  # noqa: E402
from dccd.cli.scan_cmds import COMMANDS as SCAN_COMMANDS  # noqa: E402
from dccd.cli.snapshot_cmds import COMMANDS as SNAPSHOT_COMMANDS  # noqa: E402
from dccd.cli.sql_cmds import COMMANDS as SQL_COMMANDS  # noqa: E402
from dccd.cli.symbols_cmds import COMMANDS as SYMBOLS_COMMANDS  # noqa: E402
from dccd.cli.work_cmds import COMMANDS as WORK_COMMANDS  # noqa: E402

_CMDS = (
    *LAKE_COMMANDS,
    *RUNS_COMMANDS,
    *SYMBOLS_COMMANDS,
    *JOBS_COMMANDS,
    *SQL_COMMANDS,
    *SNAPSHOT_COMMANDS,
    *CHECK_COMMANDS,
    *DERIVE_COMMANDS,
    *SCAN_COMMANDS,
    *BUS_COMMANDS,
    *WORK_COMMANDS,
)
for _cmd in _CMDS:
    cli.add_command(_cmd)


def main() -> None:
    """Console-script entry point (the group exits with the command's code; see DccdGroup)."""
    cli.main()
