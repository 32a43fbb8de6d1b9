"""Bar spans: parse, label, length and exact alignment (1M = calendar month).

Alignment follows the exchanges: bars open at multiples of the span since the
Unix epoch, except ``1w`` (Monday 00:00 UTC) and ``1M`` (first day of the
month 00:00 UTC).
"""

from __future__ import annotations

from typing import Final

import msgspec

from dccd.domain.timeutil import (
    NS_PER_DAY,
    NS_PER_S,
    civil_from_days,
    month_start_ns,
)

SPAN_SECONDS: Final[dict[str, int]] = {
    "1s": 1,
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
    "1M": 2592000,  # nominal (30 d); real length is calendar-based
}
SPAN_LABELS: Final[tuple[str, ...]] = tuple(SPAN_SECONDS)
SPAN_CHOICES: Final[str] = " ".join(SPAN_LABELS)

# 1970-01-01 was a Thursday; weekly bars open on Mondays (4 days later).
_WEEK_OFFSET_NS: Final[int] = 4 * NS_PER_DAY


class Span(msgspec.Struct, frozen=True, order=True):
    """One bar length, e.g. ``Span.parse("1m")``."""

    label: str

    @classmethod
    def parse(cls, text: str) -> Span:
        """Parse a span label.

        Raises:
            ValueError: ``'7m' is not a span (1s 1m ...)``.
        """
        if text not in SPAN_SECONDS:
            raise ValueError(f"{text!r} is not a span ({SPAN_CHOICES})")
        return cls(text)

    def __str__(self) -> str:
        return self.label

    @property
    def seconds(self) -> int:
        """Nominal length in seconds (30 days for 1M)."""
        return SPAN_SECONDS[self.label]

    @property
    def ns(self) -> int:
        """Nominal length in ns (30 days for 1M)."""
        return SPAN_SECONDS[self.label] * NS_PER_S

    @property
    def calendar(self) -> bool:
        """True when bar lengths vary (1M)."""
        return self.label == "1M"

    def align(self, ts_ns: int) -> int:
        """Open time of the bar containing ``ts_ns`` (floor)."""
        if self.label == "1M":
            y, m, _ = civil_from_days(ts_ns // NS_PER_DAY)
            return month_start_ns(y, m)
        step = self.ns
        off = _WEEK_OFFSET_NS if self.label == "1w" else 0
        return (ts_ns - off) // step * step + off

    def align_up(self, ts_ns: int) -> int:
        """Smallest bar open time >= ``ts_ns``."""
        a = self.align(ts_ns)
        return a if a == ts_ns else self.next(a)

    def next(self, open_ns: int) -> int:
        """Open time of the bar after the one opening at ``open_ns``."""
        return self.add(open_ns, 1)

    def add(self, open_ns: int, n: int) -> int:
        """Open time ``n`` bars after an aligned ``open_ns`` (n may be negative)."""
        if self.label == "1M":
            y, m, _ = civil_from_days(open_ns // NS_PER_DAY)
            return month_start_ns(y, m + n)
        return open_ns + n * self.ns

    def count(self, start_ns: int, end_ns: int) -> int:
        """Number of bar opens in [start_ns, end_ns)."""
        first = self.align_up(start_ns)
        if first >= end_ns:
            return 0
        if self.label == "1M":
            y0, m0, _ = civil_from_days(first // NS_PER_DAY)
            last = self.align(end_ns - 1)
            y1, m1, _ = civil_from_days(last // NS_PER_DAY)
            return (y1 - y0) * 12 + (m1 - m0) + 1
        return (end_ns - 1 - first) // self.ns + 1
