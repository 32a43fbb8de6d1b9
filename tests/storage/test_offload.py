"""The lake and the run store run their blocking calls through an injectable offload (a worker thread by default)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dccd.storage import Lake, RunStore

from .helpers import NOW, OHLC_1M, PROV, T0, bars


async def test_an_injected_offload_runs_every_blocking_call(tmp_path: Path) -> None:
    """With an inline offload, Lake and RunStore calls run on the caller's thread, each through the offload."""
    calls: list[str] = []

    async def inline(fn: Callable[[], Any]) -> Any:
        calls.append(threading.current_thread().name)
        return fn()

    lake = Lake(tmp_path, offload=inline)
    runs = RunStore(tmp_path, offload=inline)
    Lake(tmp_path).write(OHLC_1M, bars(T0, 3), PROV, now_ns=NOW)
    assert (await lake.aread_table(OHLC_1M)).table.num_rows == 3
    await runs.aregister_owner(now_ns=NOW)
    assert calls == [threading.current_thread().name] * 2


async def test_the_default_offload_is_a_worker_thread(tmp_path: Path) -> None:
    """Without one, the blocking call runs in a worker thread, not on the Trio thread."""
    seen: list[str] = []
    lake = Lake(tmp_path)
    await lake._run(lambda: seen.append(threading.current_thread().name))
    assert seen and seen[0] != threading.current_thread().name
