"""OKX v5 REST, sans-IO: request specs and parsers (``https://www.okx.com``).

Markets: ``BTC/USDT`` is instrument ``BTC-USDT`` (SPOT), ``BTC/USDT:perp`` is
``BTC-USDT-SWAP`` and ``BTC/USD:perp`` the inverse ``BTC-USD-SWAP``. Every
answer is ``{"code":"0","msg":"","data":[...]}``; ``code != "0"`` (with HTTP
200 or 4xx) is an error, never an empty page.

OHLC: ``/api/v5/market/candles`` keeps only the latest 1440 bars,
``/api/v5/market/history-candles`` everything (100 a page); :func:`build_ohlc`
uses ``candles`` when the whole window lies within the latest 1400 bars before
the caller's ``now_ns`` (it allows twice the request rate) and
``history-candles`` otherwise. Both answer
newest first with exclusive timestamp cursors: ``before=first-1`` and
``after=last+1`` select exactly the bars opening in ``[first, last]`` (and
would select the same bars were the bounds inclusive: bars, funding prints
and open-interest samples sit on a grid the extra millisecond misses); the
window is cut to ``limit`` bars so one answer holds all of it, and
``next_start_ns`` is the open after the window. Bars of 6 h and longer use
OKX's UTC-aligned names (``6Hutc``, ``1Dutc`` ...): the plain ``1D`` opens at
Hong Kong midnight. Bars with ``confirm = "0"`` are still open and dropped.
Rows have 7 or 9 columns (older answers lack ``volCcyQuote``/``confirm``);
``volume`` is in the base currency (``vol`` on spot, ``volCcy`` on swaps),
``quote_volume`` is ``volCcyQuote`` (``volCcy`` on 7-column spot rows).

Trades: ``/api/v5/market/history-trades`` keeps the last 3 months, 100 a
page, newest first. Trade ids are consecutive per instrument and the pages
are walked by id (``type=1``): a cursor ``c`` asks ``before=c-1&after=c+100``,
i.e. exactly ids ``c .. c+99`` whichever end OKX fills from (``before`` alone
would return the newest trades). A walk from a time first looks up the last
trade before it (``type=2&after=<ms>&limit=1``); its id + 1 is the cursor.
Trade amounts (``sz``) are in contracts for swaps (the contract value is in
the instrument listing), in base currency for spot.

Book: ``/api/v5/market/books`` (``sz`` up to 400), stamped with OKX's ``ts``.

Funding (swaps): ``/api/v5/public/funding-rate-history`` (3 months, newest
first, exclusive ``before``/``after`` on ``fundingTime``), windows of 100
hours; the stored rate is ``realizedRate`` (what was charged), falling back to
``fundingRate``. Open interest: ``/api/v5/rubik/stat/contracts/
open-interest-history`` (the latest 1440 samples per period), stored in base
currency (``oiCcy``) with ``oiUsd`` as the value.

Rate limits are per endpoint (candles 40/2 s, history 20/2 s, funding and
open interest 10/2 s): one budget of 40 per 2 s with weights 1, 2 and 4
keeps each endpoint within its own limit. ``50011`` is OKX's rate-limit code.

Over 500 lines for one reason: OKX's REST speaks four paging conventions (trade ids after/before,
recent vs history candles, funding, open interest), each a builder next to its parser.
"""

from __future__ import annotations

import itertools
from typing import Final

import msgspec

