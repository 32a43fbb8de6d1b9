"""Shared CLI plumbing: common options, config loading, logging, exit codes, and the one error boundary.

Every failure leaves the CLI as one line on stderr and an exit code: ``2`` for
usage and config errors (a bad argument, option or config key), ``1`` for an
operation that failed (the exchange, the disk, a bug), ``130`` for Ctrl-C.
:class:`DccdGroup` is that boundary: commands raise, it prints.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from dccd.config import Config, load_config
from dccd.errors import ConfigError, DccdError, NoCapability, UnsupportedSymbol, leaves

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEBUG_HINT = "rerun with --log-level debug for the traceback"


class UsageProblem(DccdError):
    """A request that cannot be run as given (exit 2): ``str(err)`` is ``field: what is wrong``."""


class State:
    """What the common options collected (stored on the click context)."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.data: str | None = None
        self.log_level: str | None = None
        self.quiet: bool = False
        self._config: Config | None = None

    def config(self) -> Config:
        """Load (once) the effective config, applying ``--data``; a bad config raises ConfigError (exit 2)."""
        if self._config is None:
            env = dict(os.environ)
            if self.data:
                env["DCCD_DATA"] = self.data
            self._config = load_config(self.config_path, env)
        return self._config

    def data_root(self) -> Path:
        """The lake root: ``--data``, ``$DCCD_DATA`` or the config's storage.path."""
        return self.config().data_root

    @property
    def debug(self) -> bool:
        """``--log-level debug``: unexpected errors print their traceback."""
        return (self.log_level or "").upper() == "DEBUG"

    def level(self, default: str = "WARNING") -> str:
        """The log level in effect: ``--quiet`` -> ERROR, else ``--log-level``, else the command's ``default``."""
        if self.quiet:
            return "ERROR"
        return (self.log_level or default).upper()

    def setup_logging(self, default: str = "WARNING") -> str:
        """Configure structlog for this command (see :meth:`level`); returns the level."""
        from dccd.logging import configure_logging

        level = self.level(default)
        configure_logging(level, stream=_Stderr())
        return level


class _Stderr:
    """``sys.stderr`` looked up at each write: the log handler follows a swapped stderr (click's test runner)
    instead of keeping a stream that is closed once the command returns."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _store(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def cb(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        obj = ctx.ensure_object(State)
        # The option exists on the group and on each subcommand: the subcommand's copy reads
        # the env var again, which must not override a value given on the command line.
        source = ctx.get_parameter_source(param.name) if param.name is not None else None
        from_env = source is ParameterSource.ENVIRONMENT
        if source is ParameterSource.DEFAULT and value is False:
            return value  # an unset flag on the subcommand must not clear the group's ``--quiet``
        if value is not None and not (from_env and getattr(obj, attr) not in (None, False)):
            setattr(obj, attr, value)
            if attr in ("log_level", "quiet") and ctx.parent is not None:
                obj.setup_logging()  # given after the subcommand: the group's logging setup ran already
        return value

    return cb


def common_options(f: F) -> F:
    """Add ``--config``, ``--data``, ``--log-level`` and ``--quiet`` (accepted before or after the subcommand)."""
    f = click.option(
        "--quiet",
        "-q",
        "quiet_opt",
        is_flag=True,
        default=False,
        expose_value=False,
        callback=_store("quiet"),
        help="Only errors on stderr: no logs, progress bars or status line.",
    )(f)
    f = click.option(
        "--log-level",
        "log_level_opt",
        envvar="DCCD_LOG_LEVEL",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=None,
        expose_value=False,
        callback=_store("log_level"),
        help="Minimum log level (env DCCD_LOG_LEVEL); debug also prints tracebacks of unexpected errors.",
    )(f)
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
    click.echo(f"config error: {one_line(str(exc))}", err=True)
    sys.exit(EXIT_USAGE)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: <message>`` on one line and exit."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def usage_errors(f: F) -> F:
    """Turn a ConfigError escaping ``f`` into ``config error: ...`` and exit 2."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ConfigError as exc:
            fail_config(exc)

    return wrapper  # type: ignore[return-value]


