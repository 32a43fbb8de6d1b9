"""The sans-IO page walker: requests out, bytes in, pages, holes and cursor errors back (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dccd.domain import DataType, Span, Symbol, Trade
from dccd.domain.capability import Capabilities
from dccd.domain.records import Candle, Funding
from dccd.errors import NoCapability, ProtocolDrift
from dccd.sources.base import FundingPage, OhlcPage, Request, TradesPage
from dccd.sources.registry import get_adapter
from dccd.sources.walker import (
    OPEN_ID,
    CursorStuck,
    Hole,
    HoleReason,
    OhlcWalk,
    Probe,
    SeriesWalk,
    TradesWalk,
    Walk,
    ohlc_walk,
    series_calls,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance"
SYM = Symbol("BTC", "USDT")
M1 = Span("1m")
MIN = 60_000_000_000


class Scripted:
    """An adapter whose pages are JSON scripts: ``{"t": [[ts, id], ...], "next": cursor, "gaps": [[a, b]]}``."""

    name = "scripted"
    capabilities = Capabilities("scripted", ())

    def build_trades(
        self, symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
    ) -> Request:
        params = (("cursor", cursor),) if cursor is not None else (("start", str(start_ns)),)
        return Request("GET", "/trades", params, 1, "trades")

    def parse_trades(self, request: Request, body: bytes) -> TradesPage:
        page = msgspec.json.decode(body)
        if page == "bad":
            raise ProtocolDrift(self.name, "trades", "truncated - at `$`")
        trades = [Trade(ts, str(i), 1.0, 1.0) for ts, i in page["t"]]
        return TradesPage(trades, page.get("next"), tuple(tuple(g) for g in page.get("gaps", ())))  # type: ignore[misc]

    def trades_cursor_after(self, last: Trade) -> str | None:
        return None  # ids do not resume: refills start at ``str(lo)``

    def build_ohlc(
        self,
        symbol: Symbol,
        span: Span,
        start_ns: int,
        end_ns: int,
        *,
        limit: int | None = None,
        now_ns: int | None = None,
    ) -> Request:
        return Request("GET", "/ohlc", (("start", str(start_ns)), ("end", str(end_ns))), 1, "ohlc")

    def parse_ohlc(self, request: Request, body: bytes) -> OhlcPage:
        page = msgspec.json.decode(body)
        if page == "bad":
            raise ProtocolDrift(self.name, "ohlc", "truncated - at `$`")
        return OhlcPage([Candle(ts, 1, 1, 1, 1, 1) for ts in page["bars"]], page.get("next"))


def answer(**page: Any) -> bytes:
    return msgspec.json.encode(page)


def drive(walk: Walk[Any], server: Callable[[Request], bytes], max_pages: int = 50) -> tuple[list[Any], list[Request]]:
    """Run a walk against a pure ``server`` function; a walk asking more than ``max_pages`` fails (a loop)."""
    out: list[Any] = []
    asked: list[Request] = []
    while (request := walk.next_request()) is not None:
        asked.append(request)
        assert len(asked) <= max_pages, "the walk loops"
        out.extend(walk.feed(request, server(request)))
    return out, asked


def tape(pages: dict[str | None, bytes]) -> Callable[[Request], bytes]:
    """A server answering by the request's cursor (or ``None`` for the first, cursorless page)."""
    return lambda r: pages[r.param("cursor")]


def ids(trades: Sequence[Trade]) -> list[int]:
    return [int(t.id or -1) for t in trades]


def test_trades_follow_the_cursor_trim_at_the_end_id_and_clip_skipped_ids() -> None:
    """A refill walk from id floor 9 to id 15: ids outside are trimmed, skipped ids clipped, no page past the end."""
    walk = TradesWalk(Scripted(), SYM, cursor="a", stop_id=15, after_id=9)
    server = tape(
        {
            "a": answer(t=[[1, 8], [2, 10], [3, 11]], next="b", gaps=[[5, 7], [9, 9]]),
            "b": answer(t=[[4, 12], [5, 14], [6, 16], [7, 17]], next="c", gaps=[[13, 13], [15, 15]]),
        }
    )
    trades, asked = drive(walk, server)
    assert ids(trades) == [10, 11, 12, 14]
    assert [r.param("cursor") for r in asked] == ["a", "b"]
    assert walk.holes == [Hole(13, 13, HoleReason.SKIPPED), Hole(15, 15, HoleReason.SKIPPED)]
    assert (walk.after_id, walk.stuck, walk.reached_ns) == (15, None, 5)


