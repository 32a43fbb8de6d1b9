"""``dccd stream``: record live data until SIGINT/SIGTERM or for ``--duration`` seconds.

On a terminal a status line shows messages/s, rows written, reconnects and
gaps; otherwise the structured log carries a ``stream.status`` line every
few seconds. A stop signal ends the stream the same way ``stop_stream``
does: every received row is written, then the run succeeds, and the command
prints a one-line summary and exits 0. Exit 1: the stream failed (e.g. the
exchange refused the subscription); exit 2: bad input, printed as one
``error: <field>: <what>`` line.
"""

from __future__ import annotations

import math
import signal
import sys
from typing import TYPE_CHECKING, Any

import click
import structlog
import trio

from dccd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options, fail, prepare_data_dir, state
from dccd.config import Config
from dccd.errors import ConfigError, DccdError, NoCapability, UnsupportedSymbol
from dccd.ops import StreamRequest, parse_stream
from dccd.sources.registry import list_adapters

if TYPE_CHECKING:  # the runtime imports are deferred: `dccd --help` stays fast
    from rich.live import Live

    from dccd.actors.streams import StreamInfo

log = structlog.get_logger()

STATUS_EVERY_S = 5.0
MAX_DURATION_S = 10 * 365 * 86400.0  # Trio deadlines are floats: a bound keeps ``now + duration`` meaningful
REFRESH_S = 0.5


def status_text(info: StreamInfo, rate: float) -> str:
    """The one-line status: state, messages/s, rows, reconnects, gaps."""
    return (
        f"{info.exchange} {','.join(info.symbols)} {info.type}{' ' + info.span if info.span else ''}: {info.state}"
        f" | {rate:,.0f} msg/s | {info.messages:,} messages | {info.rows:,} rows written"
        f" | {info.reconnects} reconnects | {info.gaps_filled} gaps filled | {info.gaps_open} open"
    )


def summary_text(info: StreamInfo) -> str:
    """The final line printed on stdout."""
    error = f" ({info.error})" if info.error else ""
    return (
        f"stream {info.id}: {info.state}{error}, {info.messages} messages, {info.rows} rows, "
        f"{info.reconnects} reconnects, {info.gaps_filled} gaps filled, {info.gaps_open} gaps open"
    )


async def _watch_signals(stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if stop.is_set():
                log.warning("stream.still_stopping", signal=signal.Signals(signum).name)
            else:
                log.info("stream.stopping", signal=signal.Signals(signum).name)
                stop.set()


async def _report(get_info: Any, live: Live | None) -> None:
    """Refresh the status line (terminal) or log a status line every STATUS_EVERY_S."""
    last_n, last_t, logged = 0, trio.current_time(), trio.current_time()
    while True:
        await trio.sleep(REFRESH_S)
        info: StreamInfo = get_info()
        now = trio.current_time()
        rate = (info.messages - last_n) / max(now - last_t, 1e-9)
        last_n, last_t = info.messages, now
        if live is not None:
            from rich.text import Text

            live.update(Text(status_text(info, rate)))
        elif now - logged >= STATUS_EVERY_S:
            logged = now
            log.info(
                "stream.status", state=info.state, messages=info.messages, messages_s=round(rate, 1), rows=info.rows,
                reconnects=info.reconnects, gaps_filled=info.gaps_filled, gaps_open=info.gaps_open,
            )  # fmt: skip


async def run_stream(cfg: Config, req: StreamRequest, duration_s: float | None, live: Live | None) -> int:
    """Run the service, record ``req`` until a signal, the duration or a failure; return the exit code."""
    from rich.text import Text

    from dccd.actors import open_service

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(_watch_signals, stop)
        async with open_service(cfg) as svc:
            try:
                sid = await svc.start_stream(req)
            except (NoCapability, UnsupportedSymbol, ConfigError) as exc:
                click.echo(f"error: {exc}", err=True)
                nursery.cancel_scope.cancel()
                return EXIT_USAGE
            except DccdError as exc:
                click.echo(f"error: {exc}", err=True)
                nursery.cancel_scope.cancel()
                return EXIT_FAILED
            streams = svc.streams
            assert streams is not None
            stream = streams.get(sid)
            assert stream is not None
            async with trio.open_nursery() as waiting:
                waiting.start_soon(_report, stream.info, live)

                async def until(event: trio.Event) -> None:
                    await event.wait()
                    waiting.cancel_scope.cancel()

                waiting.start_soon(until, stop)
                waiting.start_soon(until, stream.done)  # the stream failed on its own
                if duration_s is not None:
                    waiting.cancel_scope.deadline = trio.current_time() + duration_s
            await svc.stop_stream(sid)
            info = stream.info()
        nursery.cancel_scope.cancel()
    if live is not None:
        live.update(Text(status_text(info, 0.0)))
    click.echo(summary_text(info))
    return EXIT_OK if info.state == "stopped" else EXIT_FAILED


@click.command("stream")
@common_options
@click.argument("exchange")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--type", "data_type", required=True, help="trades | ohlc | book")
@click.option("--span", default=None, help="Bar span for --type ohlc (1s 1m 5m 1h 1d ...).")
@click.option("--duration", type=float, default=None, help="Stop after S seconds (default: until SIGINT/SIGTERM).")
def stream_cmd(
    exchange: str, symbols: tuple[str, ...], data_type: str, span: str | None, duration: float | None
) -> None:
    """Record live data of SYMBOLS (BASE/QUOTE) from EXCHANGE into the lake until stopped.

    Stops on SIGINT/SIGTERM (or after --duration): everything received is
    written first. Missed trades (reconnects, skipped ids) are refilled over REST.
    """
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from dccd.actors.streams import check_stream

    # Errors raised here (bad input: exit 2) become one line in dccd.cli.common.DccdGroup.
    req = parse_stream(exchange, list(symbols), data_type, known_exchanges=list_adapters(), span=span)
    if duration is not None and not (math.isfinite(duration) and 0 < duration <= MAX_DURATION_S):
        fail(
            f"duration: must be a positive number of seconds (at most {MAX_DURATION_S:.0f}), got {duration:g}",
            EXIT_USAGE,
        )
    st = state()
    cfg = st.config()
    check_stream(req, cfg.exchange(exchange).ws_url)  # before any service, run or connection
    prepare_data_dir(cfg.data_root)
    terminal = sys.stderr.isatty() and not st.quiet
    # On a terminal the status line is the display; only warnings interrupt it (unless --log-level says otherwise).
    st.setup_logging("WARNING" if terminal else "INFO")
    if terminal:
        with Live(Text("connecting..."), console=Console(stderr=True), refresh_per_second=4) as live:
            code = trio.run(run_stream, cfg, req, duration, live)
    else:
        code = trio.run(run_stream, cfg, req, duration, None)
    sys.exit(code)


COMMANDS = (stream_cmd,)
