"""Live streams end to end: the service's stream operations against the fake Binance WS + REST.

Loopback tests run both fakes on 127.0.0.1 in real time. Timing tests use the
fakes' in-memory front-ends (``FakeBinanceWs.connect``, ``FakeBinance.mock_transport``)
under ``autojump_clock``; the REST fake's clock follows the WebSocket tape, so
REST serves exactly the trades the stream has pushed so far (``source="shared"``).
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import trio
from dccd.actors import Batch, OverflowRecorded, open_service
from dccd.actors.streams import StreamOptions

from dccd.config import Config, ExchangeSettings, Storage
from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.domain.backoff import RestartPolicy
from dccd.errors import NoCapability, UnsupportedSymbol
from dccd.ops import StreamRequest
from dccd.storage.lake import Lake
from dccd.storage.runs import RunStore
from tests.fake.binance import DEFAULT_MARKETS, FakeBinance, Faults, open_fake_binance
from tests.fake.binance_data import FakeMarket
from tests.fake.binance_ws import FakeBinanceWs, open_fake_binance_ws
from tests.fake.tape import TAPE_EPOCH_MS, TAPE_STEP_MS, candle_at, depth_book

from .conftest import EventLog

BTC = Symbol("BTC", "USDT")
STEADY = RestartPolicy(initial_s=0.5, jitter=0.0)


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Writer offload on the Trio thread: a worker thread would let autojump_clock race ahead meanwhile."""
    return fn(*args)


def opts(**kw: Any) -> StreamOptions:
    """StreamOptions for autojump_clock tests (the writer writes inline)."""
    kw.setdefault("writer", {"max_rows": 100_000, "max_age_s": 2.0, "high": 8, "offload": inline})
    return StreamOptions(**kw)


def tape_clock(ws: FakeBinanceWs) -> Callable[[], float]:
    """Unix seconds at which the REST tape's head is the trade the WebSocket fake pushes now."""

    def clock() -> float:
        rate = ws.rate_per_s
        head = float(ws._head) if rate is None else ws.first_id + (trio.current_time() - ws.t0) * rate
        return (TAPE_EPOCH_MS + head * TAPE_STEP_MS) / 1000

    return clock


def config(root: Path, rest_url: str, ws_url: str) -> Config:
    return Config(
        storage=Storage(path=str(root)),
        exchanges={"binance": ExchangeSettings(rest_url=rest_url, ws_url=ws_url, rate_limit=0.0)},
    )


def trades_req(*symbols: Symbol) -> StreamRequest:
    return StreamRequest("binance", symbols or (BTC,), DataType.TRADES)


def stored_ids(root: Path, symbol: Symbol = BTC) -> list[int]:
    table = Lake(root).read_table(DatasetId("binance", symbol, DataType.TRADES)).table
    return [int(i) for i in table.column("id").to_pylist()]


def raw_ids(root: Path) -> list[int]:
    """Ids in every trade part on disk, duplicates included (reads deduplicate; this does not)."""
    out: list[int] = []
    for part in sorted((root / "trades").rglob("*.parquet")):
        out.extend(int(i) for i in pq.read_table(part, columns=["id"]).column("id").to_pylist())
    return out


@asynccontextmanager
async def in_memory(
    root: Path,
    ws_opts: dict[str, Any],
    options: StreamOptions,
    events: EventLog | None = None,
    markets: tuple[FakeMarket, ...] = DEFAULT_MARKETS,
    **rest_opts: Any,
) -> AsyncIterator[tuple[Any, FakeBinanceWs, FakeBinance]]:
    """A service streaming from the fakes' in-memory front-ends (for autojump_clock tests)."""
    async with open_fake_binance_ws(**ws_opts) as ws:
        rest = FakeBinance(markets=markets, source="shared", clock=tape_clock(ws), faults=Faults(**rest_opts))
        async with open_service(
            config(root, "http://rest.invalid", "ws://ws.invalid"),
            storage_offload=inline,  # the lake and run history on the Trio thread: autojump_clock cannot race them
            on_event=events,
            client_options={"transport": rest.mock_transport()},
            stream_options={
                "connect": ws.connect,
                "options": options,
                "backoff": STEADY,
                "rand": random.Random(1).random,
                "now_ns": lambda: round(trio.current_time() * 1e9),
            },
        ) as svc:
            yield svc, ws, rest


