"""GET /api/v1/exchanges/{name}/symbols, Client.symbols and `dccd symbols` against the fake Binance on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import trio

from dccd.client import Client
from tests.fake.binance import open_fake_binance

from .conftest import Web, make_config, open_web

LISTED = [
    {"symbol": "BTC/USDT", "native": "BTCUSDT", "status": "TRADING", "active": True},
    {"symbol": "ETH/BTC", "native": "ETHBTC", "status": "TRADING", "active": True},
    {"symbol": "OLD/USDT", "native": "OLDUSDT", "status": "BREAK", "active": False},
]
DCCD = str(Path(sys.executable).with_name("dccd"))


async def test_the_route_and_the_client_answer_the_listing(web: Web) -> None:
    """The listing the service fetched (inactive markets included), sorted by symbol; Client.symbols is the same."""
    r = await web.client.get("/api/v1/exchanges/binance/symbols")
    assert r.status_code == 200, r.text
    assert r.json() == LISTED
    async with Client(web.url) as c:
        assert await c.symbols("binance") == LISTED


async def test_bad_names_and_flags_are_400(web: Web) -> None:
    """An unknown exchange, a bad perp flag and perp on a spot-only exchange are 400 naming the field."""
    cases = {
        "/api/v1/exchanges/nope/symbols": "name: 'nope' is not a known exchange",
        "/api/v1/exchanges/binance/symbols?perp=maybe": "perp: 'maybe' is not a boolean (true or false)",
        "/api/v1/exchanges/kraken/symbols?perp=true": "perp: kraken does not offer perpetual listings",
    }
    for path, error in cases.items():
        r = await web.client.get(path)
        assert r.status_code == 400 and r.json()["error"].startswith(error), r.text


async def test_an_exchange_failure_is_a_502_naming_it(tmp_path: Path) -> None:
    """When the exchange refuses the listing the route answers 502 with the exchange's message, and keeps serving."""
    async with (
        open_fake_binance(errors={1: 418}, ban_s=1.0) as fake,
        open_web(make_config(tmp_path / "lake", fake_url=fake.url)) as web,
    ):
        r = await web.client.get("/api/v1/exchanges/binance/symbols")
        assert r.status_code == 502, r.text
        assert r.json()["error"].startswith("name: binance: ")
        assert (await web.client.get("/health")).status_code == 200


async def test_the_cli_lists_through_the_rest_url_override(tmp_path: Path) -> None:
    """`dccd symbols binance [--json]` reads the listing from DCCD_BINANCE_REST_URL: a line per market, a count."""
    async with open_fake_binance() as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DCCD_")}
        env |= {"DCCD_BINANCE_REST_URL": fake.url, "DCCD_DATA": str(tmp_path / "lake")}
        with trio.fail_after(60):
            text = await trio.run_process(
                [DCCD, "symbols", "binance"], capture_stdout=True, capture_stderr=True, env=env
            )
            as_json = await trio.run_process([DCCD, "symbols", "binance", "--json"], capture_stdout=True, env=env)
    assert text.stdout.decode().splitlines() == [
        "BTC/USDT  BTCUSDT  TRADING",
        "ETH/BTC   ETHBTC   TRADING",
        "OLD/USDT  OLDUSDT  BREAK (inactive)",
    ]
    assert text.stderr.decode() == "3 market(s) listed by binance\n"
    assert json.loads(as_json.stdout) == LISTED
    assert not (tmp_path / "lake").exists()  # nothing written
