"""What the UI needs from the server: its page and assets (no CDN), /schema offline, columnar data, the forming bar."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx_sse
import trio
from dccd.actors import Batch
from dccd.web.forming import Former

from dccd.domain import Candle, DatasetId, DataType, Span, Trade
from dccd.storage.writer import Provenance

from .conftest import BTC, Web

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z, a minute boundary
MIN = 60_000_000_000


def trade(ts: int, price: float, amount: float = 1.0, i: int = 0) -> Trade:
    return Trade(ts=ts, id=str(i), price=price, amount=amount, side="buy", recv_ts=ts)


async def test_the_page_loads_only_assets_of_this_server(web: Web) -> None:
    """GET / references only /ui/... assets (no external URL, no inline script), its CSP allows only this origin's
    scripts, and each asset (own and vendor) is served with its media type."""
    r = await web.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert re.findall(r"<script>", html) == []  # no inline script
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
    srcs = re.findall(r"(?:src|href)=\"(/ui/[^\"]+)\"", html)
    assert set(srcs) == {"/ui/app.css", "/ui/vendor/lightweight-charts.js", "/ui/app.js"}
    for src in srcs:
        a = await web.client.get(src)
        assert a.status_code == 200 and len(a.content) > 1000, src
        assert a.headers["content-type"].startswith("text/css" if src.endswith(".css") else "text/javascript"), src
    lwc = (await web.client.get("/ui/vendor/lightweight-charts.js")).text
    assert "Lightweight Charts" in lwc[:300] and "Apache License 2.0" in lwc[:300]
    app_js = (await web.client.get("/ui/app.js")).text
    for used in ("/api/v1/events", "/api/v1/live/trades", "/api/v1/live/candles", "/api/v1/backfills",
                 "/api/v1/inventory", "/api/v1/jobs", "/api/v1/streams", "/api/v1/runs", "format: \"columns\""):  # fmt: skip
        assert used in app_js, used
    assert "localStorage" not in app_js and "?token" not in app_js


async def test_unknown_assets_are_one_line_404s(web: Web) -> None:
    r = await web.client.get("/ui/vendor/jquery.js")
    assert r.status_code == 404 and r.json()["error"].startswith("path: 'jquery.js' is not served here")
    r = await web.client.get("/ui/secrets.txt")
    assert (r.status_code, r.json()) == (404, {"error": "path: no such UI file 'secrets.txt'"})


async def test_schema_renders_from_this_server_only(web: Web) -> None:
    """/schema is Swagger UI whose script and style come from the swagger-ui-bundle package via /ui/vendor."""
    r = await web.client.get("/schema")
    assert r.status_code == 200
    urls = [u for u in re.findall(r"(?:src|href)=\"([^\"]+)\"", r.text) if u != "data:,"]  # data:, = no favicon
    assert urls and all(u.startswith("/ui/vendor/") for u in urls), urls
    for u in urls:
        a = await web.client.get(u)
        assert a.status_code == 200 and len(a.content) > 10_000, u
    assert "SwaggerUIBundle" in (await web.client.get("/ui/vendor/swagger-ui-bundle.js")).text[:200_000]


async def test_columns_format_is_column_blocks_equal_to_the_rows(web: Web) -> None:
    """format=columns returns [{col: [...]}...] holding exactly the rows format=json returns, in order."""
    span = Span.parse("1m")
    bars = [
        Candle(ts=T0 + i * MIN, open=1.0 + i, high=2.0 + i, low=0.5, close=1.5 + i, volume=float(i)) for i in range(5)
    ]
    ds = DatasetId("binance", BTC, DataType.OHLC, span)
    await trio.to_thread.run_sync(lambda: web.svc.operations.lake.write(ds, bars, Provenance("test", "rest")))
    url = "/api/v1/data/ohlc/binance/BTC-USDT"
    rows = (await web.client.get(url, params={"span": "1m"})).json()
    r = await web.client.get(url, params={"span": "1m", "format": "columns"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    blocks = r.json()
    assert isinstance(blocks, list) and blocks
    cols: dict[str, list[Any]] = {}
    for b in blocks:
        for k, v in b.items():
            cols.setdefault(k, []).extend(v)
    assert cols["ts"] == [T0 + i * MIN for i in range(5)]
    assert [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)] == rows
    empty = await web.client.get(url, params={"span": "1m", "format": "columns", "start": "2030-01-01"})
    assert (empty.status_code, empty.json()) == (200, [])


def test_the_former_folds_trades_into_the_bar_they_fall_in() -> None:
    """OHLCV of each bar from its trades; the first bar is incomplete, later ones complete; late prints ignored."""
    f = Former(Span.parse("1m"))
    [b] = f.add([trade(T0 + 5, 10.0, 1.0), trade(T0 + 6, 12.0, 2.0), trade(T0 + 7, 9.0, 0.5)])
    assert (b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades, b.complete) == (T0, 10, 12, 9, 9, 3.5, 3, False)
    touched = f.add([trade(T0 + 8, 11.0), trade(T0 + MIN, 20.0), trade(T0 + 2, 1.0), trade(T0 + MIN + 1, 21.0)])
    assert [(x.ts, x.close, x.complete) for x in touched] == [(T0, 11.0, False), (T0 + MIN, 21.0, True)]
    assert (touched[1].open, touched[1].low, touched[1].trades) == (20.0, 20.0, 2)
    assert f.add([trade(T0 + 3, 0.1)]) == []  # a late print of a bar already left


@asynccontextmanager
async def candles(web: Web) -> AsyncIterator[AsyncIterator[Any]]:
    params = {"exchange": "binance", "symbol": "BTC/USDT", "span": "1m"}
    async with httpx_sse.aconnect_sse(web.client, "GET", "/api/v1/live/candles", params=params) as source:
        assert source.response.status_code == 200
        yield source.aiter_sse().__aiter__()


async def test_the_candles_feed_sends_the_forming_bar_from_live_trades(web: Web) -> None:
    """Trades published on the market's trades topic arrive on /live/candles as 'forming' events of their bar;
    closed candles still arrive as 'candles'; each forming event carries the bar so far."""
    tds = DatasetId("binance", BTC, DataType.TRADES)
    with trio.fail_after(10):
        async with candles(web) as events:
            web.svc.hub.publish(
                ("trades", "binance", "BTC/USDT"),
                Batch(tds, [trade(T0 + 1, 10.0), trade(T0 + 2, 12.0)], source="t", transport="ws"),
            )
            first = await events.__anext__()
            web.svc.hub.publish(
                ("trades", "binance", "BTC/USDT"),
                Batch(tds, [trade(T0 + MIN + 1, 13.0, 2.0)], source="t", transport="ws"),
            )
            second = await events.__anext__()
            bar = Candle(ts=T0, open=10.0, high=12.0, low=10.0, close=12.0, volume=2.0)
            ohlc = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))
            web.svc.hub.publish(("ohlc", "binance", "BTC/USDT", "1m"), Batch(ohlc, [bar], source="t", transport="ws"))
            closed = await events.__anext__()
    assert first.event == "forming"
    got = json.loads(first.data)
    assert {k: got[k] for k in ("ts", "open", "high", "low", "close", "volume", "trades", "complete")} == {
        "ts": T0, "open": 10.0, "high": 12.0, "low": 10.0, "close": 12.0, "volume": 2.0, "trades": 2, "complete": False
    }  # fmt: skip
    assert second.event == "forming" and json.loads(second.data)["ts"] == T0 + MIN
    assert json.loads(second.data)["complete"] is True and json.loads(second.data)["volume"] == 2.0
    assert closed.event == "candles" and json.loads(closed.data)[0]["ts"] == T0
    assert int(second.id) > int(first.id)


async def test_an_exchange_without_live_bars_still_has_the_forming_bar(web: Web) -> None:
    """coinbase declares live trades but no live ohlc: /live/candles answers (forming bars only)."""
    params = {"exchange": "coinbase", "symbol": "BTC/USD", "span": "1m"}
    with trio.fail_after(10):
        async with httpx_sse.aconnect_sse(web.client, "GET", "/api/v1/live/candles", params=params) as source:
            assert source.response.status_code == 200
    r = await web.client.get("/api/v1/live/candles", params={**params, "symbol": "BTCUSD"})
    assert r.status_code == 400 and r.json()["error"].startswith("symbol: 'BTCUSD' is not a symbol")