# --- the acceptance scenario, over loopback ---------------------------------------------------------


async def test_drops_and_a_skipped_window_leave_no_hole(tmp_path: Path) -> None:
    """5,000+ trades, two abrupt drops and one skipped id window: the lake holds every id once; the run lists it all."""
    options = {"backoff": RestartPolicy(initial_s=0.05, jitter=0.0), "options": StreamOptions(settle_s=0.2)}
    async with (
        open_fake_binance_ws(rate_per_s=2500, drop_after=1500, fault_connections=2) as ws,
        open_fake_binance(source="shared", clock=tape_clock(ws)) as rest,
        open_service(config(tmp_path, rest.url, ws.url), stream_options=options) as svc,
    ):
        sid = await svc.start_stream(trades_req())
        stream = svc.streams.get(sid)
        tracker = stream.recording.symbols[BTC].tracker
        with trio.fail_after(15):
            while tracker.last is None:
                await trio.sleep(0.01)
            first = tracker.last
            ws.skip_ids = (first + 2800, first + 2900)
            while tracker.last < first + 5200 or stream.reconnects < 2 or tracker.missing or stream.repairs.filling:
                await trio.sleep(0.05)
        assert await svc.stop_stream(sid)
        (info,) = svc.list_streams()
    ids = stored_ids(tmp_path)
    assert ids == list(range(ids[0], ids[-1] + 1)) and len(ids) >= 5200
    assert sorted(raw_ids(tmp_path)) == ids  # exactly once on disk, not just after deduplicating reads
    record = RunStore(tmp_path).get(sid)
    assert record is not None and (record.operation, record.state, record.rows_written) == (
        "stream",
        "succeeded",
        len(ids),
    )
    events = RunStore(tmp_path).events(sid)
    assert [e.kind for e in events].count("reconnect") == 2
    assert not [e for e in events if e.kind == "gap"]
    filled = [(e.lo, e.hi) for e in events if e.kind == "filled"]
    assert any(lo <= first + 2800 and first + 2899 <= hi for lo, hi in filled)
    assert sum(hi - lo + 1 for lo, hi in filled) == stream.rows_refilled
    assert (info.state, info.reconnects, info.gaps_filled, info.gaps_open) == ("stopped", 2, len(filled), 0)
    assert info.rows == len(ids) and info.messages >= len(ids) - stream.rows_refilled


async def test_a_probe_on_the_stream_output_sees_the_batches_the_writer_receives(tmp_path: Path) -> None:
    """The actor graph is made of observables: a probe subscribed to a running stream's output (over loopback)
    sees exactly the batches its writer accepts (the same objects, in order) and the hub tap publishes."""
    async with (
        open_fake_binance_ws(rate_per_s=2000) as ws,
        open_fake_binance(source="shared", clock=tape_clock(ws)) as rest,
        open_service(config(tmp_path, rest.url, ws.url)) as svc,
    ):
        probe: list[Batch] = []
        received: list[Batch] = []

        def attach(stream: Any) -> None:  # before the stream's actors start: nothing can pass unseen
            stream.recording.batches.subscribe(on_next=probe.append)
            stream.writer.accepted.subscribe(on_next=received.append)

        svc.streams.started.subscribe(on_next=attach)
        async with svc.hub.subscribe(("trades", "binance", "BTC/USDT"), maxlen=100_000) as tap:
            sid = await svc.start_stream(trades_req())
            with trio.fail_after(15):
                while sum(b.rows for b in received) < 3000 or len(received) != len(probe):
                    await trio.sleep(0.01)
            assert len(probe) >= 2 and all(a is b for a, b in zip(probe, received, strict=True))
            published = []
            while len(published) < len(probe):
                published.append(tap.receive_nowait())
            assert all(a is b for a, b in zip(probe, published, strict=True))
        seen = [int(t.id) for b in probe for t in b.records]
        assert seen == list(range(seen[0], seen[-1] + 1))
        assert await svc.stop_stream(sid)
    ids = stored_ids(tmp_path)
    assert ids[: len(seen)] == seen