def test_a_cursor_that_does_not_advance_is_a_cursor_error_and_the_rest_a_hole() -> None:
    """The exchange answers the same cursor again: one more request at most, a CursorStuck, the rest an id hole."""
    walk = TradesWalk(Scripted(), SYM, cursor="a", stop_id=100, after_id=9)
    server = tape({"a": answer(t=[[1, 10], [2, 11]], next="b"), "b": answer(t=[], next="b")})
    trades, asked = drive(walk, server)
    assert ids(trades) == [10, 11] and len(asked) == 2
    assert walk.stuck == CursorStuck(asked[1], "trade cursor did not advance past b", "b")
    assert walk.holes == [Hole(12, 100, HoleReason.STUCK)]


def test_a_stuck_cursor_of_an_open_walk_ends_it_too() -> None:
    """Without an id floor (a backfill walk by time) a repeated cursor still ends the walk with a CursorStuck."""
    walk = TradesWalk(Scripted(), SYM, start_ns=0, stop_ts=10**18)
    server = tape({None: answer(t=[[1, 1]], next="x"), "x": answer(t=[[2, 2]], next="x")})
    trades, asked = drive(walk, server)
    assert ids(trades) == [1, 2] and len(asked) == 2
    assert walk.stuck is not None and walk.stuck.cursor == "x" and walk.holes == []


def test_the_exchange_head_before_the_end_id_is_an_unserved_hole_and_an_open_tail_is_not() -> None:
    """Reaching the head (no next cursor) before ``stop_id`` leaves those ids unserved; a tail walk simply ends."""
    pages = tape({"a": answer(t=[[1, 10], [2, 11]], next=None)})
    closed = TradesWalk(Scripted(), SYM, cursor="a", stop_id=20, after_id=9)
    drive(closed, pages)
    assert closed.holes == [Hole(12, 20, HoleReason.UNSERVED)] and closed.ended_at_head
    tail = TradesWalk(Scripted(), SYM, cursor="a", after_id=9)
    assert ids(drive(tail, pages)[0]) == [10, 11] and tail.holes == []


def test_the_open_end_of_a_stuck_tail_is_open_id() -> None:
    """A tail walk whose cursor sticks names the rest of the tape as ``OPEN_ID``."""
    walk = TradesWalk(Scripted(), SYM, cursor="a", after_id=4)
    drive(walk, tape({"a": answer(t=[[1, 5]], next="a")}))
    assert walk.holes == [Hole(6, OPEN_ID, HoleReason.STUCK)]


def test_trades_trim_at_the_end_time_and_a_resume_drops_the_reread_instant() -> None:
    """Stored (ts 5, ids 2 and 3) are not delivered again; trades at or after ``stop_ts`` end the walk."""
    walk = TradesWalk(Scripted(), SYM, cursor="a", stop_ts=7, resume=(5, frozenset({"2", "3"})))
    server = tape({"a": answer(t=[[5, 2], [5, 3], [5, 4]], next="b"), "b": answer(t=[[6, 5], [7, 6]], next="c")})
    trades, asked = drive(walk, server)
    assert ids(trades) == [4, 5] and len(asked) == 2 and walk.first_ts == 5 and walk.first_page_rows == 3


def test_a_start_before_the_horizon_walks_from_the_oldest_served_trade() -> None:
    """An empty final page from the start finds the oldest served id by bisection, then walks from it."""
    oldest, head = 700, 1000

    def server(r: Request) -> bytes:
        cursor = r.param("cursor")
        if cursor is None:
            start = r.param("start")
            if start == "0":
                return answer(t=[], next=None)  # nothing at the start: before the horizon
            return answer(t=[], next=str(head))  # the lookup at the end: a served id
        c = int(cursor)
        rows = [[i, i] for i in range(max(c, oldest), min(max(c, oldest) + 100, head))]
        return answer(t=rows, next=str(rows[-1][1] + 1) if rows and rows[-1][1] + 1 < head else None)

    walk = TradesWalk(Scripted(), SYM, start_ns=0, stop_ts=5_000, search_horizon=True)
    trades, asked = drive(walk, server)
    assert ids(trades) == list(range(oldest, head))
    assert walk.beyond_horizon == (0, 5_000) and walk.first_ts == oldest
    assert len(asked) < 20 + 3 + 3


def test_an_ohlc_window_records_the_bars_the_exchange_did_not_return() -> None:
    """Bars outside the window are trimmed; missing ones come back as ``[lo, hi)`` holes."""
    walk = ohlc_walk(Scripted(), SYM, M1, 0, 6 * MIN)  # type: ignore[arg-type]
    pages = {0: answer(bars=[-MIN, 0, MIN], next=3 * MIN), 3 * MIN: answer(bars=[4 * MIN, 7 * MIN], next=None)}
    bars, asked = drive(walk, lambda r: pages[int(r.param("start") or -1)])
    assert [b.ts for b in bars] == [0, MIN, 4 * MIN] and len(asked) == 2
    assert walk.holes() == [Hole(2 * MIN, 4 * MIN, HoleReason.NO_BARS), Hole(5 * MIN, 6 * MIN, HoleReason.NO_BARS)]


