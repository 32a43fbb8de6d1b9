"""Shared CLI plumbing: common options, config loading, exit codes, error lines."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from dccd.config import Config, load_config
from dccd.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class State:
    """What the common options collected (stored on the click context)."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.data: str | None = None
        self._config: Config | None = None

    def config(self) -> Config:
        """Load (once) the effective config, applying ``--data``; exits 2 on a bad config."""
        if self._config is None:
            env = dict(__import__("os").environ)
            if self.data:
                env["DCCD_DATA"] = self.data
            try:
                self._config = load_config(self.config_path, env)
            except ConfigError as exc:
                fail_config(exc)
        return self._config

    def data_root(self) -> Path:
        """The lake root: ``--data``, ``$DCCD_DATA`` or the config's storage.path."""
        return self.config().data_root


def _store(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def cb(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        obj = ctx.ensure_object(State)
        # The option exists on the group and on each subcommand: the subcommand's copy reads
        # the env var again, which must not override a value given on the command line.
        from_env = param.name is not None and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
        if value is not None and not (from_env and getattr(obj, attr) is not None):
            setattr(obj, attr, value)
        return value

    return cb


def common_options(f: F) -> F:
    """Add ``--config`` and ``--data`` (accepted before or after the subcommand)."""
    f = click.option(
        "--data",
        "data_opt",
        envvar="DCCD_DATA",
        default=None,
        expose_value=False,
        callback=_store("data"),
        help="Lake root (overrides storage.path; env DCCD_DATA).",
    )(f)
    f = click.option(
        "--config",
        "config_opt",
        envvar="DCCD_CONFIG",
        default=None,
        expose_value=False,
        callback=_store("config_path"),
        help="Config file (env DCCD_CONFIG; default: the embedded config).",
    )(f)
    return f


def state(ctx: click.Context | None = None) -> State:
    """The State of the current invocation."""
    ctx = ctx or click.get_current_context()
    return ctx.ensure_object(State)


def data_root(ctx: click.Context | None = None) -> Path:
    """The lake root for this invocation."""
    return state(ctx).data_root()


def fail_config(exc: ConfigError) -> NoReturn:
    """Print ``config error: <path>: <what>`` and exit 2."""
    click.echo(f"config error: {exc}", err=True)
    sys.exit(EXIT_USAGE)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: <message>`` on one line and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def usage_errors(f: F) -> F:
    """Turn ValueError from argument parsing into click usage errors (exit 2)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ConfigError as exc:
            fail_config(exc)

    return wrapper  # type: ignore[return-value]
