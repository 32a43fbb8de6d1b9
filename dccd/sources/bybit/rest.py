"""Bybit v5 REST, sans-IO: request specs and parsers (``https://api.bybit.com``).

Markets: ``BTC/USDT`` is ``BTCUSDT`` with ``category=spot``; ``BTC/USDT:perp``
is ``BTCUSDT`` with ``category=linear`` (USDC perpetuals are ``BTCPERP``).
Inverse contracts (``BTCUSD``) and dated futures are not mapped. The category
travels in every request, so the parsers read it back.

OHLC: ``GET /v5/market/kline`` answers bars opening in ``[start, end]`` (both
inclusive, ms), **newest first**, at most 1000. :func:`build_ohlc` narrows the
window to ``limit`` bars, so a page always holds every bar of its window;
``OhlcPage.next_start_ns`` is the open of the bar after the window (the
paginator stops once it passes the requested end). Bybit includes the bar
still in progress; it is dropped by the answer's own server ``time``. Rows are
7 strings; the ``turnover`` column is the quote volume; there is no trade count.

Trades: Bybit serves only recent trades (``/v5/market/recent-trade``: 60 on
spot, 1000 on linear) and no history, so the capability is ``RECENT`` and a
cursor cannot resume; live recording fills nothing after a reconnect (the
stream actor records the hole).

Book: ``/v5/market/orderbook`` (1..1000 levels), stamped with Bybit's ``ts``
and ``u`` (update id, the number the WebSocket ``orderbook`` topic continues).

Funding and open interest (linear perpetuals): ``/v5/market/funding/history``
and ``/v5/market/open-interest`` are newest first, 200 a page; windows are cut
to 200 hours (funding prints are at least an hour apart) and 200 samples.

Errors: business errors arrive with HTTP 200 and ``retCode != 0`` and become
:class:`~dccd.errors.ExchangeRejected` (never an empty page; the parsers check
``retCode`` too); ``10006`` is a rate limit; HTTP 403 "access too frequent"
is Bybit's IP ban (10 minutes) -> :class:`~dccd.errors.Banned`.
"""

from __future__ import annotations

import itertools
from typing import Final, Generic, TypeVar

import msgspec

from dccd.domain.records import BookSnapshot, Candle, Funding, OpenInterest, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import (
    Banned,
    DccdError,
    ExchangeRejected,
    NoCapability,
    ProtocolDrift,
    RateLimited,
    ServerError,
    UnsupportedSymbol,
)
from dccd.sources.base import (
    FundingPage,
    Listing,
    Market,
    OhlcPage,
    OiPage,
    Request,
    TradesPage,
    decode,
    number,
)
from dccd.sources.bybit.common import (
    FUNDING_LIMIT,
    INTERVALS,
    MAX_DEPTH,
    NAME,
    OI_INTERVALS,
    OI_LIMIT,
    PAGE_LIMIT,
    RATE_LIMITS,
    category,
    symbol_to_native,
)
from dccd.sources.paging import bar_window, check_limit, int_param, levels, ms_text_to_ns, time_window

R = TypeVar("R")


KLINE: Final = "/v5/market/kline"
RECENT_TRADE: Final = "/v5/market/recent-trade"
ORDERBOOK: Final = "/v5/market/orderbook"
INSTRUMENTS: Final = "/v5/market/instruments-info"
FUNDING: Final = "/v5/market/funding/history"
OPEN_INTEREST: Final = "/v5/market/open-interest"

RECENT_TRADES: Final = {"spot": 60, "linear": 1000}
FUNDING_STEP_MS: Final = 3_600_000  # the shortest Bybit funding interval (1 h)
_SPAN_OF_INTERVAL: Final = {v: k for k, v in INTERVALS.items()}
_SPAN_OF_OI: Final = {v: k for k, v in OI_INTERVALS.items()}


# --- private views of Bybit payloads -------------------------------------------------------------


class _Status(msgspec.Struct, frozen=True):
    retCode: int
    retMsg: str = ""


