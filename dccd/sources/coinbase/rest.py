"""Coinbase Exchange REST, sans-IO (``https://api.exchange.coinbase.com``).

Which API: Coinbase runs two public market-data APIs (SPEC §2). dccd uses
**Coinbase Exchange**, because only it gives complete, exactly-once history:

- ``GET /products/{id}/trades`` pages the whole tape, back to the listing, by
  trade id, and trade ids are contiguous per product; Advanced Trade's public
  ``/market/products/{id}/ticker`` returns recent trades only, with no cursor;
- its WebSocket feed (``matches``) carries the same ``trade_id``, so a live
  gap is refilled over REST by id (:mod:`dccd.sources.coinbase.ws`);
- candles: both APIs cap a request at 300 bars and have no quote volume or
  trade count. Exchange offers 1m 5m 15m 1h 6h 1d; Advanced Trade's extra
  30m/2h would need a second host, so they are not declared.

OHLC: ``/products/{id}/candles?granularity=&start=&end=`` rows are
``[time_s, low, high, open, close, volume]`` **newest first**; ``start`` and
``end`` bound the bar open time inclusively (ccxt requests ``end = start +
299 * granularity`` for 300 bars). :func:`build_ohlc` narrows each request to
a window of at most 300 bars and remembers the requested end in
``Request.state``; :func:`parse_ohlc` reverses the rows to ascending, drops
bars outside the window (Coinbase documents that some "may precede your
declared start") and returns the next window's start until the requested end
is covered, so the pages walk forward. Coinbase includes the bar in progress:
a caller wanting closed bars only ends its range before the current bar.

Trades: rows ``{trade_id, side, size, price, time}`` newest first; ``side``
is the **maker's** side, so the stored taker side is its opposite.
``after=X`` returns the trades with id < X (the ``CB-AFTER`` header of a page
is its lowest id, so the cursor is derived from the body). dccd walks the
tape forward in id windows: the page for cursor ``N`` asks ``after=N+limit``
and holds exactly ids ``N .. N+limit-1`` (rows below ``N``, which Coinbase
adds when ids are missing, are dropped and the missing ids reported as
``id_gaps``). A page whose top id does not exist yet is the head of the tape.
Starting at a time needs the first id at or after it: the cursor
``seek:LO:HI:T`` binary-searches ids with one-row probes (about 30 requests
for a billion trades), starting from the newest trade.

Gaps: ids are sequential, so the stream actor refills a hole ``[a, b]``
with ``build_trades(cursor=str(a))`` until it passes ``b``.

Book: ``/products/{id}/book?level=2`` (the whole aggregated book; no depth
parameter, so :func:`parse_book` keeps the requested top ``depth`` levels),
``sequence`` kept as ``seq`` and ``time`` as ``ts`` when present.

Errors are ``{"message": "..."}`` bodies with a 4xx/5xx status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import msgspec

from dccd.domain.capability import Transport
from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_S, ns_to_iso, parse_iso_ns
from dccd.errors import DccdError, ExchangeRejected, ProtocolDrift, RateLimited
from dccd.sources.base import Listing, Market, OhlcPage, Request, TradesPage, decode, number
from dccd.sources.coinbase.common import (
    ASSET,
    CAPABILITIES,
    GRANULARITIES,
    MAX_DEPTH,
    NAME,
    OHLC_LIMIT,
    RATE_LIMITS,
    TAKER_SIDE,
    TRADES_LIMIT,
    symbol_to_native,
)
from dccd.sources.isotime import iso_ns
from dccd.sources.paging import bar_window, check_limit

if TYPE_CHECKING:
    pass


PRODUCTS: Final = "/products"


# --- private views of Coinbase payloads --------------------------------------------------------


class _Product(msgspec.Struct, frozen=True):
    id: str
    base_currency: str
    quote_currency: str
    status: str = ""
    trading_disabled: bool = False


class _CandleRow(msgspec.Struct, array_like=True, frozen=True):
    time: int
    low: float
    high: float
    open: float
    close: float
    volume: float


class _Trade(msgspec.Struct, frozen=True):
    trade_id: int  # documented as an integer; a 2023 capture quotes it ("15035219"), so _TRADES is lax
    side: str
    size: str
    price: str
    time: str


class _Book(msgspec.Struct, frozen=True):
    bids: list[tuple[str, str, int]]
    asks: list[tuple[str, str, int]]
    sequence: int | None = None
    time: str | None = None


class _Error(msgspec.Struct, frozen=True):
    message: str


_PRODUCTS = msgspec.json.Decoder(list[_Product])
_CANDLES = msgspec.json.Decoder(list[_CandleRow])
_TRADES = msgspec.json.Decoder(list[_Trade], strict=False)  # lax only lets digit strings become ints here
_BOOK = msgspec.json.Decoder(_Book)
_ERROR = msgspec.json.Decoder(_Error)


# --- symbols --------------------------------------------------------------------------------------


def build_symbols() -> Request:
    """Every product (``GET /products``)."""
    return Request("GET", PRODUCTS, (), 1, "products")


def parse_symbols(request: Request, body: bytes) -> Listing:
    """Listing of every product; ``online`` and not trading-disabled ones are active."""
    products = decode(_PRODUCTS, body, NAME, request.endpoint)
    markets = tuple(
        Market(
            Symbol(p.base_currency, p.quote_currency), p.id, p.status, p.status == "online" and not p.trading_disabled
        )
        for p in products
        if ASSET.match(p.base_currency) and ASSET.match(p.quote_currency)
    )
    return Listing(NAME, markets)


# --- OHLC -----------------------------------------------------------------------------------------


def build_ohlc(
    symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None, now_ns: int | None = None
) -> Request:
    """Candles opening in ``[start_ns, end_ns]``, narrowed to a window of at most ``limit`` (300) bars.

    Raises:
        NoCapability: a span Coinbase does not offer.
        ValueError: no bar opens in the range, or a limit outside 1..300.
    """
    CAPABILITIES.require(DataType.OHLC, Transport.REST, span)
    first, last = bar_window(span, start_ns, end_ns, check_limit(limit, OHLC_LIMIT, OHLC_LIMIT))
    params = (("granularity", str(GRANULARITIES[span.label])), ("start", ns_to_iso(first)), ("end", ns_to_iso(last)))
    path = f"{PRODUCTS}/{symbol_to_native(symbol)}/candles"
    return Request("GET", path, params, 1, "candles", state=str(end_ns))


def _param(request: Request, name: str) -> str:
    value = request.param(name)
    if value is None:
        raise ValueError(f"request to {request.endpoint} has no {name!r} parameter")
    return value


def parse_ohlc(request: Request, body: bytes) -> OhlcPage:
    """Candles of a window, ascending, and the next window's start (None once the requested end is covered).

    Raises:
        ProtocolDrift: malformed rows, bars not newest-first or not on the granularity grid.
    """
    ep = request.endpoint
    rows = decode(_CANDLES, body, NAME, ep)
    gran_ns = int(_param(request, "granularity")) * NS_PER_S
    first, last = parse_iso_ns(_param(request, "start")), parse_iso_ns(_param(request, "end"))
    candles: list[Candle] = []
    prev: int | None = None
    for i in range(len(rows) - 1, -1, -1):
        r = rows[i]
        ts = r.time * NS_PER_S
        if ts % gran_ns:
            raise ProtocolDrift(
                NAME, ep, f"bar time {r.time} is not on the {gran_ns // NS_PER_S}s grid - at `$[{i}][0]`"
            )
        if prev is not None and ts <= prev:
            raise ProtocolDrift(NAME, ep, f"bar time {r.time} is not newest-first - at `$[{i}][0]`")
        prev = ts
        if first <= ts <= last:  # Coinbase may add bars before `start`
            candles.append(Candle(ts, r.open, r.high, r.low, r.close, r.volume))
    nxt = last + gran_ns
    return OhlcPage(candles, nxt if nxt <= int(request.state or last) else None)


# --- trades ---------------------------------------------------------------------------------------


def _trades_path(symbol: Symbol) -> str:
    return f"{PRODUCTS}/{symbol_to_native(symbol)}/trades"


def build_trades(
    symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
) -> Request:
    """Next page of the tape (see the module docstring for the cursor forms).

    ``cursor`` ``N`` -> ids ``N .. N+limit-1``; ``seek:LO:HI:T`` -> one probe of
    the binary search; no cursor -> the newest trade, which starts the search
    for ``start_ns`` (the first trade when None).

    Raises:
        ValueError: a malformed cursor or a limit outside 1..1000.
    """
    path = _trades_path(symbol)
    lim = check_limit(limit, TRADES_LIMIT, TRADES_LIMIT)
    if cursor is None:
        target = 0 if start_ns is None else max(0, start_ns)
        return Request("GET", path, (("limit", "1"),), 1, "trades.seek", state=f"seek:1:0:{target}")
    if cursor.startswith("seek:"):
        lo, hi, _ = _seek(cursor)
        mid = (lo + hi) // 2
        return Request("GET", path, (("after", str(mid + 1)), ("limit", "1")), 1, "trades.seek", state=cursor)
    if not cursor.isdigit() or int(cursor) < 1:
        raise ValueError(f"coinbase trade cursor must be a trade id or seek:LO:HI:T, got {cursor!r}")
    first = int(cursor)
    return Request("GET", path, (("after", str(first + lim)), ("limit", str(lim))), 1, "trades", state=cursor)


def _seek(cursor: str) -> tuple[int, int, int]:
    parts = cursor.split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"malformed coinbase seek cursor {cursor!r} (expected seek:LO:HI:T)")
    return int(parts[1]), int(parts[2]), int(parts[3])


def _trade(r: _Trade, i: int, ep: str) -> Trade:
    side = TAKER_SIDE.get(r.side)
    if side is None:
        raise ProtocolDrift(NAME, ep, f"side {r.side!r} is not buy/sell - at `$[{i}].side`")
    try:
        ts = iso_ns(r.time)
    except ValueError as exc:
        raise ProtocolDrift(NAME, ep, f"{exc} - at `$[{i}].time`") from None
    return Trade(
        ts, str(r.trade_id), number(r.price, NAME, ep, f"$[{i}].price"), number(r.size, NAME, ep, f"$[{i}].size"), side
    )


def parse_trades(request: Request, body: bytes) -> TradesPage:
    """Trades of an id window, ascending, with taker sides, or one binary-search step.

    Raises:
        ProtocolDrift: malformed rows or ids not newest-first / outside the window.
    """
    ep = request.endpoint
    rows = decode(_TRADES, body, NAME, ep)
    if request.state.startswith("seek:"):
        return TradesPage([], _seek_step(request.state, rows, ep))
    first = int(request.state)
    top = int(_param(request, "after")) - 1
    records: list[Trade] = []
    gaps: list[tuple[int, int]] = []
    expect = top
    for i, r in enumerate(rows):
        if r.trade_id > expect:
            why = f"above the window top {top}" if i == 0 else "not newest-first"
            raise ProtocolDrift(NAME, ep, f"trade id {r.trade_id} {why} - at `$[{i}].trade_id`")
        if r.trade_id < first:  # filler below the window when ids are missing: not this page's
            break
        if i and r.trade_id < expect:
            gaps.append((r.trade_id + 1, expect))
        expect = r.trade_id - 1
        records.append(_trade(r, i, ep))
    records.reverse()
    gaps.reverse()
    if records and expect >= first:
        gaps.insert(0, (first, expect))
    head = not rows or rows[0].trade_id < top
    return TradesPage(records, None if head else str(top + 1), tuple(gaps))


def _seek_step(state: str, rows: Sequence[_Trade], ep: str) -> str | None:
    """Next cursor of the binary search for the first id whose time is >= T (ids < LO are before T)."""
    lo, hi, target = _seek(state)
    if hi == 0:  # the probe of the newest trade
        if not rows:
            return None  # nothing traded yet
        newest = rows[0]
        if _trade(newest, 0, ep).ts < target:
            return str(newest.trade_id + 1)
        hi = newest.trade_id
    elif rows and _trade(rows[0], 0, ep).ts >= target:
        hi = max(rows[0].trade_id, lo)
    else:
        lo = (lo + hi) // 2 + 1
    return str(hi) if lo >= hi else f"seek:{lo}:{hi}:{target}"


def trades_cursor_after(last: Trade) -> str | None:
    """Cursor right after a stored trade: its id + 1 (None without a numeric id)."""
    if last.id is None or not last.id.isdigit():
        return None
    return str(int(last.id) + 1)


# --- book -----------------------------------------------------------------------------------------


def build_book(symbol: Symbol, depth: int) -> Request:
    """The aggregated level-2 book; ``depth`` levels per side are kept by :func:`parse_book`.

    Raises:
        ValueError: depth outside 1..10000.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"coinbase book depth must be 1..{MAX_DEPTH}, got {depth}")
    path = f"{PRODUCTS}/{symbol_to_native(symbol)}/book"
    return Request("GET", path, (("level", "2"),), 1, "book", state=str(depth))


