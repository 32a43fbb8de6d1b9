"""The fake Binance itself: wire format, paging semantics, weights, faults and the request log."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.fake.binance import FakeBinance, FakeResponse, Faults, http_date, open_fake_binance
from tests.fake.binance_data import FakeMarket

LISTED = 1_502_942_400_000  # BTCUSDT listing in the fake (ms)
MIN = 60_000


class Clock:
    """A settable clock for the fake (seconds)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def get(fake: FakeBinance, path: str, **params: object) -> FakeResponse:
    return fake.handle("GET", f"/api/v3/{path}", [(k, str(v)) for k, v in params.items()])


def rows(resp: FakeResponse) -> Any:
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


@pytest.fixture
def clock() -> Clock:
    return Clock(LISTED / 1000 + 3600.0)  # one hour after the listing


@pytest.fixture
def fake(clock: Clock) -> FakeBinance:
    return FakeBinance(clock=clock)


# --- data semantics ------------------------------------------------------------------------------


def test_klines_rows_and_inclusive_bounds(fake: FakeBinance) -> None:
    """Klines have 12 columns, string prices, close = next open - 1, and inclusive start/end bounds."""
    out = rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", startTime=LISTED + MIN, endTime=LISTED + 3 * MIN))
    assert [r[0] for r in out] == [LISTED + MIN, LISTED + 2 * MIN, LISTED + 3 * MIN]
    for r in out:
        assert len(r) == 12 and r[6] == r[0] + MIN - 1 and r[8] == 720 and r[11] == "0"
        assert all(isinstance(r[k], str) for k in (1, 2, 3, 4, 5, 7, 9, 10))
        assert Decimal(r[3]) <= min(Decimal(r[1]), Decimal(r[4])) <= max(Decimal(r[1]), Decimal(r[4])) <= Decimal(r[2])


def test_klines_limit_and_most_recent(fake: FakeBinance) -> None:
    """A start pages forward up to limit; no bounds gives the latest bars including the open one."""
    assert len(rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", startTime=0, limit=1000))) == 61
    latest = rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", limit=3))
    assert [r[0] for r in latest] == [LISTED + 58 * MIN, LISTED + 59 * MIN, LISTED + 60 * MIN]
    until = rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", endTime=LISTED + 10 * MIN + 5, limit=2))
    assert [r[0] for r in until] == [LISTED + 9 * MIN, LISTED + 10 * MIN]
    assert rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", startTime=LISTED + 61 * MIN)) == []


def test_calendar_spans_align(fake: FakeBinance, clock: Clock) -> None:
    """Weekly bars open on Mondays and monthly bars on the 1st, closing 1 ms before the next."""
    clock.t = 1_719_792_000.0  # 2024-07-01
    weeks = rows(get(fake, "klines", symbol="BTCUSDT", interval="1w", startTime=1_704_153_600_000, limit=2))
    assert [w[0] for w in weeks] == [1_704_672_000_000, 1_705_276_800_000]  # from Tue 01-02: Mon 01-08, 01-15
    months = rows(get(fake, "klines", symbol="BTCUSDT", interval="1M", startTime=1_706_745_600_000, limit=2))
    assert [(m[0], m[6]) for m in months] == [
        (1_706_745_600_000, 1_709_251_199_999),  # February 2024 (29 days)
        (1_709_251_200_000, 1_711_929_599_999),
    ]


def test_trade_tape_ids_times_and_aggregates(fake: FakeBinance) -> None:
    """Ids are sequential, three trades share each millisecond, and an aggregate spans exactly its trades."""
    trades = rows(get(fake, "historicalTrades", symbol="BTCUSDT", fromId=3, limit=6))
    assert [t["id"] for t in trades] == [3, 4, 5, 6, 7, 8]
    assert [t["time"] for t in trades] == [LISTED + 250] * 3 + [LISTED + 500] * 3
    (agg,) = rows(get(fake, "aggTrades", symbol="BTCUSDT", startTime=LISTED + 1, limit=1))
    assert (agg["a"], agg["f"], agg["l"], agg["T"]) == (1, 3, 5, LISTED + 250)
    assert Decimal(agg["q"]) == sum(Decimal(t["qty"]) for t in trades[:3])
    assert agg["p"] == trades[0]["price"] and agg["m"] == trades[0]["isBuyerMaker"]
    assert rows(get(fake, "aggTrades", symbol="BTCUSDT", fromId=1, limit=2))[1]["f"] == 6


def test_tape_ends_at_now(fake: FakeBinance) -> None:
    """Recent trades end at the head of the tape; fromId beyond it returns an empty page."""
    head = 3600 * 4 * 3 + 2  # 4 groups/s of 3 trades for one hour, plus the group at t=0
    recent = rows(get(fake, "trades", symbol="BTCUSDT", limit=2))
    assert [t["id"] for t in recent] == [head - 1, head]
    assert rows(get(fake, "historicalTrades", symbol="BTCUSDT", fromId=head + 1)) == []
    assert rows(get(fake, "historicalTrades", symbol="BTCUSDT", limit=1))[0]["id"] == head


def test_hole_has_no_bars_and_no_trades(clock: Clock) -> None:
    """Inside a hole no bar opens and nothing trades; ids continue consecutively after it."""
    hole = (LISTED + 2 * MIN, LISTED + 5 * MIN)
    fake = FakeBinance(clock=clock, holes=[hole])
    opens = [r[0] for r in rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", startTime=LISTED, limit=5))]
    assert opens == [LISTED, LISTED + MIN, LISTED + 5 * MIN, LISTED + 6 * MIN, LISTED + 7 * MIN]
    latest = rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", endTime=LISTED + 5 * MIN, limit=2))
    assert [r[0] for r in latest] == [LISTED + MIN, LISTED + 5 * MIN]
    (agg,) = rows(get(fake, "aggTrades", symbol="BTCUSDT", startTime=hole[0] + 1, limit=1))
    assert agg["T"] == hole[1]
    before, after = rows(get(fake, "historicalTrades", symbol="BTCUSDT", fromId=agg["f"] - 1, limit=2))
    assert (before["time"], after["time"], after["id"] - before["id"]) == (hole[0] - 250, hole[1], 1)


def test_depth_levels_and_update_id(fake: FakeBinance, clock: Clock) -> None:
    """Depth returns limit levels per side around the last price; lastUpdateId grows with time."""
    book = rows(get(fake, "depth", symbol="BTCUSDT", limit=5))
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0])
    clock.t += 1
    assert rows(get(fake, "depth", symbol="BTCUSDT", limit=5))["lastUpdateId"] == book["lastUpdateId"] + 100


