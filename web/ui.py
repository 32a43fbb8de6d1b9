"""The web UI: one self-contained page (inline CSS and JS, no build step, no CDN) served at ``/``.

The page is a plain client of the API. Its Content-Security-Policy allows
exactly its own inline script and style (by SHA-256 hash) and connections to
this origin, so injected markup could not run script.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from litestar import Response, get


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def page() -> tuple[bytes, str]:
    """The page bytes and its CSP header value."""
    html = resources.files("dccd.web").joinpath("templates/index.html").read_text(encoding="utf-8")
    scripts = [_hash(s) for s in re.findall(r"<script>(.*?)</script>", html, re.DOTALL)]
    styles = [_hash(s) for s in re.findall(r"<style>(.*?)</style>", html, re.DOTALL)]
    csp = (
        f"default-src 'none'; script-src {' '.join(scripts)}; style-src {' '.join(styles)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return html.encode(), csp


@get("/", include_in_schema=False, media_type="text/html")
async def ui() -> Response[bytes]:
    """The dashboard: exchanges, streams, runs with live progress, inventory, live trades, backfill form."""
    body, csp = page()
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)
