"""A stream started over a lake that already holds the exchange's recent trades continues after them.

Between two runs of a stream (a restart of ``dccd serve``, a crash, a shard taking over a dead shard's
streams) nobody records: with consecutive trade ids the first live id proves the hole, and the stream
refills it over REST from the newest stored trade. With ``resume_window_s=0`` it does not (the control
case: the hole stays).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
import trio
from dccd.actors import open_service
from dccd.actors.streams import StreamOptions

from dccd.domain.backoff import RestartPolicy
from dccd.ops import parse_stream
from dccd.storage import RunStore
from tests.e2e.helpers import raw_rows
from tests.e2e.test_streams_exchanges import SEQUENTIAL, Case, config
from tests.fake import coinbase as fcb
from tests.fake import kraken as fkr
from tests.fake.exchange import WsFaults


async def _record(case: Case, tmp_path: Path, skip: tuple[int, int], until_index: int, resume_s: float) -> str:
    """One run of a trades stream whose WS fake never pushes tape ids in ``skip``; stops without a tail fill
    once it has seen tape trade ``until_index``."""
    options = {
        "backoff": RestartPolicy(initial_s=0.05, jitter=0.0),
        "options": StreamOptions(settle_s=0.2, stop_refill_s=0.0, resume_window_s=resume_s),
    }
    factory = {"coinbase": fcb.FakeCoinbaseWs, "kraken": fkr.FakeKrakenWs}[case.name]
    async with (
        case.serve(case.rest()) as rest,
        case.run_ws(factory(rate_per_s=1000, faults=WsFaults(skip_ids=skip))) as ws,
        open_service(config(tmp_path, case.name, rest.url, ws.url), stream_options=options) as svc,
    ):
        req = parse_stream(case.name, [case.symbol], "trades", known_exchanges=[case.name])
        sid = await svc.start_stream(req)
        stream = svc.streams.get(sid)
        with trio.fail_after(30):
            (st,) = stream.recording.symbols.values()
            while st.tracker.last is None or case.index(str(st.tracker.last)) < until_index:
                await trio.sleep(0.05)
            await trio.sleep(0.5)  # a settle period: a hole (if any) is claimed and refilled
            while stream.repairs.filling:
                await trio.sleep(0.05)
        assert await svc.stop_stream(sid)
    return sid


@pytest.mark.parametrize("resume", [True, False], ids=["resume", "no-resume"])
@pytest.mark.parametrize("case", SEQUENTIAL, ids=lambda c: c.name)
async def test_a_restarted_stream_refills_what_nobody_recorded(case: Case, resume: bool, tmp_path: Path) -> None:
    await _record(case, tmp_path, skip=(300, 10**9), until_index=299, resume_s=3600.0)  # then silence
    index = sorted(case.index(str(tid)) for _, tid in raw_rows(tmp_path, "trades", "ts, id", order="ts, id"))
    last = index[-1]
    with structlog.testing.capture_logs() as logs:
        sid = await _record(case, tmp_path, skip=(0, 2000), until_index=2100, resume_s=3600.0 if resume else 0.0)
    index = sorted(case.index(str(tid)) for _, tid in raw_rows(tmp_path, "trades", "ts, id", order="ts, id"))
    refills = [case.index(str(e["first_id"])) for e in logs if e["event"] == "stream.refilling"]
    resumed = [e for e in logs if e["event"] == "stream.resumed"]
    if resume:
        assert [case.index(str(e["after_id"])) for e in resumed] == [last]
        assert refills[0] == last + 1  # the hole starts right after the newest stored trade
        assert len(index) == len(set(index))  # nothing written twice
        assert sorted(set(range(index[0], index[-1] + 1)) - set(index)) == []
        events = RunStore(tmp_path).events(sid)
        assert any("trades refilled" in e.detail for e in events if e.kind == "filled"), events
    else:
        assert resumed == [] and last + 1 not in refills  # the live feed alone decides where it starts
