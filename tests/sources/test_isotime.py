"""The fast ISO-8601 path used by the Coinbase and Kraken parsers: exact, and as strict as the general parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dccd.domain.timeutil import ns_to_iso, parse_iso_ns
from dccd.sources.isotime import iso_ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2021-04-17T16:43:30.244075Z", 1618677810244075000),
        ("2023-10-04T16:25:00.000000000Z", 1696436700000000000),
        ("2024-02-29T23:59:59Z", 1709251199000000000),
        ("2024-01-01T00:00:00.5Z", 1704067200500000000),
        ("2024-01-01T01:00:00+01:00", 1704067200000000000),  # not the fast shape: general parser
    ],
)
def test_exact_nanoseconds(text: str, ns: int) -> None:
    """Microsecond and nanosecond fractions, leap days and offsets give the exact integer ns."""
    assert iso_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:00.1234567890Z",
        "2024-01-01T00:00:0١Z",
        "soon",
    ],
)
def test_invalid_times_are_rejected(text: str) -> None:
    """Impossible dates, hours, over-long fractions and non-ASCII digits fail like parse_iso_ns does."""
    with pytest.raises(ValueError):
        iso_ns(text)


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_fast_path_matches_the_general_parser(ns: int) -> None:
    """For every instant 1970..2100 the fast path agrees with dccd.domain.timeutil.parse_iso_ns."""
    text = ns_to_iso(ns)
    assert iso_ns(text) == parse_iso_ns(text) == ns
