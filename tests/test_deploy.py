"""The container files stay true: their configs validate, the Dockerfile copies what exists, compose names them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from dccd.config import parse_config

ROOT = Path(__file__).parents[1]


def test_deploy_configs_validate() -> None:
    collector = parse_config((ROOT / "deploy" / "collector.yaml").read_text(), env={})
    assert collector.bus is not None and collector.jobs
    assert collector.bus.work_queue and any(j.distribute for j in collector.jobs)  # both collectors pull units
    api = parse_config((ROOT / "deploy" / "api.yaml").read_text(), env={})
    assert api.jobs == [] and api.storage.path == collector.storage.path  # one shared lake


def test_dockerfile_copies_what_exists() -> None:
    for src in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", (ROOT / "Dockerfile").read_text(), re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path


def test_compose_runs_two_shards_an_api_and_nats() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    commands = {name: svc.get("command", []) for name, svc in compose["services"].items()}
    shards = sorted(cmd[cmd.index("--shard") + 1] for cmd in commands.values() if "--shard" in cmd)
    assert shards == ["0/2", "1/2"]
    assert "-js" in commands["nats"]
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / "deploy" / host).exists(), (name, host)
