"""Bad input gets a 400 with one clear line naming the field, before anything reaches the lake or the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dccd.domain.spans import SPAN_CHOICES
from dccd.sources.registry import list_adapters

from .conftest import Web

KNOWN = " ".join(list_adapters())
TYPES = "(trades ohlc book funding oi)"
DATA = "/api/v1/data"
ISO_HINT = "(use ISO-8601 like 2024-01-01T00:00Z, or integer ns)"
GOOD = {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "1m"}

# (method, path, query params or JSON body, headers) -> expected error text (exact, or prefix when it ends with "…")
# fmt: off
CASES: list[tuple[str, str, dict[str, Any] | list[Any] | str | None, dict[str, str] | None, str]] = [
    # --- data reads: path parameters are parsed before any path is built ---------------------
    ("GET", f"{DATA}/foo/binance/BTC-USDT", None, None, f"type: 'foo' is not a data type {TYPES}"),
    ("GET", f"{DATA}/OHLC/binance/BTC-USDT", {"span": "1m"}, None, f"type: 'OHLC' is not a data type {TYPES}"),
    ("GET", f"{DATA}/ohlc/nope/BTC-USDT", {"span": "1m"}, None, f"exchange: 'nope' is not a known exchange ({KNOWN})"),
    ("GET", f"{DATA}/ohlc/Binance/BTC-USDT", {"span": "1m"}, None, f"exchange: 'Binance' is not a known exchange ({KNOWN})"),
    ("GET", f"{DATA}/ohlc/_dccd/BTC-USDT", {"span": "1m"}, None, f"exchange: '_dccd' is not a known exchange ({KNOWN})"),
    ("GET", f"{DATA}/ohlc/binance/BTCUSDT", {"span": "1m"}, None, "symbol: 'BTCUSDT' is not a symbol slug (expected BASE-QUOTE or BASE-QUOTE-PERP, e.g. BTC-USDT)"),
    ("GET", f"{DATA}/ohlc/binance/%2E%2E", {"span": "1m"}, None, "symbol: '..' is not a symbol slug (expected BASE-QUOTE or BASE-QUOTE-PERP, e.g. BTC-USDT)"),
    ("GET", f"{DATA}/ohlc/binance/BTC-USDT-SWAP", {"span": "1m"}, None, "symbol: 'BTC-USDT-SWAP' is not a symbol slug (expected BASE-QUOTE or BASE-QUOTE-PERP, e.g. BTC-USDT)"),
    ("GET", f"{DATA}/ohlc/binance/BTC-USDT", None, None, f"span: ohlc needs a span ({SPAN_CHOICES})"),
    ("GET", f"{DATA}/ohlc/binance/BTC-USDT", {"span": "7m"}, None, f"span: '7m' is not a span ({SPAN_CHOICES})"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"span": "1m"}, None, "span: only ohlc takes a span, not trades"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"start": "2024-13-01"}, None, f"start: '2024-13-01' is not a valid date {ISO_HINT}"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"start": "yesterday"}, None, f"start: 'yesterday' is not an ISO-8601 date or datetime {ISO_HINT}"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"end": "2024-01-01T25:00"}, None, f"end: '2024-01-01T25:00' is not a valid time of day {ISO_HINT}"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"start": "2024-01-02", "end": "2024-01-01"}, None, "end: '2024-01-01' is not after start '2024-01-02'"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"start": "2024-01-01", "end": "2024-01-01T00:00Z"}, None, "end: '2024-01-01T00:00Z' is not after start '2024-01-01'"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"start": "-1"}, None, f"start: '-1' is not an ISO-8601 date or datetime {ISO_HINT}"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"format": "xml"}, None, "format: 'xml' is not one of: json jsonl columns csv parquet arrow"),
    ("GET", f"{DATA}/trades/binance/BTC-USDT", {"format": "JSON"}, None, "format: 'JSON' is not one of: json jsonl columns csv parquet arrow"),
    # --- backfills ---------------------------------------------------------------------------
    ("POST", "/api/v1/backfills", "not json", None, "body: JSON is malformed…"),
    ("POST", "/api/v1/backfills", [], None, "body: expected a JSON object, got array"),
    ("POST", "/api/v1/backfills", {}, None, "exchange: required field is missing"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbol": "BTC/USDT"}, None, "symbol: unknown field"),
    ("POST", "/api/v1/backfills", {**GOOD, "exchange": 5}, None, "exchange: expected str, got int"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": "BTC/USDT"}, None, "symbols: expected array, got str"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": [1]}, None, "symbols[0]: expected str, got int"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": []}, None, "symbols: give at least one symbol like BTC/USDT"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": ["BTCUSDT"]}, None, "symbols[0]: 'BTCUSDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": ["BTC/USDT", "btc/usdt"]}, None, "symbols[1]: 'btc/usdt' is listed twice"),
    ("POST", "/api/v1/backfills", {**GOOD, "exchange": "nope"}, None, f"exchange: 'nope' is not a known exchange ({KNOWN})"),
    ("POST", "/api/v1/backfills", {**GOOD, "type": "candles"}, None, f"type: 'candles' is not a data type {TYPES}"),
    ("POST", "/api/v1/backfills", {**GOOD, "span": None}, None, f"span: ohlc needs a span ({SPAN_CHOICES})"),
    ("POST", "/api/v1/backfills", {**GOOD, "span": "7m"}, None, f"span: '7m' is not a span ({SPAN_CHOICES})"),
    ("POST", "/api/v1/backfills", {**GOOD, "type": "trades"}, None, "span: only ohlc takes a span, not trades"),
    ("POST", "/api/v1/backfills", {**GOOD, "start": "soon"}, None, "start: 'soon' is not a start (ISO date/datetime, -30d, last or origin)"),
    ("POST", "/api/v1/backfills", {**GOOD, "end": "later"}, None, "end: 'later' is not an end (ISO date/datetime, -1h or now)"),
    ("POST", "/api/v1/backfills", {**GOOD, "start": "2024-02-01", "end": "2024-01-01"}, None, "end: '2024-01-01' is not after start '2024-02-01'"),
    ("POST", "/api/v1/backfills", {**GOOD, "symbols": ["BTC/USDT:perp"]}, None, "type: binance does not offer ohlc for perp markets"),
    ("POST", "/api/v1/backfills", {**GOOD, "type": "funding", "span": None}, None, "type: binance does not offer funding for spot markets"),
    # --- streams -----------------------------------------------------------------------------
    ("POST", "/api/v1/streams", {"exchange": "binance", "type": "trades"}, None, "symbols: required field is missing"),
    ("POST", "/api/v1/streams", {**GOOD, "type": "funding", "span": None}, None, "type: 'funding' is not supported here (trades ohlc book)"),
    ("POST", "/api/v1/streams", {**GOOD, "exchange": "nope"}, None, f"exchange: 'nope' is not a known exchange ({KNOWN})"),
    ("POST", "/api/v1/streams", {**GOOD, "span": "2m"}, None, f"span: '2m' is not a span ({SPAN_CHOICES})"),
    # --- runs --------------------------------------------------------------------------------
    ("GET", "/api/v1/runs", {"state": "done"}, None, "state: 'done' is not one of: pending running succeeded partial failed cancelled"),
    ("GET", "/api/v1/runs", {"operation": "sync"}, None, "operation: 'sync' is not one of: backfill stream compact import"),
    ("GET", "/api/v1/runs", {"limit": "0"}, None, "limit: '0' is not a number between 1 and 1000"),
    ("GET", "/api/v1/runs", {"limit": "ten"}, None, "limit: 'ten' is not a number between 1 and 1000"),
    ("GET", "/api/v1/runs/bad id", None, None, "run_id: 'bad id' is not a run id"),
    ("DELETE", "/api/v1/runs/x*y", None, None, "run_id: 'x*y' is not a run id"),
    # --- live and events ---------------------------------------------------------------------
    ("GET", "/api/v1/live/trades", None, None, f"exchange: required ({KNOWN})"),
    ("GET", "/api/v1/live/trades", {"exchange": "binance"}, None, "symbol: required (e.g. BTC/USDT)"),
    ("GET", "/api/v1/live/trades", {"exchange": "binance", "symbol": "BTC-USDT"}, None, "symbol: 'BTC-USDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
    ("GET", "/api/v1/live/trades", {"exchange": "nope", "symbol": "BTC/USDT"}, None, f"exchange: 'nope' is not a known exchange ({KNOWN})"),
    ("GET", "/api/v1/live/candles", {"exchange": "binance", "symbol": "BTC/USDT"}, None, f"span: ohlc needs a span ({SPAN_CHOICES})"),
    ("GET", "/api/v1/live/candles", {"exchange": "binance", "symbol": "BTC/USDT", "span": "9m"}, None, f"span: '9m' is not a span ({SPAN_CHOICES})"),
    ("GET", "/api/v1/live/trades", {"exchange": "binance", "symbol": "BTC/USDT"}, {"Last-Event-ID": "abc"}, "Last-Event-ID: 'abc' is not an event id (a non-negative integer)"),
    ("GET", "/api/v1/events", {"run_id": "../x"}, None, "run_id: '../x' is not a run id"),
    # --- inventory and jobs ------------------------------------------------------------------
    ("GET", "/api/v1/inventory", {"type": "foo"}, None, f"type: 'foo' is not a data type {TYPES}"),
    ("GET", "/api/v1/inventory", {"exchange": "nope"}, None, f"exchange: 'nope' is not a known exchange ({KNOWN})"),
    ("POST", "/api/v1/jobs/bad job/run", None, None, "job_id: 'bad job' is not an id"),
]
# fmt: on


def test_the_table_is_large() -> None:
    """The table covers every route family with more than 40 cases."""
    assert len(CASES) >= 40


async def test_bad_input_is_a_400_naming_the_field(web: Web, tmp_path: Path) -> None:
    """Every request in CASES answers 400 with exactly its expected ``{"error": "field: message"}``; nothing is written."""
    mismatches = []
    for method, path, payload, headers, expected in CASES:
        kwargs: dict[str, Any] = {"headers": headers}
        if method == "GET" or method == "DELETE":
            kwargs["params"] = payload
        elif isinstance(payload, str):
            kwargs["content"] = payload
            kwargs["headers"] = {"content-type": "application/json"}
        elif payload is not None:
            kwargs["json"] = payload
        r = await web.client.request(method, path, **kwargs)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        text = body.get("error") if isinstance(body, dict) else None
        if not isinstance(text, str) or r.status_code != 400:
            ok = False
        elif expected.endswith("…"):
            ok = text.startswith(expected[:-1])
        else:
            ok = text == expected
        if not ok:
            mismatches.append((method, path, payload, r.status_code, body, expected))
    assert mismatches == [], "\n".join(map(repr, mismatches))
    assert (await web.client.get("/api/v1/runs")).json() == []  # no bad request created a run
    assert not (tmp_path / "lake" / "ohlc").exists()
