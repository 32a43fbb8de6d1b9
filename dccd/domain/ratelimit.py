"""Rate-limit and retry arithmetic, as pure functions of ``now``.

Exchanges count request weight in fixed windows aligned to the wall clock
(Binance: ``REQUEST_WEIGHT`` per calendar minute, echoed back in the
``X-MBX-USED-WEIGHT-1M`` response header). :class:`WeightLedger` keeps that
count for one exchange: the transport feeds it the time and the exchange's own
header, and sleeps for the delays it returns. Nothing here sleeps or reads a
clock, so every decision is testable with plain numbers.
"""

from __future__ import annotations

import math
from datetime import UTC
from email.utils import parsedate_to_datetime

import msgspec

from dccd.domain.backoff import RestartPolicy, backoff_delay


class RetryPolicy(msgspec.Struct, frozen=True):
    """How hard one request is retried.

    ``attempts`` bounds tries on 5xx, network errors and timeouts (the first try
    included); ``max_rate_limited`` separately bounds 429 answers, so honouring
    a ``Retry-After`` never eats the retry budget meant for server failures.
    Delays grow ``base_s * 2**(attempt-1)`` up to ``cap_s``, shortened by up to
    ``jitter`` of themselves (the semantics of :mod:`dccd.domain.backoff`).
    """

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.5
    max_rate_limited: int = 10

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be >= 1, got {self.attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("retry delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"retry jitter must be within [0, 1], got {self.jitter}")
        if self.max_rate_limited < 0:
            raise ValueError(f"max_rate_limited must be >= 0, got {self.max_rate_limited}")


def backoff_delay_s(attempt: int, policy: RetryPolicy, u: float) -> float:
    """Delay before retrying after failed try number ``attempt`` (1-based).

    ``min(cap_s, base_s * 2**(attempt-1)) * (1 - jitter * u)``: the random
    part spreads clients that failed together, so they do not retry in
    lockstep; the rest keeps a floor under the delay.

    Args:
        attempt: number of the try that just failed, >= 1.
        policy: base, cap and jitter.
        u: a uniform random number in [0, 1).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    shape = RestartPolicy(initial_s=policy.base_s, factor=2.0, max_s=policy.cap_s, jitter=policy.jitter)
    return backoff_delay(shape, attempt - 1, u)


def parse_retry_after(value: str | None, now_wall_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3).

    Accepts delay-seconds (``"120"``; decimals tolerated) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), which is turned into a delay from
    ``now_wall_s`` (Unix seconds). A date in the past means 0.

    Returns:
        The delay in seconds (>= 0), or None when the header is absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 850 / asctime forms carry no zone; HTTP-dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now_wall_s
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class WeightLedger:
    """Request weight used in the current fixed window, against a budget.

    ``limit`` is the weight this client may use per window (already scaled by
    its share of the exchange's budget); ``limit <= 0`` disables proactive
    limiting but still keeps the count. Windows are ``[k*window_s,
    (k+1)*window_s)`` on the caller's wall-clock timeline.

    The exchange counts a request in the window it *arrives* in, which may be
    the next one for a request sent just before a boundary, and its clock may
    differ a little from ours. ``guard_s`` covers both: a request sent within
    ``guard_s`` of a window's end is charged to the next window as well, and
    requests held back for a roll-over are released ``guard_s`` after it.
    """

    __slots__ = ("_ahead", "_used", "_window", "guard_s", "limit", "window_s")

    def __init__(self, limit: int, window_s: float, guard_s: float = 0.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if guard_s < 0 or guard_s >= window_s:
            raise ValueError(f"guard_s must be in [0, window_s), got {guard_s}")
        self.limit = limit
        self.window_s = window_s
        self.guard_s = guard_s
        self._window = -(2**62)
        self._used = 0
        self._ahead = 0  # pre-charged to the window after ``_window``

    def window_of(self, now_s: float) -> int:
        """Index of the window containing ``now_s``."""
        return math.floor(now_s / self.window_s)

    def window_end(self, now_s: float) -> float:
        """Start of the next window after ``now_s``."""
        return (self.window_of(now_s) + 1) * self.window_s

    def _roll(self, now_s: float) -> None:
        idx = self.window_of(now_s)
        if idx != self._window:
            self._used = self._ahead if idx == self._window + 1 else 0
            self._window, self._ahead = idx, 0

    def used(self, now_s: float) -> int:
        """Weight counted in the window containing ``now_s``."""
        self._roll(now_s)
        return self._used

    def reserve(self, weight: int, now_s: float) -> float:
        """Count ``weight`` now if it fits, else say how long to wait.

        A request heavier than the whole budget is let through alone at the
        start of an empty window (otherwise it could never run).

        Returns:
            0.0 when the weight was counted; otherwise the delay in seconds
            after which to ask again (nothing was counted).
        """
        self._roll(now_s)
        if self.limit <= 0 or self._used + weight <= self.limit or self._used == 0:
            self._used += weight
            if self.window_end(now_s) - now_s < self.guard_s:
                self._ahead += weight
            return 0.0
        return self.window_end(now_s) - now_s + self.guard_s

    def observe(self, used: int, window: int) -> None:
        """Adopt the exchange's own count for ``window`` if it is still current.

        The header is the truth (other processes on the same IP spend the same
        budget), but it cannot know about our requests still in flight, so the
        ledger keeps the larger of the two. A count for an older window is
        ignored: that window is over.
        """
        if window == self._window and used > self._used:
            self._used = used


class LimitDeadline(msgspec.Struct, frozen=True):
    """A pause (429 ``Retry-After``) or ban (418) of one exchange host that outlives the process.

    Deadlines are wall-clock ns UTC (a Trio clock means nothing to the next
    process); ``recorded_ns`` is when it was recorded, ``detail`` what the
    exchange answered.
    """

    kind: str  # "pause" | "ban"
    until_ns: int
    detail: str = ""
    recorded_ns: int = 0
