"""Adapter registry: built-ins, entry-point plugins, and clear errors for bad ones."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from dccd.errors import ConfigError
from dccd.sources import ENTRY_POINT_GROUP, Adapter, get_adapter, list_adapters, registry
from dccd.sources.binance import BinanceAdapter


class PluginAdapter(BinanceAdapter):
    """A third-party adapter (reuses Binance's behaviour under another name)."""

    name = "plugex"


class Misnamed(BinanceAdapter):
    name = "other"


NOT_AN_ADAPTER = object()


def _ep(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"tests.sources.test_registry:{target}", group=ENTRY_POINT_GROUP)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[EntryPoint]:
    found: list[EntryPoint] = []
    monkeypatch.setattr(registry, "_cache", {})
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep for ep in found if ep.group == group])
    return found


def test_builtin_binance_is_listed_and_shared(plugins: list[EntryPoint]) -> None:
    """get_adapter returns one shared Binance adapter instance, listed by list_adapters."""
    assert list_adapters() == sorted(registry.BUILTINS) and "binance" in registry.BUILTINS
    first = get_adapter("binance")
    assert isinstance(first, BinanceAdapter) and get_adapter("binance") is first


def test_unknown_exchange_is_config_error(plugins: list[EntryPoint]) -> None:
    """An unknown name fails with a one-line ConfigError listing what exists."""
    with pytest.raises(ConfigError, match=r"exchange: unknown exchange 'nope' \(available: binance, .*\)"):
        get_adapter("nope")


def test_entry_point_plugin_loads(plugins: list[EntryPoint]) -> None:
    """A class published in the dccd.sources entry-point group is instantiated and registered."""
    plugins.append(_ep("plugex", "PluginAdapter"))
    assert list_adapters() == sorted([*registry.BUILTINS, "plugex"])
    adapter = get_adapter("plugex")
    assert isinstance(adapter, PluginAdapter) and isinstance(adapter, Adapter)


def test_builtin_wins_over_plugin_of_same_name(plugins: list[EntryPoint]) -> None:
    """A plugin cannot replace a shipped adapter by reusing its name."""
    plugins.append(_ep("binance", "PluginAdapter"))
    assert type(get_adapter("binance")) is BinanceAdapter


@pytest.mark.parametrize(
    ("name", "target", "message"),
    [
        ("broken", "DoesNotExist", r"plugin 'broken' \(tests.sources.test_registry:DoesNotExist\) failed to load"),
        ("junk", "NOT_AN_ADAPTER", r"'junk' does not provide a dccd source adapter \(got object\)"),
        ("misnamed", "Misnamed", r"adapter registered as 'misnamed' calls itself 'other'"),
    ],
)
def test_bad_plugins_are_config_errors(plugins: list[EntryPoint], name: str, target: str, message: str) -> None:
    """A plugin that fails to import, is not an adapter, or misnames itself is a clear ConfigError."""
    plugins.append(_ep(name, target))
    with pytest.raises(ConfigError, match=message):
        get_adapter(name)
