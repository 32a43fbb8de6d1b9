"""Loading the config: YAML (safe, dates kept as text, duplicate keys refused), env overlay, schema, checks;
and the views of a loaded config (:func:`expand_jobs`, :func:`masked`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from dccd.config.env import apply_env, env_sources
from dccd.config.schema import SECTIONS, Config, ExchangeSettings, JobSpec, key_text
from dccd.config.timeexpr import parse_duration_s
from dccd.config.validate import exchange_names, got_text, job_id, schema_error, validate
from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import ConfigError


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
        var = env_sources(env).get(exc.path)
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
        got = got_text({"list": "array"}.get(name, name))
        raise ConfigError("(top level)", f"expected a mapping of sections ({' '.join(SECTIONS)}), got {got}")
    # A section whose entries are all commented out parses as null: treat it as empty.
    raw = {k: v for k, v in raw.items() if not (k in SECTIONS and v is None)}
    in_file: dict[Any, Any] = raw["exchanges"] if isinstance(raw.get("exchanges"), dict) else {}
    raw = apply_env(raw, env)
    exchanges = raw.get("exchanges")
    known = exchange_names()
    if isinstance(exchanges, dict):
        # Checked one by one so errors name the exchange (msgspec says `exchanges[...]`).
        for name, value in exchanges.items():
            if not isinstance(name, str) or name not in known:
                path = f"exchanges.{key_text(str(name))}"
                if name not in in_file:  # only an env var named it
                    rest, ws = (f"DCCD_{str(name).upper()}_{kind}_URL" for kind in ("REST", "WS"))
                    path += f" (from {rest if env.get(rest) else ws})"
                raise ConfigError(path, f"{name!r} is not a known exchange ({' '.join(known)})")
            try:
                msgspec.convert(value, ExchangeSettings, strict=True)
            except msgspec.ValidationError as exc:
                raise schema_error(exc, f"exchanges.{name}") from None
    try:
        cfg = msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise schema_error(exc) from None
    cfg = validate(cfg, known)
    if cfg.storage.path.startswith("s3://"):  # an object-store lake: its settings, with this env's fallbacks
        from dccd.storage.objstore import for_storage

        for_storage(cfg.storage.path, cfg.storage.s3, cfg.storage.cache_dir, env)
    return cfg


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
                id=job_id(i, job),
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
                derive_from=job.derive_from,
                scanner=job.scanner,
                params=job.params,
                on_new_bars=job.on_new_bars,
                source=job.source,
                distribute=job.distribute,
            )
        )
    return out


def masked(cfg: Config) -> dict[str, Any]:
    """The effective config as plain data with secrets masked."""
    data: dict[str, Any] = msgspec.to_builtins(cfg)
    if data["server"].get("token"):
        data["server"]["token"] = "***"
    if (data["storage"].get("s3") or {}).get("secret_access_key"):
        data["storage"]["s3"]["secret_access_key"] = "***"
    return data
