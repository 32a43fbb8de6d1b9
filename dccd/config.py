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
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from dccd.cron import cron_trigger
from dccd.domain.records import DataType
from dccd.domain.spans import SPAN_CHOICES, Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import GENESIS_NS, NS_PER_S, history_problem, parse_iso_ns
from dccd.errors import ConfigError

KNOWN_EXCHANGES: tuple[str, ...] = ("binance", "coinbase", "kraken", "bybit", "okx", "bitfinex", "bitmex")
OPERATIONS = ("backfill", "stream")
STREAM_TYPES = ("trades", "ohlc", "book")
# fullmatch everywhere: `$` would accept a trailing newline (YAML block scalars end in one).
_DURATION = re.compile(r"(?P<n>[0-9]{1,15})(?P<unit>s|m|h|d|w)")
# At most 15 digits: more is no moment anyway, and int() of a 100 KB digit string is slow (or refused).
_RELATIVE = re.compile(r"-(?P<n>[0-9]{1,15})(?P<unit>s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?(?P<path>/[^\s?#]*)?"
)
_HOST = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?|\*")
_JOB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SECTIONS = ("storage", "server", "exchanges", "jobs")


class Storage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where the lake lives, and how ``dccd serve`` compacts it."""

    path: str = "./data"
    compact_every: str | None = "5m"
    """Maintenance interval (null = no compaction in serve); today's partitions are compacted rolling."""
    compact_min_age: str = "60s"
    """Parts younger than this are left to settle."""
    compact_fan_in: int = 4
    """A run of this many adjacent parts of one size tier becomes one part."""


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
        ValueError: not a positive duration.
    """
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if m is None or int(m.group("n")) == 0:
        raise ValueError(f"{shown(text)} is not a positive duration (e.g. 90s 15m 1h 1d 1w)")
    return int(m.group("n")) * _UNIT_S[m.group("unit")]


def _relative_ns(text: str, now_ns: int) -> int | None:
    m = _RELATIVE.fullmatch(text)
    return None if m is None else now_ns - int(m.group("n")) * _UNIT_S[m.group("unit")] * NS_PER_S


def shown(text: object, limit: int = 64) -> str:
    """``repr(text)``, cut to ``limit`` characters: user input echoed in a one-line error stays short."""
    if isinstance(text, str) and len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _bound_ns(text: str, now_ns: int, usage: str, too_early: str = "") -> int:
    """A start/end expression as ns, checked to be a moment of exchange history (never an int64 overflow)."""
    if not isinstance(text, str):
        raise ValueError(f"{shown(text)} is not {usage}")
    ns = _relative_ns(text, now_ns)
    if ns is None:
        try:
            ns = parse_iso_ns(text)
        except ValueError:
            raise ValueError(f"{shown(text)} is not {usage}") from None
    problem = history_problem(ns, now_ns)
    if problem is not None:
        raise ValueError(f"{shown(text)} {problem}{too_early if ns < GENESIS_NS else ''}")
    return ns


def resolve_start(text: str | None, now_ns: int) -> int | str | None:
    """Resolve a start bound: ISO -> ns, ``-30d`` -> now - 30 d, ``last``/``origin`` kept.

    A time must lie between 2009-01-03 and one day after ``now_ns``
    (:func:`~dccd.domain.timeutil.history_problem`).

    Raises:
        ValueError: not a valid start (one line naming the value).
    """
    if text is None or text in ("last", "origin"):
        return text
    usage = "a start (ISO date/datetime, -30d, last or origin)"
    return _bound_ns(text, now_ns, usage, "; use origin for the exchange's first data")


def resolve_end(text: str | None, now_ns: int) -> int:
    """Resolve an end bound: None/``now`` -> now, ``-1h`` -> now - 1 h, ISO -> ns.

    Same range as :func:`resolve_start`.

    Raises:
        ValueError: not a valid end (one line naming the value).
    """
    if text is None or text == "now":
        return now_ns
    return _bound_ns(text, now_ns, "an end (ISO date/datetime, -1h or now)")


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


def _key_text(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_.-]+", key) else repr(key)


def _struct_for(path: str) -> type[msgspec.Struct]:
    """The Struct a key path points into (for listing the keys it accepts)."""
    if path.startswith("jobs["):
        return Job
    if path.startswith("exchanges."):
        return ExchangeSettings
    sections: dict[str, type[msgspec.Struct]] = {"storage": Storage, "server": Server}
    return sections.get(path, Config)


def _msgspec_error(exc: msgspec.ValidationError, prefix: str = "") -> ConfigError:
    text = str(exc)
    m = re.fullmatch(r"(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?", text, re.DOTALL)
    msg = m.group("msg") if m else text
    path = prefix + ((m.group("path") or "") if m else "")
    path = path.lstrip(".")
    if unknown := re.fullmatch(r"Object contains unknown field `(?P<f>.*)`", msg, re.DOTALL):
        keys = " ".join(_struct_for(path).__struct_fields__)
        key = _key_text(unknown.group("f"))
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
        return ConfigError(path or "(top level)", f"expected {expected}, got {_GOT.get(got, got)}")
    msg = msg.replace("`", "")
    return ConfigError(path or "(top level)", msg[:1].lower() + msg[1:])


# --- semantic checks -------------------------------------------------------------------------------


def _job_id(i: int, job: Job) -> str:
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
    start_rel = _RELATIVE.fullmatch(job.start) is not None
    end_rel = job.end == "now" or _RELATIVE.fullmatch(job.end) is not None
    if start_rel == end_rel:  # both absolute or both relative to the same now
        start_ns = resolve_start(job.start, now_ns)
        if resolve_end(job.end, now_ns) <= int(start_ns):  # type: ignore[arg-type]
            raise ConfigError(f"{p}.end", f"{job.end!r} is not after start {job.start!r}")


def _check_job(i: int, job: Job, known: tuple[str, ...], now_ns: int | None = None) -> None:
    p = f"jobs[{i}]"
    if job.exchange not in known:
        raise ConfigError(f"{p}.exchange", f"{job.exchange!r} is not a known exchange ({' '.join(known)})")
    if not job.symbols:
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
    _check_window(p, job, time.time_ns() if now_ns is None else now_ns)
    if job.name is not None and not _JOB_NAME.fullmatch(job.name):
        raise ConfigError(f"{p}.name", f"{job.name!r} is not a job name (1-64 letters, digits, _ . -)")


def _check_exchange(name: str, ex: ExchangeSettings, known: tuple[str, ...]) -> None:
    p = f"exchanges.{_key_text(name)}"
    if name not in known:
        raise ConfigError(p, f"{name!r} is not a known exchange ({' '.join(known)})")
    for field, schemes in (("rest_url", ("http", "https")), ("ws_url", ("ws", "wss"))):
        url = getattr(ex, field)
        if url is not None:
            try:
                check_url(url, schemes)
            except ValueError as exc:
                raise ConfigError(f"{p}.{field}", str(exc)) from None
    if not 0 <= ex.rate_limit <= 1:  # also false for nan
        raise ConfigError(f"{p}.rate_limit", f"{ex.rate_limit} is not a share between 0 and 1 (e.g. 0.8)")


def validate(cfg: Config, known_exchanges: tuple[str, ...] = KNOWN_EXCHANGES, *, now_ns: int | None = None) -> Config:
    """Semantic checks beyond the schema; job start/end must be moments of exchange history as of
    ``now_ns`` (default: the wall clock).

    Raises:
        ConfigError: the first problem, naming its key path.
    """
    if not cfg.storage.path:
        raise ConfigError("storage.path", "must not be empty")
    for key in ("compact_every", "compact_min_age"):
        value = getattr(cfg.storage, key)
        if value is not None:
            try:
                parse_duration_s(value)
            except ValueError as exc:
                raise ConfigError(f"storage.{key}", str(exc)) from None
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
        _check_exchange(name, ex, known_exchanges)
    ids: dict[str, int] = {}
    for i, job in enumerate(cfg.jobs):
        _check_job(i, job, known_exchanges, now_ns)
        jid = _job_id(i, job)
        if jid in ids:
            where = f"jobs[{i}].name" if job.name else f"jobs[{i}]"
            raise ConfigError(where, f"job id {jid!r} is already used by jobs[{ids[jid]}]")
        ids[jid] = i
    return cfg


# --- env overrides, YAML, loading -----------------------------------------------------------------

_ENV_URL = re.compile(r"DCCD_([A-Z0-9_]+)_(REST|WS)_URL")


def _env_sources(env: Mapping[str, str]) -> dict[str, str]:
    """Key path -> the env var that set it (errors then name the variable, not just the key)."""
    out: dict[str, str] = {}
    if env.get("DCCD_DATA"):
        out["storage.path"] = "DCCD_DATA"
    if env.get("DCCD_TOKEN"):
        out["server.token"] = "DCCD_TOKEN"
    for key, value in env.items():
        if (m := _ENV_URL.fullmatch(key)) and value:
            name = m.group(1).lower()
            out[f"exchanges.{_key_text(name)}.{m.group(2).lower()}_url"] = key
    return out


def _overlay(section: Any, key: str, value: Any) -> Any:
    """``section`` with ``key`` set; a non-mapping is left as is so the schema check names it."""
    if section is None:
        return {key: value}
    return {**section, key: value} if isinstance(section, dict) else section


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``DCCD_*`` environment overrides on a raw config mapping."""
    raw = dict(raw)
    if env.get("DCCD_DATA"):
        raw["storage"] = _overlay(raw.get("storage"), "path", env["DCCD_DATA"])
    if env.get("DCCD_TOKEN"):
        raw["server"] = _overlay(raw.get("server"), "token", env["DCCD_TOKEN"])
    for key, value in sorted(env.items()):
        m = _ENV_URL.fullmatch(key)
        if m and value:
            name, field = m.group(1).lower(), f"{m.group(2).lower()}_url"
            exchanges = raw.get("exchanges")
            if isinstance(exchanges, dict) or exchanges is None:
                raw["exchanges"] = {**(exchanges or {}), name: _overlay((exchanges or {}).get(name), field, value)}
    return raw


