"""configure_logging: JSON lines off a TTY, a console renderer on one, stdlib loggers included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from dccd.logging import configure_logging


class Tty(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def emit() -> None:
    """Log through structlog and through two stdlib loggers, one with an exception."""
    structlog.get_logger("dccd.test").info("part.written", rows=3, path="x.parquet")
    logging.getLogger("hypercorn.error").warning("Running on %s", "http://127.0.0.1:8080")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("litestar").exception("handler.failed")
    logging.getLogger("httpx").info("hidden: httpx is quieted to WARNING")


def test_json_when_not_a_tty() -> None:
    """Off a TTY every line is a JSON object, for structlog and stdlib loggers alike."""
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    emit()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["logger"], r["level"], r["event"]) for r in lines] == [
        ("dccd.test", "info", "part.written"),
        ("hypercorn.error", "warning", "Running on http://127.0.0.1:8080"),
        ("litestar", "error", "handler.failed"),
    ]
    assert (lines[0]["rows"], lines[0]["path"]) == (3, "x.parquet")
    assert all(r["timestamp"].endswith("Z") for r in lines)
    assert "RuntimeError: boom" in lines[2]["exception"]


def test_level_filters() -> None:
    """Records below the configured level are dropped."""
    out = io.StringIO()
    configure_logging("WARNING", json=True, stream=out)
    emit()
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "Running on http://127.0.0.1:8080",
        "handler.failed",
    ]


def test_console_on_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    """On a TTY lines are human-readable, not JSON, and tracebacks go to that stream (not stdout)."""
    out = Tty()
    configure_logging("INFO", stream=out)
    emit()
    text = out.getvalue()
    assert "part.written" in text and "Running on http://127.0.0.1:8080" in text and "handler.failed" in text
    assert "boom" in text  # the traceback, rendered into the log stream
    for line in text.splitlines():
        with pytest.raises(ValueError):
            json.loads(line)
    assert capsys.readouterr().out == ""


def test_forced_console_without_colors() -> None:
    """json=False on a non-TTY stream gives plain console lines without ANSI colour codes."""
    out = io.StringIO()
    configure_logging("INFO", json=False, stream=out)
    structlog.get_logger("dccd.test").info("ws.connected", exchange="binance")
    text = out.getvalue()
    assert "ws.connected" in text and "exchange=binance" in text
    assert "\x1b[" not in text


def test_reconfigure_replaces_the_handler() -> None:
    """Calling configure_logging again swaps the output instead of duplicating lines."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(stream=second)
    logging.getLogger("hypercorn.error").warning("once")
    assert first.getvalue() == ""
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["once"]
