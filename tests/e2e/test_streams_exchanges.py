"""Live trade streams end to end through the real service for every other exchange, over two abrupt drops.

Each case serves the exchange's fake REST and WebSocket on 127.0.0.1 (rate
limit 0), starts a trade stream with ``open_service(...).start_stream``, lets
the fake cut TCP (no close frame) on its first two connections, stops the
stream and reads the lake raw with DuckDB (every part, no deduplication).
Trades are mapped back to the fake's tape index from their ids, so a missing or
duplicated trade shows. Exchanges with consecutive, refillable ids must hold
every trade between the first and last stored; the others must have recorded
each missing range as a ``gap`` (or ``filled``) run event whose time bounds
contain the missing trades.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from dccd.actors import open_service
from dccd.actors.streams import StreamOptions

from dccd.config import Config, ExchangeSettings, Storage
from dccd.domain.backoff import RestartPolicy
from dccd.ops import parse_stream
from dccd.sources import get_adapter
from dccd.storage import RunStore
from tests.e2e.helpers import raw_rows
from tests.fake import bitfinex as fbf
from tests.fake import bitmex as fbm
from tests.fake import bybit as fby
from tests.fake import coinbase as fcb
from tests.fake import kraken as fkr
from tests.fake import okx as fok
from tests.fake import tape
from tests.fake.exchange import WsFaults, open_rest, open_ws
from tests.fake.venue import running, serving

NOW_S = tape.TAPE_EPOCH_MS / 1000 + 86_400  # the REST fakes' clock: a day of tape has traded, refills are served
BYBIT_ID0 = 2_100_000_000_000_000_000  # spot trade id of tape trade 0 in the fake


def uuid_index(tid: str) -> int:
    """Tape index of the fakes' UUID-shaped trade ids (``00000000-0000-4000-8000-{k:012d}``)."""
    return int(tid.rsplit("-", 1)[1])


@dataclass(frozen=True)
class Case:
    """One exchange: its fakes, the symbol streamed and how a stored id maps back to the fake's tape."""

    name: str
    symbol: str
    rest: Callable[[], Any]
    serve: Callable[[Any], AbstractAsyncContextManager[Any]]
    ws: Callable[[], Any]  # drops TCP on its first two connections
    run_ws: Callable[[Any], AbstractAsyncContextManager[Any]]
    index: Callable[[str], int]  # stored trade id -> tape index
    loses: bool = False  # each drop surely loses a trade (the venue fakes never re-send the step they cut)


def exchange_ws(factory: Callable[..., Any]) -> Callable[[], Any]:
    """A Coinbase/Kraken/Bitfinex WS fake at 200 trades/s dropping its first two connections after 100 frames."""
    return lambda: factory(rate_per_s=200, faults=WsFaults(drop_after=100, fault_connections=2))


def venue_ws(factory: Callable[..., Any]) -> Callable[[], Any]:
    """A Bybit/OKX/BitMEX WS fake at 200 steps/s dropping its first two connections after 100 frames."""
    return lambda: factory(rate_per_s=200, drop_after=100, fault_connections=2)


