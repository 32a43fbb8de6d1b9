"""Archive file transfers over httpx: small files (checksums) and streamed downloads, under deadlines.

Every await on the network runs under a deadline: httpx's connect/read/write
timeouts bound each step, and a whole transfer is bounded by ``deadline_s``
(a file that trickles forever is a failed attempt, never a hang). A download
is streamed to a temp file in 1 MiB chunks while its SHA-256 is computed, so
memory stays flat whatever the file's size. Transient failures (connect,
timeout, 5xx) are retried with backoff up to ``attempts`` times; a 404 is an
answer (the archive does not have the file), not an error.
"""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from typing import IO, Any, Final, Protocol

import httpx
import msgspec
import trio

from dccd.errors import ConnectFailed, DccdError, RequestTimeout, ServerError, TransientError

CHUNK: Final = 1 << 20
ATTEMPTS: Final = 4


class Fetched(msgspec.Struct, frozen=True):
    """The outcome of one transfer: ``status`` 200 with the body's size and SHA-256, or 404."""

    status: int
    size: int = 0
    sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body: bytes | None = None  # small files only


class Watcher(Protocol):
    """Told about a download as it is written to disk (:class:`GrowingFile`)."""

    def grew(self, size: int) -> None:
        """``size`` bytes of the file are on disk."""

    def reset(self) -> None:
        """The download starts over (a retried attempt truncates the file)."""


class DownloadAborted(Exception):
    """A :class:`GrowingFile`'s download ended without a complete file (a 404, a retry, a failure)."""


class GrowingFile(io.RawIOBase):
    """A file being downloaded, read by another thread while it grows.

    The download (Trio thread) reports each chunk written (:meth:`grew`) and then :meth:`finish` or
    :meth:`abort`; a reader (a worker thread) reading past the bytes on disk blocks until more arrive,
    gets EOF once the download finished, and :class:`DownloadAborted` once it was aborted or restarted
    (what it read may then be stale: a retried download truncates the file). Whether the bytes are
    the published ones is not known here: the caller keeps what it parsed until the download verified.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._cond = threading.Condition()
        self._size = 0
        self._pos = 0
        self._finished = False
        self.aborted: str | None = None
        """Why the download was aborted (None: it was not)."""
        self._fh: IO[bytes] | None = None

    # -- the download's side (Trio thread; never blocks) ---------------------------------------------

    def grew(self, size: int) -> None:
        """``size`` bytes are on disk."""
        with self._cond:
            if self._fh is None and self.aborted is None:
                self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close(); opened while it exists
            self._size = size
            self._cond.notify_all()

    def reset(self) -> None:
        """The download restarts: what was read may be stale."""
        self.abort("the download restarted")

    def finish(self) -> None:
        """The whole file is on disk."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def abort(self, why: str) -> None:
        """What the reader reads is not (or no longer) the file being verified: it gets
        :class:`DownloadAborted` (also after :meth:`finish`: a retried download rewrites the file)."""
        with self._cond:
            if self.aborted is None:
                self.aborted = why
            self._cond.notify_all()

    # -- the reader's side (worker thread) -----------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        with self._cond:
            while self._pos >= self._size and not self._finished and self.aborted is None:
                self._cond.wait()
            if self.aborted is not None:
                raise DownloadAborted(self.aborted)
            n = min(len(b), self._size - self._pos)
            fh = self._fh
        if n <= 0 or fh is None:
            return 0
        got = fh.readinto(memoryview(b)[:n])  # type: ignore[attr-defined]
        self._pos += got
        return int(got)

    def close(self) -> None:
        with self._cond:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        super().close()


def open_archive_client(
    origin: str,
    *,
    max_connections: int = 8,
    timeout_s: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client for one archive origin (connect 10 s, each read/write ``timeout_s``)."""
    return httpx.AsyncClient(
        transport=transport,
        base_url=origin.rstrip("/"),
        timeout=httpx.Timeout(timeout_s, connect=10.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=True,
    )


def _map(url: str, exc: Exception) -> DccdError:
    if isinstance(exc, httpx.TimeoutException | trio.TooSlowError):
        return RequestTimeout(f"{url}: no complete answer in time ({type(exc).__name__})")
    return ConnectFailed(f"{url}: {type(exc).__name__}: {exc}")


async def _once(
    client: httpx.AsyncClient, path: str, dest: Path | None, deadline_s: float, watcher: Watcher | None = None
) -> Fetched:
    try:
        with trio.fail_after(deadline_s):
            async with client.stream("GET", path) as resp:
                if resp.status_code == 404:
                    return Fetched(404)
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise ServerError(resp.status_code, f"{path}")
                if resp.status_code != 200:
                    raise DccdError(f"archive {path}: HTTP {resp.status_code}")
                digest, size = hashlib.sha256(), 0
                etag, modified = resp.headers.get("etag"), resp.headers.get("last-modified")
                if dest is None:
                    body = await resp.aread()
                    digest.update(body)
                    return Fetched(200, len(body), digest.hexdigest(), etag, modified, body)
                dest.parent.mkdir(parents=True, exist_ok=True)
                async with await trio.open_file(dest, "wb") as fh:
                    async for chunk in resp.aiter_bytes(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        await fh.write(chunk)
                        if watcher is not None:
                            await fh.flush()
                            watcher.grew(size)
                return Fetched(200, size, digest.hexdigest(), etag, modified)
    except (httpx.TransportError, trio.TooSlowError) as exc:
        raise _map(path, exc) from exc


async def exists(
    client: httpx.AsyncClient,
    path: str,
    *,
    deadline_s: float = 30.0,
    attempts: int = ATTEMPTS,
    base_delay_s: float = 0.5,
) -> bool:
    """Whether the archive serves ``path`` (200) or not (404), without reading its body (a GET whose
    body is not read: archive hosts and CDNs do not all answer HEAD).

    Raises:
        TransientError: the last attempt failed to connect, timed out or got a 5xx.
        DccdError: another unexpected status.
    """
    for attempt in range(1, attempts + 1):
        try:
            with trio.fail_after(deadline_s):
                async with client.stream("GET", path) as resp:
                    if resp.status_code in (200, 404):
                        return resp.status_code == 200
                    if resp.status_code >= 500 or resp.status_code == 429:
                        raise ServerError(resp.status_code, path)
                    raise DccdError(f"archive {path}: HTTP {resp.status_code}")
        except (httpx.TransportError, trio.TooSlowError) as exc:
            if attempt == attempts:
                raise _map(path, exc) from exc
        except TransientError:
            if attempt == attempts:
                raise
        await trio.sleep(base_delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


async def fetch(
    client: httpx.AsyncClient,
    path: str,
    dest: Path | None = None,
    *,
    deadline_s: float = 900.0,
    attempts: int = ATTEMPTS,
    base_delay_s: float = 0.5,
    watcher: Watcher | None = None,
) -> Fetched:
    """GET ``path``: into memory (``dest`` None: a checksum file) or streamed to ``dest``.

    ``watcher`` is told each time more of ``dest`` is on disk, and when a retry starts it over.

    Raises:
        TransientError: the last attempt failed to connect, timed out or got a 5xx.
        DccdError: another unexpected status.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await _once(client, path, dest, deadline_s, watcher)
        except TransientError:
            if watcher is not None:
                watcher.reset()
            if dest is not None:
                await trio.Path(dest).unlink(missing_ok=True)
            if attempt == attempts:
                raise
            await trio.sleep(base_delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


__all__ = ["DownloadAborted", "Fetched", "GrowingFile", "Watcher", "exists", "fetch", "open_archive_client"]
