"""A graceful stop loses nothing unrecorded: pending refills finish, the blind window of a dropped connection is fetched.

Stopping a stream while it is reconnecting used to drop the trades between
the last frame and the stop, and stopping while a hole waited to settle left
the hole as a gap although REST could serve it; both runs said ``succeeded``
with nothing recorded for the blind window. Runs under ``autojump_clock``
against the in-memory fakes (REST serves exactly the tape pushed so far).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from dccd.storage.runs import RunStore
from tests.actors.test_streams import BTC, in_memory, opts, stored_ids, trades_req


async def test_stop_while_reconnecting_fetches_the_blind_window(tmp_path: Path, autojump_clock: Any) -> None:
    """Dropped after 50 trades, every reconnect refused for 6 s, then stopped: every id up to the stop is stored."""
    async with in_memory(tmp_path, {"rate_per_s": 10, "drop_after": 50}, opts()) as (svc, ws, _rest):
        sid = await svc.start_stream(trades_req())
        stream = svc.streams.get(sid)
        await trio.sleep(1.0)
        ws.refuse_left = 10**6  # the exchange's WebSocket stops accepting; REST still answers
        await trio.sleep(10.0)
        assert not stream.feeds[0].up
        head = ws.first_id + int((trio.current_time() - ws.t0) * ws.rate_per_s)
        await svc.stop_stream(sid)
        (info,) = svc.list_streams()
    ids = stored_ids(tmp_path)
    assert ids == list(range(ids[0], ids[-1] + 1))  # nothing missing, nothing twice
    assert ids[0] == 1 and ids[-1] >= head - 1 > 100
    events = RunStore(tmp_path).events(sid)
    assert not [e for e in events if e.kind == "gap"]
    assert [e for e in events if e.kind == "filled" and "stopped while disconnected" in e.detail]
    assert RunStore(tmp_path).get(sid).state == "succeeded" and info.gaps_open == 0


async def test_stop_with_a_hole_still_settling_refills_it(tmp_path: Path, autojump_clock: Any) -> None:
    """A hole that had not settled yet at the stop is refilled during the stop, not just written off as a gap."""
    async with in_memory(tmp_path, {"rate_per_s": 10, "skip_ids": (40, 50)}, opts(settle_s=1000.0)) as (svc, _, _):
        sid = await svc.start_stream(trades_req())
        await trio.sleep(8.0)
        assert svc.streams.get(sid).recording.symbols[BTC].tracker.missing
        await svc.stop_stream(sid)
    ids = stored_ids(tmp_path)
    assert ids == list(range(ids[0], ids[-1] + 1)) and 40 in ids and 49 in ids
    events = RunStore(tmp_path).events(sid)
    assert not [e for e in events if e.kind == "gap"]
    assert [(e.lo, e.hi) for e in events if e.kind == "filled"] == [(40, 49)]


async def test_stop_while_reconnecting_without_rest_records_the_window(tmp_path: Path, autojump_clock: Any) -> None:
    """REST down too: the blind window cannot be fetched, so it is a gap on the run (never a silent success)."""
    errors = {n: 500 for n in range(2, 500)}
    async with in_memory(tmp_path, {"rate_per_s": 10, "drop_after": 50}, opts(stop_refill_s=5.0), errors=errors) as (
        svc,
        ws,
        _,
    ):
        sid = await svc.start_stream(trades_req())
        await trio.sleep(1.0)
        ws.refuse_left = 10**6
        await trio.sleep(10.0)
        await svc.stop_stream(sid)
        (info,) = svc.list_streams()
    ids = stored_ids(tmp_path)
    gaps = [e for e in RunStore(tmp_path).events(sid) if e.kind == "gap"]
    assert (
        len(gaps) == 1
        and gaps[0].lo == ids[-1] + 1
        and ("from this id on" in gaps[0].detail or "to the stop" in gaps[0].detail)
    )
    assert info.gaps_open == 1
