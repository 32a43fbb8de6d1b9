"""The dccd_archive_* metric families count ArchiveFetched events, and the event survives the SSE encoding."""

from __future__ import annotations

import msgspec
from dccd.actors.messages import ArchiveFetched, decode_event
from dccd.web.metrics import WebMetrics


def test_archive_metrics_and_event_encoding() -> None:
    """Files by result, bytes and rows per exchange; the event round-trips as JSON (SSE /api/v1/events)."""
    metrics = WebMetrics()
    ev = ArchiveFetched("r1", "binance", "/data/x.zip", "verified", 1000, 50, 1, 3, 1000)
    metrics.on_event(ev)
    metrics.on_event(ArchiveFetched("r1", "binance", "/data/y.zip", "missing", 0, 0, 2, 3, 1000))
    text = metrics.render().decode()
    assert 'dccd_archive_files_total{exchange="binance",result="verified"} 1.0' in text
    assert 'dccd_archive_files_total{exchange="binance",result="missing"} 1.0' in text
    assert 'dccd_archive_bytes_total{exchange="binance"} 1000.0' in text
    assert 'dccd_archive_rows_total{exchange="binance"} 50.0' in text
    assert decode_event(msgspec.json.encode(ev)) == ev
