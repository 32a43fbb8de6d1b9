"""The one actor-side paging loop: drives a sans-IO walk (dccd/sources/walker.py) over a rate-limited client.

Backfills, stream refills and the source round-trip tests all page through
:func:`run_walk`. Its interface, explicit so it can be wired as an observable:

- awaits ``gate()`` before every request (the writer's backpressure: a slow disk
  means fewer requests, not more memory), then ``client.fetch`` (the
  exchange's rate limiter and transient retries);
- emits each page's kept records by awaiting ``deliver(records)`` (a writer
  ``put``, or a batch send + progress count);
- a 200 answer that does not parse (``ProtocolDrift``) is asked again under
  the client's policy (``client.backoff``: delay, ``dccd_exchange_retries``,
  raises on the last attempt), reported through ``on_retry``;
- returns when the walk is over; holes and a stuck cursor stay on the walk.

Raises :class:`PageFailed` naming the page when a fetch fails or a page keeps
failing to parse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from dccd.errors import DccdError, ProtocolDrift
from dccd.sources.base import Request
from dccd.sources.walker import Walk

R = TypeVar("R")


class PageFailed(DccdError):
    """A page could not be fetched or parsed; names the request."""

    def __init__(self, request: Request, exc: BaseException) -> None:
        params = "&".join(f"{k}={v}" for k, v in request.params)
        super().__init__(f"page {request.path}?{params} failed: {exc}")
        self.request = request


class PageClient(Protocol):
    """What the loop needs of an exchange client (``dccd.transport.http.ExchangeClient``)."""

    async def fetch(self, request: Request) -> bytes:
        """The body of a successful answer; raises DccdError."""
        ...

    async def backoff(self, request: Request, attempt: int, err: DccdError) -> None:
        """Wait before retrying a malformed page; raises ``err`` after the policy's last attempt."""
        ...


async def _nothing() -> None:
    return None


async def run_walk(
    walk: Walk[R],
    client: PageClient,
    deliver: Callable[[Sequence[R]], Awaitable[None]] | None = None,
    *,
    gate: Callable[[], Awaitable[object]] = _nothing,
    on_retry: Callable[[Request, int, ProtocolDrift], None] | None = None,
) -> int:
    """Drive ``walk`` to its end; returns the number of pages fetched.

    Raises:
        PageFailed: a fetch failed, or a page kept failing to parse; names the page.
    """
    pages = 0
    while (request := walk.next_request()) is not None:
        attempt = 0
        while True:
            await gate()
            try:
                body = await client.fetch(request)
            except DccdError as exc:
                raise PageFailed(request, exc) from exc
            try:
                records = walk.feed(request, body)
                break
            except ProtocolDrift as exc:
                attempt += 1
                try:
                    await client.backoff(request, attempt, exc)  # counts the retry; raises on the last attempt
                except DccdError as final:
                    raise PageFailed(request, final) from exc
                if on_retry is not None:
                    on_retry(request, attempt, exc)
            except DccdError as exc:
                raise PageFailed(request, exc) from exc
        pages += 1
        if deliver is not None:
            await deliver(records)
    return pages


__all__ = ["PageClient", "PageFailed", "run_walk"]
