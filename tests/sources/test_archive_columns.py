"""Column-wise archive text parsers: exact against a pure-Python oracle, clear errors on bad values."""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dccd.sources import archive_columns as ac

# --- oracles: plain integer arithmetic on the text --------------------------------------------------


def oracle_decimal_seconds(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac[:9]).ljust(9, "0") or "0")


def oracle_kdb(text: str) -> int:
    head, _, frac = text.partition(".")
    t = dt.datetime.strptime(head, "%Y-%m-%dD%H:%M:%S").replace(tzinfo=dt.UTC)
    return calendar.timegm(t.timetuple()) * 1_000_000_000 + int(frac.ljust(9, "0") or "0")


dec_seconds = st.builds(
    lambda s, digits, dot: f"{s}.{digits}" if dot else str(s),
    st.integers(0, 9_223_372_035),
    st.text("0123456789", min_size=0, max_size=12),
    st.booleans(),
)
kdb_texts = st.builds(
    lambda t, frac: t.strftime("%Y-%m-%dD%H:%M:%S") + (f".{frac}" if frac is not None else ""),
    st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 12, 31)),
    st.none() | st.text("0123456789", min_size=0, max_size=9),
)


@settings(max_examples=300)
@given(st.lists(dec_seconds, min_size=1, max_size=40))
def test_decimal_seconds_equal_the_integer_oracle(texts: list[str]) -> None:
    """Decimal-seconds text becomes exactly the ns the integer oracle computes, digits past 1 ns floored."""
    assert ac.decimal_seconds_ns(pa.array(texts)).to_pylist() == [oracle_decimal_seconds(t) for t in texts]


@settings(max_examples=300)
@given(st.lists(kdb_texts, min_size=1, max_size=40))
def test_kdb_timestamps_equal_the_calendar_oracle(texts: list[str]) -> None:
    """kdb+ text timestamps become exactly the ns the calendar oracle computes."""
    assert ac.kdb_timestamp_ns(pa.array(texts)).to_pylist() == [oracle_kdb(t) for t in texts]


def test_decimal_seconds_are_not_parsed_through_a_float() -> None:
    """Bybit-style ``1767225600.0001`` keeps its last digit; a float parse lands 160 ns early."""
    text = "1767225600.0001"
    assert ac.decimal_seconds_ns(pa.array([text])).to_pylist() == [1_767_225_600_000_100_000]
    assert int(float(text) * 1e9) == 1_767_225_600_000_099_840  # what the float path gives


def test_decimal_seconds_past_int64_ns_are_refused() -> None:
    """Seconds whose nanoseconds overflow int64 fail instead of wrapping negative."""
    assert ac.decimal_seconds_ns(pa.array(["9223372035.999999999"])).to_pylist() == [9_223_372_035_999_999_999]
    with pytest.raises(ValueError, match="'9223372037' is past the int64 nanosecond range"):
        ac.decimal_seconds_ns(pa.array(["9223372037"]))


@pytest.mark.parametrize("bad", ["1e9", "-1.5", "12.3.4", "", " 17", "1704067200,5", "abc"])
def test_decimal_seconds_reject_other_text(bad: str) -> None:
    """A value that is not digits[.digits] fails with a message quoting it."""
    with pytest.raises(ValueError, match=f"timestamp {bad!r} is not decimal seconds"):
        ac.decimal_seconds_ns(pa.array(["1.5", bad]))


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("2018-12-05T00:00:25.948313000", "is not a kdb"),
        ("2018-12-05D00:00:25.9483130001", "is not a kdb"),
        ("2018-02-30D00:00:25.948313000", "is not a real date"),
        ("2018-12-31D23:59:60.000000000", "is not a real date"),
        ("2018-13-05D00:00:25.948313000", "is not a real date"),
    ],
)
def test_kdb_timestamps_reject_malformed_or_impossible_values(bad: str, why: str) -> None:
    """A malformed or impossible kdb+ timestamp fails, naming the value."""
    with pytest.raises(ValueError, match=why) as err:
        ac.kdb_timestamp_ns(pa.array(["2018-12-05D00:00:25.948313000", bad]))
    assert repr(bad) in str(err.value)


def test_ms_side_and_numbers() -> None:
    """Milliseconds scale exactly, sides normalise to buy/sell, decimals parse like float(text)."""
    assert ac.ms_ns(pa.array(["1747612800074", "0"])).to_pylist() == [1_747_612_800_074_000_000, 0]
    assert ac.ms_ns(pa.array([1747612800074], pa.int64())).to_pylist() == [1_747_612_800_074_000_000]
    assert ac.taker_side(pa.array(["Buy", "sell", "SELL"])).to_pylist() == ["buy", "sell", "sell"]
    texts = ["106453.8", "0.003718", "1e-8", "30000.12345678"]
    assert ac.numbers(pa.array(texts), "price").to_pylist() == [float(t) for t in texts]
    with pytest.raises(ValueError, match=r"timestamp '17\.5' is not integer milliseconds"):
        ac.ms_ns(pa.array(["1", "17.5"]))
    with pytest.raises(ValueError, match="side 'Hold' is not buy/sell"):
        ac.taker_side(pa.array(["Buy", "Hold"]))
    with pytest.raises(ValueError, match="price 'NaN' is not a number"):
        ac.numbers(pa.array(["1", "NaN"]), "price")


def test_streams_gzip_and_zip_from_bytes_or_path_and_puts_the_header_back(tmp_path: Path) -> None:
    """Gzip and one-member zip, as bytes or as a file path, read the same; the sniffed header is not lost."""
    csv = b"a,b\n1,x\n2,y\n"
    for data, kind in [(gzip.compress(csv), "gzip"), (_zip(csv), "zip")]:
        path = tmp_path / f"f.{kind}"
        path.write_bytes(data)
        for source in (data, path, str(path)):
            with ac.open_text(source, kind) as stream:
                header, prefix = ac.header_line(stream)
                assert header == "a,b"
                rows = [b.to_pydict() for b in ac.read_batches(stream, ["a", "b"], skip_header=True, prefix=prefix)]
            assert rows == [{"a": ["1", "2"], "b": ["x", "y"]}]


def test_zip_with_two_members_or_garbage_is_refused() -> None:
    """A zip that is not one CSV fails with a one-line reason."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.csv", "x")
        z.writestr("b.csv", "y")
    with pytest.raises(ValueError, match="zip holds 2 files"), ac.open_text(buf.getvalue(), "zip"):
        pass
    with pytest.raises(ValueError, match="not a zip file"), ac.open_text(b"<html>", "zip"):
        pass


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.csv", data)
    return buf.getvalue()