def parse_book(request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
    """Top ``depth`` levels, ``seq = sequence``, ``ts`` = the book's ``time`` (else ``recv_ns``).

    Raises:
        ProtocolDrift: malformed payload or non-numeric levels.
    """
    ep = request.endpoint
    book = decode(_BOOK, body, NAME, ep)
    depth = int(request.state or MAX_DEPTH)
    bids = [
        (number(p, NAME, ep, f"$.bids[{i}][0]"), number(q, NAME, ep, f"$.bids[{i}][1]"))
        for i, (p, q, _) in enumerate(book.bids[:depth])
    ]
    asks = [
        (number(p, NAME, ep, f"$.asks[{i}][0]"), number(q, NAME, ep, f"$.asks[{i}][1]"))
        for i, (p, q, _) in enumerate(book.asks[:depth])
    ]
    ts = recv_ns
    if book.time:
        try:
            ts = iso_ns(book.time)
        except ValueError as exc:
            raise ProtocolDrift(NAME, ep, f"{exc} - at `$.time`") from None
    return BookSnapshot(ts, bids, asks, book.sequence)


# --- errors ---------------------------------------------------------------------------------------


def parse_error(status: int, body: bytes) -> DccdError | None:
    """RateLimited for 429, ExchangeRejected(None, message) for other ``{"message": ...}`` error bodies.

    A 2xx answer carrying only a ``message`` object is an error too (never an
    empty page). Other bodies return None: the transport reports them itself.
    """
    if not body or (status < 400 and not body.lstrip().startswith(b'{"message"')):
        return None
    try:
        message = _ERROR.decode(body).message
    except msgspec.MsgspecError:
        return None
    if status == 429:
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME}: {message}")
    return ExchangeRejected(NAME, None, message, status=status)
