"""structlog configuration, called only by entry points (CLI, `dccd serve`).

JSON lines when stderr is not a TTY, a console renderer when it is. stdlib
loggers (hypercorn, httpx, litestar) go through the same processors.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def configure_logging(level: str | int = "INFO", *, json: bool | None = None, stream: Any = None) -> None:
    """Route structlog and stdlib logging to one handler.

    Args:
        level: minimum level name or number.
        json: force JSON (True) or console (False); default: JSON unless the stream is a TTY.
        stream: where to write (default sys.stderr).
    """
    stream = stream or sys.stderr
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # True would pin module loggers to the first config (and defeat capture_logs)
    )
    # JSON needs the traceback as a string field; the console renderer formats exc_info itself
    # (ExceptionPrettyPrinter would print it to stdout, not to ``stream``).
    tail: list[Any] = [structlog.processors.format_exc_info, renderer] if json else [renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for noisy in ("httpx", "httpcore", "hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