def test_an_ohlc_cursor_that_does_not_advance_ends_the_window_with_a_cursor_error() -> None:
    """``next_start_ns`` at or before the cursor: a CursorStuck on that page, never a second ask of it."""
    walk = ohlc_walk(Scripted(), SYM, M1, 0, 6 * MIN)  # type: ignore[arg-type]
    bars, asked = drive(walk, lambda r: answer(bars=[0], next=0))
    assert len(bars) == 1 and len(asked) == 1
    assert walk.stuck == CursorStuck(asked[0], "cursor did not advance (0 <= 0)")
    assert walk.holes() == [Hole(MIN, 6 * MIN, HoleReason.NO_BARS)]


def test_a_malformed_page_leaves_the_walk_as_it_was() -> None:
    """``feed`` raises ProtocolDrift before changing state, so the driver can ask the same page again."""
    walk = TradesWalk(Scripted(), SYM, cursor="a", stop_id=11, after_id=9)
    request = walk.next_request()
    assert request is not None
    with pytest.raises(ProtocolDrift):
        walk.feed(request, msgspec.json.encode("bad"))
    assert walk.next_request() == request and walk.after_id == 9
    assert ids(walk.feed(request, answer(t=[[1, 10], [2, 11]], next="b"))) == [10, 11]
    assert walk.next_request() is None


def test_a_series_walk_trims_to_its_range_and_stops_on_a_stuck_window() -> None:
    """Funding windows by ``next_start_ns``: records outside ``[start, end)`` dropped, a repeated start is an error."""
    pages = {
        10: FundingPage([Funding(5, 0.1), Funding(10, 0.1), Funding(20, 0.2)], 30),
        30: FundingPage([Funding(30, 0.3), Funding(50, 0.5)], 30),
    }
    build = lambda a, b: Request("GET", "/f", (("start", str(a)),), 1, "funding")  # noqa: E731
    walk: SeriesWalk[Funding] = SeriesWalk(build, lambda r, _: pages[int(r.param("start") or -1)], 10, 50)
    records, asked = drive(walk, lambda r: b"")
    assert [f.ts for f in records] == [10, 20, 30] and len(asked) == 2
    assert walk.stuck is not None and walk.stuck.request == asked[1] and walk.reached_ns == 30


def test_series_are_dispatched_by_a_typed_table() -> None:
    """Funding and OI calls come from the derivatives protocol; a spot-only adapter has none."""
    build, _ = series_calls(get_adapter("binance"), DataType.FUNDING, Symbol("BTC", "USDT", "perp"), 10)
    assert build(0, 10**12).endpoint.lower().startswith("funding")
    with pytest.raises(NoCapability):
        series_calls(get_adapter("coinbase"), DataType.FUNDING, SYM)


def test_a_probe_is_one_page() -> None:
    """The first-bar probe asks once and keeps the parsed page."""
    probe = Probe(Request("GET", "/ohlc", (), 1, "ohlc"), Scripted().parse_ohlc)
    drive(probe, lambda r: answer(bars=[MIN], next=None))
    assert probe.page == OhlcPage([Candle(MIN, 1, 1, 1, 1, 1)], None) and probe.next_request() is None


def test_recorded_binance_pages_walk_to_their_end() -> None:
    """Binance's recorded historicalTrades and klines answers through the walks: ids from the cursor, bars in range."""
    adapter = get_adapter("binance")
    body = (FIXTURES / "rest_historical_trades_docs.json").read_bytes()
    walk = TradesWalk(adapter, SYM, cursor="28457", stop_id=28457, after_id=28456)
    trades, asked = drive(walk, lambda r: body)
    assert ids(trades) == [28457] and len(asked) == 1 and walk.holes == [] and walk.stuck is None
    klines = (FIXTURES / "rest_klines.json").read_bytes()
    first = 1591478520000 * 1_000_000
    ohlc: OhlcWalk = ohlc_walk(adapter, SYM, M1, first, first + 5 * MIN)
    bars, asked = drive(ohlc, lambda r: klines)
    assert [b.ts for b in bars] == [first, first + MIN, first + 2 * MIN] and len(asked) == 1
    assert ohlc.holes() == [Hole(first + 3 * MIN, first + 5 * MIN, HoleReason.NO_BARS)]
