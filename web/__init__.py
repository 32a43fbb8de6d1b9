"""Litestar app, SSE and UI, installed as ``dccd.web``.

- :func:`create_app` builds the app over a running service (``open_service``);
- :func:`serve_http` serves it with hypercorn's Trio worker as a task of the caller's ``trio.run``;
- :mod:`~dccd.web.sse`: per-topic taps with replay rings and bounded per-client fan-out;
  :mod:`~dccd.web.frames`: events encoded once, ``closing_sse``.
"""

from .app import create_app
from .context import WebContext, WebOptions
from .frames import closing_sse
from .server import serve_http

__all__ = ["WebContext", "WebOptions", "closing_sse", "create_app", "serve_http"]
