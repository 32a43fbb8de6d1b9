"""BitMEX REST, sans-IO: request specs and parsers (``https://www.bitmex.com/api/v1``).

Markets: BTC is ``XBT``. ``BTC/USD:perp`` is ``XBTUSD`` (inverse),
``ETH/USDT:perp`` is ``ETHUSDT`` (linear), spot ``BTC/USDT`` is ``XBT_USDT``;
``/instrument/active`` (perpetuals ``typ=FFWCSX``, spot ``IFXXXP``) is the
listing for both markets. Answers are oldest first by default.

OHLC: ``/trade/bucketed`` (1m 5m 1h 1d). BitMEX stamps a bucket with its
**end**: the bar opening at ``t`` is the bucket stamped ``t + span``, so the
request filters ``startTime``/``endTime`` one span later and every bar is
stored at its open. ``partial=false`` leaves the bucket in progress out. A
bucket whose open/high/low/close or volume is null (no price yet) is not a
bar and is skipped, never stored as 0.0; a null trade count or notional
stays None. ``volume`` is ``homeNotional`` (base currency) and
``quote_volume`` ``foreignNotional``: ``volume`` itself counts contracts.

Trades: ``/trade`` pages forward from ``startTime`` with the ``start`` row
offset. Trades often share a millisecond, so the cursor is ``"<ms>:<n>"``: the
next page asks ``startTime=<ms>&start=<n>``, skipping exactly the ``n``
trades of that millisecond already returned, so a seam neither drops nor
repeats same-millisecond trades (BitMEX orders trades of one timestamp
stably). Ids are ``trdMatchID`` UUIDs; amounts are ``homeNotional`` (base
currency), ``side`` is the taker's. :func:`trades_cursor_after` resumes at
the stored trade's millisecond with offset 0 (the repeats dedup by id).

Book: ``/orderBook/L2`` (sizes in contracts), stamped with the newest level
``timestamp`` when BitMEX sends one, else the receive time.

Funding: ``/funding`` (ascending, 500 a page, the full history); no mark
price. Open interest: BitMEX publishes only the current value
(``/instrument``): ``History.SNAPSHOT``, contracts plus ``openValue`` in the
settlement currency (XBt / USDt minor units converted to XBT / USDT).

Limits: 30 requests a minute without an API key; 429 answers carry
``Retry-After``; errors are ``{"error": {"message", "name"}}``.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from dccd.domain.records import BookSnapshot, Candle, Funding, OpenInterest, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_MS, ns_to_iso, parse_iso_ns
from dccd.errors import DccdError, ExchangeRejected, NoCapability, ProtocolDrift, RateLimited, UnsupportedSymbol
from dccd.sources.base import FundingPage, Listing, Market, OhlcPage, OiPage, Request, TradesPage, decode
from dccd.sources.bitmex.common import (
    BIN_SIZES,
    FUNDING_LIMIT,
    NAME,
    PAGE_LIMIT,
    RATE_LIMITS,
    asset_from_native,
    symbol_to_native,
)
from dccd.sources.paging import check_limit, check_range, ms_ceil, ms_floor

BUCKETED: Final = "/api/v1/trade/bucketed"
TRADE: Final = "/api/v1/trade"
ORDERBOOK: Final = "/api/v1/orderBook/L2"
INSTRUMENTS: Final = "/api/v1/instrument/active"
INSTRUMENT: Final = "/api/v1/instrument"
FUNDING: Final = "/api/v1/funding"

PERPETUAL, SPOT = "FFWCSX", "IFXXXP"
# Settlement currency minor units (satoshi-like) -> the currency.
_SETTLE_SCALE: Final = {"XBt": 1e8, "USDt": 1e6, "LAMp": 1e6, "MAMUSd": 1e6}

_RETRY_IN = re.compile(r"retry in (\d+) second")


# --- private views of BitMEX payloads ------------------------------------------------------------


class _Bin(msgspec.Struct, frozen=True):
    timestamp: str
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    trades: int | None = None
    homeNotional: float | None = None
    foreignNotional: float | None = None


class _Trade(msgspec.Struct, frozen=True):
    timestamp: str
    side: str | None
    price: float
    trdMatchID: str
    homeNotional: float | None = None
    size: float | None = None


class _Level(msgspec.Struct, frozen=True):
    side: str
    size: float
    price: float
    timestamp: str | None = None


class _Instrument(msgspec.Struct, frozen=True):
    symbol: str
    typ: str = ""
    state: str = ""
    rootSymbol: str = ""
    underlying: str | None = None
    quoteCurrency: str | None = None


class _Funding(msgspec.Struct, frozen=True):
    timestamp: str
    fundingRate: float | None = None


class _Oi(msgspec.Struct, frozen=True):
    timestamp: str
    openInterest: float | None = None
    openValue: float | None = None
    settlCurrency: str | None = None


class _ErrorDetail(msgspec.Struct, frozen=True):
    message: str = ""
    name: str = ""


class _Error(msgspec.Struct, frozen=True):
    error: _ErrorDetail


_BINS = msgspec.json.Decoder(list[_Bin])
_TRADES = msgspec.json.Decoder(list[_Trade])
_LEVELS = msgspec.json.Decoder(list[_Level])
_INSTRUMENTS = msgspec.json.Decoder(list[_Instrument])
_FUNDING = msgspec.json.Decoder(list[_Funding])
_OI = msgspec.json.Decoder(list[_Oi])
_ERROR = msgspec.json.Decoder(_Error)
_SIDES: Final = {"Buy": "buy", "Sell": "sell"}


def _iso_ns(text: str, ep: str, path: str) -> int:
    try:
        return parse_iso_ns(text)
    except ValueError:
        raise ProtocolDrift(NAME, ep, f"{text!r} is not an ISO-8601 time - at `{path}`") from None


def _iso_ms(ms: int) -> str:
    """``2024-01-01T00:00:00.000Z``: BitMEX's own format, always with milliseconds."""
    text = ns_to_iso(ms * NS_PER_MS)[:-1]
    head, _, frac = text.partition(".")
    return f"{head}.{frac.ljust(3, '0')}Z"


