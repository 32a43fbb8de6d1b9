"""The web layer's seam: controllers call the service handle, never the lake, the run store or adapters."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
FORBIDDEN = re.compile(r"get_adapter\(|\.lake\b|\.runs\.|\.pool\b|\bctx\.ops\b|svc\.ops\.|svc\.operations\b")


def test_web_modules_reach_storage_and_adapters_only_through_the_handle() -> None:
    """No module of web/ names the registry's adapters, the lake, the run store or the client pool."""
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(WEB.glob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert hits == []
