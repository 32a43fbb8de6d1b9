"""The adapter protocol every exchange module implements (sans-IO).

An adapter turns *what* we want (OHLC of BTC/USDT from t0 to t1) into
:class:`Request` specs, and the exchange's response bytes into domain records
and paging decisions. It never does I/O: the transport sends the requests and
an exchange-agnostic paginator drives the loop::

    cap = adapter.capabilities.require(DataType.OHLC, Transport.REST, span)   # NoCapability early
    listing = adapter.parse_symbols(req := adapter.build_symbols(), await client.fetch(req))
    listing.require(symbol)                                                  # UnsupportedSymbol early
    start = start_ns
    while start is not None and start <= end_ns:
        req = adapter.build_ohlc(symbol, span, start, end_ns)
        page = adapter.parse_ohlc(req, await client.fetch(req))              # ProtocolDrift on bad pages
        emit(page.candles); start = page.next_start_ns

    cursor = None                                                            # trades: opaque cursor
    while True:
        req = adapter.build_trades(symbol, cursor=cursor, start_ns=start_ns)
        page = adapter.parse_trades(req, await client.fetch(req))
        emit(page.records); record(page.id_gaps)                             # page.records may be empty
        if page.next_cursor is None: break                                   # head of the tape
        cursor = page.next_cursor

Paging rules that make history complete and exactly-once:

- OHLC: the adapter reads its own request back in ``parse_ohlc`` and returns
  where the next page starts (``None`` once the exchange has returned
  everything up to the requested end). Missing bars inside a page are bars the
  exchange does not have; they are never skipped by the paging itself.
- Trades: the cursor is an exchange id boundary (next id to fetch), never a
  time, so pages neither overlap nor skip same-millisecond trades.
  ``trades_cursor_after(last_stored_trade)`` resumes a dataset right after
  what is already stored. Trades beyond the requested end are trimmed by the
  paginator (ascending for ``Direction.FORWARD``).
- ``parse_error`` recognises the exchange's error bodies; the transport calls
  it for every non-2xx answer and for every 2xx answer (some exchanges report
  errors with HTTP 200).

Derivatives (funding rates, open interest, perp listings) are a second,
optional protocol, :class:`DerivativesAdapter`, so an adapter without
perpetuals stays a complete :class:`Adapter`. The paginator checks it with
``isinstance`` and walks funding/OI like OHLC, by window starts::

    if not isinstance(adapter, DerivativesAdapter): raise NoCapability(...)
    adapter.capabilities.require(DataType.FUNDING, Transport.REST, market="perp")
    req, parse = listing_for(adapter, symbol)                                # perp table for :perp symbols
    parse(req, await client.fetch(req)).require(symbol)
    start = start_ns
    while start is not None and start <= end_ns:
        req = adapter.build_funding(symbol, start, end_ns)                   # build_oi(..., span=...) for OI
        page = adapter.parse_funding(req, await client.fetch(req))
        emit(page.records); start = page.next_start_ns

A page always holds every record of its window (adapters narrow the window
to what one answer can carry), so ``next_start_ns`` is the start of the next
window and an empty page in the middle of a range is not the end of it.

``Request.origin`` sends a request to another host of the same exchange
(Binance USD-M lives on ``https://fapi.binance.com``). A configured
``rest_url`` override replaces every host of the exchange: the override is
one origin that serves all of the exchange's paths (a fake, a proxy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

import msgspec

from dccd.domain.capability import Capabilities
from dccd.domain.records import BookSnapshot, Candle, Funding, OpenInterest, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import DccdError, ProtocolDrift, UnsupportedSymbol

T = TypeVar("T")


class Request(msgspec.Struct, frozen=True):
    """One HTTP request, described but not sent.

    ``path`` is the exchange's real path (``/api/v3/klines``), appended to the
    configured ``rest_url``; ``weight`` is what the exchange charges for it;
    ``endpoint`` is a short name for logs, metrics and errors. ``origin`` is
    set only for a path served by another host of the exchange than its
    ``rest_url`` (see :meth:`target`). ``state`` is never sent: it carries
    what the adapter's ``parse_*`` must know about the page it asked for but
    the exchange is not told (the requested end of a window, a seam trade id
    to skip, a binary-search bound).
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    weight: int = 1
    endpoint: str = ""
    origin: str | None = None
    state: str = ""

    def target(self, rest_url: str, default_rest_url: str) -> str:
        """Where to send this request: ``path`` (relative to ``rest_url``) or an absolute URL.

        A request with an ``origin`` goes there while the exchange client uses
        the adapter's default ``rest_url``; once ``rest_url`` is overridden
        (a fake exchange, a proxy), the override serves every path, so the
        relative ``path`` is returned.
        """
        if self.origin is None or rest_url.rstrip("/") != default_rest_url.rstrip("/"):
            return self.path
        return self.origin.rstrip("/") + self.path

    def param(self, name: str) -> str | None:
        """The value of query parameter ``name``, or None."""
        for key, value in self.params:
            if key == name:
                return value
        return None


