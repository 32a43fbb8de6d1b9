"""Config validation: msgspec's schema errors turned into one line a user can act on, and the semantic checks
beyond the schema. The exchanges a config may name are the adapter registry's (built-ins and plugins)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import msgspec

from dccd.config.contracts import STRUCTS as CONTRACT_STRUCTS
from dccd.config.contracts import Contracts
from dccd.config.schema import (
    OPERATIONS,
    SOURCES,
    STREAM_TYPES,
    Alert,
    Config,
    ExchangeSettings,
    Job,
    Server,
    Storage,
    key_text,
)
from dccd.config.timeexpr import is_relative, parse_duration_s, resolve_end, resolve_start, shown
from dccd.cron import cron_trigger
from dccd.domain.records import DataType
from dccd.domain.spans import SPAN_CHOICES, Span
from dccd.domain.symbols import Symbol
from dccd.errors import ConfigError
from dccd.sources.registry import list_adapters

_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?(?P<path>/[^\s?#]*)?"
)
_HOST = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?|\*")
_JOB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def exchange_names() -> tuple[str, ...]:
    """The exchanges a config may name: every adapter of the registry, plugins included."""
    return tuple(list_adapters())


def check_url(text: str, schemes: tuple[str, ...]) -> str:
    """Validate an origin URL (scheme://host[:port][/prefix]); returns it without a trailing ``/``.

    Raises:
        ValueError: not such a URL.
    """
    m = _URL.fullmatch(text) if isinstance(text, str) else None
    if m is None or m.group("scheme") not in schemes:
        form = f"{schemes[-1]}://host[:port][/prefix]"
        raise ValueError(f"{text!r} is not a URL like {form} (scheme {' or '.join(schemes)})")
    if m.group("port") and not 0 < int(m.group("port")) < 65536:
        raise ValueError(f"{text!r} has port {int(m.group('port'))}, not 1-65535")
    return text.rstrip("/")


# --- turning msgspec's schema errors into one line a user can act on ---------------------------

_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "str | null": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping",
}
_GOT = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "a list",
    "object": "a mapping",
    "null": "an empty value",
    "bytes": "binary data",
}
# What a key holds, said the way example.yaml says it (keyed by the last path segment).
_HINTS = {
    "port": "a TCP port number (0-65535)",
    "token": "a string of at least 8 characters",
    "allowed_hosts": "a list of host names such as [localhost, dccd.lan:8080]",
    "allowed_hosts[]": "a host name such as localhost or dccd.lan:8080",
    "rate_limit": "a number between 0 and 1",
    "symbols": "a list of symbols such as [BTC/USDT]",
    "symbols[]": "a symbol such as BTC/USDT",
    "span": f"a span ({SPAN_CHOICES})",
    "every": "a duration such as 90s 15m 1h 1d",
    "cron": "a cron string such as '5 * * * *'",
    "start": "an ISO date/datetime, -30d, last or origin",
    "end": "an ISO date/datetime, -1h or now",
    "jobs": "a list of jobs",
    "jobs[]": "a mapping (one job)",
}
_ENUMS = {"operation": ("operation", OPERATIONS)}


def _struct_for(path: str) -> type[msgspec.Struct]:
    """The Struct a key path points into (for listing the keys it accepts)."""
    if path.startswith("jobs["):
        return Job
    if path.startswith("alerts["):
        return Alert
    if path.startswith("exchanges."):
        return ExchangeSettings
    if path.startswith("contracts"):
        return CONTRACT_STRUCTS.get(re.sub(r"\.maintenance\[[0-9]+\]$", ".maintenance[]", path), Contracts)
    sections: dict[str, type[msgspec.Struct]] = {"storage": Storage, "server": Server}
    return sections.get(path, Config)


def schema_error(exc: msgspec.ValidationError, prefix: str = "") -> ConfigError:
    """msgspec's ``exc`` as one :class:`ConfigError` naming the key path (``prefix`` + msgspec's ``$.path``)."""
    text = str(exc)
    m = re.fullmatch(r"(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?", text, re.DOTALL)
    msg = m.group("msg") if m else text
    path = prefix + ((m.group("path") or "") if m else "")
    path = path.lstrip(".")
    if unknown := re.fullmatch(r"Object contains unknown field `(?P<f>.*)`", msg, re.DOTALL):
        keys = " ".join(_struct_for(path).__struct_fields__)
        key = key_text(unknown.group("f"))
        return ConfigError(f"{path}.{key}" if path else key, f"unknown key (expected one of: {keys})")
    if missing := re.fullmatch(r"Object missing required field `(?P<f>[^`]*)`", msg):
        field = missing.group("f")
        return ConfigError(f"{path}.{field}" if path else field, "required key is missing")
    last = re.sub(r"\[[0-9]+\]", "[]", path.rsplit(".", 1)[-1])
    if (enum := re.fullmatch(r"Invalid enum value (?P<v>.*)", msg)) and last in _ENUMS:
        what, choices = _ENUMS[last]
        return ConfigError(path, f"{enum.group('v')} is not an {what} ({' '.join(choices)})")
    if typed := re.fullmatch(r"Expected `(?P<exp>[^`]+)`, got `(?P<got>[^`]+)`", msg):
        exp, got = typed.group("exp"), typed.group("got")
        expected = _HINTS.get(last) or _EXPECTED.get(exp, exp)
        return ConfigError(path or "(top level)", f"expected {expected}, got {got_text(got)}")
    msg = msg.replace("`", "")
    return ConfigError(path or "(top level)", msg[:1].lower() + msg[1:])


def got_text(kind: str) -> str:
    """What a value of msgspec's ``kind`` is, in words (``an integer``)."""
    return _GOT.get(kind, kind)