class _Body(msgspec.Struct, Generic[R], frozen=True):
    """The v5 envelope ``{"retCode":0,"retMsg":"OK","result":{...}}``."""

    retCode: int
    result: R
    time: int | None = None  # server time (ms)


class _Rows(msgspec.Struct, Generic[R], frozen=True):
    rows: list[R] = msgspec.field(name="list")


class _Kline(msgspec.Struct, array_like=True, frozen=True):
    start: str
    open: str
    high: str
    low: str
    close: str
    volume: str
    turnover: str


class _Trade(msgspec.Struct, frozen=True):
    execId: str
    price: str
    size: str
    side: str
    time: str


class _Book(msgspec.Struct, frozen=True):
    b: list[list[str]]
    a: list[list[str]]
    ts: int
    u: int


class _Instrument(msgspec.Struct, frozen=True):
    symbol: str
    baseCoin: str
    quoteCoin: str
    status: str = ""
    contractType: str = ""


class _FundingRow(msgspec.Struct, frozen=True):
    fundingRate: str
    fundingRateTimestamp: str


class _OiRow(msgspec.Struct, frozen=True):
    openInterest: str
    timestamp: str


_STATUS = msgspec.json.Decoder(_Status)
_KLINES = msgspec.json.Decoder(_Body[_Rows[_Kline]])
_TRADES = msgspec.json.Decoder(_Body[_Rows[_Trade]])
_BOOK = msgspec.json.Decoder(_Body[_Book])
_INSTRUMENTS = msgspec.json.Decoder(_Body[_Rows[_Instrument]])
_FUNDING = msgspec.json.Decoder(_Body[_Rows[_FundingRow]])
_OI = msgspec.json.Decoder(_Body[_Rows[_OiRow]])
_SIDES: Final = {"Buy": "buy", "Sell": "sell"}


def _check_status(body: bytes, request: Request) -> None:
    """Raise the business error a 200 answer carries (``retCode != 0``) before schema checks."""
    try:
        status = _STATUS.decode(body)
    except msgspec.MsgspecError:
        return  # not an envelope: the typed decode reports the drift with its path
    if status.retCode != 0:
        raise _business_error(status.retCode, status.retMsg, 200)


def _business_error(code: int, message: str, status: int) -> DccdError:
    if code == 10006:  # "Too many visits!": the per-UID limit
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME} retCode {code}: {message}")
    if code in (10000, 10016):  # server timeout / internal error: retry later
        return ServerError(status, f"{NAME} retCode {code}: {message}")
    return ExchangeRejected(NAME, code, message, status=status)


# --- symbols --------------------------------------------------------------------------------------


def build_symbols() -> Request:
    """Spot instruments (``category=spot``; Bybit lists them in one page)."""
    return Request("GET", INSTRUMENTS, (("category", "spot"),), 1, "instruments-info")


def build_perp_symbols() -> Request:
    """Linear instruments, 1000 a page (the largest page; about 600 are listed)."""
    return Request("GET", INSTRUMENTS, (("category", "linear"), ("limit", "1000")), 1, "instruments-info")


def parse_symbols(request: Request, body: bytes) -> Listing:
    """Markets from ``instruments-info``: spot pairs, or linear perpetuals (dated futures left out).

    Raises:
        ExchangeRejected: ``retCode != 0``.
        ProtocolDrift: malformed payload.
    """
    _check_status(body, request)
    result = decode(_INSTRUMENTS, body, NAME, request.endpoint).result
    perp = request.param("category") == "linear"
    markets = []
    for item in result.rows:
        if perp and item.contractType != "LinearPerpetual":
            continue
        if not (item.baseCoin.isalnum() and item.quoteCoin.isalnum()) or not item.baseCoin or not item.quoteCoin:
            continue
        sym = Symbol(item.baseCoin.upper(), item.quoteCoin.upper(), "perp" if perp else None)
        markets.append(Market(sym, item.symbol, item.status, item.status == "Trading"))
    return Listing(NAME, tuple(markets))


parse_perp_symbols = parse_symbols  # one parser reads both tables (the request says which)

