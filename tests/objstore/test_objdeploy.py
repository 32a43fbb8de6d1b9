"""``deploy/compose.s3.yaml`` stays true: every dccd service gets the same s3 lake, and its config validates so."""

from __future__ import annotations

from pathlib import Path

import yaml

from dccd.config import parse_config

ROOT = Path(__file__).parents[2]


def test_compose_s3_overlay_points_every_dccd_service_at_one_s3_lake(tmp_path: Path) -> None:
    """The overlay's environment makes the collector and API configs an s3 lake that loads (no config error)."""
    base = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    overlay = yaml.safe_load((ROOT / "deploy" / "compose.s3.yaml").read_text())["services"]
    dccd = [name for name, svc in base.items() if "build" in svc]
    assert sorted(dccd) == sorted(n for n in overlay if not n.startswith("seaweedfs"))
    envs = {name: overlay[name]["environment"] for name in dccd}
    assert len({tuple(sorted(e.items())) for e in envs.values()}) == 1
    env = {**next(iter(envs.values())), "XDG_CACHE_HOME": str(tmp_path)}
    for name in ("collector", "api"):
        cfg = parse_config((ROOT / "deploy" / f"{name}.yaml").read_text(), env=env)
        assert cfg.storage.path == "s3://lake/dccd"
        assert cfg.data_root.is_relative_to(tmp_path)
    assert "weed shell" in " ".join(overlay["seaweedfs-bucket"]["entrypoint"])
