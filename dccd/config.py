"""The YAML config (DESIGN.md §4) as msgspec Structs, with env overrides.

Every invalid config raises :class:`~dccd.errors.ConfigError` whose text is one
line naming the key path, e.g.
``jobs[1].span: '7m' is not a span (1s 1m 3m ...)``.

Env overrides: ``DCCD_CONFIG`` (file), ``DCCD_DATA`` (storage.path),
``DCCD_TOKEN`` (server.token), ``DCCD_<EXCHANGE>_REST_URL`` and
``DCCD_<EXCHANGE>_WS_URL``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from dccd.domain.records import DataType
from dccd.domain.spans import SPAN_CHOICES, Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_S, parse_iso_ns
from dccd.errors import ConfigError

KNOWN_EXCHANGES: tuple[str, ...] = ("binance", "coinbase", "kraken", "bybit", "okx", "bitfinex", "bitmex")
OPERATIONS = ("backfill", "stream")
STREAM_TYPES = ("trades", "ohlc", "book")
_DURATION = re.compile(r"^(?P<n>\d+)(?P<unit>s|m|h|d|w)$")
_RELATIVE = re.compile(r"^-(?P<n>\d+)(?P<unit>s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?(?P<path>/[^\s?#]*)?$")


class Storage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where the lake lives."""

    path: str = "./data"


