"""The one paging loop: writer gate before every request, malformed pages retried under the client's policy."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
from dccd.actors.pager import PageFailed, run_walk

from dccd.domain import Symbol, Trade
from dccd.errors import DccdError, ExchangeRejected, ProtocolDrift
from dccd.sources.base import Request
from dccd.sources.walker import TradesWalk
from tests.sources.test_walker import Scripted, answer


class FakeClient:
    """Answers from a list of bodies (an exception is raised instead of answered); records backoffs."""

    def __init__(self, bodies: list[bytes | DccdError], retries: int = 3) -> None:
        self.bodies = bodies
        self.asked: list[Request] = []
        self.backoffs: list[tuple[int, str]] = []
        self.retries = retries

    async def fetch(self, request: Request) -> bytes:
        self.asked.append(request)
        body = self.bodies.pop(0)
        if isinstance(body, DccdError):
            raise body
        return body

    async def backoff(self, request: Request, attempt: int, err: DccdError) -> None:
        self.backoffs.append((attempt, type(err).__name__))
        if attempt >= self.retries:
            raise err


BAD = msgspec.json.encode("bad")


def walk() -> TradesWalk:
    return TradesWalk(Scripted(), Symbol("BTC", "USDT"), cursor="a", stop_id=12, after_id=9)


async def test_every_request_waits_for_the_gate_and_every_page_is_delivered() -> None:
    """The gate is awaited before each fetch (retries included); pages reach ``deliver`` in order."""
    client = FakeClient([answer(t=[[1, 10]], next="b"), BAD, answer(t=[[2, 11], [3, 12]], next="c")])
    gates, got, retried = [], [], []

    async def gate() -> None:
        gates.append(len(client.asked))

    async def deliver(trades: Sequence[Trade]) -> None:
        got.append([t.id for t in trades])

    pages = await run_walk(walk(), client, deliver, gate=gate, on_retry=lambda r, n, e: retried.append(n))
    assert pages == 2 and got == [["10"], ["11", "12"]]
    assert gates == [0, 1, 2] and client.backoffs == [(1, "ProtocolDrift")] and retried == [1]
    assert [r.param("cursor") for r in client.asked] == ["a", "b", "b"]


async def test_a_page_that_keeps_failing_to_parse_fails_naming_it() -> None:
    """After the client's last attempt the malformed page raises PageFailed with its path and cursor."""
    client = FakeClient([BAD, BAD], retries=2)
    with pytest.raises(PageFailed, match=r"page /trades\?cursor=a failed: .*truncated") as info:
        await run_walk(walk(), client)
    assert isinstance(info.value.__cause__, ProtocolDrift) and client.backoffs == [
        (1, "ProtocolDrift"),
        (2, "ProtocolDrift"),
    ]


async def test_a_failed_fetch_fails_naming_the_page() -> None:
    """A transport/exchange error is not retried here (the client already did): PageFailed at once."""
    client = FakeClient([ExchangeRejected("scripted", 400, "no")])
    with pytest.raises(PageFailed, match=r"page /trades\?cursor=a failed"):
        await run_walk(walk(), client)
    assert client.backoffs == []
