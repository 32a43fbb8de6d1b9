"""The documented paging contract (dccd/sources/base.py) for round-trip tests against the fakes.

Each helper drives the production walk (dccd/sources/walker.py) through the
production loop (actors/pager.py) with no writer gate: listing check,
windows until ``next_start_ns`` passes the end, trade cursors until None, so
a test that walks a fake with them proves an adapter's pages are complete
and exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from dccd.actors.pager import run_walk

from dccd.domain import Candle, DataType, Funding, OpenInterest, Span, Symbol, Trade, Transport
from dccd.sources.base import DerivativesAdapter, listing_for
from dccd.sources.walker import SeriesWalk, TradesWalk, Walk, ohlc_walk, series_calls
from dccd.transport.http import ExchangeClient

T = TypeVar("T")


async def check_listed(client: ExchangeClient, symbol: Symbol) -> str:
    """The exchange name of ``symbol`` after the listing check (UnsupportedSymbol otherwise)."""
    req, parse = listing_for(client.adapter, symbol)
    return parse(req, await client.fetch(req)).require(symbol).native


async def walk_ohlc(client: ExchangeClient, symbol: Symbol, span: Span, start_ns: int, end_ns: int, **kw: Any) -> list[Candle]:  # fmt: skip
    """Every bar of ``[start_ns, end_ns]`` through the OHLC walk."""
    adapter = client.adapter
    adapter.capabilities.require_symbol(DataType.OHLC, Transport.REST, span, symbol)
    return await _collect(ohlc_walk(adapter, symbol, span, start_ns, end_ns + 1, last_ns=end_ns, **kw), client)


async def walk_trades(client: ExchangeClient, symbol: Symbol, start_ns: int | None, end_ns: int, **kw: Any) -> tuple[list[Trade], list[tuple[int, int]]]:  # fmt: skip
    """Trades from ``start_ns`` up to ``end_ns`` (or the head) and the id gaps reported on the way."""
    walk = TradesWalk(client.adapter, symbol, start_ns=start_ns, stop_ts=end_ns + 1, **kw)
    trades = await _collect(walk, client)
    return trades, [(h.lo, h.hi) for h in walk.holes]


async def walk_funding(client: ExchangeClient, symbol: Symbol, start_ns: int, end_ns: int, **kw: Any) -> list[Funding]:
    """Every funding print of ``[start_ns, end_ns]`` through the derivatives walk."""
    adapter = client.adapter
    assert isinstance(adapter, DerivativesAdapter)
    adapter.capabilities.require(DataType.FUNDING, Transport.REST, market="perp")
    build, parse = series_calls(adapter, DataType.FUNDING, symbol, **kw)
    return await _collect(SeriesWalk[Funding](build, parse, start_ns, end_ns, inclusive=True), client)


async def walk_oi(client: ExchangeClient, symbol: Symbol, start_ns: int, end_ns: int, **kw: Any) -> list[OpenInterest]:
    """Every open-interest sample of ``[start_ns, end_ns]`` through the derivatives walk."""
    adapter = client.adapter
    assert isinstance(adapter, DerivativesAdapter)
    adapter.capabilities.require(DataType.OI, Transport.REST, kw.get("span"), market="perp")
    build, parse = series_calls(adapter, DataType.OI, symbol, **kw)
    return await _collect(SeriesWalk[OpenInterest](build, parse, start_ns, end_ns, inclusive=True), client)


async def _collect(walk: Walk[T], client: ExchangeClient) -> list[T]:
    """Every record of ``walk`` through the actors' paging loop; a stuck cursor fails the test."""
    out: list[T] = []

    async def deliver(records: Sequence[T]) -> None:
        out.extend(records)

    await run_walk(walk, client, deliver)
    assert walk.stuck is None, walk.stuck
    return out