# --- semantic checks -------------------------------------------------------------------------------


def job_id(i: int, job: Job) -> str:
    """The id of ``jobs[i]``: its name, else one built from its position and what it does."""
    tail = f"-{job.span}" if job.span else ""
    return job.name or f"job{i + 1}-{job.exchange}-{job.operation}-{job.type}{tail}"


def _check_window(p: str, job: Job, now_ns: int) -> None:
    """start/end parse to moments of exchange history (as of ``now_ns``), and end is after start whenever
    that does not depend on the clock."""
    if job.start is not None:
        try:
            resolve_start(job.start, now_ns)
        except ValueError as exc:
            raise ConfigError(f"{p}.start", str(exc)) from None
    if job.end is None:
        return
    try:
        resolve_end(job.end, now_ns)
    except ValueError as exc:
        raise ConfigError(f"{p}.end", str(exc)) from None
    if job.start is None or job.start in ("last", "origin"):
        return
    start_rel, end_rel = is_relative(job.start), is_relative(job.end)
    if start_rel == end_rel:  # both absolute or both relative to the same now
        start_ns = resolve_start(job.start, now_ns)
        if resolve_end(job.end, now_ns) <= int(start_ns):  # type: ignore[arg-type]
            raise ConfigError(f"{p}.end", f"{job.end!r} is not after start {job.start!r}")


def _check_scan(p: str, job: Job, dtype: DataType) -> None:
    """Scan jobs name a known scanner with valid params over OHLC; other jobs take none of that."""
    if job.operation != "scan":
        for key in ("scanner", "params"):
            if getattr(job, key) is not None:
                raise ConfigError(f"{p}.{key}", "only scan jobs (operation: scan) take a scanner and params")
        if job.on_new_bars:
            raise ConfigError(f"{p}.on_new_bars", "only scan jobs (operation: scan) run on new bars")
        return
    from dccd.scan.contract import get_scanner, parse_params

    if dtype is not DataType.OHLC:
        raise ConfigError(f"{p}.type", f"scan jobs read ohlc bars, not {dtype.value}")
    if job.scanner is None:
        raise ConfigError(f"{p}.scanner", "required key is missing (a scan job names its scanner)")
    for key in ("start", "end"):
        if getattr(job, key) is not None:
            raise ConfigError(f"{p}.{key}", "scan jobs take no start/end (they read the newest bars)")
    try:
        scanner = get_scanner(job.scanner)
    except ConfigError as exc:
        raise ConfigError(f"{p}.scanner", exc.message) from None
    parse_params(scanner, job.params, f"{p}.params")
    if scanner.spans and job.span not in scanner.spans:
        raise ConfigError(f"{p}.span", f"{job.scanner} scans {' '.join(scanner.spans)} bars, not {job.span}")


def check_alerts(cfg: Config) -> None:
    """``alerts[i]``: an http(s) URL, known scanners, a positive timeout, 0-20 retries.

    Raises:
        ConfigError: the first problem, naming its key path.
    """
    from dccd.scan.contract import list_scanners

    known: list[str] | None = None
    for i, alert in enumerate(cfg.alerts):
        p = f"alerts[{i}]"
        try:
            check_url(alert.url, ("http", "https"))
        except ValueError as exc:
            raise ConfigError(f"{p}.url", str(exc)) from None
        for k, name in enumerate(alert.scanners):
            known = known if known is not None else list_scanners()
            if name not in known:
                raise ConfigError(f"{p}.scanners[{k}]", f"{name!r} is not a scanner ({' '.join(known)})")
        if not 0 < alert.timeout_s <= 300:  # also false for nan
            raise ConfigError(f"{p}.timeout_s", f"{alert.timeout_s} is not a timeout in seconds (0 < t <= 300)")
        if not 0 <= alert.retries <= 20:
            raise ConfigError(f"{p}.retries", f"{alert.retries} is not between 0 and 20")


