"""Messages: frozen, tagged with their snake_case name, events round-trip through JSON."""

from __future__ import annotations

import msgspec
import pytest
from dccd.actors import (
    EVENT_TYPES,
    ActorRestarted,
    Flush,
    GapDetected,
    OverflowRecorded,
    PartWritten,
    SubscriberLagged,
    decode_event,
)
from dccd.actors.messages import RunLogged

from .conftest import BTC, make_batch


def test_tag_is_the_snake_case_class_name() -> None:
    """Each message encodes a 'type' field derived from its class name."""
    assert msgspec.json.decode(msgspec.json.encode(Flush())) == {"type": "flush"}
    assert msgspec.json.decode(msgspec.json.encode(SubscriberLagged(3))) == {"type": "subscriber_lagged", "n": 3}
    assert msgspec.json.decode(msgspec.json.encode(make_batch(1)))["type"] == "batch"


def test_messages_are_frozen() -> None:
    """Messages cannot be mutated after construction (they are shared between actors)."""
    lagged = SubscriberLagged(1)
    with pytest.raises(AttributeError):
        lagged.n = 2


@pytest.mark.parametrize(
    "event",
    [
        PartWritten(BTC, rows=3, path="p", bytes=9, first_ts=1, last_ts=3, duration_s=0.5, writer="w"),
        GapDetected(BTC, start_ts=10, end_ts=20, first_id="5", last_id="9", reason="overflow"),
        RunLogged("r1", "warning", "gap 10..20: overflow"),
        OverflowRecorded(BTC, 2, 1, 5, 6, "a", "b", "drop_newest", "ws"),
        ActorRestarted(name="x", role="source", attempt=2, delay_s=1.5, error="ConnectFailed()"),
        SubscriberLagged(7),
    ],
)
def test_events_round_trip_through_json(event: msgspec.Struct) -> None:
    """An event encoded to JSON decodes back to an equal event of the same type."""
    assert decode_event(msgspec.json.encode(event)) == event


def test_unknown_event_is_a_validation_error() -> None:
    """A JSON object with an unknown tag fails with msgspec's error naming the tag."""
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'nope'"):
        decode_event(b'{"type": "nope"}')


def test_batch_rows_and_event_registry() -> None:
    """Batch.rows counts records; EVENT_TYPES lists every event class (no commands, no batches)."""
    assert make_batch(5).rows == 5
    assert Flush not in EVENT_TYPES and PartWritten in EVENT_TYPES