CASES = [
    Case("coinbase", "BTC/USD", lambda: fcb.FakeCoinbase(clock=lambda: NOW_S), open_rest,
         exchange_ws(fcb.FakeCoinbaseWs), open_ws, int),
    Case("kraken", "BTC/USD", lambda: fkr.FakeKraken(clock=lambda: NOW_S), open_rest,
         exchange_ws(fkr.FakeKrakenWs), open_ws, lambda tid: int(tid) - 1),
    Case("bitfinex", "BTC/USDT", lambda: fbf.FakeBitfinex(clock=lambda: NOW_S), open_rest,
         exchange_ws(fbf.FakeBitfinexWs), open_ws, lambda tid: (int(tid) - 1) // 8),
    Case("bybit", "BTC/USDT", lambda: fby.FakeBybit(clock=lambda: NOW_S), serving,
         venue_ws(fby.FakeBybitWs), running, lambda tid: int(tid) - BYBIT_ID0, True),
    Case("okx", "BTC/USDT", lambda: fok.FakeOkx(clock=lambda: NOW_S), serving,
         venue_ws(fok.FakeOkxWs), running, lambda tid: int(tid) - fok.TRADE_ID0, True),
    Case("bitmex", "BTC/USDT", lambda: fbm.FakeBitmex(clock=lambda: NOW_S), serving,
         venue_ws(fbm.FakeBitmexWs), running, uuid_index, True),
]  # fmt: skip


def config(root: Path, name: str, rest_url: str, ws_url: str) -> Config:
    """The lake at ``root`` and exchange ``name`` at the fakes, unthrottled."""
    settings = ExchangeSettings(rest_url=rest_url, ws_url=ws_url, rate_limit=0.0)
    return Config(storage=Storage(path=str(root)), exchanges={name: settings})


def covered(ts: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether ``ts`` lies in one of the inclusive ``ranges``."""
    return any(lo <= ts <= hi for lo, hi in ranges)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_two_abrupt_drops_lose_nothing_unrecorded(case: Case, tmp_path: Path) -> None:
    """Two TCP drops mid-stream: no trade stored twice; each missing trade refilled or inside a recorded gap; 2 reconnects."""
    options = {"backoff": RestartPolicy(initial_s=0.05, jitter=0.0), "options": StreamOptions(settle_s=0.2)}
    sequential = bool(getattr(get_adapter(case.name), "sequential_trade_ids", False))
    fake_ws = case.ws()
    async with (
        case.serve(case.rest()) as rest,
        case.run_ws(fake_ws) as ws,
        open_service(config(tmp_path, case.name, rest.url, ws.url), stream_options=options) as svc,
    ):
        req = parse_stream(case.name, [case.symbol], "trades", known_exchanges=[case.name])
        sid = await svc.start_stream(req)
        stream = svc.streams.get(sid)
        with trio.fail_after(15):
            while stream.reconnects < 2 or stream.recording.rows_received < 450:
                await trio.sleep(0.05)
            await trio.sleep(0.5)  # holes settle (0.2 s) and get refilled
            while stream.repairs.filling or any(
                st.tracker is not None and st.tracker.missing for st in stream.recording.symbols.values()
            ):
                await trio.sleep(0.05)
        assert await svc.stop_stream(sid)
        (info,) = svc.list_streams()
    rows = raw_rows(tmp_path, "trades", "ts, id", order="ts, id")
    ids = [str(tid) for _, tid in rows]
    assert len(ids) == len(set(ids)) >= 450  # exactly once on disk, not just after deduplicating reads
    ts_of = {case.index(tid): ts for ts, tid in rows}
    missing = sorted(set(range(min(ts_of), max(ts_of) + 1)) - set(ts_of))
    events = RunStore(tmp_path).events(sid)
    assert [e.kind for e in events].count("reconnect") == 2 and info.reconnects == 2
    if case.loses:  # the two cut steps: refilled by id, or missing (and covered by gaps below)
        lost = 2 * (fbm.WS_BATCH if case.name == "bitmex" else 1)
        filled = sum(e.hi - e.lo + 1 for e in events if e.kind == "filled" and e.lo is not None and e.hi is not None)
        assert (filled, len(missing)) == ((lost, 0) if sequential else (0, lost))
    if sequential:
        assert missing == [] and not [e for e in events if e.kind == "gap"]
        assert [e for e in events if e.kind == "filled"] or stream.rows_refilled == 0
    else:
        # Missing trades lie between two stored ones: their time is bounded by their stored neighbours'.
        gaps = [(e.lo, e.hi) for e in events if e.kind in ("gap", "filled") and e.lo is not None and e.hi is not None]
        assert bool(gaps) == bool(missing)  # a snapshot reaching back to the last trade kept proves there is no hole
        for k in missing:
            before = ts_of[max(i for i in ts_of if i < k)]
            after = ts_of[min(i for i in ts_of if i > k)]
            assert covered(before, gaps) and covered(after, gaps), (k, before, after, gaps)


SEQUENTIAL = [c for c in CASES if c.name in ("coinbase", "kraken")]


@pytest.mark.parametrize("case", SEQUENTIAL, ids=lambda c: c.name)
async def test_a_hole_of_several_rest_pages_is_refilled_completely(case: Case, tmp_path: Path) -> None:
    """2,500 ids never pushed (more than two REST pages): the refill walks the exchange's own cursor to the end.

    Kraken's REST cursor is a time (``since``), so the refill must start from the time of the trade before
    the hole; taking the id as the cursor used to loop on the first page forever and leave the hole.
    """
    options = {"backoff": RestartPolicy(initial_s=0.05, jitter=0.0), "options": StreamOptions(settle_s=0.2)}
    factory = {"coinbase": fcb.FakeCoinbaseWs, "kraken": fkr.FakeKrakenWs}[case.name]
    fake_ws = factory(rate_per_s=1000, faults=WsFaults(skip_ids=(1000, 3500)))
    async with (
        case.serve(case.rest()) as rest,
        case.run_ws(fake_ws) as ws,
        open_service(config(tmp_path, case.name, rest.url, ws.url), stream_options=options) as svc,
    ):
        req = parse_stream(case.name, [case.symbol], "trades", known_exchanges=[case.name])
        sid = await svc.start_stream(req)
        stream = svc.streams.get(sid)
        with trio.fail_after(30):
            while stream.recording.rows_received < 1500 or stream.gaps_filled < 1:
                await trio.sleep(0.05)
            while stream.repairs.filling:
                await trio.sleep(0.05)
        assert await svc.stop_stream(sid)
    rows = raw_rows(tmp_path, "trades", "ts, id", order="ts, id")
    index = sorted(case.index(str(tid)) for _, tid in rows)
    assert len(index) == len(set(index))
    assert sorted(set(range(index[0], index[-1] + 1)) - set(index)) == []
    assert index[0] < 1000 and index[-1] >= 3500
    events = RunStore(tmp_path).events(sid)
    assert not [e for e in events if e.kind == "gap"]
    assert any("2500 trades refilled" in e.detail for e in events if e.kind == "filled"), events
