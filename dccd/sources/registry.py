"""Adapter registry: built-in exchanges plus plugins from the ``dccd.sources`` entry-point group.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."dccd.sources"]
    myexchange = "my_pkg.myexchange:MyExchangeAdapter"

The target is an :class:`~dccd.sources.base.Adapter` instance, or a class /
factory called without arguments that returns one; its ``name`` must equal the
entry-point name. Built-in names win over plugins of the same name, so
installing a package can never silently replace a shipped adapter.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from dccd.errors import ConfigError
from dccd.sources.base import Adapter

ENTRY_POINT_GROUP: Final = "dccd.sources"

# name -> "module:attribute"; imported on first use so listing exchanges stays cheap.
BUILTINS: Final[dict[str, str]] = {
    "binance": "dccd.sources.binance:BinanceAdapter",
    "bitfinex": "dccd.sources.bitfinex:BitfinexAdapter",
    "bitmex": "dccd.sources.bitmex:BitmexAdapter",
    "bybit": "dccd.sources.bybit:BybitAdapter",
    "coinbase": "dccd.sources.coinbase:CoinbaseAdapter",
    "kraken": "dccd.sources.kraken:KrakenAdapter",
    "okx": "dccd.sources.okx:OkxAdapter",
}

_cache: dict[str, Adapter] = {}


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTINS}


def list_adapters() -> list[str]:
    """Names of every available exchange adapter, sorted."""
    return sorted(set(BUILTINS) | set(_plugins()))


def _load_builtin(target: str) -> object:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_adapter(name: str) -> Adapter:
    """The adapter for exchange ``name`` (one shared, stateless instance per name).

    Raises:
        ConfigError: unknown exchange, or a plugin that fails to load or does
            not implement the adapter protocol.
    """
    cached = _cache.get(name)
    if cached is not None:
        return cached
    if name in BUILTINS:
        obj = _load_builtin(BUILTINS[name])
    else:
        ep = _plugins().get(name)
        if ep is None:
            raise ConfigError("exchange", f"unknown exchange {name!r} (available: {', '.join(list_adapters())})")
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin is a configuration problem, reported in one line
            raise ConfigError("exchange", f"plugin {name!r} ({ep.value}) failed to load: {exc!r}") from exc
    adapter = obj() if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Adapter)) else obj
    if not isinstance(adapter, Adapter):
        raise ConfigError("exchange", f"{name!r} does not provide a dccd source adapter (got {type(adapter).__name__})")
    if adapter.name != name:
        raise ConfigError("exchange", f"adapter registered as {name!r} calls itself {adapter.name!r}")
    _cache[name] = adapter
    return adapter
