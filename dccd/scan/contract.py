"""The scanner contract, the universe, and the registry (entry-point group ``dccd.scanners``).

A scanner is an object with:

- ``name`` (its entry-point name) and ``version``;
- ``Config``: a frozen msgspec Struct of its parameters (served as JSON Schema by
  ``GET /api/v1/scanners``; unknown keys are errors);
- ``data_type`` (``ohlc``) and ``spans`` (the spans it accepts; empty = any);
- ``tail_bars(config, span_s)``: how many of the newest bars per symbol it reads (its unstable period);
- either ``scan(ctx, config) -> pyarrow.Table`` (one DuckDB statement over ``ctx.bars_sql``), or
  ``scan_batch(table, config) -> pyarrow.Table`` (the plugin form: called with an Arrow table per
  batch of symbols, see :meth:`ScanContext.batches`).

The table it returns has one row per hit: ``exchange``, ``symbol``, ``ts`` (the bar, ns UTC) and the
scanner's values (scalar columns). A plugin package declares::

    [project.entry-points."dccd.scanners"]
    gap_up = "my_pkg.scanners:GapUp"      # an instance, or a class called without arguments

Built-in names win over plugins of the same name.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

import msgspec
import pyarrow as pa

from dccd.errors import ConfigError

ENTRY_POINT_GROUP: Final = "dccd.scanners"
BUILTINS: Final[dict[str, str]] = {
    "relative_volume": "dccd.scan.builtin:RelativeVolume",
    "breakout": "dccd.scan.builtin:Breakout",
    "technical": "dccd.scan.builtin:Technical",
}
SIGNAL_KEYS: Final = ("exchange", "symbol", "ts")


class Universe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which stored OHLC series a scan reads: every filter given must match (empty = no filter).

    ``quotes`` are quote currencies (``USDT``); ``symbols`` are ``BASE/QUOTE`` (``BTC/USDT``,
    ``BTC/USDT:perp``); ``min_quote_volume`` keeps symbols whose quote volume over the last 24 h of
    bars (``quote_volume``, else ``close × volume``) reaches it.
    """

    exchanges: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    min_quote_volume: float | None = None


class ScanContext(Protocol):
    """What a scanner's ``scan`` gets: a DuckDB connection and the bars of its universe.

    ``bars_sql`` is a ``WITH`` clause defining ``bars(exchange, symbol, ts, open, high, low, close,
    volume, quote_volume, last_ts)``: the newest ``tail_bars`` bars of each symbol (``last_ts`` its
    newest ts), deduplicated, in no order (order inside your windows and aggregates). Append your ``SELECT`` to it; ``params`` are its parameters.
    """

    con: Any
    bars_sql: str
    params: dict[str, Any]
    span_ns: int

    def batches(self, symbols_per_batch: int = 64) -> Iterator[pa.Table]:
        """The bars as Arrow tables, whole symbols per table, sorted by exchange, symbol, ts."""
        ...


@runtime_checkable
class Scanner(Protocol):
    """See the module docstring."""

    name: str
    version: str
    Config: type[msgspec.Struct]
    data_type: str
    spans: tuple[str, ...]

    def tail_bars(self, config: Any, span_s: int) -> int:
        """Newest bars per symbol the scan needs on bars of ``span_s`` seconds."""
        ...


class ScannerBase:
    """Convenience base: ``data_type = 'ohlc'``, any span, a fixed tail."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Config: ClassVar[type[msgspec.Struct]]
    data_type: ClassVar[str] = "ohlc"
    spans: ClassVar[tuple[str, ...]] = ()
    tail: ClassVar[int] = 100

    def tail_bars(self, config: Any, span_s: int) -> int:
        """``tail`` bars (override for a config- or span-dependent unstable period)."""
        return self.tail


_cache: dict[str, Scanner] = {}


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTINS}


def list_scanners() -> list[str]:
    """Names of every available scanner (built-ins and plugins), sorted."""
    return sorted(set(BUILTINS) | set(_plugins()))


def get_scanner(name: str) -> Scanner:
    """The scanner called ``name``.

    Raises:
        ConfigError: unknown scanner, or a plugin that fails to load or lacks the contract.
    """
    if name in _cache:
        return _cache[name]
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        target: Any = getattr(importlib.import_module(module), attr)
    else:
        ep = _plugins().get(name)
        if ep is None:
            raise ConfigError("scanner", f"{name!r} is not a scanner ({' '.join(list_scanners())})")
        try:
            target = ep.load()
        except Exception as exc:  # a broken plugin is a config problem, said in one line
            raise ConfigError("scanner", f"plugin {name!r} failed to load: {type(exc).__name__}: {exc}") from None
    scanner = target() if isinstance(target, type) else target
    if not isinstance(scanner, Scanner) or not (hasattr(scanner, "scan") or hasattr(scanner, "scan_batch")):
        raise ConfigError("scanner", f"plugin {name!r} does not implement the scanner contract (see dccd.scan)")
    if scanner.name != name:
        raise ConfigError("scanner", f"plugin {name!r} calls itself {scanner.name!r}")
    _cache[name] = scanner
    return scanner


def parse_params(scanner: Scanner, raw: dict[str, Any] | None, path: str = "params") -> Any:
    """The scanner's config from a mapping (JSON/YAML values, or ``k=v`` strings from the CLI).

    Raises:
        ConfigError: one line naming the parameter (``params.lookback: Expected `int`, got `str```).
    """
    try:
        return msgspec.convert(raw or {}, scanner.Config, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        where = ""
        if " - at `$." in msg:
            msg, _, where = msg.partition(" - at `$.")
            where = "." + where.rstrip("`")
        raise ConfigError(f"{path}{where}", msg) from None


def params_hash(scanner: Scanner, config: Any) -> str:
    """A short stable hash of the validated config (with defaults), naming a parameter set."""
    body = msgspec.json.encode(msgspec.to_builtins(config), order="sorted")
    return hashlib.sha256(scanner.name.encode() + b"\0" + body).hexdigest()[:12]


def describe(scanner: Scanner) -> dict[str, Any]:
    """What ``dccd scanners`` and ``GET /api/v1/scanners`` show: name, version, doc, spans, JSON Schema."""
    doc = (type(scanner).__doc__ or "").strip()
    return {
        "name": scanner.name,
        "version": scanner.version,
        "summary": doc.splitlines()[0] if doc else "",
        "data_type": scanner.data_type,
        "spans": list(scanner.spans),
        "params": msgspec.json.schema(scanner.Config),
        "defaults": msgspec.to_builtins(scanner.Config()),
    }


def check_output(name: str, table: pa.Table) -> pa.Table:
    """The scanner's table, checked for the signal keys.

    Raises:
        ValueError: a key column is missing.
    """
    missing = [k for k in SIGNAL_KEYS if k not in table.column_names]
    if missing:
        raise ValueError(f"scanner {name!r} returned no {', '.join(missing)} column")
    return table