def test_exchange_info_lists_and_filters(fake: FakeBinance) -> None:
    """exchangeInfo lists every market with status and budget, filters by symbol(s), rejects unknown ones."""
    info = rows(get(fake, "exchangeInfo"))
    assert [(s["symbol"], s["status"]) for s in info["symbols"]] == [
        ("BTCUSDT", "TRADING"),
        ("ETHBTC", "TRADING"),
        ("OLDUSDT", "BREAK"),
    ]
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    assert [s["symbol"] for s in rows(get(fake, "exchangeInfo", symbols='["ETHBTC"]'))["symbols"]] == ["ETHBTC"]
    bad = get(fake, "exchangeInfo", symbol="NOPE")
    assert (bad.status, json.loads(bad.body)) == (400, {"code": -1121, "msg": "Invalid symbol."})


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("klines", {"interval": "1m"}, -1102),
        ("klines", {"symbol": "BTCUSDT", "interval": "7m"}, -1120),
        ("klines", {"symbol": "NOPE", "interval": "1m"}, -1121),
        ("klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1001}, -1130),
        ("aggTrades", {"symbol": "BTCUSDT", "startTime": "yesterday"}, -1100),
        ("depth", {"symbol": "BTCUSDT", "limit": 5001}, -1130),
    ],
)
def test_bad_parameters_get_binance_errors(fake: FakeBinance, path: str, params: dict[str, object], code: int) -> None:
    """Bad requests get HTTP 400 with Binance's error code."""
    resp = get(fake, path, **params)
    assert resp.status == 400 and json.loads(resp.body)["code"] == code


# --- weights -------------------------------------------------------------------------------------


