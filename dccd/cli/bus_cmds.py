"""`dccd tap SUBJECT`: print what the collectors publish on the NATS bus, one JSON object per line."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from dccd.cli.common import EXIT_FAILED, EXIT_USAGE, common_options, state


@click.command("tap")
@common_options
@click.argument("subject")
@click.option("--url", default=None, help="NATS server (default: bus.url of the config).")
@click.option(
    "--deliver",
    type=click.Choice(["new", "all", "last"]),
    default="new",
    show_default=True,
    help="From now, everything the stream keeps, or the newest per subject onwards.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many messages.")
@click.option("--idle", type=click.FloatRange(min=0.1), default=None, help="Stop after this many seconds of silence.")
def tap_cmd(subject: str, url: str | None, deliver: str, count: int | None, idle: float | None) -> None:
    """Print the messages stored on SUBJECT (e.g. dccd.trades.binance.> or dccd.events.>) as JSON lines."""
    from dccd.bus.consumer import tap

    if url is None:
        cfg = state().config()
        if cfg.bus is None:
            click.echo("error: no bus: give --url nats://host:port or set bus.url in the config", err=True)
            sys.exit(EXIT_USAGE)
        url = cfg.bus.url

    async def run() -> int:
        n = 0
        async for msg in tap(url, subject, deliver=deliver, idle_timeout_s=idle):  # type: ignore[arg-type]
            line = {"subject": msg.subject, "seq": msg.seq, "id": msg.msg_id, "data": msg.data}
            click.echo(json.dumps(line, separators=(",", ":")))
            n += 1
            if count is not None and n >= count:
                break
        return n

    try:
        asyncio.run(run())
    except ConnectionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        pass


COMMANDS = (tap_cmd,)
