"""Kraken spot REST, sans-IO (``https://api.kraken.com/0/public``).

Every answer is ``{"error": [...], "result": {...}}`` with **HTTP 200 even on
errors**, so :func:`parse_error` reads the ``error`` list of 2xx bodies
(``EQuery:Unknown asset pair`` -> ExchangeRejected, ``EGeneral:Too many
requests`` -> RateLimited, ``EService:*`` -> retryable ServerError) and the
parsers refuse a body with errors: never an empty page. ``result`` is keyed by
Kraken's internal pair name (``XXBTZUSD``), not the requested altname, so the
parsers read the one key that is not ``last``.

OHLC: ``/OHLC?pair=&interval=&since=`` returns **at most the 720 most recent
bars** whatever ``since`` says (declared ``History.RECENT`` with
``recent_rows=720``; the paginator clamps an older start with a warning).
One answer holds every available bar from ``since`` to now, so a page is
final (``next_start_ns`` None). The last row is the bar still in progress;
``result.last`` is the open time of the last *committed* bar, and rows after
it are dropped. Intervals 1m 5m 15m 30m 1h 4h 1d are declared; Kraken's
10080/21600-minute bars are not aligned like dccd's ``1w`` (Monday) and
there is no 15-day span. Rows carry a trade count and VWAP, no quote volume.

Trades: ``/Trades?pair=&since=&count=`` pages ascending from ``since``
(exclusive, nanoseconds), up to ``count`` (1000) rows. Times are float
seconds in the JSON (``1688669597.8277369``); they are read from the raw
number text with exact integer arithmetic (no float noise). Rows carry the
trade id (7th field, sequential per pair; absent in old data, then None).
The only cursor is a time, so one taker order filling several makers at the
same instant can straddle a page seam. The cursor ``SINCE:ID`` therefore
re-requests from 1 µs before the page's last trade and skips ids up to
``ID`` (the last one emitted): pages neither overlap nor drop a trade. If a
whole page shares that microsecond, the exchange's own ``last`` is used.

Gaps: trade ids are sequential, so id holes inside a page are reported as
``id_gaps``; a live hole after a reconnect is refilled from
``trades_cursor_after(last trade before the hole)``.

Book: ``/Depth?pair=&count=`` (1..500 levels); levels carry their own update
times but the snapshot has none, so ``ts`` is the receive time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import msgspec

from dccd.domain.capability import Transport
from dccd.domain.records import BookSnapshot, Candle, DataType, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import NS_PER_S, NS_PER_US, decimal_seconds_to_ns
from dccd.errors import DccdError, ExchangeRejected, ProtocolDrift, RateLimited, ServerError
from dccd.sources.base import Listing, Market, OhlcPage, Request, TradesPage, decode, number
from dccd.sources.kraken.common import (
    ASSET,
    CAPABILITIES,
    INTERVALS,
    MAX_DEPTH,
    NAME,
    RATE_LIMITS,
    RECENT_BARS,
    SIDES,
    TRADES_LIMIT,
    canonical_asset,
    symbol_to_native,
)
from dccd.sources.paging import check_limit, check_range

if TYPE_CHECKING:
    pass

PUBLIC: Final = "/0/public"

SEAM_NS: Final = NS_PER_US  # re-request the seam microsecond (REST times have 0.1 µs digits)


# --- private views -------------------------------------------------------------------------------


class _Envelope(msgspec.Struct, frozen=True):
    error: list[str] = []
    result: dict[str, msgspec.Raw] = {}


class _Pair(msgspec.Struct, frozen=True):
    altname: str
    wsname: str = ""
    status: str = "online"


class _OhlcRow(msgspec.Struct, array_like=True, frozen=True):
    time: int
    open: str
    high: str
    low: str
    close: str
    vwap: str
    volume: str
    count: int


class _TradeRow(msgspec.Struct, array_like=True, frozen=True):
    price: str
    volume: str
    time: msgspec.Raw  # exact text of a float seconds number
    side: str
    order_type: str
    misc: str
    trade_id: int | None = None


class _Book(msgspec.Struct, frozen=True):
    asks: list[tuple[str, str, int]]
    bids: list[tuple[str, str, int]]


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_PAIR = msgspec.json.Decoder(_Pair)
_OHLC = msgspec.json.Decoder(list[_OhlcRow])
_TRADES = msgspec.json.Decoder(list[_TradeRow])
_BOOK = msgspec.json.Decoder(_Book)
_INT = msgspec.json.Decoder(int)
_STR = msgspec.json.Decoder(str)


# --- symbols --------------------------------------------------------------------------------------


def build_symbols() -> Request:
    """Every pair (``AssetPairs``)."""
    return Request("GET", f"{PUBLIC}/AssetPairs", (), 1, "AssetPairs")


def _result(request: Request, body: bytes) -> dict[str, msgspec.Raw]:
    env = decode(_ENVELOPE, body, NAME, request.endpoint)
    err = _error(200, env.error)
    if err is not None:
        raise err
    return env.result


def _pair_rows(request: Request, body: bytes) -> tuple[msgspec.Raw, msgspec.Raw | None]:
    result = _result(request, body)
    keys = [k for k in result if k != "last"]
    if len(keys) != 1:
        raise ProtocolDrift(NAME, request.endpoint, f"expected one pair key in `$.result`, got {keys}")
    return result[keys[0]], result.get("last")


def parse_symbols(request: Request, body: bytes) -> Listing:
    """Listing from ``AssetPairs``: ``wsname`` gives the canonical symbol (XBT -> BTC), ``altname`` the native name.

    Pairs without a ``wsname`` (old dark-pool ``.d`` pairs) have no market data and are left out.
    """
    markets = []
    for key, raw in _result(request, body).items():
        try:
            pair = _PAIR.decode(raw)
        except msgspec.ValidationError as exc:
            raise ProtocolDrift(NAME, request.endpoint, f"{exc} in `$.result.{key}`") from None
        base, sep, quote = pair.wsname.partition("/")
        if not sep or not ASSET.match(base) or not ASSET.match(quote):
            continue
        symbol = Symbol(canonical_asset(base), canonical_asset(quote))
        markets.append(Market(symbol, pair.altname, pair.status, pair.status == "online"))
    return Listing(NAME, tuple(markets))


# --- OHLC -----------------------------------------------------------------------------------------


def build_ohlc(
    symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None, now_ns: int | None = None
) -> Request:
    """Bars from ``start_ns`` on (Kraken returns at most the 720 most recent); ``end_ns`` is kept in ``state``.

    Raises:
        NoCapability: a span Kraken does not offer.
        ValueError: ``start_ns > end_ns`` or a limit outside 1..720.
    """
    CAPABILITIES.require(DataType.OHLC, Transport.REST, span)
    check_range(start_ns, end_ns)
    check_limit(limit, RECENT_BARS, RECENT_BARS)
    since = span.align_up(start_ns) // NS_PER_S - 1  # `since` is exclusive
    params = (("pair", symbol_to_native(symbol)), ("interval", str(INTERVALS[span.label])), ("since", str(since)))
    return Request("GET", f"{PUBLIC}/OHLC", params, 1, "OHLC", state=f"{start_ns}:{end_ns}")


def parse_ohlc(request: Request, body: bytes) -> OhlcPage:
    """Committed bars in the requested range, ascending; always the last page.

    Raises:
        ExchangeRejected, RateLimited, ServerError: an error body.
        ProtocolDrift: malformed rows, bars out of order or off the interval grid.
    """
    ep = request.endpoint
    raw_rows, raw_last = _pair_rows(request, body)
    if raw_last is None:
        raise ProtocolDrift(NAME, ep, "no `$.result.last` (open time of the last committed bar)")
    try:
        rows, last = _OHLC.decode(raw_rows), _INT.decode(raw_last) * NS_PER_S
    except msgspec.ValidationError as exc:
        raise ProtocolDrift(NAME, ep, f"{exc} in `$.result`") from None
    start, _, end = request.state.partition(":")
    lo, hi = int(start), min(int(end), last)
    step = int(request.param("interval") or 1) * 60 * NS_PER_S
    candles: list[Candle] = []
    prev = None
    for i, r in enumerate(rows):
        ts = r.time * NS_PER_S
        if ts % step or (prev is not None and ts <= prev):
            why = "not ascending" if prev is not None and ts <= prev else "off the interval grid"
            raise ProtocolDrift(NAME, ep, f"bar time {r.time} {why} - at `$.result[pair][{i}][0]`")
        prev = ts
        if lo <= ts <= hi:
            path = f"$.result[pair][{i}]"
            o, h = number(r.open, NAME, ep, f"{path}[1]"), number(r.high, NAME, ep, f"{path}[2]")
            lw, c = number(r.low, NAME, ep, f"{path}[3]"), number(r.close, NAME, ep, f"{path}[4]")
            candles.append(Candle(ts, o, h, lw, c, number(r.volume, NAME, ep, f"{path}[6]"), None, r.count))
    return OhlcPage(candles, None)


# --- trades ---------------------------------------------------------------------------------------


def _split_cursor(cursor: str) -> tuple[int, int | None]:
    since, _, after = cursor.partition(":")
    if not since.isdigit() or (after and not after.isdigit()):
        raise ValueError(f"kraken trade cursor must be SINCE_NS or SINCE_NS:TRADE_ID, got {cursor!r}")
    return int(since), int(after) if after else None


def build_trades(
    symbol: Symbol, *, cursor: str | None = None, start_ns: int | None = None, limit: int | None = None
) -> Request:
    """Trades after ``since``: from ``cursor`` (``SINCE[:ID]``), else from ``start_ns``, else from the first.

    Raises:
        ValueError: a malformed cursor or a limit outside 1..1000.
    """
    lim = check_limit(limit, TRADES_LIMIT, TRADES_LIMIT)
    if cursor is not None:
        since, after = _split_cursor(cursor)
    else:
        since, after = (0 if start_ns is None else max(0, start_ns - 1)), None
    params = (("pair", symbol_to_native(symbol)), ("since", str(since)), ("count", str(lim)))
    return Request("GET", f"{PUBLIC}/Trades", params, 1, "Trades", state="" if after is None else str(after))


def parse_trades(request: Request, body: bytes) -> TradesPage:
    """Trades (exact ns times, ids, taker sides) skipping the seam ids already emitted, and the next cursor.

    Raises:
        ExchangeRejected, RateLimited, ServerError: an error body.
        ProtocolDrift: malformed rows or a missing ``last``.
    """
    ep = request.endpoint
    raw_rows, raw_last = _pair_rows(request, body)
    if raw_last is None:
        raise ProtocolDrift(NAME, ep, "no `$.result.last` (the next `since`)")
    try:
        rows, last = _TRADES.decode(raw_rows), _STR.decode(raw_last)
    except msgspec.ValidationError as exc:
        raise ProtocolDrift(NAME, ep, f"{exc} in `$.result`") from None
    after = int(request.state) if request.state else None
    expect = None if after is None else after + 1
    records: list[Trade] = []
    gaps: list[tuple[int, int]] = []
    for i, r in enumerate(rows):
        tid = r.trade_id
        if tid is not None and after is not None and tid <= after:
            continue  # the seam trades the previous page already emitted
        path = f"$.result[pair][{i}]"
        side = SIDES.get(r.side)
        if side is None:
            raise ProtocolDrift(NAME, ep, f"side {r.side!r} is not b/s - at `{path}[3]`")
        try:
            ts = decimal_seconds_to_ns(bytes(r.time).decode())
        except ValueError as exc:
            raise ProtocolDrift(NAME, ep, f"{exc} - at `{path}[2]`") from None
        if tid is not None:
            if expect is not None and tid > expect:
                gaps.append((expect, tid - 1))
            elif expect is not None and tid < expect:
                raise ProtocolDrift(NAME, ep, f"trade id {tid} not ascending - at `{path}[6]`")
            expect = tid + 1
        price, amount = number(r.price, NAME, ep, f"{path}[0]"), number(r.volume, NAME, ep, f"{path}[1]")
        records.append(Trade(ts, None if tid is None else str(tid), price, amount, side))
    if len(rows) < int(request.param("count") or TRADES_LIMIT):
        return TradesPage(records, None, tuple(gaps))  # the head of the tape
    since, _ = _split_cursor(request.param("since") or "0")
    tail = rows[-1]
    seam = decimal_seconds_to_ns(bytes(tail.time).decode()) - SEAM_NS
    if not last.isdigit():
        raise ProtocolDrift(NAME, ep, f"`$.result.last` {last!r} is not a nanosecond cursor")
    nxt = str(seam) if seam > since else last
    last_id = tail.trade_id if tail.trade_id is not None else after
    return TradesPage(records, nxt if last_id is None else f"{nxt}:{last_id}", tuple(gaps))


def trades_cursor_after(last: Trade) -> str | None:
    """Cursor continuing after a stored trade: 1 µs before its time, skipping ids up to its own."""
    since = max(0, last.ts - SEAM_NS)
    if last.id is not None and last.id.isdigit():
        return f"{since}:{last.id}"
    return str(since)


# --- book -----------------------------------------------------------------------------------------


def build_book(symbol: Symbol, depth: int) -> Request:
    """Depth snapshot with ``depth`` (1..500) levels per side.

    Raises:
        ValueError: depth outside 1..500.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"kraken book depth must be 1..{MAX_DEPTH}, got {depth}")
    params = (("pair", symbol_to_native(symbol)), ("count", str(depth)))
    return Request("GET", f"{PUBLIC}/Depth", params, 1, "Depth")