def test_weight_header_counts_per_window(fake: FakeBinance, clock: Clock) -> None:
    """Each answer reports the window's used weight; a new window starts from zero."""
    assert get(fake, "klines", symbol="BTCUSDT", interval="1m").headers["X-MBX-USED-WEIGHT-1M"] == "2"
    assert get(fake, "historicalTrades", symbol="BTCUSDT").headers["X-MBX-USED-WEIGHT-1M"] == "27"
    assert get(fake, "depth", symbol="BTCUSDT", limit=1000).headers["X-MBX-USED-WEIGHT-1M"] == "77"
    clock.t += 60
    assert get(fake, "exchangeInfo").headers["X-MBX-USED-WEIGHT-1M"] == "20"
    assert sorted(fake.weight_by_window.values()) == [20, 77] and fake.max_used_weight == 77


def test_over_budget_gets_429_then_418(clock: Clock) -> None:
    """Past the budget the fake answers 429 with the seconds left in the window, then bans."""
    clock.t = 6000.0 + 45.5  # 14.5 s before the window ends
    fake = FakeBinance(clock=clock, weight_limit=50, faults=Faults(ban_after_429s=2, ban_s=30))
    assert get(fake, "historicalTrades", symbol="BTCUSDT").status == 200
    assert get(fake, "historicalTrades", symbol="BTCUSDT").status == 200
    too_many = get(fake, "klines", symbol="BTCUSDT", interval="1m")
    assert (too_many.status, too_many.headers["Retry-After"], json.loads(too_many.body)["code"]) == (429, "15", -1003)
    banned = get(fake, "klines", symbol="BTCUSDT", interval="1m")
    assert (banned.status, banned.headers["Retry-After"]) == (418, "30")
    assert b"IP banned until 6075500" in banned.body
    clock.t += 29
    assert get(fake, "exchangeInfo").status == 418
    clock.t += 1
    assert get(fake, "exchangeInfo").status == 200
    assert fake.max_used_weight == 50 and fake.rejected_429 == 2


# --- faults and log ------------------------------------------------------------------------------


def test_injected_faults_by_request_number(fake: FakeBinance, clock: Clock) -> None:
    """Faults hit exactly their request numbers: 5xx, 429 with an HTTP-date, 418 ban, malformed, slow."""
    date = http_date(clock.t + 9)
    fake.faults = Faults(errors={1: 503}, too_many={2: date}, bans={4: "5"}, malformed={3: "field"}, slow={3: 0.25})
    first = get(fake, "exchangeInfo")
    assert (first.status, json.loads(first.body)["code"]) == (503, -1001)
    second = get(fake, "exchangeInfo")
    assert (second.status, second.headers["Retry-After"]) == (429, date)
    third = get(fake, "klines", symbol="BTCUSDT", interval="1m", limit=1)
    assert third.status == 200 and third.delay_s == 0.25 and json.loads(third.body)[0][1] == "n/a"
    assert get(fake, "exchangeInfo").status == 418
    clock.t += 5
    assert get(fake, "exchangeInfo").status == 200
    assert [r.status for r in fake.requests] == [503, 429, 200, 418, 200]
    assert [r.weight for r in fake.requests] == [0, 0, 2, 0, 20]


def test_rate_faults_corrupt_their_share_of_klines_answers_only(fake: FakeBinance) -> None:
    """Rate faults corrupt about their share of klines answers, by request number, and never other paths."""
    fake.faults = Faults(malformed_rate={"truncated": 0.05, "field": 0.05})
    for _ in range(2000):
        get(fake, "klines", symbol="BTCUSDT", interval="1m", limit=1)
    get(fake, "exchangeInfo")
    kinds = [kind for _, kind in fake.corrupted]
    assert 80 <= kinds.count("truncated") <= 120 and 80 <= kinds.count("field") <= 120
    assert all(n <= 2000 for n, _ in fake.corrupted)  # the listing (request 2001) was left alone
    again = FakeBinance(clock=fake.clock, faults=Faults(malformed_rate={"truncated": 0.05, "field": 0.05}))
    for _ in range(2000):
        get(again, "klines", symbol="BTCUSDT", interval="1m", limit=1)
    assert again.corrupted == fake.corrupted  # deterministic