# --- symbols --------------------------------------------------------------------------------------


def build_symbols() -> Request:
    """Every active instrument (perpetuals and spot come in one answer)."""
    return Request("GET", INSTRUMENTS, (), 1, "instrument/active")


def parse_symbols(request: Request, body: bytes) -> Listing:
    """Perpetuals and spot pairs of ``/instrument/active`` (futures, indices left out).

    The base is the instrument's ``underlying`` (``rootSymbol`` groups several
    baskets); the first instrument of a symbol wins.

    Raises:
        ProtocolDrift: malformed payload.
    """
    markets: dict[Symbol, Market] = {}
    for item in decode(_INSTRUMENTS, body, NAME, request.endpoint):
        if item.typ not in (PERPETUAL, SPOT):
            continue
        base, quote = item.underlying or item.rootSymbol, item.quoteCurrency or ""
        if not (base.isalnum() and quote.isalnum()):
            continue
        sym = Symbol(asset_from_native(base), asset_from_native(quote), "perp" if item.typ == PERPETUAL else None)
        markets.setdefault(sym, Market(sym, item.symbol, item.state, item.state == "Open"))
    return Listing(NAME, tuple(markets.values()))


parse_perp_symbols = parse_symbols  # one parser reads both tables (the request says which)

# --- OHLC -----------------------------------------------------------------------------------------


