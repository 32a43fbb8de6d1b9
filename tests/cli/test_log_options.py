"""`--log-level LEVEL` and `--quiet` on every command, before or after the subcommand."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import pytest
import trio

from dccd.cli.main import cli
from tests.fake.binance import open_fake_binance

DCCD = str(Path(sys.executable).with_name("dccd"))


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        out.append(((*path, name), cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
    return out


@pytest.mark.parametrize(("path", "cmd"), _commands(cli), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_takes_log_level_and_quiet(path: tuple[str, ...], cmd: click.Command) -> None:
    """Each command (and sub-command) accepts --log-level and --quiet after its name."""
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert {"--log-level", "--quiet", "-q", "--config", "--data"} <= opts, path


async def _backfill(tmp_path: Path, url: str, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}
    env |= {"DCCD_BINANCE_REST_URL": url, "DCCD_DATA": str(tmp_path / "lake")}
    cmd = [DCCD, *args[:1], "backfill", "binance", "BTC/USDT", "--type", "ohlc", "--span", "1h",
           "--start", "2024-01-01", "--end", "2024-01-02", "--no-progress", *args[1:]]  # fmt: skip
    with trio.fail_after(60):
        p = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False, env=env)
    return p.returncode, p.stderr.decode()


async def test_quiet_and_log_level_set_what_reaches_stderr(tmp_path: Path) -> None:
    """Off a terminal backfill logs INFO JSON lines; --quiet (before the command) and --log-level warning
    (after it) leave stderr empty."""
    async with open_fake_binance() as fake:
        code, default = await _backfill(tmp_path / "a", fake.url, "--log-level=info")
        assert code == 0 and any(json.loads(line)["level"] == "info" for line in default.splitlines())
        assert await _backfill(tmp_path / "b", fake.url, "--quiet") == (0, "")
        assert await _backfill(tmp_path / "c", fake.url, "--data=" + str(tmp_path / "c" / "lake"),
                               "--log-level", "WARNING") == (0, "")  # fmt: skip
