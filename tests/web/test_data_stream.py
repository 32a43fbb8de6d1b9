"""The data route's streaming of a lake export (web/api_data.py): chunks made one ahead in worker threads."""

from __future__ import annotations

from pathlib import Path

import trio
from dccd.web.api_data import _chunks

from dccd.storage import Lake
from tests.storage.helpers import NOW, OHLC_1M, PROV, T0, bars


async def test_chunks_stream_the_whole_export(tmp_path: Path) -> None:
    """The body is the export's bytes, chunk by chunk, and the export reports its row count."""
    lk = Lake(tmp_path)
    await lk.awrite(OHLC_1M, bars(T0, 200), PROV, now_ns=NOW)
    export = lk.export(OHLC_1M, "jsonl")
    async with trio.open_nursery() as nursery:
        data = b"".join([c async for c in _chunks(export, False, nursery, str(OHLC_1M))])
    assert export.rows == 200 and data.count(b"\n") == 200 and export.plan.skipped == []


async def test_chunks_closed_early_release_the_query(tmp_path: Path) -> None:
    """A response left after its first chunk (a client that went away) stops the producer and closes the query."""
    lk = Lake(tmp_path)
    await lk.awrite(OHLC_1M, bars(T0, 5000), PROV, now_ns=NOW)
    async with trio.open_nursery() as nursery:
        body = _chunks(lk.export(OHLC_1M, "csv"), False, nursery, str(OHLC_1M))
        first = await body.__anext__()
        await body.aclose()
    assert first.startswith(b'"ts"')  # and the nursery ended: the producer did not outlive the response
