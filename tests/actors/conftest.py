"""Shared helpers for the actor runtime tests: datasets, batches, and a fake lake with a virtual-time disk."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
from dccd.actors import Batch, Message

from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.domain.records import Record
from dccd.storage.writer import PartInfo, WriteResult

BTC = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
ETH = DatasetId("binance", Symbol.parse("ETH/USDT"), DataType.TRADES)


def make_batch(rows: int, start: int = 0, dataset: DatasetId = BTC, transport: str = "rest") -> Batch:
    """``rows`` trades with ts = id = start, start+1, ...."""
    records: list[Record] = [Trade(ts=start + i, id=str(start + i), price=1.0, amount=1.0) for i in range(rows)]
    return Batch(dataset, records, source="test", transport=transport)


class FakeLake:
    """Records every write; its ``offload`` makes each write take ``delay_s`` of Trio (virtual) time.

    Writing in a real worker thread under ``autojump_clock`` would let the clock
    jump while the thread runs, so timing tests use ``offload`` (sleep on Trio's
    clock, then call ``write``); ``trio.to_thread.run_sync`` is tested on its own.
    """

    def __init__(self, delay_s: float = 0.0, fail: Callable[[int], BaseException | None] | None = None) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[tuple[DatasetId, list[Record]]] = []
        self.times: list[float] = []
        self.threads: list[int] = []
        self.attempts = 0

    def write(self, dataset: DatasetId, records: list[Record]) -> WriteResult:
        self.attempts += 1
        self.threads.append(threading.get_ident())
        if self.fail is not None and (exc := self.fail(self.attempts)) is not None:
            raise exc
        self.calls.append((dataset, list(records)))
        n = len(records)
        ts = [r.ts for r in records]
        part = PartInfo(f"part-{len(self.calls)}.parquet", n, min(ts, default=0), max(ts, default=0), 10 * n)
        return WriteResult(parts=(part,), rows_written=n)

    async def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        await trio.sleep(self.delay_s)
        result = fn(*args)
        self.times.append(trio.current_time())
        return result

    @property
    def rows(self) -> int:
        return sum(len(r) for _, r in self.calls)

    def ts(self) -> list[int]:
        return [r.ts for _, recs in self.calls for r in recs]


class EventLog:
    """An ``emit`` callback that keeps what it got (not a list subclass: an empty list is falsy,
    and reactivex replaces a falsy on_next with a no-op)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type[Message]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]


@pytest.fixture
def events() -> EventLog:
    return EventLog()


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]
