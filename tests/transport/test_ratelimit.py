"""Rate-limit state across processes: a 429 pause or 418 ban is recorded and a later process honours it.

A "process" is one ``trio.run`` (the limiter registry is per run) with its own
MockClock; the wall clock of each is ``wall0 + trio.current_time()``, so a
later process starts with a later ``wall0`` and the exact Trio time of its first
request shows how the persisted wall-clock deadline was converted.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from dccd.domain.ratelimit import LimitDeadline, RetryPolicy
from dccd.errors import Banned
from dccd.sources.binance import BinanceAdapter
from dccd.storage.limits import LimitStateFile
from dccd.transport.http import open_exchange_client
from dccd.transport.ratelimit import LimitStateStore
from tests.transport.test_http import OK, REQ, WALL0, Script

T = TypeVar("T")
URL = "http://binance.test"
NS = 1_000_000_000


def in_process(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` as a fresh process would: a new Trio run (no limiters yet) on a jumping clock."""
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


async def fetch_all(script: Script, state: LimitStateStore | None, wall0: float, *, url: str = URL) -> list[Any]:
    """Fetch REQ once through a fresh run-wide limiter; return what it gave or raised."""
    out: list[Any] = []
    async with open_exchange_client(
        BinanceAdapter(),
        url,
        0.0,
        retry=RetryPolicy(attempts=1, max_rate_limited=3),
        transport=httpx.MockTransport(script),
        registry=CollectorRegistry(),
        wall_clock_ns=lambda: round((wall0 + trio.current_time()) * NS),
        rand=lambda: 0.0,
        limit_state=state,
    ) as client:
        try:
            out.append(await client.fetch(REQ))
        except Banned as exc:
            out.append(exc)
    return out


def test_429_deadline_is_persisted_and_a_restarted_process_waits_for_it(tmp_path: Path) -> None:
    """A 429 with Retry-After 30 at wall0 is stored as wall0+30 s; a process started 12 s later first sends at +18 s."""
    state = LimitStateFile(tmp_path)
    first = Script(httpx.Response(429, headers={"Retry-After": "30"}), OK)
    assert in_process(functools.partial(fetch_all, first, state, WALL0)) == [b"[]"]
    assert first.times == [0.0, 30.0]
    (entry,) = state.entries()
    assert (entry.exchange, entry.base_url, entry.kind, entry.until_ns) == ("binance", URL, "pause", (WALL0 + 30) * NS)
    assert entry.until == "2023-11-14T22:13:30Z" and entry.recorded_ns == WALL0 * NS

    second = Script(OK)
    with capture_logs() as logs:
        assert in_process(functools.partial(fetch_all, second, state, WALL0 + 12)) == [b"[]"]
    assert second.times == [18.0]
    (restored,) = [e for e in logs if e["event"] == "ratelimit.restored"]
    assert restored["log_level"] == "warning"
    assert (restored["kind"], restored["action"], restored["remaining_s"]) == ("pause", "waiting", 18.0)
    assert restored["until"] == "2023-11-14T22:13:30Z"


def test_a_short_ban_is_waited_out_by_the_next_process(tmp_path: Path) -> None:
    """A 418 for 120 s is stored; a process started 30 s later waits the remaining 90 s instead of failing."""
    state = LimitStateFile(tmp_path)
    first = Script(httpx.Response(418, headers={"Retry-After": "120"}))
    (banned,) = in_process(functools.partial(fetch_all, first, state, WALL0))
    assert isinstance(banned, Banned) and banned.retry_after_s == 120.0
    assert [(e.kind, e.until_ns) for e in state.entries()] == [("ban", (WALL0 + 120) * NS)]

    second = Script(OK)
    assert in_process(functools.partial(fetch_all, second, state, WALL0 + 30)) == [b"[]"]
    assert second.times == [90.0]


def test_a_long_ban_fails_at_once_naming_its_end(tmp_path: Path) -> None:
    """A 2 h ban seen by a process started 1 min later fails its first request without sending, naming the deadline."""
    state = LimitStateFile(tmp_path)
    body = b'{"code":-1003,"msg":"Way too much request weight used; IP banned until 1700007180000."}'
    first = Script(httpx.Response(418, headers={"Retry-After": "7200"}, content=body))
    in_process(functools.partial(fetch_all, first, state, WALL0))

    second = Script(OK)
    with capture_logs() as logs:
        (banned,) = in_process(functools.partial(fetch_all, second, state, WALL0 + 60))
    assert second.log == []
    assert isinstance(banned, Banned) and banned.retry_after_s == 7140.0
    assert str(banned).startswith(
        "binance banned this IP for 7140s (until 2023-11-15T00:13:00Z, recorded by an earlier process: "
        "HTTP 418 on klines: code -1003: Way too much request weight used"
    )
    (restored,) = [e for e in logs if e["event"] == "ratelimit.restored"]
    assert (restored["kind"], restored["action"], restored["remaining_s"]) == ("ban", "refusing", 7140.0)


def test_expired_deadlines_and_other_hosts_do_not_delay(tmp_path: Path) -> None:
    """A pause that ended before the process started, or one recorded for another host, delays nothing."""
    state = LimitStateFile(tmp_path)
    state.record("binance", URL, LimitDeadline("pause", (WALL0 + 30) * NS, "", WALL0 * NS))
    state.record("binance", "http://other.test", LimitDeadline("ban", (WALL0 + 3600) * NS, "", WALL0 * NS))
    late = Script(OK)
    with capture_logs() as logs:
        assert in_process(functools.partial(fetch_all, late, state, WALL0 + 31)) == [b"[]"]
    assert late.times == [0.0] and [e for e in logs if e["event"] == "ratelimit.restored"] == []


class BrokenStore:
    """A state store whose disk fails."""

    def load(self, exchange: str, base_url: str) -> list[LimitDeadline]:
        raise OSError(5, "Input/output error")

    def record(self, exchange: str, base_url: str, deadline: LimitDeadline) -> None:
        raise OSError(28, "No space left on device")


def test_a_failing_state_store_is_logged_and_the_pause_still_holds() -> None:
    """When the state cannot be read or written, the request still pauses exactly Retry-After, with warnings."""
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), OK)
    with capture_logs() as logs:
        assert in_process(functools.partial(fetch_all, script, BrokenStore(), WALL0)) == [b"[]"]
    assert script.times == [0.0, 7.0]
    events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("ratelimit.")]
    assert events == [("ratelimit.restore_failed", "warning"), ("ratelimit.persist_failed", "warning")]


async def test_429_with_a_state_store_still_retries_exactly(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Recording the pause (a worker thread) does not shift the retry: both callers send at Retry-After."""
    answered = trio.Event()

    def too_many() -> httpx.Response:
        answered.set()
        return httpx.Response(429, headers={"Retry-After": "10"})

    script = Script(too_many, OK)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch_all, script, LimitStateFile(tmp_path), WALL0)
        await answered.wait()  # no timer of ours may let the clock jump while the pause is being recorded
        await fetch_all(script, LimitStateFile(tmp_path), WALL0)
    assert script.times == [0.0, 10.0, 10.0]


@pytest.mark.parametrize("later_first", [True, False])
def test_the_later_deadline_of_a_kind_wins(tmp_path: Path, later_first: bool) -> None:
    """Two records of one host and kind keep the later deadline, in whichever order they come."""
    state = LimitStateFile(tmp_path)
    early, late = (LimitDeadline("pause", (WALL0 + s) * NS, str(s), WALL0 * NS) for s in (10, 20))
    for d in (late, early) if later_first else (early, late):
        state.record("binance", URL, d)
    assert state.load("binance", URL) == [late]