class Server(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """HTTP API bind address and optional bearer token."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None


class ExchangeSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Per-exchange overrides; None means the adapter's real default."""

    rest_url: str | None = None
    ws_url: str | None = None
    rate_limit: float = 0.8


class Job(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One configured job: a scheduled backfill or a supervised stream."""

    exchange: str
    symbols: list[str]
    type: str
    operation: Literal["backfill", "stream"] = "backfill"
    name: str | None = None
    span: str | None = None
    start: str | None = None
    end: str | None = None
    every: str | None = None
    cron: str | None = None
    once: bool = False


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The whole config."""

    storage: Storage = msgspec.field(default_factory=Storage)
    server: Server = msgspec.field(default_factory=Server)
    exchanges: dict[str, ExchangeSettings] = msgspec.field(default_factory=dict)
    jobs: list[Job] = msgspec.field(default_factory=list)

    def exchange(self, name: str) -> ExchangeSettings:
        """Settings for one exchange (defaults when not configured)."""
        return self.exchanges.get(name, ExchangeSettings())

    @property
    def data_root(self) -> Path:
        """The lake root as a Path (``~`` expanded)."""
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


def parse_duration_s(text: str) -> int:
    """``90s``/``15m``/``1h``/``1d``/``1w`` to seconds.

    Raises:
        ValueError: not a duration.
    """
    m = _DURATION.match(text) if isinstance(text, str) else None
    if m is None or int(m.group("n")) == 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s 15m 1h 1d)")
    return int(m.group("n")) * _UNIT_S[m.group("unit")]


def resolve_start(text: str | None, now_ns: int) -> int | str | None:
    """Resolve a start bound: ISO -> ns, ``-30d`` -> now - 30 d, ``last``/``origin`` kept.

    Raises:
        ValueError: not a valid start.
    """
    if text is None or text in ("last", "origin"):
        return text
    m = _RELATIVE.match(text)
    if m:
        return now_ns - int(m.group("n")) * _UNIT_S[m.group("unit")] * NS_PER_S
    try:
        return parse_iso_ns(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a start (ISO date/datetime, -30d, last or origin)") from None


def resolve_end(text: str | None, now_ns: int) -> int:
    """Resolve an end bound: None/``now`` -> now, ``-1h`` -> now - 1 h, ISO -> ns.

    Raises:
        ValueError: not a valid end.
    """
    if text is None or text == "now":
        return now_ns
    m = _RELATIVE.match(text)
    if m:
        return now_ns - int(m.group("n")) * _UNIT_S[m.group("unit")] * NS_PER_S
    try:
        return parse_iso_ns(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an end (ISO date/datetime, -1h or now)") from None


def check_url(text: str, schemes: tuple[str, ...]) -> str:
    """Validate an origin URL (scheme://host[:port][/prefix]).

    Raises:
        ValueError: not such a URL.
    """
    m = _URL.match(text) if isinstance(text, str) else None
    if m is None or m.group("scheme") not in schemes:
        raise ValueError(f"{text!r} is not a URL ({'|'.join(schemes)}://host[:port][/prefix])")
    if m.group("port") and not 0 < int(m.group("port")) < 65536:
        raise ValueError(f"{text!r} has an invalid port")
    return text.rstrip("/")


def _msgspec_error(exc: msgspec.ValidationError) -> ConfigError:
    text = str(exc)
    m = re.match(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", text)
    msg = m.group("msg") if m else text
    path = (m.group("path") or "").lstrip(".") if m else ""
    unknown = re.match(r"Object contains unknown field `(?P<f>[^`]+)`", msg)
    if unknown:
        field = unknown.group("f")
        return ConfigError(f"{path}.{field}" if path else field, "unknown key")
    msg = msg.replace("`", "")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return ConfigError(path or "(top level)", msg)


def _check_job(i: int, job: Job, known: tuple[str, ...]) -> None:
    p = f"jobs[{i}]"
    if job.exchange not in known:
        raise ConfigError(f"{p}.exchange", f"{job.exchange!r} is not a known exchange ({' '.join(known)})")
    if not job.symbols:
        raise ConfigError(f"{p}.symbols", "must list at least one symbol")
    seen: set[Symbol] = set()
    for k, s in enumerate(job.symbols):
        try:
            sym = Symbol.parse(s)
        except ValueError as exc:
            raise ConfigError(f"{p}.symbols[{k}]", str(exc)) from None
        if sym in seen:
            raise ConfigError(f"{p}.symbols[{k}]", f"{s!r} is listed twice")
        seen.add(sym)
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
            raise ConfigError(f"{p}.span", f"only ohlc jobs take a span, not {dtype.value}")
    elif dtype is DataType.OHLC:
        raise ConfigError(f"{p}.span", f"ohlc jobs need a span ({SPAN_CHOICES})")
    schedules = [k for k, v in (("every", job.every), ("cron", job.cron), ("once", job.once or None)) if v]
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
        _check_cron(f"{p}.cron", job.cron)
    if job.start is not None:
        try:
            resolve_start(job.start, 0)
        except ValueError as exc:
            raise ConfigError(f"{p}.start", str(exc)) from None
    if job.end is not None:
        try:
            resolve_end(job.end, 0)
        except ValueError as exc:
            raise ConfigError(f"{p}.end", str(exc)) from None
        if job.start not in (None, "last", "origin") and not str(job.start).startswith("-") and not str(job.end).startswith("-") and job.end != "now":
            if parse_iso_ns(job.end) <= parse_iso_ns(str(job.start)):
                raise ConfigError(f"{p}.end", f"{job.end!r} is not after start {job.start!r}")
    if job.name is not None and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", job.name):
        raise ConfigError(f"{p}.name", f"{job.name!r} is not a job name (letters, digits, _ . -)")


def _check_cron(path: str, expr: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expr, timezone="UTC")
    except ValueError as exc:
        raise ConfigError(path, f"{expr!r} is not a cron expression: {exc}") from None


def validate(cfg: Config, known_exchanges: tuple[str, ...] = KNOWN_EXCHANGES) -> Config:
    """Semantic checks beyond the schema.

    Raises:
        ConfigError: the first problem, naming its key path.
    """
    if not cfg.storage.path:
        raise ConfigError("storage.path", "must not be empty")
    if not 0 <= cfg.server.port <= 65535:
        raise ConfigError("server.port", f"{cfg.server.port} is not a TCP port (0-65535)")
    if not cfg.server.host:
        raise ConfigError("server.host", "must not be empty")
    if cfg.server.token is not None and len(cfg.server.token) < 8:
        raise ConfigError("server.token", "must be at least 8 characters")
    for name, ex in cfg.exchanges.items():
        if name not in known_exchanges:
            raise ConfigError(f"exchanges.{name}", f"{name!r} is not a known exchange ({' '.join(known_exchanges)})")
        if ex.rest_url is not None:
            try:
                check_url(ex.rest_url, ("http", "https"))
            except ValueError as exc:
                raise ConfigError(f"exchanges.{name}.rest_url", str(exc)) from None
        if ex.ws_url is not None:
            try:
                check_url(ex.ws_url, ("ws", "wss"))
            except ValueError as exc:
                raise ConfigError(f"exchanges.{name}.ws_url", str(exc)) from None
        if not 0 <= ex.rate_limit <= 1:
            raise ConfigError(f"exchanges.{name}.rate_limit", f"{ex.rate_limit} is not a share between 0 and 1")
    names: set[str] = set()
    for i, job in enumerate(cfg.jobs):
        _check_job(i, job, known_exchanges)
        if job.name is not None:
            if job.name in names:
                raise ConfigError(f"jobs[{i}].name", f"{job.name!r} is used by another job")
            names.add(job.name)
    return cfg


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``DCCD_*`` environment overrides on a raw config mapping."""
    raw = dict(raw)
    if env.get("DCCD_DATA"):
        raw["storage"] = {**(raw.get("storage") or {}), "path": env["DCCD_DATA"]}
    if env.get("DCCD_TOKEN"):
        raw["server"] = {**(raw.get("server") or {}), "token": env["DCCD_TOKEN"]}
    exchanges = dict(raw.get("exchanges") or {})
    for key, value in env.items():
        m = re.match(r"^DCCD_([A-Z0-9_]+)_(REST|WS)_URL$", key)
        if m and value:
            name = m.group(1).lower()
            field = f"{m.group(2).lower()}_url"
            exchanges[name] = {**(exchanges.get(name) or {}), field: value}
    if exchanges:
        raw["exchanges"] = exchanges
    return raw


def parse_config(text: str | bytes, env: Mapping[str, str] | None = None, source: str = "config") -> Config:
    """Parse and validate YAML text.

    Raises:
        ConfigError: invalid YAML, schema or semantics (one line).
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{source}: {problem}{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", f"expected a mapping, got {type(raw).__name__}")
    raw = apply_env(raw, os.environ if env is None else env)
    try:
        cfg = msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise _msgspec_error(exc) from None
    return validate(cfg)


def default_config_text() -> str:
    """The embedded default config (config/default.yaml)."""
    return resources.files("dccd.defaults").joinpath("default.yaml").read_text(encoding="utf-8")


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the config from ``path``, ``$DCCD_CONFIG`` or the embedded default.

    Raises:
        ConfigError: unreadable file or invalid content.
    """
    env = os.environ if env is None else env
    path = path or env.get("DCCD_CONFIG") or None
    if path is None:
        return parse_config(default_config_text(), env, "default.yaml")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{p}: cannot read: {exc}") from None
    return parse_config(text, env, str(p))


def expand_jobs(cfg: Config) -> list[JobSpec]:
    """One JobSpec per configured job, with a stable id."""
    out: list[JobSpec] = []
    for i, job in enumerate(cfg.jobs):
        dtype = DataType.parse(job.type)
        span = Span.parse(job.span) if job.span else None
        if job.operation == "stream":
            schedule = "stream"
        elif job.every:
            schedule = "every"
        elif job.cron:
            schedule = "cron"
        elif job.once:
            schedule = "once"
        else:
            schedule = "manual"
        tail = f"-{span.label}" if span else ""
        jid = job.name or f"job{i + 1}-{job.exchange}-{job.operation}-{dtype.value}{tail}"
        out.append(
            JobSpec(
                id=jid,
                exchange=job.exchange,
                symbols=tuple(Symbol.parse(s) for s in job.symbols),
                data_type=dtype,
                operation=job.operation,
                span=span,
                start=job.start,
                end=job.end,
                schedule=schedule,
                every_s=parse_duration_s(job.every) if job.every else None,
                cron=job.cron,
            )
        )
    return out


def masked(cfg: Config) -> dict[str, Any]:
    """The effective config as plain data with secrets masked."""
    data: dict[str, Any] = msgspec.to_builtins(cfg)
    if data["server"].get("token"):
        data["server"]["token"] = "***"
    return data
