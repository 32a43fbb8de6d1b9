"""Child process for the crash and concurrency tests: appends trade batches and acks each one.

Usage: writer_child.py ROOT FIRST_BATCH N_BATCHES BATCH_ROWS [hang]

Batch ``k`` holds ids ``k*BATCH_ROWS .. k*BATCH_ROWS+BATCH_ROWS-1``; after each
write returns, the child prints ``k`` and flushes. With ``hang`` it stops for
good right before the rename of its first part (to be killed there).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.storage.writer import Provenance, write_records

T0 = 1_704_067_200_000_000_000  # 2024-01-01
NOW = 1_735_689_600_000_000_000  # 2025-01-01
DATASET = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)


def batch(k: int, rows: int) -> list[Trade]:
    """Trades of batch k; ts interleave across batches so parallel writers share partitions."""
    return [Trade(T0 + (i * 7919 + k) * 1000, str(k * rows + i), 100.0, 1.0, "buy") for i in range(rows)]


def main() -> None:
    root, first, count, rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if sys.argv[5:] == ["hang"]:

        def hang(src: object, dst: object) -> None:
            print("hanging", flush=True)
            time.sleep(3600)

        os.replace = hang  # type: ignore[assignment]
    prov = Provenance("test", "child", str(os.getpid()))
    k = first
    while count == 0 or k < first + count:
        write_records(root, DATASET, batch(k, rows), prov, now_ns=NOW)
        print(k, flush=True)
        k += 1


if __name__ == "__main__":
    main()