def build_ohlc(
    symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None, now_ns: int | None = None
) -> Request:
    """Buckets of the bars opening in ``[start_ns, end_ns]`` (stamped one span later), oldest first.

    Raises:
        NoCapability: a span BitMEX does not bucket (1m 5m 1h 1d).
        ValueError: an empty range or a bad limit.
    """
    if span.label not in BIN_SIZES:
        raise NoCapability(NAME, f"ohlc span {span.label} (spans: {' '.join(BIN_SIZES)})")
    check_range(start_ns, end_ns)
    count = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    first, last = span.align_up(start_ns), span.align(end_ns)
    if first > last:
        raise ValueError(f"no {span.label} bar opens in [{start_ns}, {end_ns}]")
    params = (
        ("symbol", symbol_to_native(symbol)),
        ("binSize", span.label),
        ("partial", "false"),
        ("startTime", _iso_ms((first + span.ns) // NS_PER_MS)),
        ("endTime", _iso_ms((last + span.ns) // NS_PER_MS)),
        ("count", str(count)),
        ("reverse", "false"),
    )
    return Request("GET", BUCKETED, params, 1, "trade/bucketed")


def parse_ohlc(request: Request, body: bytes) -> OhlcPage:
    """Bars at their **open** time, ascending; the next page starts after the last bar of a full page.

    Raises:
        ProtocolDrift: malformed rows, unaligned or unordered bucket times.
    """
    ep = request.endpoint
    rows = decode(_BINS, body, NAME, ep)
    span = Span(request.param("binSize") or "")
    lo = _iso_ns(request.param("startTime") or "", ep, "startTime")
    hi = _iso_ns(request.param("endTime") or "", ep, "endTime")
    candles: list[Candle] = []
    prev = lo - 1
    for i, r in enumerate(rows):
        end = _iso_ns(r.timestamp, ep, f"$[{i}].timestamp")
        if not prev < end <= hi or span.align(end) != end:
            raise ProtocolDrift(NAME, ep, f"bucket {r.timestamp} is out of order, unaligned or outside the request - at `$[{i}].timestamp`")  # fmt: skip
        prev = end
        if r.open is None or r.high is None or r.low is None or r.close is None or r.homeNotional is None:
            continue  # no price in this bucket: a missing bar, never 0.0
        candles.append(Candle(end - span.ns, r.open, r.high, r.low, r.close, r.homeNotional, r.foreignNotional, r.trades))  # fmt: skip
    full = len(rows) >= int(request.param("count") or PAGE_LIMIT)
    return OhlcPage(candles, prev if full and prev < hi else None)  # the bar after the last one opens at its end


# --- trades ---------------------------------------------------------------------------------------


def _parse_cursor(cursor: str) -> tuple[int, int]:
    ms, sep, offset = cursor.partition(":")
    if not sep or not ms.isdigit() or not offset.isdigit():
        raise ValueError(f"bitmex trade cursor must be '<ms>:<offset>', got {cursor!r}")
    return int(ms), int(offset)


def build_trades(
    symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
) -> Request:
    """Trades from ``cursor`` (``"<ms>:<offset>"``), else from ``start_ns``, else from the first trade.

    Raises:
        ValueError: a malformed cursor or a limit outside 1..1000.
    """
    count = check_limit(limit, PAGE_LIMIT, PAGE_LIMIT)
    params = [("symbol", symbol_to_native(symbol)), ("count", str(count)), ("reverse", "false")]
    if cursor is not None:
        ms, offset = _parse_cursor(cursor)
        params += [("startTime", _iso_ms(ms)), ("start", str(offset))]
    elif start_ns is not None:
        params += [("startTime", _iso_ms(ms_ceil(start_ns))), ("start", "0")]
    return Request("GET", TRADE, tuple(params), 1, "trade")


def parse_trades(request: Request, body: bytes) -> TradesPage:
    """Trades of a page, ascending, and the ``"<ms>:<offset>"`` cursor continuing after the last one.

    Raises:
        ProtocolDrift: malformed rows, times going backwards or before ``startTime``.
    """
    ep = request.endpoint
    rows = decode(_TRADES, body, NAME, ep)
    start = request.param("startTime")
    prev = _iso_ns(start, ep, "startTime") if start else 0
    records = []
    for i, r in enumerate(rows):
        ts = _iso_ns(r.timestamp, ep, f"$[{i}].timestamp")
        if ts < prev:
            raise ProtocolDrift(NAME, ep, f"trade time {r.timestamp} goes backwards - at `$[{i}].timestamp`")
        prev = ts
        amount = r.homeNotional if r.homeNotional is not None else r.size
        if amount is None:
            raise ProtocolDrift(NAME, ep, f"trade has neither homeNotional nor size - at `$[{i}]`")
        records.append(Trade(ts, r.trdMatchID, r.price, amount, _SIDES.get(r.side or "")))
    if len(rows) < int(request.param("count") or PAGE_LIMIT):
        return TradesPage(records, None)
    last_ms = ms_floor(records[-1].ts)
    same = sum(1 for t in records if ms_floor(t.ts) == last_ms)
    if start and same == len(records) and ms_floor(_iso_ns(start, ep, "startTime")) == last_ms:
        same += int(request.param("start") or 0)  # a whole page inside one millisecond: keep counting
    return TradesPage(records, f"{last_ms}:{same}")


def trades_cursor_after(last: Trade) -> str | None:
    """Cursor at a stored trade's millisecond, offset 0: that millisecond is fetched again (dedup by id)."""
    return f"{ms_floor(last.ts)}:0"


# --- book -----------------------------------------------------------------------------------------


def build_book(symbol: Symbol, depth: int) -> Request:
    """L2 snapshot with ``depth`` levels per side (0 = the full book).

    Raises:
        ValueError: a negative depth.
    """
    if depth < 0:
        raise ValueError(f"bitmex book depth must be >= 0 (0 = full), got {depth}")
    return Request("GET", ORDERBOOK, (("symbol", symbol_to_native(symbol)), ("depth", str(depth))), 1, "orderBook/L2")


def parse_book(request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
    """Snapshot (sizes in contracts), bids best first, stamped with the newest level time or ``recv_ns``.

    Raises:
        ProtocolDrift: malformed payload or an unknown side.
    """
    ep = request.endpoint
    bids: list[tuple[float, float]] = []
    asks: list[tuple[float, float]] = []
    ts: int | None = None
    rows = decode(_LEVELS, body, NAME, ep)
    for i, lv in enumerate(rows):
        if lv.side not in _SIDES:
            raise ProtocolDrift(NAME, ep, f"side {lv.side!r} is not Buy/Sell - at `$[{i}].side`")
        (bids if lv.side == "Buy" else asks).append((lv.price, lv.size))
        if lv.timestamp is not None:
            level_ts = _iso_ns(lv.timestamp, ep, f"$[{i}].timestamp")
            ts = level_ts if ts is None else max(ts, level_ts)
    bids.sort(reverse=True)
    asks.sort()
    return BookSnapshot(recv_ns if ts is None else ts, bids, asks)


# --- funding and open interest ---------------------------------------------------------------------


def _perp(symbol: Symbol) -> str:
    if not symbol.is_perp:
        raise UnsupportedSymbol(NAME, str(symbol), "is not a perpetual (funding and open interest are perp data)")
    return symbol_to_native(symbol)


def build_perp_symbols() -> Request:
    """The same active-instrument table as :func:`build_symbols` (it lists both markets)."""
    return build_symbols()


def build_funding(symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None) -> Request:
    """Funding prints in ``[start_ns, end_ns]``, oldest first, at most ``limit`` (<= 500).

    Raises:
        UnsupportedSymbol: not a perpetual.
        ValueError: an empty range or a bad limit.
    """
    native = _perp(symbol)
    check_range(start_ns, end_ns)
    count = check_limit(limit, FUNDING_LIMIT, FUNDING_LIMIT)
    params = (
        ("symbol", native),
        ("startTime", _iso_ms(ms_ceil(start_ns))),
        ("endTime", _iso_ms(ms_floor(end_ns))),
        ("count", str(count)),
        ("reverse", "false"),
    )
    return Request("GET", FUNDING, params, 1, "funding")


def parse_funding(request: Request, body: bytes) -> FundingPage:
    """Funding prints, ascending; a full page continues 1 ms after its last print (prints are hours apart).

    Rows with a null rate are skipped, never stored as 0.0.

    Raises:
        ProtocolDrift: malformed rows or times going backwards.
    """
    ep = request.endpoint
    rows = decode(_FUNDING, body, NAME, ep)
    records, prev = [], -1
    for i, r in enumerate(rows):
        ts = _iso_ns(r.timestamp, ep, f"$[{i}].timestamp")
        if ts <= prev:
            raise ProtocolDrift(NAME, ep, f"funding time {r.timestamp} is not ascending - at `$[{i}].timestamp`")
        prev = ts
        if r.fundingRate is not None:
            records.append(Funding(ts, r.fundingRate))
    full = len(rows) >= int(request.param("count") or FUNDING_LIMIT)
    return FundingPage(records, prev + NS_PER_MS if full else None)


def build_oi(
    symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None, span: Span | None = None
) -> Request:
    """The current open interest (BitMEX keeps no history; the range is not sent).

    Raises:
        UnsupportedSymbol: not a perpetual.
        NoCapability: a span (BitMEX has no sampled history).
    """
    native = _perp(symbol)
    if span is not None:
        raise NoCapability(NAME, f"oi span {span.label} (only the current open interest is published)")
    columns = '["openInterest","openValue","settlCurrency","timestamp"]'
    return Request("GET", INSTRUMENT, (("symbol", native), ("columns", columns)), 1, "instrument")


def parse_oi(request: Request, body: bytes) -> OiPage:
    """One sample: contracts and their value in the settlement currency; never a next page.

    Raises:
        ProtocolDrift: malformed payload or not exactly one instrument.
    """
    ep = request.endpoint
    rows = decode(_OI, body, NAME, ep)
    if len(rows) != 1:
        raise ProtocolDrift(NAME, ep, f"expected one instrument, got {len(rows)} - at `$`")
    r = rows[0]
    if r.openInterest is None:
        return OiPage([], None)
    scale = _SETTLE_SCALE.get(r.settlCurrency or "")
    value = r.openValue / scale if r.openValue is not None and scale else None
    return OiPage([OpenInterest(_iso_ns(r.timestamp, ep, "$[0].timestamp"), r.openInterest, value)], None)


# --- errors ---------------------------------------------------------------------------------------


def parse_error(status: int, body: bytes) -> DccdError | None:
    """``{"error": {"message", "name"}}`` -> ExchangeRejected; 429 -> RateLimited ("retry in N seconds").

    5xx answers are left to the transport (retried); 2xx answers are data.
    """
    if status < 400 or status >= 500:
        return None
    try:
        err = _ERROR.decode(body) if body else None
    except msgspec.MsgspecError:
        err = None
    message = err.error.message if err else body[:200].decode("utf-8", "replace").strip()
    if status == 429:
        m = _RETRY_IN.search(message)
        return RateLimited(float(m.group(1)) if m else RATE_LIMITS.default_retry_after_s, f"{NAME}: {message}")
    if err is None:
        return None
    return ExchangeRejected(NAME, err.error.name or None, message, status=status)
