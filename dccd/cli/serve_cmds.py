"""`dccd serve`: the collector as one process — supervisor tree, configured jobs, HTTP API, SSE and UI.

One ``trio.run`` holds the service (:func:`dccd.actors.serve`, the embedding
API: startup sweep of temp parts, orphaned runs marked failed) and the HTTP server (hypercorn's Trio
worker). On SIGINT/SIGTERM the shutdown runs in order: sources stop,
writers drain, the hub closes (every SSE stream ends cleanly), then the
server stops; exit 0. A second signal cuts the drain short.
"""

from __future__ import annotations

import functools
import signal
import sys
from typing import Any

import click
import structlog
import trio

from dccd.cli.common import EXIT_FAILED, EXIT_OK, common_options, prepare_data_dir, state
from dccd.config import Config
from dccd.errors import sole_leaf

log = structlog.get_logger("dccd.serve")


async def serve_main(config: Config, host: str | None, port: int | None, *, ready: Any = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down in order (see the module docstring).

    The service runs through the embedding API (:func:`dccd.actors.serve`), in a nursery of its own: leaving
    that nursery means the ordered shutdown has finished. ``ready`` (optional) is called with the bound URLs
    once the server listens.
    """
    from dccd.actors import serve as serve_service
    from dccd.web import serve_http

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as root:
            async with trio.open_nursery() as service:
                svc = await service.start(serve_service, config)
                urls = await root.start(functools.partial(serve_http, svc, config, host=host, port=port))
                log.info("serve.started", urls=urls, storage=str(svc.storage_path))
                if svc.scheduler is not None:
                    await svc.scheduler.start(run_config_jobs=True)
                if svc.has_operations:  # compaction of the lake, today's partitions included
                    await svc.operations.start_configured_maintenance(config)
                if ready is not None:
                    ready(urls)
                sig = await signals.__anext__()
                log.info("serve.stopping", signal=signal.Signals(sig).name)
                t0 = trio.current_time()
                svc.cancel()  # sources, then writers drain, then the hub closes: SSE streams end here

                async def second_signal() -> None:
                    await signals.__anext__()
                    log.warning("serve.forced", reason="second signal: not waiting for writers to drain")
                    root.cancel_scope.cancel()

                root.start_soon(second_signal)
            root.cancel_scope.cancel()  # now the server: no SSE stream is left to hold it
        log.info("serve.stopped", shutdown_s=round(trio.current_time() - t0, 3))


@click.command()
@common_options
@click.option("--host", default=None, help="Bind address (default: server.host, 127.0.0.1).")
@click.option(
    "--port", default=None, type=click.IntRange(0, 65535), help="Port (default: server.port, 8080; 0 = any free port)."
)
@click.option("--shard", default=None, metavar="K/N", help="Run only shard K of N of the jobs (needs bus.url).")
def serve(host: str | None, port: int | None, shard: str | None) -> None:
    """Run the collector: configured jobs (scheduled backfills, supervised streams), the HTTP API, SSE and UI.

    Without --config (or DCCD_CONFIG) the embedded default config runs.
    SIGINT/SIGTERM drain the writers and exit 0.
    """
    st = state()
    cfg = st.config()
    if shard is not None:
        cfg = with_shard(cfg, shard)
    prepare_data_dir(cfg.data_root)  # a bad storage path is one line before anything starts
    st.setup_logging("INFO")
    try:
        trio.run(serve_main, cfg, host, port)
    except (OSError, BaseExceptionGroup) as exc:
        bind_error = _only_os_error(exc)
        if bind_error is None or bind_error.filename is not None:
            raise  # not the listening socket: dccd.cli.common.DccdGroup prints its one line
        where = f"{host or cfg.server.host}:{cfg.server.port if port is None else port}"
        click.echo(f"error: cannot serve on {where}: {bind_error.strerror or bind_error}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK)


def with_shard(cfg: Config, shard: str) -> Config:
    """``cfg`` with ``shard`` set (``--shard``), checked like the config key.

    Raises:
        ConfigError: not ``K/N``, or no ``bus`` configured.
    """
    import msgspec

    from dccd.config.validate import validate

    return validate(msgspec.structs.replace(cfg, shard=shard))


def _only_os_error(exc: BaseException) -> OSError | None:
    """The OSError (e.g. address in use) if it is the one failure inside ``exc``'s groups."""
    sole = sole_leaf(exc)
    return sole if isinstance(sole, OSError) else None
