"""Contract thresholds resolved from the ``contracts:`` config section (with the built-in exchange facts).

:func:`resolve` turns the YAML shape (:class:`dccd.config.contracts.Contracts`) into
:class:`ContractRules`: times in ns, windows parsed, the maintenance file read. Every
problem is one :class:`~dccd.errors.ConfigError` naming the key path
(``contracts.bad_tick.k: 0 is not a number > 0``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec
import yaml

from dccd.config.contracts import BadTick, Contracts, Window
from dccd.config.timeexpr import parse_duration_s, shown
from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.domain.timeutil import GENESIS_NS, NS_PER_S, parse_iso_ns
from dccd.errors import ConfigError

# The first day each exchange could have printed a trade, rounded down to the month (a bound, not a
# listing date: a ts before it is a unit or clock error). Sources: the exchanges' launch announcements;
# BitMEX XBTUSD history starts 2014/2015 (../shared/exchanges/SPEC.md §7), Coinbase Exchange candles in
# 2014-12. Any other exchange: the Bitcoin genesis block (2009-01-03).
EXCHANGE_START: Final[dict[str, str]] = {
    "binance": "2017-07-01",
    "bitfinex": "2012-10-01",
    "bitmex": "2014-11-01",
    "bybit": "2018-03-01",
    "coinbase": "2014-12-01",
    "kraken": "2013-09-01",
    "okx": "2013-06-01",
}

CONTRACTS: Final[tuple[str, ...]] = (
    "schema_units",
    "unique_key",
    "monotonic_ids",
    "ohlc_invariants",
    "bar_grid",
    "bar_count",
    "bars_vs_trades",
    "bad_tick",
    "stale_feed",
    "cross_exchange",
)
"""Every contract, in report order."""


class MaintenanceWindow(NamedTuple):
    """A declared window ``[start_ns, end_ns)`` of ``exchange`` (``symbol`` None: all its symbols)."""

    exchange: str
    symbol: Symbol | None
    start_ns: int
    end_ns: int
    note: str = ""


class BatchRules(NamedTuple):
    """What the quality gate needs to check one dataset's batch (see :func:`dccd.storage.quality.gate`)."""

    life_start_ns: int = GENESIS_NS
    span: Span | None = None
    monotonic_ids: bool = False


class ContractRules(msgspec.Struct, frozen=True):
    """Resolved contract settings (defaults: :data:`DEFAULT_RULES`)."""

    batch: bool = True
    examples: int = 5
    exchange_start_ns: dict[str, int] = msgspec.field(default_factory=dict)
    maintenance: tuple[MaintenanceWindow, ...] = ()
    bad_tick: BadTick = msgspec.field(default_factory=BadTick)
    stale_after_ns: int = 300 * NS_PER_S
    liquid_per_hour: float = 600.0
    cross_max_rel: float = 0.02
    reconcile_rel_tol: float = 1e-6
    bar_max_missing: int = 0

    def life_start_ns(self, exchange: str) -> int:
        """The earliest ts ``exchange`` can have printed."""
        found = self.exchange_start_ns.get(exchange)
        if found is not None:
            return found
        built_in = EXCHANGE_START.get(exchange)
        return parse_iso_ns(built_in) if built_in is not None else GENESIS_NS

    def windows(self, ds: DatasetId) -> list[tuple[int, int]]:
        """The maintenance windows that apply to ``ds``, as ``(start_ns, end_ns)``."""
        return [
            (w.start_ns, w.end_ns)
            for w in self.maintenance
            if w.exchange == ds.exchange and (w.symbol is None or w.symbol == ds.symbol)
        ]

    def for_batch(self, ds: DatasetId, monotonic_ids: bool) -> BatchRules | None:
        """The gate's rules for a batch of ``ds`` (None when batch contracts are off)."""
        if not self.batch:
            return None
        return BatchRules(self.life_start_ns(ds.exchange), ds.span, monotonic_ids and ds.data_type is DataType.TRADES)


DEFAULT_RULES: Final[ContractRules] = ContractRules()


def sequential_exchange(exchange: str) -> bool:
    """Whether ``exchange``'s adapter declares consecutive per-symbol trade ids (ids that must grow with
    time: the ``monotonic_ids`` contract applies); an unknown exchange or a broken plugin: False."""
    from dccd.sources.base import sequential_ids
    from dccd.sources.registry import get_adapter

    try:
        return sequential_ids(get_adapter(exchange))
    except ConfigError:
        return False