class RateLimits(msgspec.Struct, frozen=True):
    """An exchange's published REST budget and how it reports usage.

    ``weight_per_window`` weight units per ``window_s`` (request-count limits
    are a budget where every request weighs 1). ``used_weight_header`` names
    the response header carrying the exchange's own count, if any.
    """

    weight_per_window: int
    window_s: float
    used_weight_header: str | None = None
    default_retry_after_s: float = 1.0
    default_ban_s: float = 120.0
    ban_statuses: tuple[int, ...] = (418,)


class OhlcPage(msgspec.Struct, frozen=True):
    """Bars of one page, ascending, and where the next page starts (None = done)."""

    candles: list[Candle]
    next_start_ns: int | None


class TradesPage(msgspec.Struct, frozen=True):
    """Trades of one page, ascending, and the cursor of the next page.

    ``next_cursor`` is None when there is nothing more to fetch now (the head of
    the tape). A page may hold no records and still carry a cursor (a lookup
    step such as "first trade id at or after a time"). ``id_gaps`` lists
    inclusive id ranges the exchange skipped inside this page, for exchanges
    whose ids are sequential.
    """

    records: list[Trade]
    next_cursor: str | None
    id_gaps: tuple[tuple[int, int], ...] = ()

    @property
    def done(self) -> bool:
        """True when there is no next page."""
        return self.next_cursor is None


class FundingPage(msgspec.Struct, frozen=True):
    """Funding prints of one window, ascending, and where the next window starts (None = done)."""

    records: list[Funding]
    next_start_ns: int | None


class OiPage(msgspec.Struct, frozen=True):
    """Open-interest samples of one window, ascending, and where the next window starts (None = done)."""

    records: list[OpenInterest]
    next_start_ns: int | None


class Market(msgspec.Struct, frozen=True):
    """One listed market: canonical symbol, exchange name and status."""

    symbol: Symbol
    native: str
    status: str
    active: bool


class Listing(msgspec.Struct, frozen=True):
    """What an exchange lists right now (its symbol table)."""

    exchange: str
    markets: tuple[Market, ...]
    rate_limits: RateLimits | None = None

    def find(self, symbol: Symbol) -> Market | None:
        """The market of ``symbol``, or None."""
        for market in self.markets:
            if market.symbol == symbol:
                return market
        return None

    def by_native(self, native: str) -> Market | None:
        """The market with exchange name ``native``, or None."""
        for market in self.markets:
            if market.native == native:
                return market
        return None

    def require(self, symbol: Symbol) -> Market:
        """The market of ``symbol``; listed markets in any status qualify (history stays fetchable).

        Raises:
            UnsupportedSymbol: the exchange does not list it.
        """
        market = self.find(symbol)
        if market is None:
            raise UnsupportedSymbol(self.exchange, str(symbol), f"is not listed ({len(self.markets)} markets listed)")
        return market


def sequential_ids(adapter: object) -> bool:
    """Whether the exchange's trade ids are consecutive per symbol (its ``sequential_trade_ids``).

    Such ids prove a hole by themselves and are refilled by id; an adapter
    (a plugin, say) that does not declare it is taken as not sequential.
    """
    return bool(getattr(adapter, "sequential_trade_ids", False))


@runtime_checkable
class Adapter(Protocol):
    """The sans-IO interface of one exchange (see the module docstring for the paging loop)."""

    name: str
    rest_url: str
    capabilities: Capabilities
    rate_limits: RateLimits

    def symbol_to_native(self, symbol: Symbol) -> str:
        """Exchange name of a canonical symbol (``BTC/USDT`` -> ``BTCUSDT``); raises UnsupportedSymbol."""
        ...

    def symbol_from_native(self, native: str) -> Symbol:
        """Canonical symbol of an exchange name, best effort without a listing; raises UnsupportedSymbol."""
        ...

    def build_symbols(self) -> Request:
        """Request for the exchange's symbol table."""
        ...

    def parse_symbols(self, request: Request, body: bytes) -> Listing:
        """Symbol table from the response to :meth:`build_symbols`."""
        ...

    def build_ohlc(
        self,
        symbol: Symbol,
        span: Span,
        start_ns: int,
        end_ns: int,
        *,
        limit: int | None = None,
        now_ns: int | None = None,
    ) -> Request:
        """One page of bars opening in ``[start_ns, end_ns]`` (inclusive), at most ``limit`` bars.

        ``now_ns`` is the caller's wall clock (builders are pure and never read
        one), for exchanges whose endpoint depends on how recent the window is.
        """
        ...

    def parse_ohlc(self, request: Request, body: bytes) -> OhlcPage:
        """Bars of one page and the start of the next; raises ProtocolDrift on bad payloads."""
        ...

    def build_trades(
        self,
        symbol: Symbol,
        *,
        cursor: str | None = None,
        start_ns: int | None = None,
        limit: int | None = None,
    ) -> Request:
        """Next trades page: from ``cursor`` if given, else from ``start_ns``, else from the first trade."""
        ...

    def parse_trades(self, request: Request, body: bytes) -> TradesPage:
        """Trades of one page and the next cursor; raises ProtocolDrift on bad payloads."""
        ...

    def trades_cursor_after(self, last: Trade) -> str | None:
        """Cursor continuing right after an already stored trade (None if ids cannot resume)."""
        ...

    def build_book(self, symbol: Symbol, depth: int) -> Request:
        """Order-book snapshot request with ``depth`` levels per side."""
        ...

    def parse_book(self, request: Request, body: bytes, recv_ns: int) -> BookSnapshot:
        """Book snapshot; ``recv_ns`` (wall clock at receipt) is used when the exchange gives no time."""
        ...

    def parse_error(self, status: int, body: bytes) -> DccdError | None:
        """The error an answer carries (ExchangeRejected, RateLimited, Banned), or None for a normal answer."""
        ...