def check_job(i: int, job: Job, known: tuple[str, ...], now_ns: int | None = None) -> None:
    """The semantic checks of ``jobs[i]`` (exchange among ``known``, symbols, type, span, schedule, window).

    Raises:
        ConfigError: the first problem, naming its key path (``jobs[i].span``).
    """
    p = f"jobs[{i}]"
    if job.exchange not in known:
        raise ConfigError(f"{p}.exchange", f"{job.exchange!r} is not a known exchange ({' '.join(known)})")
    if not job.symbols and job.operation != "scan":  # a scan job with no symbols scans every stored one
        raise ConfigError(f"{p}.symbols", "must list at least one symbol")
    seen: dict[Symbol, int] = {}
    for k, s in enumerate(job.symbols):
        try:
            sym = Symbol.parse(s)
        except ValueError as exc:
            raise ConfigError(f"{p}.symbols[{k}]", str(exc)) from None
        if sym in seen:
            raise ConfigError(f"{p}.symbols[{k}]", f"{s!r} is listed twice (also symbols[{seen[sym]}])")
        seen[sym] = k
    try:
        dtype = DataType.parse(job.type)
    except ValueError as exc:
        raise ConfigError(f"{p}.type", str(exc)) from None
    if job.span is not None:
        try:
            Span.parse(job.span)
        except ValueError as exc:
            raise ConfigError(f"{p}.span", str(exc)) from None
        if dtype is not DataType.OHLC:
            raise ConfigError(f"{p}.span", f"only ohlc jobs take a span, and this is a {dtype.value} job")
    elif dtype is DataType.OHLC:
        raise ConfigError(f"{p}.span", f"ohlc jobs need a span ({SPAN_CHOICES})")
    if job.derive_from is not None:
        if job.derive_from != "trades":
            raise ConfigError(f"{p}.derive_from", f"{job.derive_from!r} is not a source to derive from (trades)")
        if dtype is not DataType.OHLC or job.operation != "backfill":
            raise ConfigError(f"{p}.derive_from", "only ohlc backfill jobs derive their bars")
    schedules = [k for k, v in (("every", job.every), ("cron", job.cron), ("once", job.once or None)) if v is not None]
    if job.operation == "stream":
        if dtype.value not in STREAM_TYPES:
            raise ConfigError(f"{p}.type", f"{dtype.value!r} cannot be streamed ({' '.join(STREAM_TYPES)})")
        if schedules:
            raise ConfigError(f"{p}.{schedules[0]}", "streams run supervised forever and take no schedule")
        for key in ("start", "end"):
            if getattr(job, key) is not None:
                raise ConfigError(f"{p}.{key}", "streams take no start/end")
    elif len(schedules) > 1:
        raise ConfigError(f"{p}.{schedules[1]}", f"a job has one schedule, but {' and '.join(schedules)} are set")
    if job.every is not None:
        try:
            parse_duration_s(job.every)
        except ValueError as exc:
            raise ConfigError(f"{p}.every", str(exc)) from None
    if job.cron is not None:
        try:
            cron_trigger(job.cron)
        except ValueError as exc:
            raise ConfigError(f"{p}.cron", str(exc)) from None
    _check_scan(p, job, dtype)
    _check_window(p, job, time.time_ns() if now_ns is None else now_ns)
    if job.source not in SOURCES:
        raise ConfigError(f"{p}.source", f"{job.source!r} is not a history source ({' '.join(SOURCES)})")
    if job.name is not None and not _JOB_NAME.fullmatch(job.name):
        raise ConfigError(f"{p}.name", f"{job.name!r} is not a job name (1-64 letters, digits, _ . -)")


def _check_exchange(name: str, ex: ExchangeSettings, known: tuple[str, ...]) -> None:
    p = f"exchanges.{key_text(name)}"
    if name not in known:
        raise ConfigError(p, f"{name!r} is not a known exchange ({' '.join(known)})")
    for field, schemes in (
        ("rest_url", ("http", "https")),
        ("ws_url", ("ws", "wss")),
        ("archive_url", ("http", "https")),
    ):
        url = getattr(ex, field)
        if url is not None:
            try:
                check_url(url, schemes)
            except ValueError as exc:
                raise ConfigError(f"{p}.{field}", str(exc)) from None
    if not 0 <= ex.rate_limit <= 1:  # also false for nan
        raise ConfigError(f"{p}.rate_limit", f"{ex.rate_limit} is not a share between 0 and 1 (e.g. 0.8)")


