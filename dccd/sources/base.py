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
"""

from __future__ import annotations

import math
from typing import Protocol, TypeVar, runtime_checkable

import msgspec

from dccd.domain.capability import Capabilities
from dccd.domain.records import BookSnapshot, Candle, Trade
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.errors import DccdError, ProtocolDrift, UnsupportedSymbol

T = TypeVar("T")


class Request(msgspec.Struct, frozen=True):
    """One HTTP request, described but not sent.

    ``path`` is the exchange's real path (``/api/v3/klines``), appended to the
    configured ``rest_url``; ``weight`` is what the exchange charges for it;
    ``endpoint`` is a short name for logs, metrics and errors.
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    weight: int = 1
    endpoint: str = ""

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
        self, symbol: Symbol, span: Span, start_ns: int, end_ns: int, *, limit: int | None = None
    ) -> Request:
        """One page of bars opening in ``[start_ns, end_ns]`` (inclusive), at most ``limit`` bars."""
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


def decode(decoder: msgspec.json.Decoder[T], body: bytes, exchange: str, endpoint: str) -> T:
    """Decode a JSON body with a typed decoder, mapping failures to ProtocolDrift.

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
