"""Connections of the app's requests: shutdown always ends, keep-alive connections stay healthy.

hypercorn's Trio worker writes to a socket inside a shielded cancel scope:
a client that keeps its connection open but never reads blocks that write,
and with it the connection's task, forever — cancellation cannot reach it,
and the server's graceful shutdown never completes. Closing the socket does
reach it (Trio wakes the blocked write with ``ClosedResourceError``, which
hypercorn treats as a closed connection).

Second, Litestar's streaming responses are cancelled in the middle of their
final ``send`` (see :meth:`Connections.middleware`); that final message is
sent shielded so hypercorn can recycle the keep-alive connection.

:class:`Connections` is an ASGI middleware that remembers the transport of
every request in progress, found from the ASGI ``send`` callable (best
effort: hypercorn's ``send`` is a bound method whose owners lead to the
connection's ``trio.SocketStream``; with another server nothing is tracked
and nothing breaks). At shutdown, whatever has not finished within the
graceful period is aborted.
"""

from __future__ import annotations

import weakref
from typing import Any

import trio
from litestar.types import ASGIApp, Message, Receive, Send


def transport_socket(send: Any) -> trio.socket.SocketType | None:
    """The connection's Trio socket behind an ASGI ``send`` of hypercorn's Trio worker, or None."""
    owner = getattr(send, "__self__", None)  # HTTPStream -> H11Protocol/H2Protocol -> TCPServer
    for _ in range(4):
        if owner is None:
            return None
        stream = getattr(owner, "stream", None)
        stream = getattr(stream, "transport_stream", stream)  # TLS: the socket stream under the SSLStream
        if isinstance(stream, trio.SocketStream):
            return stream.socket
        owner = getattr(getattr(owner, "send", None), "__self__", None)
    return None


class Connections:
    """HTTP requests in progress (and their sockets), to wait for or abort at shutdown."""

    def __init__(self) -> None:
        self._sockets: weakref.WeakSet[trio.socket.SocketType] = weakref.WeakSet()
        self.active = 0
        self._idle = trio.lowlevel.ParkingLot()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting requests in progress and registering their sockets."""

        async def tracked(scope: Any, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            sock = transport_socket(send)
            if sock is not None:
                self._sockets.add(sock)
            self.active += 1

            async def send_last_unshielded(message: Message) -> None:
                # Litestar's streaming responses cancel their sender as soon as hypercorn, *inside* the
                # final send, reports the stream closed; the cancel then lands in hypercorn's connection
                # recycling and the keep-alive connection is left without its idle task (never closed
                # at shutdown or on keep-alive timeout). The last body message is tiny: let it finish.
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    with trio.CancelScope(shield=True):
                        await send(message)
                else:
                    await send(message)

            try:
                await app(scope, receive, send_last_unshielded)
            finally:
                self.active -= 1
                if sock is not None:
                    self._sockets.discard(sock)
                if not self.active:
                    self._idle.unpark_all()

        return tracked

    async def wait_idle(self) -> None:
        """Until no request is in progress."""
        while self.active:
            await self._idle.park()

    def abort(self) -> int:
        """Close the socket of every request still in progress; returns how many."""
        sockets = list(self._sockets)
        for sock in sockets:
            sock.close()  # wakes a write blocked on a client that stopped reading
        self._sockets.clear()
        return len(sockets)