def _check_bus(cfg: Config) -> None:
    from dccd.bus.shard import parse_shard  # the bus package is optional at run time, not its parsing

    if cfg.bus is not None:
        try:
            check_url(cfg.bus.url, ("tls", "nats"))
        except ValueError as exc:
            raise ConfigError("bus.url", str(exc)) from None
        for key in ("max_age", "duplicate_window", "lease_ttl", "work_unit", "work_ack_wait"):
            try:
                parse_duration_s(getattr(cfg.bus, key))
            except ValueError as exc:
                raise ConfigError(f"bus.{key}", str(exc)) from None
        if cfg.bus.max_queue < 1:
            raise ConfigError("bus.max_queue", f"{cfg.bus.max_queue} is not a positive number of messages")
        for key in ("work_max_deliver", "work_concurrency"):
            if getattr(cfg.bus, key) < 1:
                raise ConfigError(f"bus.{key}", f"{getattr(cfg.bus, key)} is not a positive number")
    for i, job in enumerate(cfg.jobs):
        if job.distribute and (cfg.bus is None or job.operation != "backfill" or job.derive_from):
            why = (
                "needs bus.url (units travel on its work queue)"
                if cfg.bus is None
                else "applies to fetched backfills only"
            )
            raise ConfigError(f"jobs[{i}].distribute", why)
    if cfg.shard is not None:
        try:
            parse_shard(cfg.shard)
        except ValueError as exc:
            raise ConfigError("shard", str(exc)) from None
        if cfg.bus is None:
            raise ConfigError("shard", "needs bus.url: shards hold their leases in the bus's key-value store")


def validate(cfg: Config, known_exchanges: Sequence[str] | None = None, *, now_ns: int | None = None) -> Config:
    """Semantic checks beyond the schema; job start/end must be moments of exchange history as of
    ``now_ns`` (default: the wall clock).

    Args:
        cfg: the config as the schema accepted it.
        known_exchanges: the exchanges it may name (default: the registry's, :func:`exchange_names`).
        now_ns: the moment relative bounds are taken from (default: the wall clock).

    Raises:
        ConfigError: the first problem, naming its key path.
    """
    known = tuple(exchange_names() if known_exchanges is None else known_exchanges)
    if not cfg.storage.path:
        raise ConfigError("storage.path", "must not be empty")
    for key in ("compact_every", "compact_min_age"):
        value = getattr(cfg.storage, key)
        if value is not None:
            try:
                parse_duration_s(value)
            except ValueError as exc:
                raise ConfigError(f"storage.{key}", str(exc)) from None
    if cfg.storage.s3 is not None and not cfg.storage.path.startswith("s3://"):
        raise ConfigError("storage.s3", "is only used with storage.path: s3://bucket/prefix")
    if not 2 <= cfg.storage.compact_fan_in <= 1000:
        raise ConfigError("storage.compact_fan_in", f"{cfg.storage.compact_fan_in} is not between 2 and 1000")
    if not 0 <= cfg.server.port <= 65535:
        raise ConfigError("server.port", f"{cfg.server.port} is not a TCP port (0-65535)")
    if not cfg.server.host:
        raise ConfigError("server.host", "must not be empty")
    if cfg.server.token is not None and len(cfg.server.token) < 8:
        raise ConfigError("server.token", "must be at least 8 characters")  # never echo the token
    for k, entry in enumerate(cfg.server.allowed_hosts or ()):
        if not _HOST.fullmatch(entry):
            raise ConfigError(
                f"server.allowed_hosts[{k}]", f"{shown(entry)} is not a host name or host:port (or * for any)"
            )
    for name, ex in cfg.exchanges.items():
        _check_exchange(name, ex, known)
    _check_bus(cfg)
    ids: dict[str, int] = {}
    for i, job in enumerate(cfg.jobs):
        check_job(i, job, known, now_ns)
        jid = job_id(i, job)
        if jid in ids:
            where = f"jobs[{i}].name" if job.name else f"jobs[{i}]"
            raise ConfigError(where, f"job id {jid!r} is already used by jobs[{ids[jid]}]")
        ids[jid] = i
    check_alerts(cfg)
    from dccd.contracts.rules import resolve  # here: dccd.contracts imports dccd.config

    resolve(cfg.contracts, known)
    return cfg