def prepare_data_dir(root: Path) -> Path:
    """Create the lake root if needed, before any service starts (so a bad path is the only line printed).

    Raises:
        OSError: it cannot be created, or it is not a writable directory.
    """
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(13, "the lake directory is not writable", str(root))
    return root


# -- the error boundary --------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) folded into one space."""
    return _SPACES.sub(" ", text).strip()


def _rank(exc: BaseException) -> int:
    """Which leaf of a group speaks for it: an interrupt, then what the user can act on, then the rest."""
    for i, kind in enumerate((KeyboardInterrupt, SystemExit, click.ClickException, DccdError, ValueError, OSError)):
        if isinstance(exc, kind):
            return i
    return 99


def real_error(exc: BaseException) -> tuple[BaseException, int]:
    """The leaf of ``exc`` that explains it and how many other leaves there were (0 for a plain exception)."""
    import trio

    found: Sequence[BaseException] = leaves(exc, trio.Cancelled) if isinstance(exc, BaseExceptionGroup) else [exc]
    if not found:
        return exc, 0
    return min(found, key=_rank), len(found) - 1


def _os_text(exc: OSError) -> str:
    what = exc.strerror or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {what}" if names else str(exc) or what


def _click_text(exc: click.ClickException) -> str:
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        hint = exc.param_hint
        if hint is None and exc.param is not None:
            hint = exc.param.get_error_hint(exc.ctx) if exc.ctx is not None else exc.param.name
        if isinstance(hint, (list, tuple)):
            hint = " / ".join(str(h) for h in hint)
        if hint:
            return f"{str(hint).strip(chr(39) + chr(34))}: {exc.message.rstrip('.')}"
    text = exc.format_message().rstrip(".")
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        text += f" (see {exc.ctx.command_path} --help)"
    return text


def describe(exc: BaseException, *, debug: bool = False) -> tuple[str, int]:
    """The one line (without a trailing newline) and the exit code for an exception that ended a command.

    ``exc`` may be an exception group: the leaf that explains it is reported.
    """
    leaf, others = real_error(exc)
    more = f" (and {others} more error(s))" if others and not isinstance(leaf, KeyboardInterrupt) else ""
    if isinstance(leaf, KeyboardInterrupt | click.Abort):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(leaf, click.UsageError):
        return f"error: {one_line(_click_text(leaf))}", EXIT_USAGE
    if isinstance(leaf, click.ClickException):
        return f"error: {one_line(_click_text(leaf))}", leaf.exit_code or EXIT_FAILED
    if isinstance(leaf, ConfigError):
        return f"config error: {one_line(str(leaf))}{more}", EXIT_USAGE
    if isinstance(leaf, UsageProblem | NoCapability | UnsupportedSymbol):
        return f"error: {one_line(str(leaf))}{more}", EXIT_USAGE
    from dccd.ops import InvalidRequest

    if isinstance(leaf, InvalidRequest):
        return f"error: {one_line(str(leaf))}{more}", EXIT_USAGE
    if isinstance(leaf, DccdError):
        return f"error: {one_line(str(leaf))}{more}", EXIT_FAILED
    if isinstance(leaf, OSError):
        return f"error: {one_line(_os_text(leaf))}{more}", EXIT_FAILED
    text = one_line(str(leaf))
    hint = "" if debug else f"; {DEBUG_HINT}"
    return f"error: unexpected {type(leaf).__name__}{': ' + text if text else ''} (a bug in dccd{hint})", EXIT_FAILED


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)
    return EXIT_FAILED


class DccdGroup(click.Group):
    """The ``dccd`` group: runs the command inside the error boundary (see the module docstring)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        obj = extra.pop("obj", None)
        st = obj if isinstance(obj, State) else State()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, obj=st, **extra)
        except SystemExit as exc:
            sys.exit(_exit_code(exc))
        except BaseException as exc:  # the boundary: every failure becomes one line and an exit code
            line, code = describe(exc, debug=st.debug)
            if st.debug and code == EXIT_FAILED:
                traceback.print_exception(exc, file=sys.stderr)
            _flush_stdout()
            click.echo(line, err=True)
            sys.exit(code)
        # Without standalone mode click returns the command's value, or the code of a ctx.exit().
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def _flush_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed pipe must not hide the error line
        sys.stdout.flush()
