"""The local ``dccd serve`` as CLI commands see it: its URL, and calls that tell "no server" from a refusal.

``dccd runs cancel`` and ``dccd jobs list|run`` act through the server when one
answers at the configured ``server.host:server.port`` (or ``--server URL``):
the server owns its runs and its scheduler, so only it can stop or fire them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import httpx

from dccd.config import Config

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0
"""A local server accepts at once; longer means nothing listens (a firewalled address)."""
REQUEST_TIMEOUT_S = 60.0
"""A cancel waits for the run's writer to drain: seconds, not minutes."""


def server_url(cfg: Config, override: str | None = None) -> str:
    """``--server URL``, else ``http://server.host:server.port`` (a wildcard bind is reached on loopback)."""
    if override:
        return override.rstrip("/")
    host = cfg.server.host
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{cfg.server.port}"


def server_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--server URL`` (env DCCD_SERVER)."""
    return click.option(
        "--server",
        "server",
        envvar="DCCD_SERVER",
        default=None,
        metavar="URL",
        help="The dccd serve to ask (env DCCD_SERVER; default http://server.host:server.port of the config).",
    )(f)


async def ask_server(cfg: Config, url: str, call: Callable[[Any], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run ``call(client)`` against the server at ``url``.

    Returns:
        ``(False, None)`` when nothing answers there (refused, unreachable, timed out connecting),
        else ``(True, result)``.

    Raises:
        dccd.client.ApiError: the server answered with an error (4xx/5xx).
        httpx.HTTPError: the connection broke after the server answered.
    """
    from dccd.client import Client

    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    async with Client(url, token=cfg.server.token, timeout=timeout) as client:  # type: ignore[arg-type]
        try:
            return True, await call(client)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return False, None
