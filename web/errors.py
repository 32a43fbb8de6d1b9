"""Every API error is JSON ``{"error": "field: message"}``: one line naming what was wrong.

Handlers raise :class:`ApiProblem` (or let dccd's own validation errors
through); the exception handlers here turn each kind into its status code.
Nothing in an error text comes from request headers, so a token can never
be echoed back.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.types import ExceptionHandlersMap

from dccd.errors import ConfigError, NoCapability, UnsupportedSymbol
from dccd.ops import InvalidRequest

log = structlog.get_logger("dccd.web")


class ApiProblem(Exception):
    """An error answer: ``status`` and the text ``field: message``."""

    def __init__(self, status: int, field: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.field = field
        self.message = message
        self.headers = headers or {}
        super().__init__(f"{field}: {message}")


MAX_ERROR_CHARS = 400
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str) -> str:
    """``text`` as one short line: control characters (newlines, NUL) become a space, at most
    :data:`MAX_ERROR_CHARS` characters (a 100 KB value echoed in a message is cut)."""
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def error_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response[dict[str, str]]:
    """The JSON error body every failing route answers with (one line, see :func:`one_line`)."""
    return Response({"error": one_line(text)}, status_code=status, headers=headers, media_type="application/json")


def unavailable(field: str, what: str) -> ApiProblem:
    """503 for a part of the service that is not running here (scheduler, streams, storage)."""
    return ApiProblem(503, field, f"{what} is not available in this service")


def _api_error(_: Request[Any, Any, Any], exc: ApiProblem) -> Response[dict[str, str]]:
    return error_response(exc.status, str(exc), exc.headers)


def _invalid(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    return error_response(400, str(exc))


def _no_capability(_: Request[Any, Any, Any], exc: NoCapability) -> Response[dict[str, str]]:
    field = "span" if " span " in exc.what else "type"
    return error_response(400, f"{field}: {exc}")


def _unsupported_symbol(_: Request[Any, Any, Any], exc: UnsupportedSymbol) -> Response[dict[str, str]]:
    return error_response(400, f"symbols: {exc}")


_MSGSPEC_PATH = re.compile(r"(?P<msg>.*?) - at `\$(?P<path>[^`]*)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<f>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<f>[^`]*)`")
_TYPED = re.compile(r"Expected `(?P<exp>[^`]+)`, got `(?P<got>[^`]+)`")


def _validation_text(item: dict[str, Any]) -> str:
    """One of Litestar's msgspec validation entries as ``field: message``."""
    key = str(item.get("key") or "body")
    msg = str(item.get("message") or "invalid")
    if m := _MSGSPEC_PATH.fullmatch(msg):
        msg, key = m.group("msg"), m.group("path").lstrip(".") or key
    if key == "data":  # Litestar's name for the whole body
        key = "body"
    if m := _UNKNOWN.fullmatch(msg):
        return f"{m.group('f')}: unknown field"
    if m := _MISSING.fullmatch(msg):
        return f"{m.group('f')}: required field is missing"
    if m := _TYPED.fullmatch(msg):
        exp, got = m.group("exp").replace(" | null", ""), m.group("got")
        what = "a JSON object" if key == "body" and exp == "object" else exp
        return f"{key}: expected {what}, got {got}"
    if key == "body" and msg in ("'data'", "data"):  # empty body
        return "body: a JSON object is required"
    return f"{key}: {msg.replace('`', '')}"


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, str]]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    items = [e for e in extra if isinstance(e, dict)]
    text = _validation_text(items[0]) if items else f"request: {exc.detail}"
    return error_response(400, text)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    detail = str(exc.detail)
    if exc.status_code == 404:
        text = f"path: no such resource {request.url.path}"
    elif exc.status_code == 405:
        text = f"method: {request.method} is not allowed on {request.url.path}"
    elif detail.startswith("JSON is malformed"):
        text = f"body: {detail}"
    elif isinstance(exc.__cause__, SerializationException):  # msgspec's other decode errors, e.g. a cut-off body
        text = f"body: JSON is malformed: {detail}"
    else:
        text = f"request: {detail}"
    return error_response(exc.status_code, text, exc.headers)


def _recursion(request: Request[Any, Any, Any], exc: RecursionError) -> Response[dict[str, str]]:
    if "deserializing" in str(exc):  # msgspec's decoder on a body nested deeper than it recurses
        return error_response(400, "body: JSON is nested too deeply")
    return _internal(request, exc)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    # The path only: a query string could carry anything the client put there.
    log.error("http.failed", method=request.method, path=request.url.path, exc_info=exc)
    return error_response(500, f"internal: {type(exc).__name__} (logged on the server)")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiProblem: _api_error,
    InvalidRequest: _invalid,
    ConfigError: _invalid,
    NoCapability: _no_capability,
    UnsupportedSymbol: _unsupported_symbol,
    ValidationException: _validation,
    HTTPException: _http,
    RecursionError: _recursion,
    Exception: _internal,
}
