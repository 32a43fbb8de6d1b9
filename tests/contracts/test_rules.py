"""The contracts config section: defaults, resolution (ns, windows, the maintenance file) and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.config import parse_config
from dccd.contracts.rules import DEFAULT_RULES, MaintenanceWindow, resolve
from dccd.domain import Symbol
from dccd.domain.timeutil import GENESIS_NS, NS_PER_S, parse_iso_ns
from dccd.errors import ConfigError


def test_defaults_and_exchange_life() -> None:
    """No contracts section gives the defaults: batch on, built-in first days, genesis for other exchanges."""
    rules = resolve(parse_config("storage: {path: /tmp/x}", env={}).contracts)
    assert rules == DEFAULT_RULES
    assert rules.life_start_ns("binance") == parse_iso_ns("2017-07-01")
    assert rules.life_start_ns("someplugin") == GENESIS_NS
    assert (rules.stale_after_ns, rules.bad_tick.window, rules.cross_max_rel) == (300 * NS_PER_S, 101, 0.02)


def test_values_and_the_maintenance_file(tmp_path: Path) -> None:
    """Configured values resolve; windows come from the list and from the file, symbol-scoped ones apply to
    their symbol only."""
    f = tmp_path / "m.yaml"
    f.write_text("maintenance:\n  - {exchange: kraken, start: '2024-01-02', end: '2024-01-02T01:00:00Z'}\n")
    cfg = parse_config(
        "contracts:\n  exchange_start: {binance: '2018-01-01'}\n  stale: {after: 90s, liquid_per_hour: 5}\n"
        "  maintenance: [{exchange: binance, symbol: BTC/USDT, start: '2024-01-01', end: '2024-01-01T00:30:00Z'}]\n"
        f"  maintenance_file: '{f}'\n",
        env={},
    )
    rules = resolve(cfg.contracts)
    assert rules.life_start_ns("binance") == parse_iso_ns("2018-01-01")
    assert (rules.stale_after_ns, rules.liquid_per_hour) == (90 * NS_PER_S, 5.0)
    assert rules.maintenance == (
        MaintenanceWindow(
            "binance", Symbol.parse("BTC/USDT"), parse_iso_ns("2024-01-01"), parse_iso_ns("2024-01-01T00:30:00Z")
        ),
        MaintenanceWindow("kraken", None, parse_iso_ns("2024-01-02"), parse_iso_ns("2024-01-02T01:00:00Z")),
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("contracts: {bad_tick: {k: 0}}", "contracts.bad_tick.k: 0 is not a number > 0"),
        ("contracts: {bad_tick: {min_rel: 1.5}}", "contracts.bad_tick.min_rel: 1.5 is not a number > 0 and < 1"),
        ("contracts: {bad_tick: {window: 2}}", "contracts.bad_tick.window: 2 is not between 3 and 10001 rows"),
        ("contracts: {stale: {after: 5x}}", "contracts.stale.after: '5x' is not a positive duration (e.g. 90s 15m 1h 1d 1w)"),
        ("contracts: {cross_exchange: {max_rel: -1}}", "contracts.cross_exchange.max_rel: -1 is not a number > 0 and < 1"),
        ("contracts: {bar_count: {max_missing: -1}}", "contracts.bar_count.max_missing: -1 is negative"),
        ("contracts: {examples: 1000}", "contracts.examples: 1000 is not between 0 and 100"),
        ("contracts: {exchange_start: {binance: '1999-01-01'}}",
         "contracts.exchange_start.binance: '1999-01-01' is before 2009-01-03 (no crypto trade)"),
        ("contracts: {exchange_start: {nope: '2019-01-01'}}", "contracts.exchange_start.nope: 'nope' is not a known exchange"),
        ("contracts: {maintenance: [{exchange: binance, start: '2024-01-02', end: '2024-01-01'}]}",
         "contracts.maintenance[0].end: '2024-01-01' is not after start '2024-01-02'"),
        ("contracts: {maintenance: [{exchange: binance, start: '2024-01-01'}]}",
         "contracts.maintenance[0].end: required key is missing"),
        ("contracts: {bad_tick: {kk: 1}}", "contracts.bad_tick.kk: unknown key (expected one of: window k min_rel)"),
        ("contracts: {maintenance_file: /nonexistent/m.yaml}",
         "contracts.maintenance_file: '/nonexistent/m.yaml': cannot read: No such file or directory"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_errors(text: str, error: str) -> None:
    """Each bad contracts value fails config loading with one line naming its key."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    assert str(info.value) == error
