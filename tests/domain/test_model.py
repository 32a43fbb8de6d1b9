"""Data types, records, capabilities and dataset ids."""

from __future__ import annotations

import msgspec
import pytest

from dccd.domain import (
    NATURAL_KEYS,
    RECORD_TYPES,
    BookSnapshot,
    Capabilities,
    Capability,
    DatasetId,
    DataType,
    Direction,
    History,
    Span,
    Symbol,
    Trade,
    Transport,
    check_exchange_name,
)
from dccd.errors import NoCapability, SourceError

BTC = Symbol.parse("BTC/USDT")


def test_data_type_parse() -> None:
    """DataType.parse knows the five lake names and rejects anything else with the list."""
    assert [DataType.parse(t) for t in ("trades", "ohlc", "book", "funding", "oi")] == list(DataType)
    assert str(DataType.OHLC) == "ohlc"
    for bad in ("OHLC", "candles", "", "trade"):
        with pytest.raises(ValueError) as info:
            DataType.parse(bad)
        assert str(info.value) == f"{bad!r} is not a data type (trades ohlc book funding oi)"


def test_every_type_has_a_record_and_key() -> None:
    """Each DataType maps to its record Struct and a natural key made of that record's fields."""
    assert set(RECORD_TYPES) == set(DataType) == set(NATURAL_KEYS)
    for dtype, cls in RECORD_TYPES.items():
        assert set(NATURAL_KEYS[dtype]) <= set(cls.__struct_fields__)


def test_records_are_frozen_and_round_trip() -> None:
    """Records are immutable and survive msgspec encode/decode exactly (int ns timestamps)."""
    t = Trade(ts=1_704_067_200_123_456_789, id="42", price=42000.5, amount=0.001, side="buy")
    with pytest.raises(AttributeError):
        t.price = 1.0  # type: ignore[misc]
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(t), type=Trade) == t


def test_book_snapshot_levels() -> None:
    """BookSnapshot.levels flattens bids then asks into BookLevel rows sharing ts and seq."""
    snap = BookSnapshot(ts=5, bids=[(100.0, 1.0), (99.0, 2.0)], asks=[(101.0, 3.0)], seq=7)
    assert [(lv.side, lv.price, lv.amount, lv.ts, lv.seq) for lv in snap.levels()] == [
        ("bid", 100.0, 1.0, 5, 7),
        ("bid", 99.0, 2.0, 5, 7),
        ("ask", 101.0, 3.0, 5, 7),
    ]


CAPS = Capabilities(
    exchange="kraken",
    items=(
        Capability(
            DataType.OHLC, Transport.REST, History.RECENT, Direction.FORWARD, spans=("1m", "1h"), recent_rows=720
        ),
        Capability(DataType.TRADES, Transport.WS, History.LIVE, markets=("spot", "perp")),
    ),
)


def test_require_returns_the_capability() -> None:
    """require returns the declared capability for a supported type/transport/span/market."""
    cap = CAPS.require(DataType.OHLC, Transport.REST, Span.parse("1h"))
    assert (cap.history, cap.recent_rows) == (History.RECENT, 720)
    assert CAPS.require(DataType.TRADES, Transport.WS, market="perp").transport is Transport.WS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((DataType.FUNDING, Transport.REST), "kraken does not offer funding over rest"),
        ((DataType.TRADES, Transport.REST), "kraken does not offer trades over rest"),
        (
            (DataType.OHLC, Transport.REST, Span.parse("4h")),
            "kraken does not offer ohlc span 4h over rest (spans: 1m 1h)",
        ),
        ((DataType.OHLC, Transport.REST, None, "perp"), "kraken does not offer ohlc for perp markets"),
    ],
)
def test_require_raises_no_capability(args: tuple[object, ...], message: str) -> None:
    """require raises NoCapability (a permanent SourceError) naming what is missing."""
    with pytest.raises(NoCapability) as info:
        CAPS.require(*args)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert isinstance(info.value, SourceError)
    assert (info.value.exchange, CAPS.find(DataType.FUNDING, Transport.REST)) == ("kraken", None)


def test_require_symbol_checks_the_symbols_market() -> None:
    """require_symbol asks for the market of the symbol: spot for a pair, perp for a ``:perp`` symbol."""
    perp = Symbol.parse("BTC/USDT:perp")
    assert CAPS.require_symbol(DataType.OHLC, Transport.REST, Span.parse("1h"), BTC).recent_rows == 720
    assert CAPS.require_symbol(DataType.TRADES, Transport.WS, None, perp).transport is Transport.WS
    with pytest.raises(NoCapability) as info:
        CAPS.require_symbol(DataType.OHLC, Transport.REST, Span.parse("1h"), perp)
    assert str(info.value) == "kraken does not offer ohlc for perp markets"


def test_dataset_id() -> None:
    """DatasetId prints exchange:symbol:type[:span] and orders deterministically."""
    a = DatasetId("binance", BTC, DataType.OHLC, Span.parse("1m"))
    b = DatasetId("binance", BTC, DataType.TRADES)
    assert (str(a), str(b)) == ("binance:BTC/USDT:ohlc:1m", "binance:BTC/USDT:trades")
    assert sorted([b, a]) == [a, b]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exchange": "Binance", "data_type": DataType.TRADES}, "'Binance' is not an exchange name"),
        ({"exchange": "binance\n", "data_type": DataType.TRADES}, "'binance\\\\n' is not an exchange name"),
        ({"exchange": "../x", "data_type": DataType.TRADES}, "'../x' is not an exchange name"),
        ({"exchange": "binance", "data_type": DataType.OHLC}, "ohlc datasets need a span"),
        ({"exchange": "binance", "data_type": DataType.BOOK, "span": Span.parse("1m")}, "book datasets take no span"),
    ],
)
def test_dataset_id_rejects(kwargs: dict[str, object], message: str) -> None:
    """Path-unsafe exchange names and span/type mismatches raise ValueError."""
    with pytest.raises(ValueError, match=message):
        DatasetId(symbol=BTC, **kwargs)  # type: ignore[arg-type]


def test_check_exchange_name() -> None:
    """Exchange ids are lower-case letters, digits and _ starting with a letter, at most 32 chars."""
    assert check_exchange_name("kraken_futures") == "kraken_futures"
    for bad in ("", "1x", "a" * 33, "bin ance", "binance\n"):
        with pytest.raises(ValueError):
            check_exchange_name(bad)