# --- connection behaviour, exact times ------------------------------------------------------------


async def test_silent_connection_is_replaced_by_the_watchdog(tmp_path: Path, autojump_clock: Any) -> None:
    """No frame for watchdog_s: the connection is dropped at exactly last frame + 5 s, back 0.5 s later, hole refilled."""
    options = opts(watchdog_s=5.0, settle_s=0.5)
    async with in_memory(tmp_path, {"rate_per_s": 10, "silent_after": 30}, options) as (svc, ws, _):
        sid = await svc.start_stream(trades_req())
        stream = svc.streams.get(sid)
        tracker = stream.recording.symbols[BTC].tracker
        while tracker.last is None:
            await trio.sleep(0.01)
        first = tracker.last
        await trio.sleep_until(ws.due_at(first + 29) + 12)
        assert stream.feeds[0].handle.stats.watchdog_trips == 1
        await svc.stop_stream(sid)
    (reconnect,) = [e for e in RunStore(tmp_path).events(sid) if e.kind == "reconnect"]
    dropped_at = ws.due_at(first + 29) + 5.0
    assert reconnect.lo == pytest.approx(dropped_at * 1e9, abs=1e3)
    assert reconnect.hi == pytest.approx((dropped_at + 0.5) * 1e9, abs=1e3)
    assert "no frame for 5s" in reconnect.detail
    ids = stored_ids(tmp_path)
    assert ids == list(range(first, ids[-1] + 1)) and ids[-1] > first + 80


async def test_pending_rows_leave_every_flush_s_on_the_trio_clock(tmp_path: Path, autojump_clock: Any) -> None:
    """The flush window is an Rx interval on the TrioScheduler: at 10 trades/s and flush_s=0.25, a batch leaves
    on a 0.25 s grid exactly, 2-3 trades each, consecutive ids."""
    async with in_memory(tmp_path, {"rate_per_s": 10}, opts(flush_s=0.25)) as (svc, _ws, _):
        out: list[tuple[float, Batch]] = []
        svc.streams.started.subscribe(
            on_next=lambda s: s.recording.batches.subscribe(on_next=lambda b: out.append((trio.current_time(), b)))
        )
        sid = await svc.start_stream(trades_req())
        await trio.sleep(5)
        await svc.stop_stream(sid)
    ticks = [(t - out[0][0]) / 0.25 for t, _ in out]
    assert len(out) >= 15 and all(abs(k - round(k)) < 1e-6 for k in ticks)
    assert all(b.rows in (2, 3) for _, b in out[1:])
    ids = [int(t.id) for _, b in out for t in b.records]
    assert ids == list(range(ids[0], ids[-1] + 1))


async def test_rotation_overlap_is_deduplicated(tmp_path: Path, autojump_clock: Any) -> None:
    """Rotating every 10 s with 2 s overlap: both connections deliver the same trades, each id is stored once, no refill."""
    options = opts(rotate_after_s=10.0, overlap_s=2.0)
    async with in_memory(tmp_path, {"rate_per_s": 10}, options) as (svc, ws, rest):
        sid = await svc.start_stream(trades_req())
        stream = svc.streams.get(sid)
        await trio.sleep(25)
        tracker = stream.recording.symbols[BTC].tracker
        assert stream.feeds[0].handle.stats.rotations == 2
        assert tracker.duplicates >= 2 * 19  # ~2 s of the tape arrived twice, twice
        assert ws.connections == 3
        await svc.stop_stream(sid)
    assert rest.count("/api/v3/historicalTrades") == 0
    ids = stored_ids(tmp_path)
    assert raw_ids(tmp_path) == ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 240
    info = stream.info()
    assert (info.reconnects, info.gaps_filled, info.gaps_open) == (0, 0, 0)