def _positive(path: str, value: float, *, upper: float | None = None) -> None:
    if not value > 0 or (upper is not None and not value < upper):  # also refuses nan
        bound = f" and < {upper:g}" if upper is not None else ""
        raise ConfigError(path, f"{value:g} is not a number > 0{bound}")


def _windows(items: list[Window], where: str, known: tuple[str, ...] | None) -> list[MaintenanceWindow]:
    out = []
    for i, w in enumerate(items):
        p = f"{where}[{i}]"
        if known is not None and w.exchange not in known:
            raise ConfigError(f"{p}.exchange", f"{w.exchange!r} is not a known exchange")
        try:
            start, end = parse_iso_ns(w.start), parse_iso_ns(w.end)
        except ValueError as exc:
            raise ConfigError(p, str(exc)) from None
        if end <= start:
            raise ConfigError(f"{p}.end", f"{shown(w.end)} is not after start {shown(w.start)}")
        try:
            sym = Symbol.parse(w.symbol) if w.symbol is not None else None
        except ValueError as exc:
            raise ConfigError(f"{p}.symbol", str(exc)) from None
        out.append(MaintenanceWindow(w.exchange, sym, start, end, w.note))
    return out


def load_windows(path: str, known_exchanges: tuple[str, ...] | None = None) -> list[MaintenanceWindow]:
    """Maintenance windows from a YAML/JSON file: a list of windows, or ``{maintenance: [...]}``.

    Raises:
        ConfigError: unreadable file or a bad window (the path names the file and the entry).
    """
    where = "contracts.maintenance_file"
    try:
        raw: Any = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(where, f"{shown(path)}: cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(where, f"{shown(path)}: not YAML/JSON ({type(exc).__name__})") from None
    if isinstance(raw, dict) and set(raw) == {"maintenance"}:
        raw = raw["maintenance"]
    if raw is None:
        return []
    try:
        items = msgspec.convert(raw, list[Window], strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(where, f"{shown(path)}: {str(exc).replace('`', '')}") from None
    return _windows(items, f"{where} {path}", known_exchanges)


def resolve(section: Contracts, known_exchanges: tuple[str, ...] | None = None) -> ContractRules:
    """Check ``section`` and resolve it.

    Raises:
        ConfigError: the first problem, naming its key path.
    """
    p = "contracts"
    if not 0 <= section.examples <= 100:
        raise ConfigError(f"{p}.examples", f"{section.examples} is not between 0 and 100")
    starts: dict[str, int] = {}
    for name, text in section.exchange_start.items():
        if known_exchanges is not None and name not in known_exchanges:
            raise ConfigError(f"{p}.exchange_start.{name}", f"{name!r} is not a known exchange")
        try:
            starts[name] = parse_iso_ns(text)
        except ValueError as exc:
            raise ConfigError(f"{p}.exchange_start.{name}", str(exc)) from None
        if starts[name] < GENESIS_NS:
            raise ConfigError(f"{p}.exchange_start.{name}", f"{shown(text)} is before 2009-01-03 (no crypto trade)")
    windows = _windows(section.maintenance, f"{p}.maintenance", known_exchanges)
    if section.maintenance_file is not None:
        windows += load_windows(section.maintenance_file, known_exchanges)
    bt = section.bad_tick
    if not 3 <= bt.window <= 10_001:
        raise ConfigError(f"{p}.bad_tick.window", f"{bt.window} is not between 3 and 10001 rows")
    _positive(f"{p}.bad_tick.k", bt.k)
    _positive(f"{p}.bad_tick.min_rel", bt.min_rel, upper=1.0)
    try:
        stale_s = parse_duration_s(section.stale.after)
    except ValueError as exc:
        raise ConfigError(f"{p}.stale.after", str(exc)) from None
    _positive(f"{p}.stale.liquid_per_hour", section.stale.liquid_per_hour)
    _positive(f"{p}.cross_exchange.max_rel", section.cross_exchange.max_rel, upper=1.0)
    _positive(f"{p}.reconcile.rel_tol", section.reconcile.rel_tol, upper=1.0)
    if section.bar_count.max_missing < 0:
        raise ConfigError(f"{p}.bar_count.max_missing", f"{section.bar_count.max_missing} is negative")
    return ContractRules(
        batch=section.batch,
        examples=section.examples,
        exchange_start_ns=starts,
        maintenance=tuple(windows),
        bad_tick=bt,
        stale_after_ns=stale_s * NS_PER_S,
        liquid_per_hour=section.stale.liquid_per_hour,
        cross_max_rel=section.cross_exchange.max_rel,
        reconcile_rel_tol=section.reconcile.rel_tol,
        bar_max_missing=section.bar_count.max_missing,
    )
