"""Suite-wide fixtures: each test starts from structlog's and stdlib logging's defaults.

CLI tests run commands in-process, and every command configures logging
(``--log-level``/``--quiet``); without this reset a later test's
``structlog.testing.capture_logs`` would see nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from tests.objstore.fixtures import seaweed  # noqa: F401 (session SeaweedFS, started only by tests that ask)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
