"""Child process for the compaction crash tests: compacts the trades dataset and dies at a chosen point.

Usage: compaction_child.py ROOT POINT

POINT is ``before-swap`` (merged part and journal durable, nothing renamed yet),
``after-swap`` (merged part renamed into place, the catalog not told), ``after-commit``
(the catalog committed the swap, no input deleted) or ``after-unlink:K`` (K inputs deleted). The child ends with ``os._exit(9)``
there, like a SIGKILL: no cleanup handler runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dccd.domain import DatasetId, DataType, Symbol
from dccd.storage import catalog, compaction

DATASET = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)


def main() -> None:
    root, point = Path(sys.argv[1]), sys.argv[2]
    real_lock = compaction.listing_lock

    @contextlib.contextmanager
    def lock(*args: Any, exclusive: bool = False, **kw: Any) -> Iterator[None]:
        if exclusive and point == "before-swap":
            os._exit(9)
        with real_lock(*args, exclusive=exclusive, **kw):
            yield

    real_commit = compaction._commit

    def commit(*args: Any) -> None:
        if point == "after-swap":
            os._exit(9)
        real_commit(*args)

    def retire(root: Path, paths: Sequence[str]) -> list[Path]:
        keep = int(point.split(":")[1]) if point.startswith("after-unlink:") else 0
        for p in paths[:keep]:
            os.unlink(root / p)
        os._exit(9)

    compaction.listing_lock = lock  # type: ignore[assignment]
    compaction._commit = commit  # type: ignore[assignment]
    catalog.retire = retire  # type: ignore[assignment]
    compaction.compact(root, DATASET)
    sys.exit("the crash point was never reached")


if __name__ == "__main__":
    main()
