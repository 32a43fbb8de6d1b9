"""dccd's one exception tree.

::

    DccdError
    ├── ConfigError                      bad config file, env override or CLI argument
    ├── SourceError                      the exchange said something we cannot use
    │   ├── ProtocolDrift                payload no longer matches the documented schema
    │   ├── UnsupportedSymbol            symbol not listed / not mappable on that exchange
    │   ├── NoCapability                 operation the adapter does not declare
    │   └── ExchangeRejected             error body (code + message) from the exchange
    ├── TransportError
    │   ├── ConnectFailed        (T)     DNS/TCP/TLS/WS handshake failure
    │   ├── RequestTimeout       (T)     no answer in time
    │   ├── ServerError          (T)     5xx after retries
    │   ├── RateLimited          (T)     429 / exchange rate-limit body; has ``retry_after_s``
    │   ├── Banned                       418 / IP ban; has ``until_s``
    │   └── Disconnected         (T)     WebSocket dropped or went silent
    ├── StorageError                     lake / run-history failure
    │   ├── CorruptPart                  a Parquet file that cannot be read
    │   └── QueryError                   SQL over the lake refused, denied, invalid or past a limit
    └── GapUnfillable                    a range the exchange cannot give back

``(T)`` marks subclasses of :class:`TransientError`, the one base class a
supervisor retries (``except* TransientError``). Everything else is permanent:
retrying it would fail the same way.

:func:`leaves` and :func:`sole_leaf` are the one walk over (nested) exception
groups; callers pass what to leave out (``trio.Cancelled``), so this module
stays free of Trio.
"""

from __future__ import annotations

ExcTypes = type[BaseException] | tuple[type[BaseException], ...]


def leaves(exc: BaseException, skip: ExcTypes = ()) -> list[BaseException]:
    """The exceptions inside ``exc``'s (nested) exception groups, depth first, left to right.

    Args:
        exc: an exception; a plain one is its own only leaf.
        skip: leaves of these types are left out (e.g. ``trio.Cancelled``).

    Returns:
        The leaves, in the order the groups hold them (possibly none).
    """
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner, skip)]
    return [] if isinstance(exc, skip) else [exc]


def sole_leaf(exc: BaseException, skip: ExcTypes = ()) -> BaseException | None:
    """The one leaf of ``exc`` (see :func:`leaves`), or None when there are none or several."""
    found = leaves(exc, skip)
    return found[0] if len(found) == 1 else None


class DccdError(Exception):
    """Base of every error dccd raises on purpose."""


class TransientError(DccdError):
    """Mixin base: the same operation may succeed if retried later."""


class ConfigError(DccdError):
    """Invalid configuration; ``str(err)`` is one line naming the key path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class SourceError(DccdError):
    """The exchange answered with something dccd cannot turn into data."""


class ProtocolDrift(SourceError):
    """A payload failed schema validation (exchange changed or sent garbage)."""

    def __init__(self, exchange: str, endpoint: str, detail: str) -> None:
        self.exchange = exchange
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(f"{exchange} {endpoint}: unexpected payload: {detail}")


class UnsupportedSymbol(SourceError):
    """The symbol is not listed on (or cannot be mapped to) the exchange."""

    def __init__(self, exchange: str, symbol: str, detail: str = "not listed") -> None:
        self.exchange = exchange
        self.symbol = symbol
        super().__init__(f"{exchange}: symbol {symbol} {detail}")


class NoCapability(SourceError):
    """The adapter does not declare the requested operation."""

    def __init__(self, exchange: str, what: str) -> None:
        self.exchange = exchange
        self.what = what
        super().__init__(f"{exchange} does not offer {what}")


class ExchangeRejected(SourceError):
    """The exchange returned an error body (code + message)."""

    def __init__(self, exchange: str, code: int | str | None, message: str, *, status: int | None = None) -> None:
        self.exchange = exchange
        self.code = code
        self.message = message
        self.status = status
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{exchange} rejected the request{where}: code {code}: {message}")


class TransportError(DccdError):
    """I/O failed between dccd and the exchange."""


class ConnectFailed(TransportError, TransientError):
    """Could not connect (DNS, TCP, TLS or WebSocket handshake)."""


class RequestTimeout(TransportError, TransientError):
    """The exchange did not answer in time."""


class ServerError(TransportError, TransientError):
    """The exchange kept answering 5xx."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        super().__init__(f"HTTP {status} {detail}".strip())


class RateLimited(TransportError, TransientError):
    """The exchange asked us to slow down."""

    def __init__(self, retry_after_s: float, detail: str = "") -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"rate limited, retry after {retry_after_s:g}s {detail}".strip())


class Banned(TransportError):
    """The exchange banned this client (Binance 418) until ``until_s`` (trio clock)."""

    def __init__(self, exchange: str, retry_after_s: float, detail: str = "") -> None:
        self.exchange = exchange
        self.retry_after_s = retry_after_s
        super().__init__(f"{exchange} banned this IP for {retry_after_s:g}s {detail}".strip())


class Disconnected(TransportError, TransientError):
    """A WebSocket connection dropped or went silent."""


class StorageError(DccdError):
    """The lake or the run history failed."""


class CorruptPart(StorageError):
    """A Parquet file in the lake could not be read."""


class QueryError(StorageError):
    """SQL over the lake did not give an answer; ``kind`` says why, ``str(err)`` is one line.

    Kinds: ``refused`` (not one read-only query), ``denied`` (the engine refused a file or a setting),
    ``invalid`` (does not parse or bind, or failed while running), ``missing`` (``as_of`` names no
    snapshot), ``timeout``, ``memory``.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(message)


class GapUnfillable(DccdError):
    """A missing range the exchange cannot return."""