from dccd.domain.records import BookSnapshot, Funding, OpenInterest, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS
from dccd.errors import (
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
from dccd.sources.okx.common import (
    BARS,
    MAX_DEPTH,
    NAME,
    OI_PERIODS,
    PAGE_LIMIT,
    RATE_LIMITS,
    candle_row,
    symbol_to_native,
)
from dccd.sources.paging import bar_window, check_limit, int_param, levels, ms_ceil, ms_text_to_ns, time_window

CANDLES: Final = "/api/v5/market/candles"
HISTORY_CANDLES: Final = "/api/v5/market/history-candles"
HISTORY_TRADES: Final = "/api/v5/market/history-trades"
BOOKS: Final = "/api/v5/market/books"
INSTRUMENTS: Final = "/api/v5/public/instruments"
FUNDING_HISTORY: Final = "/api/v5/public/funding-rate-history"
OI_HISTORY: Final = "/api/v5/rubik/stat/contracts/open-interest-history"

WEIGHTS: Final[dict[str, int]] = {
    CANDLES: 1,
    HISTORY_CANDLES: 2,
    HISTORY_TRADES: 2,
    BOOKS: 1,
    INSTRUMENTS: 2,
    FUNDING_HISTORY: 4,
    OI_HISTORY: 4,
}
RECENT_BARS: Final = 1400  # ``candles`` keeps 1440 bars; the margin absorbs clock skew
FUNDING_STEP_MS: Final = 3_600_000  # the shortest OKX funding interval (1 h)
_SPAN_OF_BAR: Final = {v: k for k, v in BARS.items()}
_SPAN_OF_PERIOD: Final = {v: k for k, v in OI_PERIODS.items()}

_RATE_LIMIT_CODES: Final = frozenset({"50011", "50061"})
_BUSY_CODES: Final = frozenset({"50001", "50004", "50013", "50026"})  # service unavailable / timeout / busy


# --- private views of OKX payloads ---------------------------------------------------------------


class _Status(msgspec.Struct, frozen=True):
    code: str | int
    msg: str = ""


class _Trade(msgspec.Struct, frozen=True):
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str


class _Book(msgspec.Struct, frozen=True):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str


class _Instrument(msgspec.Struct, frozen=True):
    instId: str
    instType: str
    baseCcy: str = ""
    quoteCcy: str = ""
    uly: str = ""
    instFamily: str = ""
    state: str = ""


class _Funding(msgspec.Struct, frozen=True):
    fundingTime: str
    fundingRate: str = ""
    realizedRate: str = ""


class _CandlesBody(msgspec.Struct, frozen=True):
    data: list[list[str]]


class _TradesBody(msgspec.Struct, frozen=True):
    data: list[_Trade]


class _BookBody(msgspec.Struct, frozen=True):
    data: list[_Book]


class _InstrumentsBody(msgspec.Struct, frozen=True):
    data: list[_Instrument]


class _FundingBody(msgspec.Struct, frozen=True):
    data: list[_Funding]


_STATUS = msgspec.json.Decoder(_Status)
_CANDLES = msgspec.json.Decoder(_CandlesBody)
_TRADES = msgspec.json.Decoder(_TradesBody)
_BOOK = msgspec.json.Decoder(_BookBody)
_INSTRUMENTS = msgspec.json.Decoder(_InstrumentsBody)
_FUNDING = msgspec.json.Decoder(_FundingBody)
_SIDES: Final = frozenset({"buy", "sell"})


def _business_error(code: str, message: str, status: int) -> DccdError:
    if code in _RATE_LIMIT_CODES:
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME} code {code}: {message}")
    if code in _BUSY_CODES:
        return ServerError(status, f"{NAME} code {code}: {message}")
    return ExchangeRejected(NAME, int(code) if code.isdigit() else code, message, status=status)


def _check_status(body: bytes) -> None:
    """Raise the error an answer carries (``code != "0"``) before its schema is checked."""
    try:
        status = _STATUS.decode(body)
    except msgspec.MsgspecError:
        return  # not an envelope: the typed decode reports the drift with its path
    if str(status.code) != "0":
        raise _business_error(str(status.code), status.msg, 200)


# --- symbols --------------------------------------------------------------------------------------


def build_symbols() -> Request:
    """Spot instruments."""
    return Request("GET", INSTRUMENTS, (("instType", "SPOT"),), WEIGHTS[INSTRUMENTS], "instruments")


def build_perp_symbols() -> Request:
    """Perpetual swap instruments."""
    return Request("GET", INSTRUMENTS, (("instType", "SWAP"),), WEIGHTS[INSTRUMENTS], "instruments")


def parse_symbols(request: Request, body: bytes) -> Listing:
    """Spot pairs or swaps (``uly``/``instFamily`` names a swap's pair); ``live`` markets are active.

    Raises:
        ExchangeRejected: ``code != "0"``.
        ProtocolDrift: malformed payload.
    """
    _check_status(body)
    markets = []
    for item in decode(_INSTRUMENTS, body, NAME, request.endpoint).data:
        if item.instType == "SPOT":
            base, quote, market = item.baseCcy, item.quoteCcy, None
        elif item.instType == "SWAP":
            base, _, quote = (item.instFamily or item.uly).partition("-")
            market = "perp"
        else:
            continue
        if base.isalnum() and quote.isalnum():
            markets.append(Market(Symbol(base.upper(), quote.upper(), market), item.instId, item.state, item.state == "live"))  # fmt: skip
    return Listing(NAME, tuple(markets))


