"""Fast exact parsing of the ISO-8601 UTC timestamps exchanges put in every message.

Coinbase (``2021-04-17T16:43:30.244075Z``) and Kraken WS v2
(``2023-10-04T16:25:00.000000000Z``) stamp each trade with such a string.
:func:`dccd.domain.timeutil.parse_iso_ns` accepts every ISO form through a
regular expression; this fast path slices the one canonical shape (``Z``
suffix, 0-9 fraction digits) with a per-day cache and falls back to the
general parser for anything else. Both are exact integer arithmetic.
"""

from __future__ import annotations

import calendar
from functools import lru_cache

from dccd.domain.timeutil import NS_PER_DAY, NS_PER_S, days_from_civil, parse_iso_ns

_DIGITS = frozenset("0123456789")


@lru_cache(maxsize=256)
def _day_ns(date: str) -> int | None:
    """ns of 00:00 UTC of ``YYYY-MM-DD``, or None if it is not that shape (the slow path decides)."""
    if len(date) != 10 or date[4] != "-" or date[7] != "-" or not _DIGITS.issuperset(date[:4] + date[5:7] + date[8:]):
        return None
    y, m, d = int(date[:4]), int(date[5:7]), int(date[8:])
    if not (1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]):
        return None
    return days_from_civil(y, m, d) * NS_PER_DAY


def iso_ns(text: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS[.fffffffff]Z`` to int ns UTC, exactly; other ISO forms via the slow path.

    Raises:
        ValueError: not an ISO-8601 datetime.
    """
    n = len(text)
    if 20 <= n <= 30 and text[-1] == "Z" and text[10] == "T" and text[13] == ":" and text[16] == ":":
        day = _day_ns(text[:10])
        clock = text[11:13] + text[14:16] + text[17:19]
        frac = text[20:-1] if n > 20 else ""
        if (
            day is not None
            and _DIGITS.issuperset(clock)
            and (n == 20 or text[19] == ".")
            and _DIGITS.issuperset(frac)
            and len(frac) <= 9
        ):
            h, mi, s = int(clock[:2]), int(clock[2:4]), int(clock[4:])
            if h < 24 and mi < 60 and s < 60:
                return day + (h * 3600 + mi * 60 + s) * NS_PER_S + (int(frac.ljust(9, "0")) if frac else 0)
    return parse_iso_ns(text)
