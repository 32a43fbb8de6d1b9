"""What dccd puts on the bus: subjects, message ids and the message schema.

Subjects (every token is NATS-safe: symbols travel as their lake slug)::

    dccd.trades.<exchange>.<SLUG>              one message per trade
    dccd.candles.<exchange>.<SLUG>.<span>      one message per closed bar
    dccd.book.<exchange>.<SLUG>                one message per top-N snapshot
    dccd.events.<kind>                         run/actor/scan events (kind: the event's type tag)
    dccd.signals.<scanner>                     one message per scanner hit

Every message carries ``Nats-Msg-Id`` = its natural key (the key the lake deduplicates on), so the
stream's duplicate window drops a copy published again after a reconnect, by a refill overlapping the
live feed, or by a shard that took over a stream: a trade is on the bus once, by id.

Payloads are :class:`BusTrade`, :class:`BusCandle`, :class:`BusBook`, or the event/signal itself (the
types of :mod:`dccd.actors.messages`), encoded as JSON (default) or msgpack (``bus.format: msgpack``,
about half the bytes); the ``Content-Type`` header says which. Decode with :func:`decode`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from dccd.domain.dataset import DatasetId
from dccd.domain.records import BookSnapshot, Candle, DataType, Record, Trade

Format = Literal["json", "msgpack"]
CONTENT_TYPES: dict[str, str] = {"json": "application/json", "msgpack": "application/msgpack"}
PREFIX = "dccd"


class BusTrade(msgspec.Struct, frozen=True, gc=False, tag="trade"):
    """One trade: ``ts``/``recv_ts`` ns UTC, ``side`` the taker's (``buy``/``sell``) when known."""

    exchange: str
    symbol: str
    ts: int
    id: str | None
    price: float
    amount: float
    side: str | None = None
    recv_ts: int | None = None


class BusCandle(msgspec.Struct, frozen=True, gc=False, tag="candle"):
    """One closed bar opening at ``ts`` (ns UTC)."""

    exchange: str
    symbol: str
    span: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float | None = None
    trades: int | None = None


class BusBook(msgspec.Struct, frozen=True, gc=False, tag="book"):
    """One top-N book snapshot: ``bids``/``asks`` as ``[price, amount]`` best first."""

    exchange: str
    symbol: str
    ts: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    seq: int | None = None


BusRecord = BusTrade | BusCandle | BusBook
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


def token(text: str) -> str:
    """``text`` as one NATS subject token (``.``, ``*``, ``>`` and whitespace become ``_``)."""
    out = "".join("_" if c in ".*> \t\r\n" else c for c in text)
    return out or "_"


def data_subject(dataset: DatasetId) -> str:
    """The subject of a dataset's live records (see the module docstring)."""
    ex, slug = token(dataset.exchange), token(dataset.symbol.slug)
    dt = dataset.data_type
    if dt is DataType.TRADES:
        return f"{PREFIX}.trades.{ex}.{slug}"
    if dt is DataType.OHLC:
        span = dataset.span.label if dataset.span else "_"
        return f"{PREFIX}.candles.{ex}.{slug}.{token(span)}"
    return f"{PREFIX}.{token(dt.value)}.{ex}.{slug}"


def event_subject(kind: str) -> str:
    """``dccd.events.<kind>``."""
    return f"{PREFIX}.events.{token(kind)}"


def signal_subject(scanner: str) -> str:
    """``dccd.signals.<scanner>``."""
    return f"{PREFIX}.signals.{token(scanner)}"


def record_id(dataset: DatasetId, rec: Record) -> str:
    """The natural key of one record as a ``Nats-Msg-Id`` (what the lake deduplicates on).

    Trades with an exchange id: ``t:<exchange>:<slug>:<id>``; without one, the full trade (time,
    price, amount, side). Bars: ``c:<exchange>:<slug>:<span>:<open ns>``. Books: time and sequence.
    """
    ex, slug = dataset.exchange, dataset.symbol.slug
    if isinstance(rec, Trade):
        if rec.id is not None:
            return f"t:{ex}:{slug}:{rec.id}"
        return f"t:{ex}:{slug}:@{rec.ts}:{rec.price!r}:{rec.amount!r}:{rec.side}"
    if isinstance(rec, Candle):
        return f"c:{ex}:{slug}:{dataset.span.label if dataset.span else ''}:{rec.ts}"
    if isinstance(rec, BookSnapshot):
        return f"b:{ex}:{slug}:{rec.ts}:{rec.seq}"
    return f"{dataset.data_type.value}:{ex}:{slug}:{getattr(rec, 'ts', '')}"


def to_bus(dataset: DatasetId, rec: Record) -> BusRecord | None:
    """The bus form of a live record (None: a type the bus does not carry)."""
    sym = str(dataset.symbol)
    if isinstance(rec, Trade):
        return BusTrade(dataset.exchange, sym, rec.ts, rec.id, rec.price, rec.amount, rec.side, rec.recv_ts)
    if isinstance(rec, Candle):
        span = dataset.span.label if dataset.span else ""
        return BusCandle(
            dataset.exchange, sym, span, rec.ts, rec.open, rec.high, rec.low, rec.close, rec.volume,
            rec.quote_volume, rec.trades,
        )  # fmt: skip
    if isinstance(rec, BookSnapshot):
        return BusBook(dataset.exchange, sym, rec.ts, rec.bids, rec.asks, rec.seq)
    return None


def encode(obj: Any, fmt: Format) -> bytes:
    """``obj`` (a bus record, an event or a signal) in ``fmt``."""
    return _msgpack.encode(obj) if fmt == "msgpack" else _json.encode(obj)


class Outgoing(msgspec.Struct, frozen=True, gc=False):
    """One message ready to publish."""

    subject: str
    payload: bytes
    msg_id: str


def batch_messages(dataset: DatasetId, records: list[Record], fmt: Format) -> Iterator[Outgoing]:
    """One :class:`Outgoing` per record of a live batch (records the bus does not carry are skipped)."""
    subject = data_subject(dataset)
    for rec in records:
        msg = to_bus(dataset, rec)
        if msg is not None:
            yield Outgoing(subject, encode(msg, fmt), record_id(dataset, rec))


def event_message(event: msgspec.Struct, fmt: Format) -> Outgoing:
    """An event on ``dccd.events.<kind>`` (``kind``: its ``type`` tag); a ``signal_generated`` goes to
    ``dccd.signals.<scanner>``.

    A signal's id is its natural key; another event's a digest of its JSON form: the same event published
    twice is stored once.
    """
    kind = str(type(event).__struct_config__.tag or type(event).__name__)
    payload = encode(event, fmt)
    scanner = getattr(event, "scanner", None)
    if kind == "signal_generated" and isinstance(scanner, str):
        ex, sym, ts = getattr(event, "exchange", ""), getattr(event, "symbol", ""), getattr(event, "ts", "")
        params = getattr(event, "params_hash", "")
        return Outgoing(signal_subject(scanner), payload, f"s:{scanner}:{params}:{ex}:{sym}:{ts}")
    digest = hashlib.blake2b(_json.encode(event), digest_size=12).hexdigest()
    return Outgoing(event_subject(kind), payload, f"e:{kind}:{digest}")


def decode(data: bytes, content_type: str | None = None) -> Any:
    """Decode a bus payload to builtins (dicts and lists), whichever format it was published in."""
    if content_type == CONTENT_TYPES["msgpack"]:
        return msgspec.msgpack.decode(data)
    return msgspec.json.decode(data)
