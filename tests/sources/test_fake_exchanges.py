"""The Coinbase, Kraken and Bitfinex fakes serve what the adapters parse: REST pages and WS frames over real loopback."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
import trio_websocket

from dccd.domain import DataType, Span, Symbol, Trade
from dccd.errors import ExchangeRejected, RateLimited
from dccd.sources import get_adapter as _get_adapter
from dccd.sources.stream import ControlFailed, Subscription, TradesReceived
from dccd.transport.http import open_exchange_client
from tests.fake import bitfinex as fbf
from tests.fake import coinbase as fcb
from tests.fake import kraken as fkr
from tests.fake.exchange import FakeRest, FakeWs, RestFaults, WsFaults, open_rest, open_ws
from tests.fake.tape import TAPE_EPOCH_MS

MS = 1_000_000
START_NS = (TAPE_EPOCH_MS + 1000) * MS  # one second into the tape
NOW_S = TAPE_EPOCH_MS / 1000 + 1800  # the fakes' clock: 30 min of tape exists


def get_adapter(name: str) -> Any:
    """The registered adapter (REST and WS halves)."""
    return _get_adapter(name)


@dataclass(frozen=True)
class Case:
    exchange: str
    symbol: Symbol
    rest: Callable[..., FakeRest]
    ws: Callable[..., FakeWs]
    first_ids: list[str]  # the first trades at or after START_NS, in tape order
    unknown_error: type[Exception]  # what an unknown symbol's answer parses to


CASES = [
    Case(
        "coinbase",
        Symbol("BTC", "USD"),
        fcb.FakeCoinbase,
        fcb.FakeCoinbaseWs,
        [str(i) for i in range(10, 22)],
        ExchangeRejected,
    ),
    Case(
        "kraken",
        Symbol("BTC", "USD"),
        fkr.FakeKraken,
        fkr.FakeKrakenWs,
        [str(k + 1) for k in range(12, 24)],
        ExchangeRejected,
    ),
    Case(
        "bitfinex",
        Symbol("BTC", "USDT"),
        fbf.FakeBitfinex,
        fbf.FakeBitfinexWs,
        [str(k * 8 + 1) for k in range(30, 42)],
        ExchangeRejected,
    ),
]


def case_id(case: Case) -> str:
    return case.exchange


async def walk_trades(
    adapter: Any, client: Any, symbol: Symbol, pages: int, limit: int
) -> tuple[list[Trade], list[Any]]:
    """The trades of up to ``pages`` record-bearing pages from START_NS, and every page."""
    out: list[Trade] = []
    seen: list[Any] = []
    req = adapter.build_trades(symbol, start_ns=START_NS, limit=limit)
    while len([p for p in seen if p.records]) < pages:
        page = adapter.parse_trades(req, await client.fetch(req))
        seen.append(page)
        out.extend(page.records)
        if page.next_cursor is None:
            break
        req = adapter.build_trades(symbol, cursor=page.next_cursor, limit=limit)
    return out, seen


@pytest.mark.parametrize("case", CASES, ids=case_id)
async def test_rest_round_trip_over_loopback(case: Case) -> None:
    """Listing, one OHLC window, a trades walk across page seams (same-time groups included) and a book, over real HTTP."""
    adapter = get_adapter(case.exchange)
    async with open_rest(case.rest(clock=lambda: NOW_S)) as fake, open_exchange_client(adapter, fake.url, 0) as client:
        listing = adapter.parse_symbols(req := adapter.build_symbols(), await client.fetch(req))
        assert listing.require(case.symbol).native == adapter.symbol_to_native(case.symbol)
        req = adapter.build_ohlc(case.symbol, Span("1m"), START_NS, START_NS + 600_000 * MS)
        bars = adapter.parse_ohlc(req, await client.fetch(req)).candles
        assert [c.ts for c in bars] == [START_NS + 59_000 * MS + i * 60_000 * MS for i in range(10)]
        assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in bars)
        trades, pages = await walk_trades(adapter, client, case.symbol, pages=3, limit=4)
        assert [t.id for t in trades] == case.first_ids[: len(trades)] and len(trades) >= 10
        assert all(a.ts <= b.ts for a, b in itertools.pairwise(trades))
        assert all(t.side in ("buy", "sell") and t.recv_ts is None for t in trades)
        book = adapter.parse_book(req := adapter.build_book(case.symbol, 5), await client.fetch(req), recv_ns=1)
        assert len(book.bids) == len(book.asks) == 5 and book.bids[0][0] < book.asks[0][0]
    assert fake.count() == len(pages) + 3


@pytest.mark.parametrize("case", CASES, ids=case_id)
async def test_fake_error_answers_parse_as_errors(case: Case) -> None:
    """An unknown symbol's answer and an injected rate-limit answer are errors in the adapter's eyes, never pages."""
    adapter = get_adapter(case.exchange)
    faults = RestFaults(too_many={2: "1"})
    async with (
        open_rest(case.rest(clock=lambda: NOW_S, faults=faults)) as fake,
        httpx.AsyncClient(base_url=fake.url) as http,
    ):
        bogus = adapter.build_trades(Symbol("NOPE", "USD"), start_ns=START_NS)
        r = await http.get(bogus.path, params=bogus.params)
        assert isinstance(adapter.parse_error(r.status_code, r.content), case.unknown_error)
        ok = adapter.build_trades(case.symbol, start_ns=START_NS)
        r = await http.get(ok.path, params=ok.params)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert isinstance(adapter.parse_error(r.status_code, r.content), RateLimited)


async def test_coinbase_missing_ids_are_gaps_and_filler_rows_are_dropped() -> None:
    """Ids the fake never had are reported as id_gaps while its filler rows below the window are not emitted."""
    adapter = get_adapter("coinbase")
    fake = fcb.FakeCoinbase(clock=lambda: NOW_S, missing_ids=[(12, 13)])
    async with open_rest(fake), open_exchange_client(adapter, fake.url, 0) as client:
        page = adapter.parse_trades(
            req := adapter.build_trades(Symbol("BTC", "USD"), cursor="10", limit=5), await client.fetch(req)
        )
    assert (
        [t.id for t in page.records] == ["10", "11", "14"] and page.id_gaps == ((12, 13),) and page.next_cursor == "15"
    )


async def test_kraken_http_200_error_body_from_the_fake() -> None:
    """Kraken's rate-limit error arrives with HTTP 200 and still parses as RateLimited."""
    adapter = get_adapter("kraken")
    faults = RestFaults(bodies={1: (200, fkr.TOO_MANY)})
    async with (
        open_rest(fkr.FakeKraken(clock=lambda: NOW_S, faults=faults)) as fake,
        httpx.AsyncClient(base_url=fake.url) as http,
    ):
        req = adapter.build_trades(Symbol("BTC", "USD"))
        r = await http.get(req.path, params=req.params)
    assert r.status_code == 200 and isinstance(adapter.parse_error(200, r.content), RateLimited)