@runtime_checkable
class DerivativesAdapter(Protocol):
    """Perpetual swaps of one exchange: their listing, funding rates and open interest.

    Optional: an adapter implements it next to :class:`Adapter` when the
    exchange offers these publicly, and declares ``DataType.FUNDING`` /
    ``DataType.OI`` capabilities with ``markets=("perp",)``. The paging loop
    is in the module docstring.
    """

    name: str
    capabilities: Capabilities

    def build_perp_symbols(self) -> Request:
        """Request for the exchange's perpetual-swap table (``BASE/QUOTE:perp`` markets)."""
        ...

    def parse_perp_symbols(self, request: Request, body: bytes) -> Listing:
        """Perpetual markets from the response to :meth:`build_perp_symbols`."""
        ...

    def build_funding(self, symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None) -> Request:
        """Funding prints at ``[start_ns, end_ns]`` (inclusive), or the part of it one answer carries."""
        ...

    def parse_funding(self, request: Request, body: bytes) -> FundingPage:
        """Funding prints of one window and the next window's start; raises ProtocolDrift on bad payloads."""
        ...

    def build_oi(
        self, symbol: Symbol, start_ns: int, end_ns: int, *, limit: int | None = None, span: Span | None = None
    ) -> Request:
        """Open-interest samples at ``[start_ns, end_ns]``, one per ``span`` (None = the finest offered)."""
        ...

    def parse_oi(self, request: Request, body: bytes) -> OiPage:
        """Open-interest samples of one window and the next window's start; raises ProtocolDrift."""
        ...


def listing_for(
    adapter: Adapter, symbol: Symbol | None = None, *, perp: bool = False
) -> tuple[Request, Callable[[Request, bytes], Listing]]:
    """The listing request that can contain ``symbol`` (without one: the perpetuals' table with ``perp``, else
    the spot table) and the parser of its answer.

    Perpetuals are listed separately on most exchanges (Bybit ``category``,
    OKX ``instType``, Binance's futures host), so a ``:perp`` symbol is
    checked against :meth:`DerivativesAdapter.build_perp_symbols` when the
    adapter has one; spot symbols (and adapters without derivatives) use
    :meth:`Adapter.build_symbols`.
    """
    if (perp if symbol is None else symbol.is_perp) and isinstance(adapter, DerivativesAdapter):
        return adapter.build_perp_symbols(), adapter.parse_perp_symbols
    return adapter.build_symbols(), adapter.parse_symbols


def decode(decoder: msgspec.json.Decoder[T], body: bytes | str, exchange: str, endpoint: str) -> T:
    """Decode a JSON body (or a WebSocket text frame) with a typed decoder, mapping failures to ProtocolDrift.

    Raises:
        ProtocolDrift: empty body, invalid JSON, or a schema mismatch (the
            message carries msgspec's ``$.path``).
    """
    if not body or body.isspace():
        raise ProtocolDrift(exchange, endpoint, "empty body (expected JSON)")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ProtocolDrift(exchange, endpoint, str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ProtocolDrift(exchange, endpoint, f"invalid JSON: {exc} (body starts {body[:60]!r})") from exc


def number(text: str, exchange: str, endpoint: str, path: str) -> float:
    """A decimal string as float (correctly rounded), or ProtocolDrift naming ``path``.

    Raises:
        ProtocolDrift: not a finite decimal number.
    """
    try:
        value = float(text)
    except ValueError:
        raise ProtocolDrift(exchange, endpoint, f"{text!r} is not a number - at `{path}`") from None
    if not math.isfinite(value):
        raise ProtocolDrift(exchange, endpoint, f"{text!r} is not a finite number - at `{path}`")
    return value