# --- OHLC -----------------------------------------------------------------------------------------


def build_ohlc(
    symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None, now_ns: int | None = None
) -> Request:
    """Klines opening in ``[start_ns, end_ns]``, cut to ``limit`` (<= 1000) bars from the start.

    Raises:
        NoCapability: a span Bybit does not offer (1s, 8h, 3d).
        ValueError: an empty range or a limit outside 1..1000.
    """
    interval = INTERVALS.get(span.label)
    if interval is None:
        raise NoCapability(NAME, f"ohlc span {span.label} (spans: {' '.join(INTERVALS)})")
    count = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    first, last = bar_window(span, start_ns, end_ns, count)
    params = (
        ("category", category(symbol)),
        ("symbol", symbol_to_native(symbol)),
        ("interval", interval),
        ("start", str(first // NS_PER_MS)),
        ("end", str(last // NS_PER_MS)),
        ("limit", str(count)),
    )
    return Request("GET", KLINE, params, 1, "kline")


def parse_ohlc(request: Request, body: bytes) -> OhlcPage:
    """Bars of a kline page, ascending, and the open of the bar after the request's window.

    Raises:
        ExchangeRejected: ``retCode != 0`` (never an empty page).
        ProtocolDrift: malformed rows, duplicate bars, bars outside the window.
    """
    ep = request.endpoint
    _check_status(body, request)
    answer = decode(_KLINES, body, NAME, ep)
    rows, server_ns = answer.result.rows, answer.time * NS_PER_MS if answer.time is not None else None
    span = Span(_SPAN_OF_INTERVAL[request.param("interval") or ""])
    first_ms, last_ms = int_param(request, "start"), int_param(request, "end")
    candles: list[Candle] = []
    for i, r in enumerate(rows):
        path = f"$.result.list[{i}]"
        ts = ms_text_to_ns(r.start, NAME, ep, f"{path}[0]")
        if not first_ms * NS_PER_MS <= ts <= last_ms * NS_PER_MS or span.align(ts) != ts:
            raise ProtocolDrift(NAME, ep, f"bar open {r.start} is not a {span.label} bar in [{first_ms}, {last_ms}] - at `{path}[0]`")  # fmt: skip
        if server_ns is not None and span.next(ts) > server_ns:
            continue  # the bar still in progress at the server's time
        candles.append(
            Candle(
                ts,
                number(r.open, NAME, ep, f"{path}[1]"),
                number(r.high, NAME, ep, f"{path}[2]"),
                number(r.low, NAME, ep, f"{path}[3]"),
                number(r.close, NAME, ep, f"{path}[4]"),
                number(r.volume, NAME, ep, f"{path}[5]"),
                number(r.turnover, NAME, ep, f"{path}[6]"),
            )
        )
    candles.sort(key=lambda c: c.ts)
    for prev, cur in itertools.pairwise(candles):
        if prev.ts == cur.ts:
            raise ProtocolDrift(NAME, ep, f"bar {cur.ts // NS_PER_MS} appears twice")
    return OhlcPage(candles, span.next(last_ms * NS_PER_MS))


# --- trades ---------------------------------------------------------------------------------------


def build_trades(
    symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
) -> Request:
    """The most recent trades (Bybit has no trade history: ``start_ns`` is left to the caller's trim).

    Raises:
        NoCapability: a cursor (history cannot be resumed on Bybit).
    """
    if cursor is not None:
        raise NoCapability(NAME, "trade history by cursor (Bybit serves recent trades only)")
    cat = category(symbol)
    count = check_limit(limit, RECENT_TRADES[cat], RECENT_TRADES[cat])
    params = (("category", cat), ("symbol", symbol_to_native(symbol)), ("limit", str(count)))
    return Request("GET", RECENT_TRADE, params, 1, "recent-trade")


def parse_trades(request: Request, body: bytes) -> TradesPage:
    """Recent trades, ascending (Bybit sends newest first); never a next cursor.

    ``side`` is Bybit's taker side; ``id`` is ``execId``.

    Raises:
        ExchangeRejected: ``retCode != 0``.
        ProtocolDrift: malformed rows or an unknown side.
    """
    ep = request.endpoint
    _check_status(body, request)
    rows = decode(_TRADES, body, NAME, ep).result.rows
    records: list[Trade] = []
    for i in range(len(rows) - 1, -1, -1):  # oldest first; the stable sort keeps same-ms order
        r = rows[i]
        path = f"$.result.list[{i}]"
        side = _SIDES.get(r.side)
        if side is None:
            raise ProtocolDrift(NAME, ep, f"side {r.side!r} is not Buy/Sell - at `{path}.side`")
        ts = ms_text_to_ns(r.time, NAME, ep, f"{path}.time")
        records.append(Trade(ts, r.execId, number(r.price, NAME, ep, f"{path}.price"), number(r.size, NAME, ep, f"{path}.size"), side))  # fmt: skip
    records.sort(key=lambda t: t.ts)
    return TradesPage(records, None)


def trades_cursor_after(last: Trade) -> str | None:
    """Always None: Bybit trade history cannot be resumed."""
    return None


# --- book -----------------------------------------------------------------------------------------


def build_book(symbol: Symbol, depth: int) -> Request:
    """Order-book snapshot with ``depth`` (1..1000) levels per side.

    Raises:
        ValueError: depth outside 1..1000.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"bybit book depth must be 1..{MAX_DEPTH}, got {depth}")
    params = (("category", category(symbol)), ("symbol", symbol_to_native(symbol)), ("limit", str(depth)))
    return Request("GET", ORDERBOOK, params, 1, "orderbook")


def parse_book(request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
    """Snapshot stamped with Bybit's ``ts`` (the matching engine time), ``seq = u``.

    Raises:
        ExchangeRejected: ``retCode != 0``.
        ProtocolDrift: malformed payload or non-numeric levels.
    """
    ep = request.endpoint
    _check_status(body, request)
    book = decode(_BOOK, body, NAME, ep).result
    bids = levels(book.b, NAME, ep, "$.result.b")
    asks = levels(book.a, NAME, ep, "$.result.a")
    return BookSnapshot(book.ts * NS_PER_MS, bids, asks, book.u)


# --- funding and open interest ---------------------------------------------------------------------


def _perp(symbol: Symbol) -> str:
    if not symbol.is_perp:
        raise UnsupportedSymbol(NAME, str(symbol), "is not a perpetual (funding and open interest are perp data)")
    return symbol_to_native(symbol)


def build_funding(symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None) -> Request:
    """Funding prints in ``[start_ns, end_ns]``, cut to ``limit`` hours (<= 200) from the start.

    Raises:
        UnsupportedSymbol: not a linear perpetual.
        ValueError: an empty range or a limit outside 1..200.
    """
    native = _perp(symbol)
    count = check_limit(limit, FUNDING_LIMIT, FUNDING_LIMIT)
    first_ms, last_ms = time_window(start_ns, end_ns, count, FUNDING_STEP_MS)
    params = (
        ("category", "linear"),
        ("symbol", native),
        ("startTime", str(first_ms)),
        ("endTime", str(last_ms)),
        ("limit", str(count)),
    )
    return Request("GET", FUNDING, params, 1, "funding/history")


def parse_funding(request: Request, body: bytes) -> FundingPage:
    """Funding prints of the window, ascending (no mark price in this payload), and the next window start.

    Raises:
        ExchangeRejected: ``retCode != 0``.
        ProtocolDrift: malformed rows, prints outside the window, or a full
            page that may have cut the window (prints closer than an hour).
    """
    ep = request.endpoint
    _check_status(body, request)
    rows = decode(_FUNDING, body, NAME, ep).result.rows
    first_ms, last_ms = int_param(request, "startTime"), int_param(request, "endTime")
    records = []
    for i, r in enumerate(rows):
        path = f"$.result.list[{i}]"
        ts = ms_text_to_ns(r.fundingRateTimestamp, NAME, ep, f"{path}.fundingRateTimestamp")
        if not first_ms * NS_PER_MS <= ts <= last_ms * NS_PER_MS:
            raise ProtocolDrift(NAME, ep, f"funding time {r.fundingRateTimestamp} outside [{first_ms}, {last_ms}] - at `{path}`")  # fmt: skip
        records.append(Funding(ts, number(r.fundingRate, NAME, ep, f"{path}.fundingRate")))
    records.sort(key=lambda f: f.ts)
    if len(rows) >= int_param(request, "limit") and records[0].ts > first_ms * NS_PER_MS:
        raise ProtocolDrift(NAME, ep, f"a full page of {len(rows)} prints may have cut the window [{first_ms}, {last_ms}]")  # fmt: skip
    return FundingPage(records, (last_ms + 1) * NS_PER_MS)


def build_oi(
    symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None, span: Span | None = None
) -> Request:
    """Open-interest samples every ``span`` (default 5m) opening in ``[start_ns, end_ns]``, cut to ``limit``.

    Raises:
        UnsupportedSymbol: not a linear perpetual.
        NoCapability: a span Bybit does not sample (5m 15m 30m 1h 4h 1d).
        ValueError: an empty range or a limit outside 1..200.
    """
    native = _perp(symbol)
    span = span or Span("5m")
    interval = OI_INTERVALS.get(span.label)
    if interval is None:
        raise NoCapability(NAME, f"oi span {span.label} (spans: {' '.join(OI_INTERVALS)})")
    count = check_limit(limit, OI_LIMIT, OI_LIMIT)
    first, last = bar_window(span, start_ns, end_ns, count)
    params = (
        ("category", "linear"),
        ("symbol", native),
        ("intervalTime", interval),
        ("startTime", str(first // NS_PER_MS)),
        ("endTime", str(last // NS_PER_MS)),
        ("limit", str(count)),
    )
    return Request("GET", OPEN_INTEREST, params, 1, "open-interest")


def parse_oi(request: Request, body: bytes) -> OiPage:
    """Open interest (base-coin units for linear contracts; no value column), ascending.

    Raises:
        ExchangeRejected: ``retCode != 0``.
        ProtocolDrift: malformed rows or samples outside the window.
    """
    ep = request.endpoint
    _check_status(body, request)
    rows = decode(_OI, body, NAME, ep).result.rows
    span = Span(_SPAN_OF_OI[request.param("intervalTime") or ""])
    first_ms, last_ms = int_param(request, "startTime"), int_param(request, "endTime")
    records = []
    for i, r in enumerate(rows):
        path = f"$.result.list[{i}]"
        ts = ms_text_to_ns(r.timestamp, NAME, ep, f"{path}.timestamp")
        if not first_ms * NS_PER_MS <= ts <= last_ms * NS_PER_MS:
            raise ProtocolDrift(NAME, ep, f"sample time {r.timestamp} outside [{first_ms}, {last_ms}] - at `{path}`")
        records.append(OpenInterest(ts, number(r.openInterest, NAME, ep, f"{path}.openInterest")))
    records.sort(key=lambda o: o.ts)
    return OiPage(records, span.next(last_ms * NS_PER_MS))


# --- errors ---------------------------------------------------------------------------------------


def parse_error(status: int, body: bytes) -> DccdError | None:
    """The error of an answer: 403 ban, 429, ``retCode`` business errors (also inside HTTP 200).

    Returns None for a successful answer (``retCode == 0``) and for bodies
    that are not Bybit envelopes on 2xx (the parser reports those as drift).
    """
    if status == 403:  # "access too frequent": Bybit bans the IP for 10 minutes
        return Banned(NAME, RATE_LIMITS.default_ban_s, body[:120].decode("utf-8", "replace").strip())
    try:
        err = _STATUS.decode(body) if body else None
    except msgspec.MsgspecError:
        err = None
    if err is not None and err.retCode != 0:
        return _business_error(err.retCode, err.retMsg, status)
    if status == 429:
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME}: system frequency protection (HTTP 429)")
    return None
