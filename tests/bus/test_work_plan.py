"""Work units, pure: cutting ranges at unit boundaries, natural keys, progress counts, the wire form."""

from __future__ import annotations

import msgspec
import pytest

from dccd.bus.work import (
    UnitState,
    WorkUnit,
    after_failure,
    count_units,
    decode_state,
    decode_unit,
    encode_state,
    encode_unit,
    plan_units,
    split_range,
    state_key,
    unit_key,
    unit_subject,
)
from dccd.domain.dataset import DatasetId
from dccd.domain.records import DataType
from dccd.domain.spans import Span
from dccd.domain.symbols import Symbol
from dccd.domain.timeutil import parse_iso_ns

DAY = 86_400 * 10**9
BTC = DatasetId("binance", Symbol.parse("BTC/USDT:perp"), DataType.OHLC, Span.parse("1m"))


def test_ranges_are_cut_at_utc_day_boundaries() -> None:
    """A range from mid-day to mid-day is cut at every midnight UTC: a partial head, whole days, a partial tail."""
    lo, hi = parse_iso_ns("2024-03-01T06:00:00Z"), parse_iso_ns("2024-03-04T12:00:00Z")
    got = split_range(lo, hi, DAY)
    assert got == [
        (lo, parse_iso_ns("2024-03-02")),
        (parse_iso_ns("2024-03-02"), parse_iso_ns("2024-03-03")),
        (parse_iso_ns("2024-03-03"), parse_iso_ns("2024-03-04")),
        (parse_iso_ns("2024-03-04"), hi),
    ]
    assert split_range(hi, hi, DAY) == [] and split_range(hi, lo, DAY) == []
    with pytest.raises(ValueError, match="positive"):
        split_range(lo, hi, 0)


def test_units_carry_the_dataset_and_their_place_in_the_plan() -> None:
    """One unit per day, numbered, with the dataset as the CLI names it; the subject uses the lake slug."""
    units = plan_units("plan1", BTC, parse_iso_ns("2024-03-01"), parse_iso_ns("2024-03-03"), DAY, source="rest")
    assert [(u.index, u.total, u.symbol, u.type, u.span, u.source) for u in units] == [
        (0, 2, "BTC/USDT:perp", "ohlc", "1m", "rest"),
        (1, 2, "BTC/USDT:perp", "ohlc", "1m", "rest"),
    ]
    assert unit_subject(units[0]) == "dccd.work.backfill.binance.BTC-USDT-PERP"


def test_the_natural_key_ignores_the_plan() -> None:
    """The same range planned by two plans has one key (so it is enqueued once); another range or source
    has another; the KV key is a short digest of it."""
    a = plan_units("p1", BTC, 0, DAY, DAY)[0]
    b = plan_units("p2", BTC, 0, DAY, DAY)[0]
    c = plan_units("p1", BTC, DAY, 2 * DAY, DAY)[0]
    d = plan_units("p1", BTC, 0, DAY, DAY, source="archive")[0]
    assert unit_key(a) == unit_key(b) and state_key(a) == state_key(b)
    assert len({unit_key(a), unit_key(c), unit_key(d)}) == 3
    assert state_key(a).startswith("u.") and len(state_key(a)) == 26


def test_counts_by_status() -> None:
    """Units without a state are queued; rows count only done units; finished when all are done or dead."""
    keys = ["a", "b", "c", "d", "e"]
    states = {
        "a": UnitState("done", rows=10),
        "b": UnitState("running"),
        "c": UnitState("retrying", error="x"),
        "d": UnitState("dead", rows=99),
    }
    got = count_units(keys, states)
    assert (got.total, got.queued, got.in_flight, got.done, got.failed, got.dead, got.rows) == (5, 1, 1, 1, 1, 1, 10)
    assert not got.finished
    assert count_units(["a", "d"], states).finished


def test_wire_forms_round_trip_and_reject_garbage() -> None:
    """Units and states survive encode/decode; a body that is not a unit raises (a poison message), an
    unreadable state reads as None."""
    unit = WorkUnit("p", 0, 1, "binance", "BTC/USDT", "trades", None, 1, 2)
    assert decode_unit(encode_unit(unit)) == unit
    with pytest.raises(msgspec.ValidationError):
        decode_unit(b'{"plan": "p"}')
    with pytest.raises(msgspec.DecodeError):
        decode_unit(b"{not json")
    st = UnitState("done", "shard-0/2", "r1", 5, 2)
    assert decode_state(encode_state(st)) == st
    assert decode_state(b"garbage") is None and decode_state(None) is None


def test_a_failed_delivery_is_retried_with_backoff_until_the_last() -> None:
    """Failed deliveries are redelivered after 2, 4, 8… s (at most 30 s); the max_deliver-th is dead."""
    assert [after_failure(d, 6) for d in range(1, 7)] == [
        ("retrying", 2.0), ("retrying", 4.0), ("retrying", 8.0), ("retrying", 16.0), ("retrying", 30.0), ("dead", None),
    ]  # fmt: skip
    assert after_failure(3, 2) == ("dead", None)
