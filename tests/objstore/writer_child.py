"""Child process for the object-store concurrency and crash tests: appends trade batches to an s3 lake.

Usage: writer_child.py S3_URI FIRST_BATCH N_BATCHES BATCH_ROWS [hang]

The store's endpoint and credentials come from the ``AWS_*`` environment. Batch ``k`` holds ids
``k*BATCH_ROWS ..``; after each write the child prints ``k``. With ``hang`` it stops for good after
putting its first batch's part and before committing it (to be SIGKILLed there).
"""

from __future__ import annotations

import os
import sys
import time

from dccd.storage import Lake, Provenance, commitlog
from tests.storage.writer_child import DATASET, NOW, batch


def main() -> None:
    uri, first, count, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if sys.argv[5:] == ["hang"]:

        def hang(*args: object, **kwargs: object) -> int:
            print("hanging", flush=True)
            time.sleep(3600)
            return 0

        commitlog.commit = hang  # type: ignore[assignment]
    lake = Lake(uri)
    prov = Provenance("test", "child", str(os.getpid()))
    for k in range(first, first + count):
        lake.write(DATASET, batch(k, rows), prov, now_ns=NOW)
        print(k, flush=True)


if __name__ == "__main__":
    main()
