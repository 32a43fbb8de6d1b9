"""Request guards in front of every route: Host, Origin, bearer token, body type; no secrets in URLs.

In this order, each refusal one line of JSON ``{"error": ...}``:

1. ``Host`` must name this server (421 otherwise, 400 without one): the
   configured ``server.allowed_hosts`` (``name`` = any port, ``name:port``,
   ``*`` = no check), by default ``localhost``, ``127.0.0.1``, ``[::1]``, the
   configured bind host and the address the connection came in on, each on
   the port it came in on. A web page whose name an attacker re-points at
   127.0.0.1 (DNS rebinding) therefore gets nothing, not even reads.
2. A ``token`` (or ``access_token``) query parameter is refused with 400 on
   every route, whether or not a token is set: URLs end up in access logs,
   proxies and browser history.
3. A mutating request (POST/PUT/PATCH/DELETE) carrying an ``Origin`` header
   must come from a page of this server (an allowed host): 403 otherwise,
   ``Origin: null`` included. Browsers send Origin on every cross-site POST.
4. When a token is configured (``server.token`` / ``DCCD_TOKEN``), a mutating
   request needs ``Authorization: Bearer <token>``: 401 without one, 403 with a
   wrong one (compared as bytes in constant time). Read-only routes stay open.
5. A mutating request with a body (or a ``Content-Type``) must send
   ``application/json``: 415 otherwise. A form or ``text/plain`` POST, which a
   page may send cross-site without a preflight, never reaches a route.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
URL_SECRET_PARAMS = frozenset({"token", "access_token"})
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_AUTHORITY = re.compile(r"(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<authority>[^/?#\s]+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Refusal = tuple[int, str, list[tuple[bytes, bytes]]]


def _shown(value: bytes | str, limit: int = 80) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _header(scope: Any, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


def parse_authority(text: str, default_port: int | None) -> tuple[str, int | None] | None:
    """``host[:port]`` (``[v6]:port`` for IPv6) as (lower-case host without brackets, port), or None."""
    m = _AUTHORITY.fullmatch(text.strip())
    if m is None:
        return None
    host = (m.group("v6") or m.group("name")).lower()
    port = int(m.group("port")) if m.group("port") else default_port
    return host, port


class AllowedHosts:
    """Which ``Host`` values (and Origins) name this server; see the module docstring.

    Args:
        configured: ``server.allowed_hosts`` (None: the default set).
        bind_host: ``server.host`` (added to the default set).
    """

    def __init__(self, configured: Iterable[str] | None = None, bind_host: str | None = None) -> None:
        self.configured = None if configured is None else tuple(configured)
        self.any = self.configured is not None and "*" in self.configured
        entries = [parse_authority(e, None) for e in self.configured or () if e != "*"]
        self._entries = [e for e in entries if e is not None]
        bind = parse_authority(bind_host, None) if bind_host else None
        self._names = {*LOCAL_NAMES, *([bind[0]] if bind else [])}

    def allows(self, host: str, port: int | None, scope: Any) -> bool:
        """Whether ``host:port`` names this server for a request arriving as ``scope``."""
        if self.any:
            return True
        if self.configured is not None:
            return any(h == host and (p is None or p == port) for h, p in self._entries)
        server = scope.get("server")
        names = set(self._names)
        if server and server[0]:
            names.add(str(server[0]).lower())
        here = server[1] if server and server[1] else None
        return host in names and (here is None or port == here)

    def describe(self) -> str:
        """The rule, for error texts."""
        if self.configured is not None:
            return f"server.allowed_hosts: {' '.join(self.configured) or '(empty)'}"
        return "serving localhost, 127.0.0.1, [::1] and the bind address on this port; see server.allowed_hosts"


def _url_secret(query: bytes) -> str | None:
    for key, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key.lower() in URL_SECRET_PARAMS:
            return key
    return None


def _bearer(scope: Any) -> bytes | None:
    """The credentials of an ``Authorization: Bearer`` header, or None."""
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, cred = value.strip().partition(b" ")
    if scheme.lower() == b"bearer" and cred.strip():
        return cred.strip()
    return None


def _host(scope: Any, hosts: AllowedHosts) -> Refusal | None:
    raw = _header(scope, b"host")
    if raw is None:
        return 400, "host: the Host header is required", []
    text = raw.decode("latin-1")
    authority = parse_authority(text, _DEFAULT_PORTS.get(scope.get("scheme", "http")))
    if authority is None or not hosts.allows(*authority, scope):
        return 421, f"host: {_shown(text)} is not a name of this server ({hosts.describe()})", []
    return None


def _origin(scope: Any, hosts: AllowedHosts) -> Refusal | None:
    raw = _header(scope, b"origin")
    if raw is None:
        return None
    text = raw.decode("latin-1")
    m = _ORIGIN.fullmatch(text.strip().lower())
    authority = parse_authority(m.group("authority"), _DEFAULT_PORTS[m.group("scheme")]) if m else None
    if authority is None or not hosts.allows(*authority, scope):
        return 403, f"origin: {_shown(text)} is another site: changes are only taken from this server's pages", []
    return None


def _body_type(scope: Any) -> Refusal | None:
    ctype = _header(scope, b"content-type")
    length = _header(scope, b"content-length")
    has_body = _header(scope, b"transfer-encoding") is not None or (length is not None and length.strip() != b"0")
    if ctype is None and not has_body:
        return None
    media = (ctype or b"").split(b";", 1)[0].strip().lower()
    if media != b"application/json":
        got = _shown(ctype) if ctype is not None else "none"
        return 415, f"content-type: a request body must be application/json (got {got})", []
    return None


def check(scope: Any, token: bytes | None, hosts: AllowedHosts | None = None) -> Refusal | None:
    """Why a request is refused (status, error text, extra headers), or None if it may proceed."""
    hosts = hosts or AllowedHosts()
    refused = _host(scope, hosts)
    if refused is not None:
        return refused
    key = _url_secret(scope.get("query_string", b""))
    if key is not None:
        return 400, f"{key}: never put a token in a URL; send the header Authorization: Bearer <token>", []
    if scope["method"] not in MUTATING:
        return None
    refused = _origin(scope, hosts)
    if refused is not None:
        return refused
    if token is not None:
        given = _bearer(scope)
        if given is None:
            challenge = [(b"www-authenticate", b'Bearer realm="dccd"')]
            return 401, "authorization: this route needs the header Authorization: Bearer <token>", challenge
        if not hmac.compare_digest(given, token):
            return 403, "authorization: the bearer token is not valid", []
    return _body_type(scope)


async def _refuse(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": text}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def auth_middleware(token: str | None, hosts: AllowedHosts | None = None) -> type:
    """A Litestar middleware factory enforcing :func:`check` (``token`` None: no bearer token needed)."""
    secret = token.encode() if token else None
    allowed = hosts or AllowedHosts()

    class _Guard:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                refused = check(scope, secret, allowed)
                if refused is not None:
                    await _refuse(send, *refused)
                    return
            await self.app(scope, receive, send)

    return _Guard
