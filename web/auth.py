"""Bearer-token auth for mutating routes, and no secrets in URLs.

When a token is configured (``server.token`` / ``DCCD_TOKEN``), every
POST/PUT/PATCH/DELETE needs ``Authorization: Bearer <token>``: 401 without
one, 403 with a wrong one. Tokens are compared as bytes in constant time.
A ``token`` (or ``access_token``) query parameter is refused with 400 on
every route, whether or not a token is set: URLs end up in access logs,
proxies and browser history. Read-only routes stay open.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qsl

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
URL_SECRET_PARAMS = frozenset({"token", "access_token"})


def _url_secret(query: bytes) -> str | None:
    for key, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key.lower() in URL_SECRET_PARAMS:
            return key
    return None


def _bearer(scope: Any) -> bytes | None:
    """The credentials of an ``Authorization: Bearer`` header, or None."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, cred = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and cred.strip():
                return cred.strip()
            return None
    return None


async def _refuse(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": text}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def check(scope: Any, token: bytes | None) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
    """Why a request is refused (status, error text, extra headers), or None if it may proceed."""
    key = _url_secret(scope.get("query_string", b""))
    if key is not None:
        return 400, f"{key}: never put a token in a URL; send the header Authorization: Bearer <token>", []
    if token is None or scope["method"] not in MUTATING:
        return None
    given = _bearer(scope)
    if given is None:
        challenge = [(b"www-authenticate", b'Bearer realm="dccd"')]
        return 401, "authorization: this route needs the header Authorization: Bearer <token>", challenge
    if not hmac.compare_digest(given, token):
        return 403, "authorization: the bearer token is not valid", []
    return None


def auth_middleware(token: str | None) -> type:
    """A Litestar middleware factory enforcing :func:`check` for ``token`` (None: URL check only)."""
    secret = token.encode() if token else None

    class _Auth:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                refused = check(scope, secret)
                if refused is not None:
                    await _refuse(send, *refused)
                    return
            await self.app(scope, receive, send)

    return _Auth
