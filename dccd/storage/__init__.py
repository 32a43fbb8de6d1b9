"""Parquet lake (layout, writer, reader, compaction, inventory) and run history.

Entry points: :class:`Lake` (writes, reads, exports, inventory, compaction) and
:class:`RunStore` (run history); both have async twins of every blocking call.
Names are imported lazily so a writer-only process does not load DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dccd.storage.compaction import CompactResult
    from dccd.storage.export import FORMATS as EXPORT_FORMATS
    from dccd.storage.inventory import DatasetInventory
    from dccd.storage.lake import BatchStream, Lake, ReadResult
    from dccd.storage.reader import BadFile
    from dccd.storage.runs import RunEvent, RunRecord, RunStore
    from dccd.storage.writer import PartInfo, Provenance, WriteResult

_EXPORTS = {
    "EXPORT_FORMATS": ("dccd.storage.export", "FORMATS"),
    "BadFile": ("dccd.storage.reader", "BadFile"),
    "BatchStream": ("dccd.storage.lake", "BatchStream"),
    "CompactResult": ("dccd.storage.compaction", "CompactResult"),
    "DatasetInventory": ("dccd.storage.inventory", "DatasetInventory"),
    "Lake": ("dccd.storage.lake", "Lake"),
    "PartInfo": ("dccd.storage.writer", "PartInfo"),
    "Provenance": ("dccd.storage.writer", "Provenance"),
    "ReadResult": ("dccd.storage.lake", "ReadResult"),
    "RunEvent": ("dccd.storage.runs", "RunEvent"),
    "RunRecord": ("dccd.storage.runs", "RunRecord"),
    "RunStore": ("dccd.storage.runs", "RunStore"),
    "WriteResult": ("dccd.storage.writer", "WriteResult"),
}
__all__ = [
    "EXPORT_FORMATS",
    "BadFile",
    "BatchStream",
    "CompactResult",
    "DatasetInventory",
    "Lake",
    "PartInfo",
    "Provenance",
    "ReadResult",
    "RunEvent",
    "RunRecord",
    "RunStore",
    "WriteResult",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'dccd.storage' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)