def parse_book(request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
    """Snapshot stamped ``recv_ns`` (Kraken gives per-level times only).

    Raises:
        ExchangeRejected, RateLimited, ServerError: an error body.
        ProtocolDrift: malformed payload or non-numeric levels.
    """
    ep = request.endpoint
    raw, _ = _pair_rows(request, body)
    try:
        book = _BOOK.decode(raw)
    except msgspec.ValidationError as exc:
        raise ProtocolDrift(NAME, ep, f"{exc} in `$.result[pair]`") from None
    bids = [
        (number(p, NAME, ep, f"$.bids[{i}][0]"), number(q, NAME, ep, f"$.bids[{i}][1]"))
        for i, (p, q, _) in enumerate(book.bids)
    ]
    asks = [
        (number(p, NAME, ep, f"$.asks[{i}][0]"), number(q, NAME, ep, f"$.asks[{i}][1]"))
        for i, (p, q, _) in enumerate(book.asks)
    ]
    return BookSnapshot(recv_ns, bids, asks)


# --- errors ---------------------------------------------------------------------------------------

_RATE_LIMIT_ERRORS: Final = frozenset({"EAPI:Rate limit exceeded", "EGeneral:Too many requests"})


def _error(status: int, errors: Sequence[str]) -> DccdError | None:
    real = [e for e in errors if not e.startswith("W")]  # "W..." entries are warnings
    if not real:
        return None
    first = real[0]
    if first in _RATE_LIMIT_ERRORS:
        return RateLimited(RATE_LIMITS.default_retry_after_s, f"{NAME}: {first}")
    if first.startswith("EService:"):
        return ServerError(status, f"{NAME}: {first}")
    code, _, message = first.partition(":")
    return ExchangeRejected(NAME, code, message or first, status=status)


def parse_error(status: int, body: bytes) -> DccdError | None:
    """The error in a Kraken ``error`` list (HTTP 200 included); None for a clean or non-Kraken body."""
    head = body[:64].lstrip()
    if not head.startswith(b"{") or b'"error"' not in head or b'"error":[]' in head:
        return None  # Kraken puts `error` first: a clean answer is recognised without decoding it
    try:
        env = _ENVELOPE.decode(body)
    except msgspec.MsgspecError:
        return None
    return _error(status, env.error)
