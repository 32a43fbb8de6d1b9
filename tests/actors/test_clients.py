"""ClientPool: one listing per (exchange, market kind), cached; the spot listing's live budget is adopted."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio
import trio.testing
from dccd.actors import open_service

from dccd.config import Config, ExchangeSettings, Storage
from dccd.domain import Symbol

SPOT = {
    "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
    "symbols": [{"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT", "status": "TRADING"}],
}
PERP = {
    "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "contractType": "PERPETUAL",
            "status": "TRADING",
        }
    ],
}


async def test_perp_symbols_are_checked_against_the_perp_listing(tmp_path: Path) -> None:
    """A :perp symbol is looked up in the futures table, the spot one in exchangeInfo; each is fetched once."""
    paths: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        body = PERP if request.url.path == "/fapi/v1/exchangeInfo" else SPOT
        return httpx.Response(200, content=json.dumps(body).encode())

    cfg = Config(
        storage=Storage(str(tmp_path)), exchanges={"binance": ExchangeSettings("http://binance.fake", None, 0.5)}
    )
    async with open_service(cfg, client_options={"transport": httpx.MockTransport(answer)}) as svc:
        pool = svc.operations.pool
        perps = await pool.listing("binance", perp=True)
        spot = await pool.listing("binance")
        assert perps.require(Symbol.parse("BTC/USDT:perp")).native == "BTCUSDT"
        assert spot.find(Symbol.parse("BTC/USDT:perp")) is None and spot.find(Symbol.parse("BTC/USDT")) is not None
        assert await pool.listing("binance", perp=True) is perps and await pool.listing("binance") is spot
        limiter = (await pool.get("binance")).limiter
        assert limiter.budget == 600  # half of the spot host's live 1200/min, not of the futures host's 2400
    assert paths == ["/fapi/v1/exchangeInfo", "/api/v3/exchangeInfo"]


def test_a_restarted_service_waits_out_the_429_pause_its_predecessor_recorded(tmp_path: Path) -> None:
    """Service A gets a 429 (Retry-After 30 s) at wall second 0; service B on the same lake, started at wall
    second 12 (a new process: its own trio.run and pool), sends its first request at second 30, not before."""
    wall0 = 1_700_000_000
    sent: list[tuple[str, float]] = []

    def process(start_s: int, answers: list[httpx.Response]) -> None:
        async def answer(request: httpx.Request) -> httpx.Response:
            sent.append((request.url.path, start_s + trio.current_time()))
            return answers.pop(0) if len(answers) > 1 else answers[0]

        async def main() -> None:
            cfg = Config(
                storage=Storage(str(tmp_path)), exchanges={"binance": ExchangeSettings("http://binance.fake", None, 0)}
            )
            options = {
                "transport": httpx.MockTransport(answer),
                "wall_clock_ns": lambda: round((wall0 + start_s + trio.current_time()) * 1e9),
            }
            async with open_service(cfg, client_options=options) as svc:
                await svc.operations.pool.listing("binance")

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    ok = httpx.Response(200, content=json.dumps(SPOT).encode())
    process(0, [httpx.Response(429, headers={"Retry-After": "30"}), ok])
    assert sent == [("/api/v3/exchangeInfo", 0.0), ("/api/v3/exchangeInfo", 30.0)]
    sent.clear()
    process(12, [ok])
    assert sent == [("/api/v3/exchangeInfo", 30.0)]