# --- WebSocket -----------------------------------------------------------------------------------


async def read_trades(plan: Any, session: Any, want: int) -> tuple[list[Trade], list[Any]]:
    """Connect to ``plan.url``, send its subscribes, parse frames until ``want`` trades arrived."""
    trades: list[Trade] = []
    events: list[Any] = []
    async with trio_websocket.open_websocket_url(plan.url) as ws:
        for message in plan.on_open:
            await ws.send_message(message.text)
        with trio.fail_after(10):
            while len(trades) < want:
                for event in session.parse(await ws.get_message(), 7):
                    events.append(event)
                    if isinstance(event, TradesReceived):
                        trades.extend(event.trades)
    return trades, events


def rest_trade(case: Case, fake: FakeRest, trade_id: str) -> Trade:
    """The same trade as the fake's REST side serves it, parsed by the adapter (no sockets)."""
    adapter = get_adapter(case.exchange)
    if case.exchange == "coinbase":
        req = adapter.build_trades(case.symbol, cursor=trade_id, limit=1)
    elif case.exchange == "kraken":
        k = int(trade_id) - 1
        req = adapter.build_trades(case.symbol, cursor=f"{fkr.trade_time_us(k) * 1000 - 1}:{k}", limit=3)
    else:
        k = int(trade_id) // 8
        req = adapter.build_trades(case.symbol, cursor=f"{fbf.trade_mts(k)}", limit=3)
    reply = fake.handle("GET", req.path, list(req.params))
    trades: list[Trade] = adapter.parse_trades(req, reply.body).records
    return next(t for t in trades if t.id == trade_id)


