"""The web UI: one page (``/``) with its own script and style (``/ui/...``), and third-party assets served from
the installed packages that ship them (``/ui/vendor/...``): nothing is copied into the repository and nothing is
loaded from a CDN.

- ``/ui/vendor/lightweight-charts.js``: TradingView Lightweight Charts (Apache-2.0), the standalone production
  build inside the ``lightweight-charts`` wheel (a canvas candlestick chart, ~160 KB).
- ``/ui/vendor/swagger-ui-bundle.js`` and friends: Swagger UI from the ``swagger-ui-bundle-v2`` wheel (Swagger UI 5, which reads OpenAPI 3.1), for ``/schema``.

The page is a plain client of the API. Its Content-Security-Policy allows scripts and styles of this origin
only (no inline script), and connections to this origin, so injected markup could not run script.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib import resources
from pathlib import Path

from litestar import Response, get
from litestar.openapi.plugins import SwaggerRenderPlugin

from .errors import ApiProblem

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""``style-src 'unsafe-inline'``: the chart library sets element styles (no script can be injected through it)."""

_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_OWN = {"app.js": "text/javascript", "app.css": "text/css"}


def package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (``lightweight_charts`` would import
    pandas and pywebview into the server); None when it is not installed."""
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def _swagger_dir() -> Path | None:
    """The newest Swagger UI folder inside the ``swagger_ui_bundle`` package (None when it is not installed)."""
    pkg = package_dir("swagger_ui_bundle")
    if pkg is None or not (pkg / "vendor").is_dir():
        return None
    dirs = sorted((d for d in (pkg / "vendor").iterdir() if d.name.startswith("swagger-ui-")), key=lambda d: d.name)
    return dirs[-1] if dirs else None


def _vendor_files() -> dict[str, tuple[Path, str]]:
    """``name -> (file in an installed package, media type)`` of every third-party asset the UI serves."""
    out: dict[str, tuple[Path, str]] = {}
    lwc = package_dir("lightweight_charts")
    if lwc is not None:
        out["lightweight-charts.js"] = (lwc / "js" / "lightweight-charts.js", "text/javascript")
    swagger = _swagger_dir()
    if swagger is not None:
        for name, media in (
            ("swagger-ui-bundle.js", "text/javascript"),
            ("swagger-ui-standalone-preset.js", "text/javascript"),
            ("swagger-ui.css", "text/css"),
        ):
            out[name] = (swagger.joinpath(name), media)
    return out


@cache
def _vendor(name: str) -> tuple[bytes, str] | None:
    f = _vendor_files().get(name)
    if f is None or not f[0].is_file():
        return None
    return f[0].read_bytes(), f[1]


@cache
def _own(name: str) -> bytes:
    return resources.files("dccd.web").joinpath("static", name).read_bytes()


@cache
def page() -> bytes:
    """The page bytes."""
    return resources.files("dccd.web").joinpath("templates/index.html").read_bytes()


@get("/", include_in_schema=False, media_type="text/html")
async def ui() -> Response[bytes]:
    """The UI: dashboard, chart, data, runs, jobs, streams, scanners (hash routes, one page)."""
    headers = {**_HEADERS, "Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    return Response(page(), media_type="text/html; charset=utf-8", headers=headers)


@get("/ui/{name:str}", include_in_schema=False)
async def ui_asset(name: str) -> Response[bytes]:
    """The UI's own script and style."""
    if name not in _OWN:
        raise ApiProblem(404, "path", f"no such UI file {name[:80]!r}")
    return Response(_own(name), media_type=_OWN[name], headers={**_HEADERS, "Cache-Control": "no-cache"})


@get("/ui/vendor/{name:str}", include_in_schema=False)
async def vendor_asset(name: str) -> Response[bytes]:
    """A third-party asset from its installed package (404 naming the package when it is not installed)."""
    found = _vendor(name)
    if found is None:
        known = ", ".join(sorted(_vendor_files())) or "none installed"
        raise ApiProblem(404, "path", f"{name[:80]!r} is not served here (installed assets: {known})")
    body, media = found
    return Response(body, media_type=media, headers={**_HEADERS, "Cache-Control": "public, max-age=86400"})


def schema_plugins() -> list[SwaggerRenderPlugin]:
    """``/schema`` renders Swagger UI from the ``swagger-ui-bundle-v2`` package (no CDN, no favicon fetch)."""
    return [
        SwaggerRenderPlugin(
            path="/",
            js_url="/ui/vendor/swagger-ui-bundle.js",
            css_url="/ui/vendor/swagger-ui.css",
            standalone_preset_js_url="/ui/vendor/swagger-ui-standalone-preset.js",
            favicon='<link rel="icon" href="data:,">',
        )
    ]
