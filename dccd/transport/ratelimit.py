"""The shared per-exchange request limiter (Trio).

One :class:`WeightLimiter` per (exchange, base URL) per ``trio.run`` is shared
by every actor talking to that exchange (:func:`shared_limiter`), because the
exchange counts per IP, not per caller. It combines three gates:

- the weight budget: ``share`` of the published weight per window, counted
  locally and corrected by the exchange's own used-weight header
  (:class:`~dccd.domain.ratelimit.WeightLedger` does the arithmetic);
- a pause after a 429: nobody sends until ``Retry-After`` has passed, because
  Binance bans IPs that keep sending after a 429;
- a ban after a 418: every request fails with :class:`~dccd.errors.Banned`
  without being sent, until the ban ends.

Windows are aligned to the wall clock (exchanges count per calendar minute)
while sleeping follows ``trio.current_time()``, so tests under a MockClock
stay exact: the wall clock is sampled once, as an offset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import trio

from dccd.domain.ratelimit import WeightLedger
from dccd.errors import Banned
from dccd.sources.base import RateLimits

_REGISTRY: trio.lowlevel.RunVar[dict[tuple[str, str], WeightLimiter]] = trio.lowlevel.RunVar("dccd_weight_limiters")


class WeightLimiter:
    """Request-weight gate of one exchange, shared by all its callers in this Trio run.

    Args:
        exchange: exchange name (for errors).
        limits: the exchange's published budget.
        share: fraction (0..1] of the budget this process may use; 0 turns
            proactive limiting off (429/418 handling stays on).
        guard_s: delay past a window boundary for requests released by the
            roll-over (default 1 % of the window).
        wall_clock: Unix-seconds clock used once to align windows.
    """

    def __init__(
        self,
        exchange: str,
        limits: RateLimits,
        share: float,
        *,
        guard_s: float | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not (0.0 <= share <= 1.0) or math.isnan(share):
            raise ValueError(f"rate_limit share must be in [0, 1], got {share}")
        self.exchange = exchange
        self.limits = limits
        self.share = share
        self.budget = math.floor(limits.weight_per_window * share) if share > 0 else 0
        guard = limits.window_s * 0.01 if guard_s is None else guard_s
        self._ledger = WeightLedger(self.budget, limits.window_s, guard)
        self._offset = wall_clock() - trio.current_time()
        self._paused_until = -math.inf
        self._banned_until = -math.inf
        self._ban_detail = ""
        self._changed = trio.Event()

    def wall_now(self) -> float:
        """The exchange-aligned clock: wall time advancing with ``trio.current_time()``."""
        return trio.current_time() + self._offset

    @property
    def used(self) -> int:
        """Weight counted in the current window (local reservations or the exchange's figure)."""
        return self._ledger.used(self.wall_now())

    def banned_for(self) -> float:
        """Seconds left of a ban (0 when not banned)."""
        return max(0.0, self._banned_until - trio.current_time())

    def until_next_window(self) -> float:
        """Seconds until the current weight window ends."""
        now = self.wall_now()
        return self._ledger.window_end(now) - now

    def _check_ban(self) -> None:
        left = self._banned_until - trio.current_time()
        if left > 0:
            raise Banned(self.exchange, left, self._ban_detail)

    async def _wait(self, delay_s: float) -> None:
        # Sleep, but wake early when a ban lands so waiters fail at once.
        changed = self._changed
        with trio.move_on_after(delay_s):
            await changed.wait()

    async def acquire(self, weight: int) -> int:
        """Wait until ``weight`` fits, count it, and return its window index.

        Raises:
            Banned: the exchange banned us; nothing may be sent until it ends.
        """
        while True:
            self._check_ban()
            now = trio.current_time()
            if now < self._paused_until:
                await self._wait(self._paused_until - now)
                continue
            wall = now + self._offset
            delay = self._ledger.reserve(weight, wall)
            if delay <= 0:
                return self._ledger.window_of(wall)
            await self._wait(delay)

    def update(self, limits: RateLimits) -> None:
        """Adopt the exchange's live budget (e.g. ``Listing.rate_limits`` from exchangeInfo)."""
        if limits == self.limits:
            return
        self.limits = limits
        self.budget = math.floor(limits.weight_per_window * self.share) if self.share > 0 else 0
        if limits.window_s == self._ledger.window_s:
            self._ledger.limit = self.budget
        else:
            self._ledger = WeightLedger(self.budget, limits.window_s, min(self._ledger.guard_s, limits.window_s / 2))

    def observe(self, used: int, window: int) -> None:
        """Feed the exchange's used-weight header for a request counted in ``window``."""
        self._ledger.observe(used, window)

    def pause(self, delay_s: float) -> None:
        """Hold every caller for ``delay_s`` (after a 429)."""
        self._paused_until = max(self._paused_until, trio.current_time() + delay_s)

    def ban(self, retry_after_s: float, detail: str = "") -> None:
        """Refuse every request for ``retry_after_s`` (after a 418) and wake all waiters to fail."""
        self._banned_until = max(self._banned_until, trio.current_time() + retry_after_s)
        self._ban_detail = detail
        self._changed.set()
        self._changed = trio.Event()


def shared_limiter(
    exchange: str,
    base_url: str,
    limits: RateLimits,
    share: float,
    *,
    guard_s: float | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> WeightLimiter:
    """The limiter of (exchange, base URL) in the current Trio run, created on first use.

    The first caller's ``share`` and ``limits`` hold for the whole run; later
    callers get the same object, so all actors hitting one exchange draw from
    one budget. A fresh ``trio.run`` (a test) starts with no limiters.
    """
    try:
        registry = _REGISTRY.get()
    except LookupError:
        registry = {}
        _REGISTRY.set(registry)
    key = (exchange, base_url.rstrip("/"))
    limiter = registry.get(key)
    if limiter is None:
        limiter = registry[key] = WeightLimiter(exchange, limits, share, guard_s=guard_s, wall_clock=wall_clock)
    return limiter