async def test_server_shutdown_notice_rotates_without_loss(tmp_path: Path, autojump_clock: Any) -> None:
    """serverShutdown: a replacement connection opens at once and overlaps the old one; nothing lost, nothing refilled."""
    async with in_memory(tmp_path, {"rate_per_s": 10, "shutdown_after": 30}, opts(overlap_s=2.0)) as (svc, ws, rest):
        sid = await svc.start_stream(trades_req())
        stream = svc.streams.get(sid)
        await trio.sleep(10)
        assert (ws.connections, stream.feeds[0].handle.stats.rotations) == (2, 1)
        assert stream.recording.symbols[BTC].tracker.duplicates >= 19
        await svc.stop_stream(sid)
    ids = stored_ids(tmp_path)
    assert ws.opened_at[1] == pytest.approx(ws.due_at(ids[0] + 30), abs=1e-9)  # the notice came with frame 31
    assert rest.count("/api/v3/historicalTrades") == 0 and stream.reconnects == 0
    assert raw_ids(tmp_path) == ids == list(range(ids[0], ids[-1] + 1))


async def test_subscribes_beyond_the_url_are_paced(tmp_path: Path, autojump_clock: Any) -> None:
    """600 kline streams: those past the URL limit go in SUBSCRIBEs 0.25 s apart; the fake's 5 msg/s guard never fires."""
    markets = tuple(FakeMarket(f"C{i:03d}USDT", f"C{i:03d}", "USDT", TAPE_EPOCH_MS) for i in range(600))
    symbols = tuple(Symbol(m.base, m.quote) for m in markets)
    req = StreamRequest("binance", symbols, DataType.OHLC, Span("1h"))
    async with in_memory(tmp_path, {"rate_per_s": 0.1}, opts(), markets=markets) as (svc, ws, _):
        sid = await svc.start_stream(req)
        stream = svc.streams.get(sid)
        await trio.sleep(2)
        subscribes = [(t - ws.opened_at[0], json.loads(text)) for t, _, text in ws.received]
        assert (ws.connections, stream.acks) == (1, len(subscribes))
        await svc.stop_stream(sid)
    assert [round(t, 9) for t, _ in subscribes] == [0.25 * k for k in range(len(subscribes))]
    in_url = ws.paths[0].split("streams=")[1].split("/")
    subscribed = [p for _, msg in subscribes for p in msg["params"]]
    assert len(subscribes) >= 2 and sorted(in_url + subscribed) == sorted(f"c{i:03d}usdt@kline_1h" for i in range(600))


async def test_a_range_rest_cannot_fill_is_recorded_as_a_gap(tmp_path: Path, autojump_clock: Any) -> None:
    """The refill request fails: the skipped ids become a 'gap' event with their bounds, counted as dropped rows."""
    async with in_memory(tmp_path, {"rate_per_s": 10, "skip_ids": (40, 50)}, opts(settle_s=0.5), errors={2: 400}) as (
        svc,
        _,
        rest,
    ):
        sid = await svc.start_stream(trades_req())
        await trio.sleep(10)
        (stats,) = [s for s in svc.actor_statistics() if s.name == f"stream:{sid}"]
        info = svc.list_streams()[0]
        await svc.stop_stream(sid)
    (gap,) = [e for e in RunStore(tmp_path).events(sid) if e.kind == "gap"]
    assert (gap.lo, gap.hi) == (40, 49) and "refill failed" in gap.detail and "BTC/USDT" in gap.detail
    assert (info.gaps_open, info.gaps_filled, stats.metrics.drops) == (1, 0, 10)
    ids = stored_ids(tmp_path)
    assert set(range(ids[0], ids[-1] + 1)) - set(ids) == set(range(40, 50))
    assert rest.requests[1].path == "/api/v3/historicalTrades" and rest.requests[1].params["fromId"] == "40"


