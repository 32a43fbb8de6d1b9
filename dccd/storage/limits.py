"""Rate-limit deadlines of a lake at ``{root}/_dccd/limits.json``, shared by every process using it.

The transport's limiter records each 429 pause and 418 ban here (through the
:class:`~dccd.transport.ratelimit.LimitStateStore` interface, so transport
never imports storage) and a later process reads them before its first request
to that exchange. One entry per (exchange, base URL, kind); a later deadline
replaces an earlier one, expired entries are dropped on the next write.
The file is small JSON, meant to be readable (and deletable, to lift a
recorded ban by hand)::

    {"version": 1, "limits": [{"exchange": "binance", "base_url": "https://api.binance.com",
      "kind": "ban", "until_ns": 1700000120000000000, "until": "2023-11-14T22:15:20Z", ...}]}

Writes are atomic and durable (temp file, fsync, rename, fsync of the
directory) and serialised across processes by an advisory lock, so two
processes recording at once both keep their deadline. A file that does not
parse is treated as empty (and replaced by the next record), because a
damaged state file must not stop collection.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import structlog

from dccd.domain.ratelimit import LimitDeadline
from dccd.domain.timeutil import ns_to_iso
from dccd.storage.layout import meta_dir, temp_name
from dccd.storage.writer import ensure_dir, fsync_dir

_log = structlog.get_logger("dccd.storage.limits")

LIMITS_FILE = "limits.json"


class StoredLimit(msgspec.Struct, frozen=True):
    """One entry of the file: a deadline of one exchange host, with its ISO form for people."""

    exchange: str
    base_url: str
    kind: str
    until_ns: int
    until: str
    detail: str = ""
    recorded_ns: int = 0
    pid: int = 0


class LimitsFile(msgspec.Struct):
    """The whole file."""

    version: int = 1
    limits: list[StoredLimit] = msgspec.field(default_factory=list)


class LimitStateFile:
    """File-backed :class:`~dccd.transport.ratelimit.LimitStateStore` of one lake (blocking calls).

    Args:
        root: the lake root; the file is ``{root}/_dccd/limits.json``. Construction does no I/O.
    """

    def __init__(self, root: Path | str) -> None:
        self.path = meta_dir(Path(root)) / LIMITS_FILE
        self._lock_path = meta_dir(Path(root)) / "locks" / "limits.lock"

    def entries(self) -> list[StoredLimit]:
        """Every stored entry (expired ones included until the next write)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return msgspec.json.decode(raw, type=LimitsFile).limits
        except msgspec.DecodeError as exc:
            _log.warning("limits.unreadable", path=str(self.path), error=str(exc))
            return []

    def load(self, exchange: str, base_url: str) -> list[LimitDeadline]:
        """Deadlines recorded for ``exchange`` at ``base_url``."""
        return [
            LimitDeadline(e.kind, e.until_ns, e.detail, e.recorded_ns)
            for e in self.entries()
            if e.exchange == exchange and e.base_url == base_url
        ]

    def record(self, exchange: str, base_url: str, deadline: LimitDeadline) -> None:
        """Store ``deadline`` unless a later one of the same kind is stored; drop entries expired by its record time."""
        with self._locked():
            now_ns = deadline.recorded_ns
            kept: list[StoredLimit] = []
            until_ns = deadline.until_ns
            for e in self.entries():
                if (e.exchange, e.base_url, e.kind) == (exchange, base_url, deadline.kind):
                    if e.until_ns > until_ns:
                        return  # another process already recorded a later deadline
                    continue
                if e.until_ns > now_ns:
                    kept.append(e)
            kept.append(
                StoredLimit(
                    exchange,
                    base_url,
                    deadline.kind,
                    until_ns,
                    ns_to_iso(until_ns),
                    deadline.detail,
                    deadline.recorded_ns,
                    os.getpid(),
                )
            )
            self._write(LimitsFile(limits=kept))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_dir(self._lock_path.parent)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, content: LimitsFile) -> None:
        tmp = self.path.parent / temp_name(self.path.name)
        try:
            with open(tmp, "wb") as f:
                f.write(msgspec.json.format(msgspec.json.encode(content), indent=2) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)
