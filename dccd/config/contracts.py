"""The ``contracts:`` config section as written in YAML (checked and resolved by :mod:`dccd.contracts.rules`)."""

from __future__ import annotations

import msgspec


class Window(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A declared exchange maintenance window ``[start, end)``: no bars or trades are expected in it."""

    exchange: str
    start: str
    end: str
    symbol: str | None = None
    """Only this symbol (``BTC/USDT``); None = every symbol of the exchange."""
    note: str = ""


class BadTick(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A price is a bad tick when it is off the rolling median of ``window`` rows around it by more
    than ``k`` x MAD (the window's median absolute deviation) and by more than ``min_rel`` of the median."""

    window: int = 101
    k: float = 10.0
    min_rel: float = 0.005


class Stale(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A trade feed is stale when a symbol trading at least ``liquid_per_hour`` trades an hour that day
    goes ``after`` without a trade."""

    after: str = "5m"
    liquid_per_hour: float = 600.0


class CrossExchange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A bar's close is off when it deviates from the median close of the same pair, span and open time
    on the other exchanges by more than ``max_rel`` (a share: 0.02 = 2 %)."""

    max_rel: float = 0.02


class Reconcile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Bars rebuilt from stored trades must match the stored bars within ``rel_tol`` (prices and volume)."""

    rel_tol: float = 1e-6


class BarCount(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A day may miss at most ``max_missing`` bars (outside declared maintenance windows)."""

    max_missing: int = 0


class Contracts(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Data contracts: what the writer checks on each batch and ``dccd check`` on stored data."""

    batch: bool = True
    """Run the per-batch contracts on every write (rows breaking one are quarantined)."""
    examples: int = 5
    """Examples kept per contract and day in a report."""
    exchange_start: dict[str, str] = msgspec.field(default_factory=dict)
    """First day of an exchange's life (ISO), overriding the built-in ones; earlier ts are errors."""
    maintenance: list[Window] = msgspec.field(default_factory=list)
    maintenance_file: str | None = None
    """A YAML/JSON file holding more windows (a list, or a mapping with a ``maintenance`` list)."""
    bad_tick: BadTick = msgspec.field(default_factory=BadTick)
    stale: Stale = msgspec.field(default_factory=Stale)
    cross_exchange: CrossExchange = msgspec.field(default_factory=CrossExchange)
    reconcile: Reconcile = msgspec.field(default_factory=Reconcile)
    bar_count: BarCount = msgspec.field(default_factory=BarCount)


STRUCTS: dict[str, type[msgspec.Struct]] = {
    "contracts": Contracts,
    "contracts.bad_tick": BadTick,
    "contracts.stale": Stale,
    "contracts.cross_exchange": CrossExchange,
    "contracts.reconcile": Reconcile,
    "contracts.bar_count": BarCount,
    "contracts.maintenance[]": Window,
}
"""Key path -> Struct, for listing the keys a section accepts in an unknown-key error."""