class _Loader(yaml.SafeLoader):
    """Safe YAML that keeps dates as text (exact, and what the schema wants) and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _one_line(exc: ConfigError) -> ConfigError:
    if len(str(exc).splitlines()) <= 1:
        return exc
    return ConfigError(" ".join(exc.path.splitlines()), " ".join(exc.message.splitlines()))


def parse_config(text: str | bytes, env: Mapping[str, str] | None = None, source: str = "config") -> Config:
    """Parse and validate YAML text.

    Raises:
        ConfigError: invalid YAML, schema or semantics (one line).
    """
    env = os.environ if env is None else env
    try:
        return _parse(text, env, source)
    except ConfigError as exc:
        var = _env_sources(env).get(exc.path)
        if var is not None:
            exc = ConfigError(f"{exc.path} (from {var})", exc.message)
        raise _one_line(exc) from None


def _parse(text: str | bytes, env: Mapping[str, str], source: str) -> Config:
    try:
        raw = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise ConfigError("", f"{source}: invalid YAML: {problem}{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        name = type(raw).__name__
        got = _GOT.get({"list": "array"}.get(name, name), name)
        raise ConfigError("(top level)", f"expected a mapping of sections ({' '.join(_SECTIONS)}), got {got}")
    # A section whose entries are all commented out parses as null: treat it as empty.
    raw = {k: v for k, v in raw.items() if not (k in _SECTIONS and v is None)}
    in_file: dict[Any, Any] = raw["exchanges"] if isinstance(raw.get("exchanges"), dict) else {}
    raw = apply_env(raw, env)
    exchanges = raw.get("exchanges")
    if isinstance(exchanges, dict):
        # Checked one by one so errors name the exchange (msgspec says `exchanges[...]`).
        for name, value in exchanges.items():
            if not isinstance(name, str) or name not in KNOWN_EXCHANGES:
                path = f"exchanges.{_key_text(str(name))}"
                if name not in in_file:  # only an env var named it
                    rest, ws = (f"DCCD_{str(name).upper()}_{kind}_URL" for kind in ("REST", "WS"))
                    path += f" (from {rest if env.get(rest) else ws})"
                raise ConfigError(path, f"{name!r} is not a known exchange ({' '.join(KNOWN_EXCHANGES)})")
            try:
                msgspec.convert(value, ExchangeSettings, strict=True)
            except msgspec.ValidationError as exc:
                raise _msgspec_error(exc, f"exchanges.{name}") from None
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
        raise ConfigError("", f"{p}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError("", f"{p}: is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError("", f"{p}: cannot read: {exc.strerror or exc}") from None
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
        out.append(
            JobSpec(
                id=_job_id(i, job),
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
