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

Pauses and bans outlive the process when a :class:`LimitStateStore` is given
(the service passes one writing ``{root}/_dccd/limits.json``): each is recorded
as a wall-clock deadline, and a limiter of a later process reads them before
its first request. A restored pause, or a ban ending within
``max_restored_wait_s`` (default 5 min), is waited out with a warning; a longer
ban makes every request fail at once with :class:`~dccd.errors.Banned` naming
its end, so a backfill fails with that message instead of sleeping for hours.
Restarting inside a 429 window therefore cannot earn a 418.

Windows are aligned to the wall clock (exchanges count per calendar minute)
while sleeping follows ``trio.current_time()``, so tests under a MockClock
stay exact: the wall clock is sampled once, as an offset.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Protocol

import structlog
import trio

from dccd.domain.ratelimit import LimitDeadline, WeightLedger
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import Banned
from dccd.sources.base import RateLimits

_log = structlog.get_logger("dccd.transport.ratelimit")

MAX_RESTORED_WAIT_S = 300.0
"""A ban recorded by an earlier process that ends sooner than this is waited out; a later one refuses requests."""


class LimitStateStore(Protocol):
    """Where pause/ban deadlines are kept across processes (blocking calls: the limiter runs them in a thread).

    Keyed by exchange and base URL (the limiter's identity). Implementations
    raise :class:`OSError` when the medium fails; the limiter logs that and
    carries on (the in-memory limit still holds).
    """

    def load(self, exchange: str, base_url: str) -> list[LimitDeadline]:
        """Deadlines recorded for this exchange host (expired ones may be included)."""
        ...

    def record(self, exchange: str, base_url: str, deadline: LimitDeadline) -> None:
        """Keep ``deadline`` durably (a later one of the same kind wins)."""
        ...


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
        state: where pauses and bans are persisted and restored from (None: memory only).
        base_url: the host the deadlines belong to (the key in ``state``).
        now_ns: wall clock (ns UTC) converting persisted deadlines to and from Trio time.
        max_restored_wait_s: a restored ban ending later than this refuses requests instead of waiting.
    """

    def __init__(
        self,
        exchange: str,
        limits: RateLimits,
        share: float,
        *,
        guard_s: float | None = None,
        wall_clock: Callable[[], float] = time.time,
        state: LimitStateStore | None = None,
        base_url: str = "",
        now_ns: Callable[[], int] = time.time_ns,
        max_restored_wait_s: float = MAX_RESTORED_WAIT_S,
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
        self.base_url = base_url
        self._state = state
        self._now_ns = now_ns
        self._max_restored_wait_s = max_restored_wait_s
        self._restored = state is None
        self._restore_lock = trio.Lock()

    def attach_state(self, state: LimitStateStore) -> None:
        """Persist to (and restore from) ``state`` if this limiter has no store yet."""
        if self._state is None:
            self._state = state
            self._restored = False

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
        if not self._restored:
            await self._restore()
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

    async def pause(self, delay_s: float, detail: str = "") -> None:
        """Hold every caller for ``delay_s`` (after a 429), and record the deadline in the state store."""
        self._paused_until = max(self._paused_until, trio.current_time() + delay_s)
        await self._persist("pause", self._paused_until, detail)

    async def ban(self, retry_after_s: float, detail: str = "") -> None:
        """Refuse every request for ``retry_after_s`` (after a 418), wake all waiters to fail, record the deadline."""
        self._banned_until = max(self._banned_until, trio.current_time() + retry_after_s)
        self._ban_detail = detail
        self._changed.set()
        self._changed = trio.Event()
        await self._persist("ban", self._banned_until, detail)

    async def _persist(self, kind: str, until: float, detail: str) -> None:
        # The memory state is already in force; a failing disk must not turn a 429 into a crash.
        if self._state is None:
            return
        now_ns = self._now_ns()
        deadline = LimitDeadline(kind, now_ns + round((until - trio.current_time()) * 1e9), detail, now_ns)
        record = functools.partial(self._state.record, self.exchange, self.base_url, deadline)
        try:
            await trio.to_thread.run_sync(record)
        except OSError as exc:
            _log.warning("ratelimit.persist_failed", exchange=self.exchange, kind=kind, error=str(exc))

    async def _restore(self) -> None:
        """Adopt the deadlines an earlier process recorded (once, before the first request)."""
        async with self._restore_lock:
            if self._restored or self._state is None:
                return
            try:
                deadlines = await trio.to_thread.run_sync(self._state.load, self.exchange, self.base_url)
            except OSError as exc:
                _log.warning("ratelimit.restore_failed", exchange=self.exchange, error=str(exc))
                deadlines = []
            self._restored = True
            # Sample both clocks together, after the read: the remaining time is what is left now.
            now, now_ns = trio.current_time(), self._now_ns()
            for d in deadlines:
                left_s = (d.until_ns - now_ns) / 1e9
                if left_s <= 0:
                    continue
                until = ns_to_iso(d.until_ns)
                if d.kind == "ban" and left_s > self._max_restored_wait_s:
                    self._banned_until = max(self._banned_until, now + left_s)
                    said = d.detail[1:-1] if d.detail.startswith("(") and d.detail.endswith(")") else d.detail
                    self._ban_detail = f"(until {until}, recorded by an earlier process: {said})"
                    action = "refusing"
                else:
                    self._paused_until = max(self._paused_until, now + left_s)
                    action = "waiting"
                _log.warning(
                    "ratelimit.restored",
                    exchange=self.exchange,
                    kind=d.kind,
                    action=action,
                    remaining_s=round(left_s, 3),
                    until=until,
                    detail=d.detail,
                )


def shared_limiter(
    exchange: str,
    base_url: str,
    limits: RateLimits,
    share: float,
    *,
    guard_s: float | None = None,
    wall_clock: Callable[[], float] = time.time,
    state: LimitStateStore | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> WeightLimiter:
    """The limiter of (exchange, base URL) in the current Trio run, created on first use.

    The first caller's ``share`` and ``limits`` hold for the whole run; later
    callers get the same object, so all actors hitting one exchange draw from
    one budget. A fresh ``trio.run`` (a test) starts with no limiters. ``state``
    (see :class:`WeightLimiter`) is attached if the limiter has none yet.
    """
    try:
        registry = _REGISTRY.get()
    except LookupError:
        registry = {}
        _REGISTRY.set(registry)
    key = (exchange, base_url.rstrip("/"))
    limiter = registry.get(key)
    if limiter is None:
        limiter = registry[key] = WeightLimiter(
            exchange, limits, share, guard_s=guard_s, wall_clock=wall_clock, state=state, base_url=key[1], now_ns=now_ns
        )
    elif state is not None:
        limiter.attach_state(state)
    return limiter