parse_perp_symbols = parse_symbols  # one parser reads both tables (the request says which)

# --- OHLC -----------------------------------------------------------------------------------------


def build_ohlc(
    symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None, now_ns: int | None = None
) -> Request:
    """Bars opening in ``[start_ns, end_ns]``, cut to ``limit`` (<= 100) bars from the start.

    ``now_ns`` (the caller's wall clock; the builder never reads a clock) only
    chooses between ``candles`` and ``history-candles``; both return the same
    bars, so without it the window goes to ``history-candles``.

    Raises:
        NoCapability: a span OKX does not offer (1s, 8h, 3d).
        ValueError: an empty range or a limit outside 1..100.
    """
    bar = BARS.get(span.label)
    if bar is None:
        raise NoCapability(NAME, f"ohlc span {span.label} (spans: {' '.join(BARS)})")
    count = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    first, last = bar_window(span, start_ns, end_ns, count)
    recent = now_ns is not None and first >= span.add(span.align(now_ns), -RECENT_BARS)
    path = CANDLES if recent else HISTORY_CANDLES
    params = (
        ("instId", symbol_to_native(symbol)),
        ("bar", bar),
        ("before", str(first // NS_PER_MS - 1)),
        ("after", str(last // NS_PER_MS + 1)),
        ("limit", str(count)),
    )
    return Request("GET", path, params, WEIGHTS[path], path.rsplit("/", 1)[1])


def parse_ohlc(request: Request, body: bytes) -> OhlcPage:
    """Closed bars of the window, ascending, and the open of the bar after the window.

    Raises:
        ExchangeRejected, RateLimited: an error body (never an empty page).
        ProtocolDrift: malformed rows, duplicate bars or bars outside the window.
    """
    ep = request.endpoint
    _check_status(body)
    rows = decode(_CANDLES, body, NAME, ep).data
    span = Span(_SPAN_OF_BAR[request.param("bar") or ""])
    first, last = (int_param(request, "before") + 1) * NS_PER_MS, (int_param(request, "after") - 1) * NS_PER_MS
    swap = (request.param("instId") or "").endswith("-SWAP")
    candles = []
    for i, row in enumerate(rows):
        candle, closed = candle_row(row, swap, ep, f"$.data[{i}]")
        if not first <= candle.ts <= last or span.align(candle.ts) != candle.ts:
            raise ProtocolDrift(NAME, ep, f"bar open {row[0]} is not a {span.label} bar of the window - at `$.data[{i}][0]`")  # fmt: skip
        if closed:
            candles.append(candle)
    candles.sort(key=lambda c: c.ts)
    for prev, cur in itertools.pairwise(candles):
        if prev.ts == cur.ts:
            raise ProtocolDrift(NAME, ep, f"bar {cur.ts // NS_PER_MS} appears twice")
    return OhlcPage(candles, span.next(last))


# --- trades ---------------------------------------------------------------------------------------


def build_trades(
    symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
) -> Request:
    """Trades with ids ``cursor .. cursor+limit-1``, or the id lookup for ``start_ns``.

    Raises:
        ValueError: a cursor that is not a trade id, or neither cursor nor
            start (OKX keeps 3 months and cannot start at the first trade).
    """
    native = symbol_to_native(symbol)
    if cursor is None:
        if start_ns is None:
            raise ValueError("okx trade history needs a cursor or a start time (it keeps the last 3 months)")
        lookup = (("instId", native), ("type", "2"), ("after", str(ms_ceil(start_ns))), ("limit", "1"))
        return Request("GET", HISTORY_TRADES, lookup, WEIGHTS[HISTORY_TRADES], "history-trades")
    if not cursor.isdigit():
        raise ValueError(f"okx trade cursor must be a trade id, got {cursor!r}")
    count = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    first = int(cursor)
    params = (
        ("instId", native),
        ("type", "1"),
        ("before", str(first - 1)),
        ("after", str(first + count)),
        ("limit", str(count)),
    )
    return Request("GET", HISTORY_TRADES, params, WEIGHTS[HISTORY_TRADES], "history-trades")


def _trade(r: _Trade, ep: str, path: str) -> Trade:
    if r.side not in _SIDES:
        raise ProtocolDrift(NAME, ep, f"side {r.side!r} is not buy/sell - at `{path}.side`")
    ts = ms_text_to_ns(r.ts, NAME, ep, f"{path}.ts")
    return Trade(ts, r.tradeId, number(r.px, NAME, ep, f"{path}.px"), number(r.sz, NAME, ep, f"{path}.sz"), r.side)


def parse_trades(request: Request, body: bytes) -> TradesPage:
    """Trades of an id window, ascending, with holes as ``id_gaps``; or the lookup's cursor.

    The next cursor is the id after the window while the window held trades,
    None once a window comes back empty (the head of the tape, or before the
    3-month horizon).

    Raises:
        ExchangeRejected, RateLimited: an error body.
        ProtocolDrift: malformed rows, non-numeric ids, ids outside the window.
    """
    ep = request.endpoint
    _check_status(body)
    rows = decode(_TRADES, body, NAME, ep).data
    ids = []
    for i, r in enumerate(rows):
        if not r.tradeId.isdigit():
            raise ProtocolDrift(NAME, ep, f"trade id {r.tradeId!r} is not a number - at `$.data[{i}].tradeId`")
        ids.append(int(r.tradeId))
    if request.param("type") == "2":  # the lookup: the last trade before the start
        return TradesPage([], str(max(ids) + 1) if ids else None)
    lo, hi = int_param(request, "before") + 1, int_param(request, "after") - 1
    order = sorted(range(len(rows)), key=ids.__getitem__)
    records, gaps, expect = [], [], lo
    for i in order:
        tid = ids[i]
        if not lo <= tid <= hi or tid < expect:
            why = "repeated" if lo <= tid < expect else f"outside [{lo}, {hi}]"
            raise ProtocolDrift(NAME, ep, f"trade id {tid} {why} - at `$.data[{i}].tradeId`")
        if tid > expect:
            gaps.append((expect, tid - 1))
        expect = tid + 1
        records.append(_trade(rows[i], ep, f"$.data[{i}]"))
    return TradesPage(records, str(hi + 1) if records else None, tuple(gaps))


def trades_cursor_after(last: Trade) -> str | None:
    """Cursor right after a stored trade: its id + 1 (None without a numeric id)."""
    if last.id is None or not last.id.isdigit():
        return None
    return str(int(last.id) + 1)


# --- book -----------------------------------------------------------------------------------------


def build_book(symbol: Symbol, depth: int) -> Request:
    """Order-book snapshot with ``depth`` (1..400) levels per side.

    Raises:
        ValueError: depth outside 1..400.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"okx book depth must be 1..{MAX_DEPTH}, got {depth}")
    params = (("instId", symbol_to_native(symbol)), ("sz", str(depth)))
    return Request("GET", BOOKS, params, WEIGHTS[BOOKS], "books")


def parse_book(request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
    """Snapshot stamped with OKX's ``ts`` (amounts in contracts for swaps).

    Raises:
        ExchangeRejected: an error body.
        ProtocolDrift: malformed payload or not exactly one book.
    """
    ep = request.endpoint
    _check_status(body)
    data = decode(_BOOK, body, NAME, ep).data
    if len(data) != 1:
        raise ProtocolDrift(NAME, ep, f"expected one book, got {len(data)} - at `$.data`")
    book = data[0]
    ts = ms_text_to_ns(book.ts, NAME, ep, "$.data[0].ts")
    return BookSnapshot(ts, levels(book.bids, NAME, ep, "$.data[0].bids"), levels(book.asks, NAME, ep, "$.data[0].asks"))  # fmt: skip


# --- funding and open interest ---------------------------------------------------------------------


def _swap(symbol: Symbol) -> str:
    if not symbol.is_perp:
        raise UnsupportedSymbol(NAME, str(symbol), "is not a perpetual (funding and open interest are perp data)")
    return symbol_to_native(symbol)


def build_funding(symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None) -> Request:
    """Funding prints in ``[start_ns, end_ns]``, cut to ``limit`` (<= 100) hours from the start.

    Raises:
        UnsupportedSymbol: not a perpetual.
        ValueError: an empty range or a limit outside 1..100.
    """
    native = _swap(symbol)
    count = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    first_ms, last_ms = time_window(start_ns, end_ns, count, FUNDING_STEP_MS)
    params = (("instId", native), ("before", str(first_ms - 1)), ("after", str(last_ms + 1)), ("limit", str(count)))
    return Request("GET", FUNDING_HISTORY, params, WEIGHTS[FUNDING_HISTORY], "funding-rate-history")


def parse_funding(request: Request, body: bytes) -> FundingPage:
    """Funding prints of the window, ascending (``realizedRate``; no mark price), and the next start.

    Raises:
        ExchangeRejected, RateLimited: an error body.
        ProtocolDrift: malformed rows, prints outside the window, or a full
            page that may have cut the window.
    """
    ep = request.endpoint
    _check_status(body)
    rows = decode(_FUNDING, body, NAME, ep).data
    first_ms, last_ms = int_param(request, "before") + 1, int_param(request, "after") - 1
    records = []
    for i, r in enumerate(rows):
        path = f"$.data[{i}]"
        ts = ms_text_to_ns(r.fundingTime, NAME, ep, f"{path}.fundingTime")
        if not first_ms * NS_PER_MS <= ts <= last_ms * NS_PER_MS:
            raise ProtocolDrift(NAME, ep, f"funding time {r.fundingTime} outside [{first_ms}, {last_ms}] - at `{path}`")  # fmt: skip
        field = "realizedRate" if r.realizedRate else "fundingRate"
        records.append(Funding(ts, number(r.realizedRate or r.fundingRate, NAME, ep, f"{path}.{field}")))
    records.sort(key=lambda f: f.ts)
    if len(rows) >= int_param(request, "limit") and records[0].ts > first_ms * NS_PER_MS:
        raise ProtocolDrift(NAME, ep, f"a full page of {len(rows)} prints may have cut the window [{first_ms}, {last_ms}]")  # fmt: skip
    return FundingPage(records, (last_ms + 1) * NS_PER_MS)


def build_oi(
    symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None, span: Span | None = None
) -> Request:
    """Open interest every ``span`` (default 5m) in ``[start_ns, end_ns]``, cut to ``limit`` (<= 100) samples.

    Raises:
        UnsupportedSymbol: not a perpetual.
        NoCapability: a period OKX does not sample.
        ValueError: an empty range or a bad limit.
    """
    native = _swap(symbol)
    span = span or Span("5m")
    period = OI_PERIODS.get(span.label)
    if period is None:
        raise NoCapability(NAME, f"oi span {span.label} (spans: {' '.join(OI_PERIODS)})")
    count = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    first, last = bar_window(span, start_ns, end_ns, count)
    params = (
        ("instId", native),
        ("period", period),
        ("begin", str(first // NS_PER_MS - 1)),
        ("end", str(last // NS_PER_MS + 1)),
        ("limit", str(count)),
    )
    return Request("GET", OI_HISTORY, params, WEIGHTS[OI_HISTORY], "open-interest-history")


def parse_oi(request: Request, body: bytes) -> OiPage:
    """Open interest (base currency ``oiCcy``, value ``oiUsd``) of the window, ascending.

    Raises:
        ExchangeRejected, RateLimited: an error body.
        ProtocolDrift: malformed rows or samples outside the window.
    """
    ep = request.endpoint
    _check_status(body)
    rows = decode(_CANDLES, body, NAME, ep).data  # [[ts, oi, oiCcy, oiUsd], ...]
    span = Span(_SPAN_OF_PERIOD[request.param("period") or ""])
    first, last = (int_param(request, "begin") + 1) * NS_PER_MS, (int_param(request, "end") - 1) * NS_PER_MS
    records = []
    for i, row in enumerate(rows):
        if len(row) < 4:
            raise ProtocolDrift(NAME, ep, f"open-interest row has {len(row)} columns, expected 4 - at `$.data[{i}]`")
        ts = ms_text_to_ns(row[0], NAME, ep, f"$.data[{i}][0]")
        if not first <= ts <= last:
            raise ProtocolDrift(NAME, ep, f"sample time {row[0]} outside the window - at `$.data[{i}][0]`")
        records.append(OpenInterest(ts, number(row[2], NAME, ep, f"$.data[{i}][2]"), number(row[3], NAME, ep, f"$.data[{i}][3]")))  # fmt: skip
    records.sort(key=lambda o: o.ts)
    return OiPage(records, span.next(last))


# --- errors ---------------------------------------------------------------------------------------


def parse_error(status: int, body: bytes) -> DccdError | None:
    """The error of an answer: ``code != "0"`` (HTTP 200 or 4xx), or a bare 429.

    ``50011`` (and the sub-account ``50061``) -> RateLimited; service-busy
    codes -> ServerError (retried); other codes -> ExchangeRejected.
    """
    try:
        err = _STATUS.decode(body) if body else None
    except msgspec.MsgspecError:
        err = None
    if err is not None and str(err.code) != "0":
        return _business_error(str(err.code), err.msg, status)
    if status == 429:
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME}: Too Many Requests (HTTP 429)")
    return None