async def test_ingress_overflow_becomes_a_refilled_hole(tmp_path: Path, autojump_clock: Any, events: EventLog) -> None:
    """A writer stalled for 12 s: the bounded ingress drops rows (recorded), the refill puts them back; nothing missing."""
    stalls = [6.0, 6.0]

    async def slow_offload(fn: Callable[..., Any], *args: Any) -> Any:
        await trio.sleep(stalls.pop(0) if stalls else 0.0)
        return fn(*args)

    writer = {"max_rows": 40, "max_age_s": 1.0, "high": 1, "offload": slow_offload}  # stalls, then inline
    options = opts(ingress_rows=20, batch_rows=10, flush_s=0.5, settle_s=0.5, writer=writer)
    async with in_memory(tmp_path, {"rate_per_s": 10}, options, events) as (svc, _, _):
        sid = await svc.start_stream(trades_req())
        stream = svc.streams.get(sid)
        await trio.sleep(30)
        await svc.stop_stream(sid)
    assert stream.recording.dropped_rows > 50
    assert events.of(OverflowRecorded)
    ids = stored_ids(tmp_path)
    assert ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 250
    kinds = [e.kind for e in RunStore(tmp_path).events(sid)]
    assert "filled" in kinds and "gap" not in kinds


# --- OHLC and books ---------------------------------------------------------------------------------