@pytest.mark.parametrize("case", CASES, ids=case_id)
async def test_ws_frames_parse_through_open_session(case: Case) -> None:
    """The plan's subscribes get acked, every trade arrives exactly once and equals the REST tape value for value."""
    adapter = get_adapter(case.exchange)
    subs = [Subscription(case.symbol, DataType.TRADES), Subscription(case.symbol, DataType.BOOK)]
    if case.exchange != "coinbase":
        subs.append(Subscription(case.symbol, DataType.OHLC, Span("1m")))
    async with open_ws(case.ws(rate_per_s=None, first_id=60)) as fake:
        (plan,) = adapter.plan_streams(subs, fake.url)
        trades, events = await read_trades(plan, adapter.open_session(plan), want=40)
    ids = [int(t.id or 0) for t in trades]
    # Each trade once (te/tu and snapshot overlaps deduplicated) and none missing. Bitfinex may deliver a
    # trade late, as `tu`, when its `te` went out before the channel was subscribed: order follows arrival.
    tape = sorted(i // 8 if case.exchange == "bitfinex" else i for i in ids)
    assert len(set(ids)) == len(ids) >= 40 and tape == list(range(tape[0], tape[0] + len(tape)))
    assert not any(isinstance(e, ControlFailed) for e in events)
    assert {type(e).__name__ for e in events} >= {"TradesReceived", "BookReceived", "ControlAck", "HeartbeatReceived"}
    rest = case.rest(clock=lambda: NOW_S * 10)
    for t in trades[-3:]:
        assert t.recv_ts == 7 and msgspec_replace(t) == rest_trade(case, rest, t.id or "")


def msgspec_replace(t: Trade) -> Trade:
    return Trade(t.ts, t.id, t.price, t.amount, t.side)


async def test_ws_unknown_symbol_is_refused_by_every_fake() -> None:
    """Subscribing to a pair the exchange lacks yields ControlFailed from each session, in each exchange's format."""
    for case in CASES:
        adapter = get_adapter(case.exchange)
        async with open_ws(case.ws(rate_per_s=None)) as fake:
            (plan,) = adapter.plan_streams([Subscription(Symbol("NOPE", "USD"), DataType.TRADES)], fake.url)
            session = adapter.open_session(plan)
            async with trio_websocket.open_websocket_url(plan.url) as ws:
                await ws.send_message(plan.on_open[0].text)
                with trio.fail_after(5):
                    while not any(isinstance(e, ControlFailed) for e in session.parse(await ws.get_message(), 1)):
                        pass


async def test_ws_drop_after_n_frames_closes_abnormally() -> None:
    """The drop fault cuts TCP after N data frames: the client sees 1006 and the parsed trades stop there."""
    adapter = get_adapter("coinbase")
    async with open_ws(fcb.FakeCoinbaseWs(rate_per_s=None, faults=WsFaults(drop_after=5))) as fake:
        (plan,) = adapter.plan_streams([Subscription(Symbol("BTC", "USD"), DataType.TRADES)], fake.url)
        session = adapter.open_session(plan)
        got = 0
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            async with trio_websocket.open_websocket_url(plan.url) as ws:
                await ws.send_message(plan.on_open[0].text)
                while True:
                    got += sum(
                        len(e.trades) for e in session.parse(await ws.get_message(), 1) if isinstance(e, TradesReceived)
                    )
    assert (
        closed.value.reason is not None and closed.value.reason.code == 1006 and got == 5
    )  # five matches (no last_match at the tape start)


async def test_coinbase_closes_a_connection_that_does_not_subscribe_in_5s(autojump_clock: trio.abc.Clock) -> None:
    """Coinbase's rule, in the fake: no subscribe within 5 s and the server closes the connection at t0 + 5 s."""
    async with open_ws(fcb.FakeCoinbaseWs(faults=WsFaults(subscribe_within_s=5.0))) as fake:
        t0 = trio.current_time()
        async with fake.connect("ws://fake/") as ws:
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
            assert trio.current_time() - t0 == pytest.approx(5.0, abs=1e-6)
    assert closed.value.reason is not None and closed.value.reason.code == 1000


async def test_kraken_ws_skipped_ids_show_as_a_hole_in_trade_ids() -> None:
    """With skip_ids the fake never pushes those trades, so the sequential ids the actor checks have a hole."""
    adapter = get_adapter("kraken")
    async with open_ws(fkr.FakeKrakenWs(rate_per_s=None, first_id=100, faults=WsFaults(skip_ids=(110, 113)))) as fake:
        (plan,) = adapter.plan_streams([Subscription(Symbol("BTC", "USD"), DataType.TRADES)], fake.url)
        trades, _ = await read_trades(plan, adapter.open_session(plan), want=70)
    ids = [int(t.id or 0) for t in trades]
    assert [i for i in range(ids[0], ids[-1] + 1) if i not in ids] == [111, 112, 113]
