"""Binance spot REST, sans-IO: request specs and parsers (``https://api.binance.com``).

OHLC: ``GET /api/v3/klines`` (weight 2), every span dccd knows (``1s`` ..
``1M``), at most 1000 bars a page, ascending; ``startTime``/``endTime`` both
filter the bar *open* time inclusively, so the next page starts one span
after the last bar returned. Rows have 12 columns; quote volume and trade
count are native. A short page means the exchange has nothing more up to the
requested end: a gap inside it is a gap at Binance, never a paging artefact.

Trades: complete, exactly-once history comes from ``GET
/api/v3/historicalTrades?fromId=`` (weight 25 per 1000 trades), not from
``aggTrades`` (weight 4), because:

- one row is one trade; an aggregate trade merges the fills of one taker
  order at one price, so it is not a trade record;
- trade ids are consecutive per symbol and are the ids the live ``@trade``
  stream carries (``t``), so REST backfill and live recording share one id
  space: the lake deduplicates on ``id`` and a missing id is a provable gap.
  Aggregate ids (``a``) are a different series, and mixing the two in one
  dataset would duplicate every trade;
- ``fromId`` is an id cursor: page N+1 starts at last id + 1, so pages
  neither overlap nor drop same-millisecond trades.

``historicalTrades`` cannot start at a time, so a walk from ``start_ns``
first asks ``aggTrades?startTime=&limit=1`` (weight 4): its ``f`` field is
the id of the first trade at or after that time. The cost is ~6x more weight
per trade than ``aggTrades``: about 190k trades/min at the default 80 % of
6000 weight/min.

Book: ``GET /api/v3/depth`` (weight 5/25/50/250 by depth tier, up to 5000
levels). The payload carries no timestamp, so the snapshot's ``ts`` is the
wall-clock time the response was received (passed in by the caller) and
``lastUpdateId`` is kept as ``seq``: it is the number the diff-depth stream's
``U``/``u`` continue from.

Funding rates and open interest of USD-M perpetuals (``BTC/USDT:perp``) come
from the futures host through :mod:`dccd.sources.binance.futures`.

Symbols: ``BTC/USDT`` <-> ``BTCUSDT``; ``GET /api/v3/exchangeInfo`` (weight 20)
is the listing check run before any paging, and carries the live
``REQUEST_WEIGHT`` budget. Errors are ``{"code": -1121, "msg": "Invalid
symbol."}`` bodies -> :class:`~dccd.errors.ExchangeRejected`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from dccd.domain.records import BookSnapshot, Candle, Trade
from dccd.domain.spans import SPAN_LABELS, Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import DccdError, ExchangeRejected, ProtocolDrift
from dccd.sources.base import Listing, Market, OhlcPage, RateLimits, Request, TradesPage, decode, number
from dccd.sources.binance.common import (
    ASSET,
    MAX_DEPTH,
    NAME,
    PAGE_LIMIT,
    RATE_LIMITS,
    symbol_to_native,
)
from dccd.sources.paging import check_limit, check_range, int_param, ms_ceil

KLINES: Final = "/api/v3/klines"
AGG_TRADES: Final = "/api/v3/aggTrades"
HISTORICAL_TRADES: Final = "/api/v3/historicalTrades"
RECENT_TRADES: Final = "/api/v3/trades"
DEPTH: Final = "/api/v3/depth"
EXCHANGE_INFO: Final = "/api/v3/exchangeInfo"

WEIGHTS: Final[dict[str, int]] = {
    KLINES: 2,
    AGG_TRADES: 4,
    HISTORICAL_TRADES: 25,
    RECENT_TRADES: 25,
    EXCHANGE_INFO: 20,
}
# Binance interval names equal dccd's span labels (case-sensitive: 1m minute, 1M month).
INTERVALS: Final[dict[str, str]] = {label: label for label in SPAN_LABELS}


# --- private views of Binance payloads (never leave this module) -------------------------------


class _Kline(msgspec.Struct, array_like=True, frozen=True):
    open_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    close_time: int
    quote_volume: str
    trades: int
    taker_buy_base: str
    taker_buy_quote: str


class _KlineF(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Fast path: prices decoded straight to float (msgspec rounds decimal strings correctly)."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int
    quote_volume: float
    trades: int
    taker_buy_base: float
    taker_buy_quote: float


class _TradeF(msgspec.Struct, frozen=True, gc=False):
    id: int
    price: float
    qty: float
    time: int
    isBuyerMaker: bool


class _Trade(msgspec.Struct, frozen=True):
    id: int
    price: str
    qty: str
    time: int
    isBuyerMaker: bool


class _AggTrade(msgspec.Struct, frozen=True):
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 (Binance's field name)
    T: int
    m: bool


class _Depth(msgspec.Struct, frozen=True):
    lastUpdateId: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class _SymbolInfo(msgspec.Struct, frozen=True):
    symbol: str
    baseAsset: str
    quoteAsset: str
    status: str = ""


class _RateLimit(msgspec.Struct, frozen=True):
    rateLimitType: str = ""
    interval: str = ""
    intervalNum: int = 1
    limit: int = 0


class _ExchangeInfo(msgspec.Struct, frozen=True):
    symbols: list[_SymbolInfo]
    rateLimits: list[_RateLimit] = []


class _Error(msgspec.Struct, frozen=True):
    code: int
    msg: str


_KLINES = msgspec.json.Decoder(list[_Kline])
_TRADES = msgspec.json.Decoder(list[_Trade])
# strict=False only lets numeric strings become floats here; any failure (or a
# non-finite value) falls back to the strict decoders for an exact error path.
_KLINES_F = msgspec.json.Decoder(list[_KlineF], strict=False)
_TRADES_F = msgspec.json.Decoder(list[_TradeF], strict=False)


def _fast(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


_AGG = msgspec.json.Decoder(list[_AggTrade])
_DEPTH = msgspec.json.Decoder(_Depth)
_INFO = msgspec.json.Decoder(_ExchangeInfo)
_ERROR = msgspec.json.Decoder(_Error)
_INTERVAL_S: Final = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


def depth_weight(depth: int) -> int:
    """Request weight of ``/api/v3/depth`` for ``depth`` levels (Binance's tiers)."""
    if depth <= 100:
        return 5
    if depth <= 500:
        return 25
    if depth <= 1000:
        return 50
    return 250


# --- symbols --------------------------------------------------------------------------------------


def build_symbols() -> Request:
    """The full symbol table (``exchangeInfo``)."""
    return Request("GET", EXCHANGE_INFO, (), WEIGHTS[EXCHANGE_INFO], "exchangeInfo")


def parse_symbols(request: Request, body: bytes) -> Listing:
    """Listing (markets in every status, plus the live weight budget) from ``exchangeInfo``.

    Markets whose asset codes dccd cannot name (non-alphanumeric) are left
    out: no dccd symbol can address them.
    """
    info = decode(_INFO, body, NAME, request.endpoint)
    markets = tuple(
        Market(Symbol(s.baseAsset, s.quoteAsset), s.symbol, s.status, s.status == "TRADING")
        for s in info.symbols
        if ASSET.match(s.baseAsset) and ASSET.match(s.quoteAsset)
    )
    limits = None
    for rl in info.rateLimits:
        unit = _INTERVAL_S.get(rl.interval)
        if rl.rateLimitType == "REQUEST_WEIGHT" and unit is not None and rl.limit > 0:
            letter = rl.interval[0].lower()
            limits = RateLimits(
                rl.limit,
                float(unit * rl.intervalNum),
                f"x-mbx-used-weight-{rl.intervalNum}{letter}",
                RATE_LIMITS.default_retry_after_s,
                RATE_LIMITS.default_ban_s,
            )
            break
    return Listing(NAME, markets, limits)


# --- OHLC -----------------------------------------------------------------------------------------


def build_ohlc(
    symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None, now_ns: int | None = None
) -> Request:
    """Klines opening in ``[start_ns, end_ns]`` (ms, start rounded up, end down), ascending.

    Raises:
        NoCapability: via the caller's ``capabilities.require`` (every span is offered here).
        ValueError: ``start_ns > end_ns`` or a limit outside 1..1000.
    """
    check_range(start_ns, end_ns)
    params = (
        ("symbol", symbol_to_native(symbol)),
        ("interval", INTERVALS[span.label]),
        ("startTime", str(ms_ceil(start_ns))),
        ("endTime", str(end_ns // NS_PER_MS)),
        ("limit", str(check_limit(limit, PAGE_LIMIT, PAGE_LIMIT))),
    )
    return Request("GET", KLINES, params, WEIGHTS[KLINES], "klines")


def _ascending_within(rows: Any, start_ms: int, end_ms: int) -> bool:
    prev = start_ms - 1
    for r in rows:
        if not prev < r.open_time <= end_ms:
            return False
        prev = r.open_time
    return True


def _parse_ohlc_strict(ep: str, body: bytes, start_ms: int, end_ms: int) -> list[Candle]:
    rows = decode(_KLINES, body, NAME, ep)
    candles: list[Candle] = []
    prev = start_ms - 1
    for i, r in enumerate(rows):
        if not prev < r.open_time <= end_ms:
            why = "not ascending" if r.open_time <= prev else f"after endTime {end_ms}"
            if r.open_time < start_ms:
                why = f"before startTime {start_ms}"
            raise ProtocolDrift(NAME, ep, f"bar open time {r.open_time} {why} - at `$[{i}][0]`")
        prev = r.open_time
        candles.append(
            Candle(
                r.open_time * NS_PER_MS,
                number(r.open, NAME, ep, f"$[{i}][1]"),
                number(r.high, NAME, ep, f"$[{i}][2]"),
                number(r.low, NAME, ep, f"$[{i}][3]"),
                number(r.close, NAME, ep, f"$[{i}][4]"),
                number(r.volume, NAME, ep, f"$[{i}][5]"),
                number(r.quote_volume, NAME, ep, f"$[{i}][7]"),
                r.trades,
            )
        )
    return candles


def parse_ohlc(request: Request, body: bytes) -> OhlcPage:
    """Candles of a klines page and the open time of the next page.

    Raises:
        ProtocolDrift: malformed rows, non-numeric prices, bars out of order or
            outside the requested range.
    """
    ep = request.endpoint
    start_ms, end_ms = int_param(request, "startTime"), int_param(request, "endTime")
    fast = _fast(_KLINES_F, body)
    candles: list[Candle] = []
    # NaN/inf strings decode on this path; the lake's values_finite gate quarantines such rows.
    if fast is not None and _ascending_within(fast, start_ms, end_ms):
        candles = [
            Candle(r.open_time * NS_PER_MS, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trades)
            for r in fast
        ]
    else:
        candles = _parse_ohlc_strict(ep, body, start_ms, end_ms)
    next_start: int | None = None
    if candles and len(candles) >= int_param(request, "limit"):
        span = Span.parse(request.param("interval") or "")
        nxt = span.next(candles[-1].ts)
        next_start = nxt if nxt <= end_ms * NS_PER_MS else None
    return OhlcPage(candles, next_start)


# --- trades ---------------------------------------------------------------------------------------


def build_trades(
    symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
) -> Request:
    """Next page of the trade tape.

    ``cursor`` (a trade id) -> ``historicalTrades?fromId=cursor``; else
    ``start_ns`` -> the id lookup ``aggTrades?startTime=..&limit=1`` (its page
    has no records, only the cursor); else the tape from its first trade (id 0).
    """
    native = symbol_to_native(symbol)
    if cursor is None and start_ns is not None:
        params = (("symbol", native), ("startTime", str(ms_ceil(start_ns))), ("limit", "1"))
        return Request("GET", AGG_TRADES, params, WEIGHTS[AGG_TRADES], "aggTrades")
    from_id = "0" if cursor is None else cursor
    if not from_id.isdigit():
        raise ValueError(f"binance trade cursor must be a trade id, got {cursor!r}")
    params = (("symbol", native), ("fromId", from_id), ("limit", str(check_limit(limit, PAGE_LIMIT, PAGE_LIMIT))))
    return Request("GET", HISTORICAL_TRADES, params, WEIGHTS[HISTORICAL_TRADES], "historicalTrades")


def build_recent_trades(symbol: Symbol, *, limit: int | None = None) -> Request:
    """The most recent trades (``/api/v3/trades``); not pageable."""
    params = (("symbol", symbol_to_native(symbol)), ("limit", str(check_limit(limit, 500, PAGE_LIMIT))))
    return Request("GET", RECENT_TRADES, params, WEIGHTS[RECENT_TRADES], "trades")


def parse_trades(request: Request, body: bytes) -> TradesPage:
    """Trades (taker side from ``isBuyerMaker``: buyer is maker => taker sold) and the next cursor.

    Raises:
        ProtocolDrift: malformed rows, ids not ascending or before ``fromId``.
    """
    ep = request.endpoint
    if request.path == AGG_TRADES:
        aggs = decode(_AGG, body, NAME, ep)
        return TradesPage([], str(aggs[0].f) if aggs else None)
    from_id = request.param("fromId")
    fast = _fast(_TRADES_F, body)
    if fast is not None:  # NaN/inf: quarantined by the lake's values_finite gate
        return _trades_page(request, fast, from_id)
    rows = decode(_TRADES, body, NAME, ep)
    expect = int(from_id) if from_id is not None else None
    gaps: list[tuple[int, int]] = []
    records: list[Trade] = []
    for i, r in enumerate(rows):
        if expect is not None:
            if r.id < expect:
                why = f"not after {expect - 1}" if i else f"before fromId {expect}"
                raise ProtocolDrift(NAME, ep, f"trade id {r.id} {why} - at `$[{i}].id`")
            if r.id > expect:
                gaps.append((expect, r.id - 1))
        expect = r.id + 1
        records.append(
            Trade(
                r.time * NS_PER_MS,
                str(r.id),
                number(r.price, NAME, ep, f"$[{i}].price"),
                number(r.qty, NAME, ep, f"$[{i}].qty"),
                "sell" if r.isBuyerMaker else "buy",
            )
        )
    full = from_id is not None and len(rows) >= int_param(request, "limit")
    return TradesPage(records, str(rows[-1].id + 1) if full else None, tuple(gaps))


def _trades_page(request: Request, rows: list[_TradeF], from_id: str | None) -> TradesPage:
    expect = int(from_id) if from_id is not None else None
    gaps: list[tuple[int, int]] = []
    for i, r in enumerate(rows):
        if expect is not None:
            if r.id < expect:
                why = f"not after {expect - 1}" if i else f"before fromId {expect}"
                raise ProtocolDrift(NAME, request.endpoint, f"trade id {r.id} {why} - at `$[{i}].id`")
            if r.id > expect:
                gaps.append((expect, r.id - 1))
        expect = r.id + 1
    records = [Trade(r.time * NS_PER_MS, str(r.id), r.price, r.qty, "sell" if r.isBuyerMaker else "buy") for r in rows]
    full = from_id is not None and len(rows) >= int_param(request, "limit")
    return TradesPage(records, str(rows[-1].id + 1) if full else None, tuple(gaps))


def trades_cursor_after(last: Trade) -> str | None:
    """Cursor right after a stored trade: its id + 1 (None if it has no numeric id)."""
    if last.id is None or not last.id.isdigit():
        return None
    return str(int(last.id) + 1)


# --- book -----------------------------------------------------------------------------------------


def build_book(symbol: Symbol, depth: int) -> Request:
    """Depth snapshot with ``depth`` (1..5000) levels per side; weight follows the tier.

    Raises:
        ValueError: depth outside 1..5000.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"binance book depth must be 1..{MAX_DEPTH}, got {depth}")
    params = (("symbol", symbol_to_native(symbol)), ("limit", str(depth)))
    return Request("GET", DEPTH, params, depth_weight(depth), "depth")


def parse_book(request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
    """Snapshot stamped ``recv_ns`` (Binance sends no time) with ``seq = lastUpdateId``.

    Raises:
        ProtocolDrift: malformed payload or non-numeric levels.
    """
    ep = request.endpoint
    d = decode(_DEPTH, body, NAME, ep)
    bids = [
        (number(p, NAME, ep, f"$.bids[{i}][0]"), number(q, NAME, ep, f"$.bids[{i}][1]"))
        for i, (p, q) in enumerate(d.bids)
    ]
    asks = [
        (number(p, NAME, ep, f"$.asks[{i}][0]"), number(q, NAME, ep, f"$.asks[{i}][1]"))
        for i, (p, q) in enumerate(d.asks)
    ]
    return BookSnapshot(recv_ns, bids, asks, d.lastUpdateId)


# --- errors ---------------------------------------------------------------------------------------


def parse_error(status: int, body: bytes) -> DccdError | None:
    """ExchangeRejected(code, msg) for a Binance error body; None for success or an unknown body.

    Binance reports errors with HTTP status >= 400 only, so a 2xx answer is
    never decoded here. The transport turns 429/418 into RateLimited/Banned
    itself (it owns the Retry-After header) and uses this message as detail.
    """
    if status < 400 or not body:
        return None
    try:
        err = _ERROR.decode(body)
    except msgspec.MsgspecError:
        return None
    return ExchangeRejected(NAME, err.code, err.msg, status=status)