async def test_ohlc_stores_closed_bars_only_and_refills_missing_ones(tmp_path: Path, autojump_clock: Any) -> None:
    """1 s bars: only closed bars are stored, equal to the tape; 3 bars never closed on the stream come from REST."""
    req = StreamRequest("binance", (BTC,), DataType.OHLC, Span("1s"))
    async with in_memory(tmp_path, {"rate_per_s": 10, "skip_ids": (100, 130)}, opts(settle_s=0.5)) as (svc, _, _):
        sid = await svc.start_stream(req)
        await trio.sleep(25)
        await svc.stop_stream(sid)
    rows = Lake(tmp_path).read_table(DatasetId("binance", BTC, DataType.OHLC, Span("1s"))).table.to_pylist()
    opens = [r["ts"] for r in rows]
    assert opens == list(range(opens[0], opens[-1] + 1, 1_000_000_000)) and len(opens) >= 20
    for r in rows:
        c = candle_at("BTCUSDT", 1000, r["ts"] // 1_000_000)
        assert c is not None and c.trades == 10  # a whole bar, never an in-progress update
        assert (r["open"], r["close"], r["volume"], r["trades"]) == (float(c.open), float(c.close), float(c.volume), 10)
    (filled,) = [e for e in RunStore(tmp_path).events(sid) if e.kind == "filled"]
    bar = (TAPE_EPOCH_MS + 10_000) * 1_000_000
    assert (filled.lo, filled.hi) == (bar, bar + 2_000_000_000)


async def test_book_snapshots_follow_the_synced_local_book(tmp_path: Path, autojump_clock: Any) -> None:
    """A REST snapshot plus @depth diffs: every 1 s snapshot equals the reference book at its seq, across a resync."""
    req = StreamRequest("binance", (BTC,), DataType.BOOK)
    options = opts(book_depth=20, settle_s=0.5)
    async with in_memory(tmp_path, {"rate_per_s": 10, "skip_ids": (60, 70)}, options) as (svc, _, rest):
        sid = await svc.start_stream(req)
        await trio.sleep(15)
        stream = svc.streams.get(sid)
        await svc.stop_stream(sid)
    assert stream.recording.book_resyncs == 1 and rest.count("/api/v3/depth") == 2
    rows = Lake(tmp_path).read_table(DatasetId("binance", BTC, DataType.BOOK)).table.to_pylist()
    snapshots: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        snapshots.setdefault(r["ts"], []).append(r)
    assert len(snapshots) >= 12
    for ts, levels in snapshots.items():
        (seq,) = {r["seq"] for r in levels}
        update_id, bids = depth_book("BTCUSDT", (seq - 3) // 3 * 5)
        assert update_id == seq
        best = sorted(((float(p), float(q)) for p, q in bids.items()), reverse=True)[:20]
        assert sorted(((r["price"], r["amount"]) for r in levels if r["side"] == "bid"), reverse=True) == best
        tape_ns = (TAPE_EPOCH_MS + (seq - 3) // 3 * 5 * TAPE_STEP_MS) * 1_000_000
        assert ts == tape_ns or ts > 1_750_000_000 * 10**9  # the last diff's time, or the REST snapshot's receipt


# --- live taps, errors, lifecycle ---------------------------------------------------------------------


async def test_batches_are_published_on_the_hub(tmp_path: Path, autojump_clock: Any) -> None:
    """Subscribers of ("trades", "binance", "BTC/USDT") get the stream's batches, in order."""
    async with in_memory(tmp_path, {"rate_per_s": 10}, opts()) as (svc, _, _):
        async with svc.hub.subscribe(("trades", "binance", "BTC/USDT")) as sub:
            sid = await svc.start_stream(trades_req())
            got: list[int] = []
            while len(got) < 30:
                item = await sub.receive()
                assert isinstance(item, Batch) and item.transport == "ws"
                got.extend(int(t.id) for t in item.records)
        await svc.stop_stream(sid)
    assert got == list(range(got[0], got[0] + len(got)))


async def test_refused_subscription_fails_the_run(tmp_path: Path, autojump_clock: Any) -> None:
    """An error reply to a control message ends the stream: run failed with the exchange's message."""
    script = tmp_path / "script.rec"
    script.write_text('1.0: {"error":{"code":2,"msg":"Invalid request: too many streams"},"id":1}\n')
    async with in_memory(tmp_path / "lake", {"replay": script}, opts()) as (svc, _, _):
        sid = await svc.start_stream(trades_req())
        stream = svc.streams.get(sid)
        await stream.done.wait()
        assert await svc.stop_stream(sid) is False
    record = RunStore(tmp_path / "lake").get(sid)
    assert record is not None and record.state == "failed" and "too many streams" in (record.error or "")
    assert stream.info().state == "failed"


async def test_bad_requests_fail_before_any_run(tmp_path: Path, autojump_clock: Any) -> None:
    """Funding (not streamed) and an unlisted symbol are refused before a run or a connection exists."""
    async with in_memory(tmp_path, {"rate_per_s": 10}, opts()) as (svc, ws, _):
        with pytest.raises(NoCapability):
            await svc.start_stream(StreamRequest("binance", (BTC,), DataType.FUNDING))
        with pytest.raises(UnsupportedSymbol):
            await svc.start_stream(trades_req(Symbol("NOPE", "USDT")))
        assert svc.list_streams() == [] and ws.connections == 0
    assert RunStore(tmp_path).list_runs() == []


async def test_stop_and_shutdown_end_the_run(tmp_path: Path, autojump_clock: Any) -> None:
    """stop_stream: succeeded, listed as stopped; a stream still running when the service closes: cancelled."""
    async with in_memory(tmp_path, {"rate_per_s": 10}, opts()) as (svc, _, _):
        first = await svc.start_stream(trades_req())
        second = await svc.start_stream(trades_req(BTC, Symbol("ETH", "BTC")))
        await trio.sleep(3)
        assert {i.state for i in svc.list_streams()} == {"connected"}
        assert await svc.stop_stream(first) is True
        assert await svc.stop_stream(first) is False
        assert [(i.id, i.state) for i in svc.list_streams()] == [(first, "stopped"), (second, "connected")]
    runs = RunStore(tmp_path)
    assert runs.get(first).state == "succeeded"  # type: ignore[union-attr]
    second_run = runs.get(second)
    assert second_run is not None and second_run.state == "cancelled" and second_run.symbol == "BTC/USDT,ETH/BTC"
    assert stored_ids(tmp_path, Symbol("ETH", "BTC"))
