from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from .seaweed import Seaweed


@pytest.fixture
def s3_uri(seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh lake prefix on the session's SeaweedFS; the AWS_* environment points at it, the cache under tmp."""
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return seaweed.uri(f"t-{uuid.uuid4().hex[:12]}")
