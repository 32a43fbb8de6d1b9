"""Bitfinex v2 public REST, sans-IO (``https://api-pub.bitfinex.com/v2``).

Symbols: ``t`` + BASE + QUOTE in Bitfinex's own currency codes, with a colon
when either code is longer than 3 characters (``tBTCUST`` = BTC/USDT,
``tAAVE:USD``). :data:`CODES` holds the renamings Bitfinex publishes in
``pub:map:currency:sym`` for listed currencies (UST = USDT, UDC = USDC, DSH
= DASH, ...); any other code is its own canonical name. The listing is
``/conf/pub:list:pair:exchange`` read through the same table, so a listed
market's native name is always what :func:`symbol_to_native` builds.

OHLC: ``/candles/trade:{TF}:{SYMBOL}/hist?start=&end=&limit=&sort=1`` rows
``[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]`` (close before high; no quote volume
or trade count), ascending with ``sort=1``, up to 10000 a page. The request
widens the bounds by 1 ms on each side (bars only open on the grid, so
nothing extra can arrive) so the result is the same whether Bitfinex treats
them as inclusive or exclusive. Declared spans: 1m 5m 15m 30m 1h 4h 6h 12h
1d (Bitfinex's 3h and 14D have no dccd span; its 7D and 1M bars are not
documented to open on dccd's Monday / calendar-month grid).

Trades: ``/trades/{SYMBOL}/hist?start=&limit=&sort=1`` rows ``[ID, MTS,
AMOUNT, PRICE]``; the sign of AMOUNT is the taker side. Ids are global
across pairs (not consecutive per pair), so the only cursor is a time. The
cursor ``MS:ID,ID..`` re-requests the page's last millisecond and skips the
ids already emitted in it: same-millisecond trades split by a page seam are
kept exactly once (the predecessor's ``last_ms + 1`` dropped them). A page
entirely inside one millisecond cannot advance and raises GapUnfillable.

Gaps: ids are not per-pair sequential (``sequential_trade_ids`` False); a
live gap after a reconnect is refilled by time from
``trades_cursor_after(last trade before the gap)`` up to the first trade
received after it, deduplicated by id.

Book: ``/book/{SYMBOL}/P0?len=`` (len 1, 25 or 100) rows ``[PRICE, COUNT,
AMOUNT]``, AMOUNT > 0 bids, < 0 asks; no time, so ``ts`` is the receive time.

Errors are arrays ``["error", CODE, "message"]`` (11010 ratelimit: the IP is
blocked for 60 s -> RateLimited; 20060 maintenance -> retryable ServerError).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from dccd.domain.capability import Transport
from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import (
    DccdError,
    ExchangeRejected,
    GapUnfillable,
    ProtocolDrift,
    RateLimited,
    ServerError,
    UnsupportedSymbol,
)
from dccd.sources.base import Listing, Market, OhlcPage, Request, TradesPage, decode
from dccd.sources.bitfinex.common import (
    BOOK_LENGTHS,
    CAPABILITIES,
    NAME,
    PAGE_LIMIT,
    RATE_LIMITS,
    TIMEFRAMES,
    symbol_from_native,
    symbol_to_native,
)
from dccd.sources.paging import check_limit

if TYPE_CHECKING:
    pass


WEIGHTS: Final = {"candles": 1, "trades": 2, "book": 1, "conf": 1}


class _Candle(msgspec.Struct, array_like=True, frozen=True):
    mts: int
    open: float
    close: float
    high: float
    low: float
    volume: float


class _Trade(msgspec.Struct, array_like=True, frozen=True):
    id: int
    mts: int
    amount: float
    price: float


class _Level(msgspec.Struct, array_like=True, frozen=True):
    price: float
    count: int
    amount: float


_PAIRS = msgspec.json.Decoder(tuple[list[str]])
_CANDLES = msgspec.json.Decoder(list[_Candle])
_TRADES = msgspec.json.Decoder(list[_Trade])
_BOOK = msgspec.json.Decoder(list[_Level])
_ERROR = msgspec.json.Decoder(tuple[str, int | None, str | None])


# --- symbols --------------------------------------------------------------------------------------


def build_symbols() -> Request:
    """Every exchange (spot) pair: ``/conf/pub:list:pair:exchange``."""
    return Request("GET", "/v2/conf/pub:list:pair:exchange", (), WEIGHTS["conf"], "conf")


def parse_symbols(request: Request, body: bytes) -> Listing:
    """Listing of the spot pairs (all active: the list holds trading pairs only)."""
    (pairs,) = decode(_PAIRS, body, NAME, request.endpoint)
    markets = []
    for pair in pairs:
        try:
            symbol = symbol_from_native(pair)
        except UnsupportedSymbol:
            continue
        markets.append(Market(symbol, "t" + pair, "trading", True))
    return Listing(NAME, tuple(markets))


# --- OHLC -----------------------------------------------------------------------------------------


def build_ohlc(
    symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None, now_ns: int | None = None
) -> Request:
    """Candles opening in ``[start_ns, end_ns]``, ascending, at most ``limit`` (10000).

    Raises:
        NoCapability: a span Bitfinex does not offer.
        ValueError: no bar opens in the range, or a limit outside 1..10000.
    """
    CAPABILITIES.require(DataType.OHLC, Transport.REST, span)
    first, last = span.align_up(start_ns), span.align(end_ns)
    if last < first:
        raise ValueError(f"no {span.label} bar opens in [{start_ns}, {end_ns}]")
    lim = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    params = (
        ("start", str(first // NS_PER_MS - 1)),  # 1 ms outside the grid: inclusive or not, the same bars
        ("end", str(last // NS_PER_MS + 1)),
        ("limit", str(lim)),
        ("sort", "1"),
    )
    path = f"/v2/candles/trade:{TIMEFRAMES[span.label]}:{symbol_to_native(symbol)}/hist"
    return Request("GET", path, params, WEIGHTS["candles"], "candles", state=f"{span.label}:{first}:{last}")


def parse_ohlc(request: Request, body: bytes) -> OhlcPage:
    """Candles of one page, ascending, and the next bar's open if the page was full.

    Raises:
        ProtocolDrift: malformed rows, bars not ascending, off the grid or outside the range.
    """
    ep = request.endpoint
    rows = decode(_CANDLES, body, NAME, ep)
    label, first_s, last_s = request.state.split(":")
    span, first, last = Span.parse(label), int(first_s), int(last_s)
    candles: list[Candle] = []
    prev = first - 1
    for i, r in enumerate(rows):
        ts = r.mts * NS_PER_MS
        if not prev < ts <= last or span.align(ts) != ts:
            why = "not ascending" if ts <= prev else "off the bar grid" if span.align(ts) != ts else "after the range"
            raise ProtocolDrift(NAME, ep, f"bar time {r.mts} {why} - at `$[{i}][0]`")
        prev = ts
        candles.append(Candle(ts, r.open, r.high, r.low, r.close, r.volume))
    nxt = None
    if candles and len(rows) >= int(request.param("limit") or PAGE_LIMIT):
        nxt = span.next(candles[-1].ts)
        nxt = nxt if nxt <= last else None
    return OhlcPage(candles, nxt)


# --- trades ---------------------------------------------------------------------------------------


def _split_cursor(cursor: str) -> tuple[int, frozenset[int]]:
    ms, _, ids = cursor.partition(":")
    parts = ids.split(",") if ids else []
    if not ms.isdigit() or not all(p.isdigit() for p in parts):
        raise ValueError(f"bitfinex trade cursor must be MS or MS:ID,ID..., got {cursor!r}")
    return int(ms), frozenset(int(p) for p in parts)


def build_trades(
    symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
) -> Request:
    """Trades from a millisecond, ascending: ``cursor`` ``MS[:IDS]``, else ``start_ns``, else the first trade.

    The request starts 1 ms early (whatever ``start`` inclusiveness is, the
    seam millisecond is included) and ``state`` keeps the cursor.

    Raises:
        ValueError: a malformed cursor or a limit outside 1..10000.
    """
    if cursor is None:
        cursor = str(0 if start_ns is None else max(0, -(-start_ns // NS_PER_MS)))
    ms, _ = _split_cursor(cursor)
    params = (("start", str(max(0, ms - 1))), ("limit", str(check_limit(limit, PAGE_LIMIT, PAGE_LIMIT))), ("sort", "1"))
    path = f"/v2/trades/{symbol_to_native(symbol)}/hist"
    return Request("GET", path, params, WEIGHTS["trades"], "trades", state=cursor)


def parse_trades(request: Request, body: bytes) -> TradesPage:
    """Trades (taker side from the sign of AMOUNT) not yet emitted, and the next cursor.

    Raises:
        ProtocolDrift: malformed rows or rows not ascending in time.
        GapUnfillable: a full page inside one millisecond (the time cursor cannot advance).
    """
    ep = request.endpoint
    rows = decode(_TRADES, body, NAME, ep)
    ms, seen = _split_cursor(request.state)
    records: list[Trade] = []
    prev = -1
    for i, r in enumerate(rows):
        if r.mts < prev:
            raise ProtocolDrift(NAME, ep, f"trade time {r.mts} not ascending - at `$[{i}][1]`")
        prev = r.mts
        if r.mts < ms or (r.mts == ms and r.id in seen):
            continue  # before the cursor, or already emitted at the seam millisecond
        side = "buy" if r.amount > 0 else "sell" if r.amount < 0 else None
        records.append(Trade(r.mts * NS_PER_MS, str(r.id), r.price, abs(r.amount), side))
    if len(rows) < int(request.param("limit") or PAGE_LIMIT):
        return TradesPage(records, None)
    last_ms = rows[-1].mts
    if last_ms <= ms and not records:
        raise GapUnfillable(f"{NAME} {ep}: more than {len(rows)} trades at ms {ms}; the time cursor cannot advance")
    at_seam = {r.id for r in rows if r.mts == last_ms} | (set(seen) if last_ms == ms else set())
    return TradesPage(records, f"{last_ms}:{','.join(str(i) for i in sorted(at_seam))}")


def trades_cursor_after(last: Trade) -> str | None:
    """Cursor after a stored trade: its millisecond, skipping its id (others of that ms may repeat, same ids)."""
    ms = last.ts // NS_PER_MS
    return f"{ms}:{last.id}" if last.id is not None and last.id.isdigit() else str(ms)


# --- book -----------------------------------------------------------------------------------------


def build_book(symbol: Symbol, depth: int) -> Request:
    """Precision-P0 book with the smallest ``len`` (1, 25, 100) holding ``depth`` levels a side.

    Raises:
        ValueError: depth outside 1..100.
    """
    length = next((n for n in BOOK_LENGTHS if n >= depth), None)
    if depth < 1 or length is None:
        raise ValueError(f"bitfinex book depth must be 1..{BOOK_LENGTHS[-1]}, got {depth}")
    path = f"/v2/book/{symbol_to_native(symbol)}/P0"
    return Request("GET", path, (("len", str(length)),), WEIGHTS["book"], "book", state=str(depth))


def parse_book(request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
    """Top ``depth`` bids (AMOUNT > 0) and asks (AMOUNT < 0), stamped ``recv_ns``.

    Raises:
        ProtocolDrift: malformed rows.
    """
    rows = decode(_BOOK, body, NAME, request.endpoint)
    depth = int(request.state or BOOK_LENGTHS[-1])
    bids = [(r.price, r.amount) for r in rows if r.amount > 0][:depth]
    asks = [(r.price, -r.amount) for r in rows if r.amount < 0][:depth]
    return BookSnapshot(recv_ns, bids, asks)


# --- errors ---------------------------------------------------------------------------------------


def parse_error(status: int, body: bytes) -> DccdError | None:
    """The error of a ``["error", code, message]`` body (any status), or None."""
    head = b"".join(body[:32].split())  # without whitespace: bodies may be pretty-printed
    if head.startswith(b'{"error"') and b"ERR_RATE_LIMIT" in body[:64]:  # the v1-style block answer
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME}: ERR_RATE_LIMIT")
    if not head.startswith(b'["error"'):
        return None
    try:
        _, code, message = _ERROR.decode(body)
    except msgspec.MsgspecError:
        return None
    text = message or ""
    if code == 11010 or "ratelimit" in text:
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME}: {code} {text}")
    if code == 20060 or "maintenance" in text:
        return ServerError(status, f"{NAME}: {code} {text}")
    return ExchangeRejected(NAME, code, text, status=status)
