"""The config schema (DESIGN.md §4): one frozen msgspec Struct per section, and :class:`JobSpec`, a job expanded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import msgspec

from dccd.config.contracts import Contracts
from dccd.config.s3 import S3
from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol

OPERATIONS = ("backfill", "stream", "scan")
STREAM_TYPES = ("trades", "ohlc", "book")
SECTIONS = ("storage", "server", "exchanges", "jobs", "alerts", "contracts", "bus", "shard")
SOURCES = ("auto", "archive", "rest")
"""Backfill history sources: exchange archives then REST (``auto``), archives only, REST only."""


def key_text(key: str) -> str:
    """A mapping key as written in a key path: bare when plain, else quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_.-]+", key) else repr(key)


class Storage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where the lake lives, and how ``dccd serve`` compacts it."""

    path: str = "./data"
    compact_every: str | None = "5m"
    """Maintenance interval (null = no compaction in serve); today's partitions are compacted rolling."""
    compact_min_age: str = "60s"
    """Parts younger than this are left to settle."""
    compact_fan_in: int = 4
    """A run of this many adjacent parts of one size tier becomes one part."""
    s3: S3 | None = None
    """``path: s3://bucket/prefix``: the object store's endpoint, region and credentials (else from the env)."""
    cache_dir: str | None = None
    """An object-store lake's local state (catalog cache, run history); default ``~/.cache/dccd/<hash>``."""


class Server(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """HTTP API bind address and optional bearer token."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    allowed_hosts: list[str] | None = None
    """``Host`` header values served (``name`` or ``name:port``; ``*`` = any); None = the bind host and
    localhost, 127.0.0.1, [::1], on the port the server listens on."""


class ExchangeSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Per-exchange overrides; None means the adapter's real default."""

    rest_url: str | None = None
    ws_url: str | None = None
    rate_limit: float = 0.8
    archive_url: str | None = None
    """Origin of the exchange's bulk archive files (paths appended); None: the real one, unless
    ``rest_url`` is overridden (then archives are off unless this is set too)."""


class Job(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One configured job: a scheduled backfill, a supervised stream, or a scan (``operation: scan``)."""

    exchange: str
    symbols: list[str]
    type: str
    operation: Literal["backfill", "stream", "scan"] = "backfill"
    name: str | None = None
    span: str | None = None
    start: str | None = None
    end: str | None = None
    every: str | None = None
    cron: str | None = None
    once: bool = False
    derive_from: str | None = None  # ohlc backfills: "trades" builds the bars from the stored trades
    scanner: str | None = None
    """Scan jobs: the scanner (``dccd scanners``); it reads the job's exchange, symbols (empty: all stored) and span."""
    params: dict[str, Any] | None = None
    """Scan jobs: the scanner's parameters."""
    on_new_bars: bool = False
    """Scan jobs: also run (debounced) when new bars of the datasets it reads are written."""
    source: str = "auto"
    """Backfill history source: ``auto`` (archives, then REST), ``archive`` or ``rest``."""
    distribute: bool = False
    """Backfill jobs: cut each fire into work units on the bus's work queue (needs ``bus``)."""


class Alert(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A webhook: every signal of ``scanners`` (empty: all) is POSTed to ``url`` as JSON."""

    url: str
    scanners: list[str] = msgspec.field(default_factory=list)
    timeout_s: float = 5.0
    retries: int = 5


class Bus(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The optional NATS JetStream bus: live data, events and signals are published there; shard leases live there."""

    url: str
    format: Literal["json", "msgpack"] = "json"
    max_age: str = "24h"
    """How long the streams keep messages."""
    duplicate_window: str = "10m"
    """Within this window a message published again (same ``Nats-Msg-Id``) is stored once."""
    max_queue: int = 500_000
    """Messages held for the bus while it is unreachable (the oldest are dropped and counted beyond this)."""
    lease_ttl: str = "10s"
    """A shard whose lease is this old is taken as dead and its jobs are taken over."""
    work_queue: bool = False
    """Pull units of distributed backfills from the ``DCCD_WORK`` work-queue stream and run them."""
    work_unit: str = "1d"
    """Length of a unit of a distributed backfill (ranges are cut at multiples of it: UTC days)."""
    work_ack_wait: str = "60s"
    """A unit neither acked nor heartbeated this long is redelivered to another collector."""
    work_max_deliver: int = 4
    """Deliveries of a failing unit before it is dead-lettered."""
    work_concurrency: int = 1
    """Units this collector runs at once."""


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The whole config."""

    storage: Storage = msgspec.field(default_factory=Storage)
    server: Server = msgspec.field(default_factory=Server)
    exchanges: dict[str, ExchangeSettings] = msgspec.field(default_factory=dict)
    jobs: list[Job] = msgspec.field(default_factory=list)
    alerts: list[Alert] = msgspec.field(default_factory=list)
    contracts: Contracts = msgspec.field(default_factory=Contracts)
    bus: Bus | None = None
    shard: str | None = None
    """``K/N``: run only this shard's share of the jobs (needs ``bus``: the leases live there)."""

    def exchange(self, name: str) -> ExchangeSettings:
        """Settings for one exchange (defaults when not configured)."""
        return self.exchanges.get(name, ExchangeSettings())

    @property
    def data_root(self) -> Path:
        """The lake root as a Path (``~`` expanded); for an ``s3://`` lake, its local cache directory."""
        if self.storage.path.startswith("s3://"):
            from dccd.storage.objstore import for_storage, register

            return register(for_storage(self.storage.path, self.storage.s3, self.storage.cache_dir))
        return Path(self.storage.path).expanduser()


class JobSpec(msgspec.Struct, frozen=True):
    """One job expanded: typed fields, one id, schedule kind."""

    id: str
    exchange: str
    symbols: tuple[Symbol, ...]
    data_type: DataType
    operation: str
    span: Span | None
    start: str | None
    end: str | None
    schedule: str  # 'every' | 'cron' | 'once' | 'stream' | 'manual'
    every_s: int | None = None
    cron: str | None = None
    derive_from: str | None = None
    scanner: str | None = None
    params: dict[str, Any] | None = None
    on_new_bars: bool = False
    source: str = "auto"
    distribute: bool = False
