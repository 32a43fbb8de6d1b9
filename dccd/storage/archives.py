"""Downloaded archive files on disk: the manifest of what was verified, the download cache, the quarantine.

Layout under ``{root}/_dccd/``::

    archives/manifest.jsonl              one JSON line per state change (the last line of a key wins)
    archives/files/<exchange>/<path>     verified downloads not yet written to the lake
    archives/files/.../<name>.<pid>.part a download in progress (removed on failure; swept by pid)
    quarantine/archives/<exchange>/<path>  files whose SHA-256 did not match their published checksum

A manifest entry records the file's SHA-256, size, ETag and Last-Modified as
served, and its state: ``verified`` (in the cache, checksum matched),
``written`` (its rows reached the lake; the cache copy is gone), ``missing``
(the archive answered 404: that period fell back to REST) or ``quarantined``.
A restarted backfill re-uses every ``verified`` file whose cache copy has the
recorded size, without a request. Appending one line per change keeps
concurrent runs of one process (and of several) from overwriting each other.
All functions block; the archive actor calls them from worker threads.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Final

import msgspec

MANIFEST: Final = "manifest.jsonl"
STATES: Final = ("verified", "written", "missing", "quarantined")


class ManifestEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One archive file's last known state (see the module docstring)."""

    key: str  # "<exchange><path>", e.g. "binance/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-03-01.zip"
    state: str
    sha256: str | None = None
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    rows: int | None = None
    checked_ns: int = 0
    detail: str | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ManifestEntry)


class ArchiveStore:
    """The archive manifest, cache and quarantine of one lake root (thread-safe within a process)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.dir = self.root / "_dccd" / "archives"
        self.cache_dir = self.dir / "files"
        self.quarantine_dir = self.root / "_dccd" / "quarantine" / "archives"
        self._lock = threading.Lock()
        self._entries: dict[str, ManifestEntry] | None = None

    @staticmethod
    def key(exchange: str, path: str) -> str:
        """Manifest key of an archive path."""
        return exchange + "/" + path.lstrip("/")

    def _load(self) -> dict[str, ManifestEntry]:
        if self._entries is None:
            entries: dict[str, ManifestEntry] = {}
            try:
                with open(self.dir / MANIFEST, "rb") as fh:
                    for line in fh:
                        try:
                            entry = _DECODER.decode(line)
                        except msgspec.DecodeError:
                            continue  # a torn last line of a crashed writer: that change never happened
                        entries[entry.key] = entry
            except FileNotFoundError:
                pass
            self._entries = entries
        return self._entries

    def get(self, key: str) -> ManifestEntry | None:
        """The last recorded state of ``key``."""
        with self._lock:
            return self._load().get(key)

    def record(self, entry: ManifestEntry) -> ManifestEntry:
        """Append a state change (durably: the line is fsynced before this returns)."""
        if entry.state not in STATES:
            raise ValueError(f"unknown archive state {entry.state!r}")
        if not entry.checked_ns:
            entry = msgspec.structs.replace(entry, checked_ns=time.time_ns())
        line = _ENCODER.encode(entry) + b"\n"
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._load()[entry.key] = entry
        return entry

    def cache_path(self, key: str) -> Path:
        """Where the verified download of ``key`` is kept until written."""
        return self.cache_dir / key

    def temp_path(self, key: str) -> Path:
        """Where ``key`` is downloaded to (one per process)."""
        path = self.cache_path(key)
        return path.with_name(f".{path.name}.{os.getpid()}.part")

    def cached(self, key: str) -> Path | None:
        """The cache copy of a ``verified`` file, if it is there with its recorded size."""
        entry = self.get(key)
        if entry is None or entry.state != "verified":
            return None
        path = self.cache_path(key)
        try:
            return path if entry.size is None or path.stat().st_size == entry.size else None
        except FileNotFoundError:
            return None

    def quarantine(self, key: str, temp: Path) -> Path:
        """Move a download that failed verification out of the cache; returns where it went."""
        dest = self.quarantine_dir / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, dest)
        return dest

    def sweep_temp(self) -> list[Path]:
        """Remove partial downloads of processes that are gone (a killed backfill)."""
        from dccd.storage.writer import pid_alive

        removed: list[Path] = []
        if not self.cache_dir.exists():
            return removed
        for dirpath, _dirs, files in os.walk(self.cache_dir):
            for name in files:
                if not (name.startswith(".") and name.endswith(".part")):
                    continue
                pid = name.rsplit(".", 2)[-2]
                if pid.isdigit() and not pid_alive(int(pid)):
                    path = Path(dirpath) / name
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed


__all__ = ["ArchiveStore", "ManifestEntry"]
