"""The paging loops of dccd/sources/base.py's docstring, for round-trip tests against the fakes.

They follow the documented contract literally (listing check, windows until
``next_start_ns`` passes the end, trade cursors until None), so a test that
walks a fake with them proves an adapter's pages are complete and exactly once.
"""

from __future__ import annotations

from typing import Any

from dccd.domain import Candle, DataType, Funding, OpenInterest, Span, Symbol, Trade, Transport
from dccd.sources.base import DerivativesAdapter, listing_for
from dccd.transport.http import ExchangeClient


async def check_listed(client: ExchangeClient, symbol: Symbol) -> str:
    """The exchange name of ``symbol`` after the listing check (UnsupportedSymbol otherwise)."""
    req, parse = listing_for(client.adapter, symbol)
    return parse(req, await client.fetch(req)).require(symbol).native


async def walk_ohlc(client: ExchangeClient, symbol: Symbol, span: Span, start_ns: int, end_ns: int, **kw: Any) -> list[Candle]:  # fmt: skip
    """Every bar of ``[start_ns, end_ns]`` through the OHLC loop."""
    adapter = client.adapter
    adapter.capabilities.require(DataType.OHLC, Transport.REST, span, "perp" if symbol.is_perp else "spot")
    out: list[Candle] = []
    start: int | None = start_ns
    while start is not None and start <= end_ns:
        req = adapter.build_ohlc(symbol, span, start, end_ns, **kw)
        page = adapter.parse_ohlc(req, await client.fetch(req))
        out.extend(page.candles)
        start = page.next_start_ns
    return [c for c in out if start_ns <= c.ts <= end_ns]


async def walk_trades(client: ExchangeClient, symbol: Symbol, start_ns: int | None, end_ns: int, **kw: Any) -> tuple[list[Trade], list[tuple[int, int]]]:  # fmt: skip
    """Trades from ``start_ns`` up to ``end_ns`` (or the head) and the id gaps reported on the way."""
    adapter = client.adapter
    out: list[Trade] = []
    gaps: list[tuple[int, int]] = []
    cursor = None
    while True:
        req = adapter.build_trades(symbol, cursor=cursor, start_ns=start_ns if cursor is None else None, **kw)
        page = adapter.parse_trades(req, await client.fetch(req))
        out.extend(page.records)
        gaps.extend(page.id_gaps)
        if page.next_cursor is None or (out and out[-1].ts > end_ns):
            break
        cursor = page.next_cursor
    return [t for t in out if t.ts <= end_ns], gaps


async def walk_funding(client: ExchangeClient, symbol: Symbol, start_ns: int, end_ns: int, **kw: Any) -> list[Funding]:
    """Every funding print of ``[start_ns, end_ns]`` through the derivatives loop."""
    adapter = client.adapter
    assert isinstance(adapter, DerivativesAdapter)
    adapter.capabilities.require(DataType.FUNDING, Transport.REST, market="perp")
    out: list[Funding] = []
    start: int | None = start_ns
    while start is not None and start <= end_ns:
        req = adapter.build_funding(symbol, start, end_ns, **kw)
        page = adapter.parse_funding(req, await client.fetch(req))
        out.extend(page.records)
        start = page.next_start_ns
    return out


async def walk_oi(client: ExchangeClient, symbol: Symbol, start_ns: int, end_ns: int, **kw: Any) -> list[OpenInterest]:
    """Every open-interest sample of ``[start_ns, end_ns]`` through the derivatives loop."""
    adapter = client.adapter
    assert isinstance(adapter, DerivativesAdapter)
    adapter.capabilities.require(DataType.OI, Transport.REST, kw.get("span"), market="perp")
    out: list[OpenInterest] = []
    start: int | None = start_ns
    while start is not None and start <= end_ns:
        req = adapter.build_oi(symbol, start, end_ns, **kw)
        page = adapter.parse_oi(req, await client.fetch(req))
        out.extend(page.records)
        start = page.next_start_ns
    return out
