from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .natsserver import NatsServer, running_nats


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path / "jetstream") as server:
        yield server
