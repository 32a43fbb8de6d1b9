"""Stream refills page through the one walker: holes, unserved ids and a stuck cursor all end as recorded gaps."""

from __future__ import annotations

from typing import Any

from dccd.actors.gapfill import fill_bars, fill_ids
from dccd.actors.messages import Batch

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.errors import ExchangeRejected
from tests.actors.test_pager import FakeClient
from tests.sources.test_walker import MIN, Scripted, answer

DS = DatasetId("scripted", Symbol("BTC", "USDT"), DataType.TRADES)
BARS = DatasetId("scripted", Symbol("BTC", "USDT"), DataType.OHLC, Span("1m"))


class Pool:
    """The two things a refill asks of the service's client pool."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def adapter(self, exchange: str) -> Any:
        return Scripted()

    async def get(self, exchange: str) -> FakeClient:
        return self.client


async def test_a_refill_whose_cursor_stops_advancing_records_the_rest_as_a_gap() -> None:
    """Ids 10..20: the second page repeats its cursor, so 12..20 is a gap naming the cursor (two requests, no loop)."""
    client = FakeClient([answer(t=[[1, 10], [2, 11]], next="b"), answer(t=[], next="b")])
    put: list[Batch] = []

    async def sink(batch: Batch) -> None:
        put.append(batch)

    res = await fill_ids(Pool(client), DS, 10, 20, sink, "test")  # type: ignore[arg-type]
    assert [r.id for b in put for r in b.records] == ["10", "11"] and len(client.asked) == 2
    assert res.filled == ((10, 11, "2 trades refilled over rest"),)
    assert res.gaps == ((12, 20, "the exchange's cursor did not advance past b"),)


async def test_a_refill_records_skipped_unserved_and_failed_ids() -> None:
    """Skipped ids inside a page, ids past the exchange's head, and a failed tail refill are each a gap."""
    client = FakeClient([answer(t=[[1, 10], [2, 13]], next=None, gaps=[[11, 12]])])
    res = await fill_ids(Pool(client), DS, 10, 20, _ignore, "test")  # type: ignore[arg-type]
    assert res.gaps == (
        (11, 12, "the exchange has no such trade ids"),
        (14, 20, "the exchange does not serve these ids (yet)"),
    )
    failed = await fill_ids(Pool(FakeClient([ExchangeRejected("scripted", 400, "no")])), DS, 30, None, _ignore, "t")  # type: ignore[arg-type]
    ((lo, hi, detail),) = failed.gaps
    assert (lo, hi) == (30, 30) and detail.startswith("refill failed: page /trades?cursor=30 failed")
    assert detail.endswith("(from this id on)")


async def test_a_bar_refill_with_a_stuck_cursor_records_the_bars_it_did_not_reach() -> None:
    """Bars [0, 5m): the page's next start repeats, so 1m..4m is a gap saying the cursor did not advance."""
    client = FakeClient([answer(bars=[0], next=0)])
    res = await fill_bars(Pool(client), BARS, Span("1m"), 0, 5 * MIN, _ignore, "test")  # type: ignore[arg-type]
    ((lo, hi, detail),) = res.gaps
    assert (lo, hi, res.rows, len(client.asked)) == (MIN, 5 * MIN - 1, 1, 1)
    assert "did not advance" in detail


async def _ignore(batch: Batch) -> None:
    return None