def test_request_log_records_params_and_time(fake: FakeBinance, clock: Clock) -> None:
    """Every request is logged with its number, clock time, path, params, status and weight."""
    get(fake, "depth", symbol="BTCUSDT", limit=500)
    (entry,) = fake.requests
    assert (entry.n, entry.t, entry.path, entry.params, entry.status, entry.weight, entry.used_weight) == (
        1,
        clock.t,
        "/api/v3/depth",
        {"symbol": "BTCUSDT", "limit": "500"},
        200,
        25,
        25,
    )
    assert fake.count("/api/v3/depth") == 1 and fake.count("/api/v3/klines") == 0


def test_unknown_path_is_404(fake: FakeBinance) -> None:
    """Paths the fake does not serve answer 404."""
    assert fake.handle("GET", "/api/v3/order", []).status == 404


def test_custom_markets(clock: Clock) -> None:
    """Markets are configurable: a single market listed at its own time with its own tape rate."""
    fake = FakeBinance(
        clock=clock, markets=[FakeMarket("ABCUSDT", "ABC", "USDT", LISTED, trades_per_ms=1, every_ms=1000)]
    )
    trades = rows(get(fake, "historicalTrades", symbol="ABCUSDT", fromId=0, limit=3))
    assert [(t["id"], t["time"]) for t in trades] == [(0, LISTED), (1, LISTED + 1000), (2, LISTED + 2000)]


# --- front-ends ----------------------------------------------------------------------------------


async def test_served_over_real_http() -> None:
    """The Litestar app on 127.0.0.1 serves the same bytes and headers as the in-process handler."""
    async with open_fake_binance(slow={2: 0.2}) as fake, httpx.AsyncClient(base_url=fake.url) as http:
        assert fake.url.startswith("http://127.0.0.1:")
        r = await http.get(
            "/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m", "startTime": LISTED, "limit": 2}
        )
        assert r.status_code == 200 and r.headers["x-mbx-used-weight-1m"] == "2"
        assert [row[0] for row in r.json()] == [LISTED, LISTED + MIN]
        t0 = time.monotonic()
        bad = await http.get("/api/v3/klines", params={"symbol": "NOPE", "interval": "1m"})
        assert time.monotonic() - t0 >= 0.2
        assert (bad.status_code, bad.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
        assert [(e.n, e.status) for e in fake.requests] == [(1, 200), (2, 400)]


async def test_mock_transport_serves_the_same_fake(fake: FakeBinance) -> None:
    """The socket-free transport answers from the same logic, for autojump tests."""
    async with httpx.AsyncClient(transport=fake.mock_transport(), base_url="http://fake") as http:
        r = await http.get("/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": 0, "limit": 1})
    assert r.status_code == 200 and r.json()[0]["id"] == 0 and r.headers["x-mbx-used-weight-1m"] == "25"


def test_shared_source_serves_the_websocket_tape() -> None:
    """source='shared' serves tests.fake.tape trades value for value, one aggregate per trade, bars from them."""
    from tests.fake import tape

    epoch = tape.TAPE_EPOCH_MS
    fake = FakeBinance(clock=Clock(epoch / 1000 + 90.0), source="shared")
    trades = rows(get(fake, "historicalTrades", symbol="BTCUSDT", fromId=5, limit=2))
    expected = [tape.trade_at("BTCUSDT", i) for i in (5, 6)]
    assert [(t["id"], t["price"], t["qty"], t["quoteQty"], t["time"], t["isBuyerMaker"]) for t in trades] == [
        (e.id, e.price, e.qty, e.quote_qty, e.time_ms, e.is_buyer_maker) for e in expected
    ]
    (agg,) = rows(get(fake, "aggTrades", symbol="BTCUSDT", startTime=epoch + 501, limit=1))
    assert (agg["a"], agg["f"], agg["l"], agg["T"]) == (6, 6, 6, epoch + 600)
    bars = rows(get(fake, "klines", symbol="BTCUSDT", interval="1m", startTime=epoch))
    full = tape.candle_at("BTCUSDT", MIN, epoch)
    assert full is not None and len(bars) == 2
    assert bars[0][1:6] == [full.open, full.high, full.low, full.close, full.volume] and bars[0][8] == 600
    assert bars[1][8] == 301  # the live bar holds trades up to now (+90 s)
    with pytest.raises(ValueError, match="holes need the synthetic source"):
        FakeBinance(source="shared", holes=[(0, 1)])
