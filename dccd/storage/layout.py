"""Lake layout (pure): dataset -> directories, partitions, part and temp names.

::

    {root}/trades/exchange=binance/symbol=BTC-USDT/date=2024-01-01/part-*.parquet
    {root}/book/exchange=../symbol=../date=YYYY-MM-DD/part-*.parquet
    {root}/ohlc/exchange=../symbol=../span=1m/month=2024-01/part-*.parquet
    {root}/funding|oi/exchange=../symbol=../month=YYYY-MM/part-*.parquet
    {root}/_dccd/   runs.db, quarantine/, locks/, compaction/ (journals of merges in flight)

A part is named ``part-{first_ts:019d}-{last_ts:019d}-{stamp:016x}{token:08x}.parquet``:
the ts range lets readers prune and answer ``last_ts`` without opening files;
the stamp (wall-clock ns of the write) orders parts so that on duplicate keys the
newest write wins; the random token makes names unique across processes.

Any other ``part-*.parquet`` in a partition (written by Spark, pyarrow, a user's
script) is data too: its ts range comes from the Parquet footer statistics and
its rank among writes from its modification time (:func:`foreign_stamp`).
Names starting with ``.`` or ``_`` (temp files, ``_SUCCESS``, checksums) are not data.
"""

from __future__ import annotations

import os
import re
import secrets
import zlib
from pathlib import Path
from typing import Final, Literal, NamedTuple

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.domain.timeutil import NS_PER_DAY, days_from_civil, month_start_ns, ns_to_date, ns_to_month

META_DIR: Final[str] = "_dccd"
PartitionKind = Literal["date", "month"]

_PART = re.compile(r"^part-(\d{19})-(\d{19})-([0-9a-f]{24})\.parquet$")
_TEMP = re.compile(r"^\..+\.(\d+)-[0-9a-f]+\.tmp$")
_DATE = re.compile(r"^date=(\d{4})-(\d{2})-(\d{2})$")
_MONTH = re.compile(r"^month=(\d{4})-(\d{2})$")


class PartName(NamedTuple):
    """What a part's file name says about it."""

    first_ts: int
    last_ts: int
    stamp: str  # 24 hex chars: write time (16) + random token (8); sorts by write time


def partition_kind(data_type: DataType) -> PartitionKind:
    """Trades and books are partitioned by UTC day, everything else by UTC month."""
    return "date" if data_type in (DataType.TRADES, DataType.BOOK) else "month"


def dataset_dir(root: Path, ds: DatasetId) -> Path:
    """Directory holding every partition of ``ds``."""
    path = root / ds.data_type.value / f"exchange={ds.exchange}" / f"symbol={ds.symbol.slug}"
    return path / f"span={ds.span.label}" if ds.span is not None else path


def partition_name(kind: PartitionKind, ts_ns: int) -> str:
    """Partition directory name (``date=YYYY-MM-DD`` / ``month=YYYY-MM``) holding ``ts_ns``."""
    return f"date={ns_to_date(ts_ns)}" if kind == "date" else f"month={ns_to_month(ts_ns)}"


def partition_bounds(name: str) -> tuple[int, int] | None:
    """Half-open ns range ``[lo, hi)`` covered by a partition directory name, or None if foreign."""
    m = _DATE.match(name)
    if m:
        y, mo, d = (int(g) for g in m.groups())
        lo = days_from_civil(y, mo, d) * NS_PER_DAY
        # round trip rejects impossible dates such as 2024-02-31
        return (lo, lo + NS_PER_DAY) if ns_to_date(lo) == name[5:] else None
    m = _MONTH.match(name)
    if m:
        y, mo = int(m.group(1)), int(m.group(2))
        if not 1 <= mo <= 12:
            return None
        return month_start_ns(y, mo), month_start_ns(y, mo + 1)
    return None


def new_stamp(now_ns: int) -> str:
    """A unique, time-ordered part stamp."""
    return f"{now_ns:016x}{secrets.randbits(32):08x}"


def part_name(first_ts: int, last_ts: int, stamp: str) -> str:
    """File name of a part holding rows with ts in ``[first_ts, last_ts]``."""
    return f"part-{first_ts:019d}-{last_ts:019d}-{stamp}.parquet"


def parse_part_name(name: str) -> PartName | None:
    """Inverse of :func:`part_name`; None for anything else."""
    m = _PART.match(name)
    if m is None:
        return None
    return PartName(int(m.group(1)), int(m.group(2)), m.group(3))


def is_part_file_name(name: str) -> bool:
    """True for any ``part-*.parquet`` name: data, whoever wrote it."""
    return name.startswith("part-") and name.endswith(".parquet") and len(name) > len("part-.parquet")


def is_hidden_name(name: str) -> bool:
    """Names tools treat as not-data (``.`` temp files, ``_SUCCESS``, ``_committed_*``)."""
    return name.startswith((".", "_"))


def foreign_stamp(mtime_ns: int, name: str) -> str:
    """Stamp of a part dccd did not name: its modification time, then a hash of its name (ties stay stable)."""
    return f"{max(mtime_ns, 0):016x}{zlib.crc32(name.encode()):08x}"


def temp_name(final_name: str) -> str:
    """Hidden temp name in the same directory; the pid lets a sweep tell live writers from dead ones."""
    return f".{final_name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def temp_owner_pid(name: str) -> int | None:
    """Pid embedded in a temp file name, or None if ``name`` is not a dccd temp file."""
    m = _TEMP.match(name)
    return int(m.group(1)) if m else None


def meta_dir(root: Path) -> Path:
    """``{root}/_dccd``: run history, quarantine, locks."""
    return root / META_DIR


def quarantine_root(root: Path) -> Path:
    """``{root}/_dccd/quarantine``: rows failing the gates, and parts moved aside by ``dccd quarantine``."""
    return meta_dir(root) / "quarantine"


def dataset_key(ds: DatasetId) -> str:
    """``ds`` as one file-name-safe word (lock and journal names)."""
    return str(ds).replace("/", "-").replace(":", "_")


def lock_path(root: Path, ds: DatasetId, kind: Literal["compact", "list"]) -> Path:
    """Lock file of ``ds``: ``compact`` serialises compactions, ``list`` keeps listings whole during a swap."""
    return meta_dir(root) / "locks" / f"{kind}-{dataset_key(ds)}.lock"


def journal_dir(root: Path) -> Path:
    """``{root}/_dccd/compaction``: one journal per merge in flight (which inputs its output replaces)."""
    return meta_dir(root) / "compaction"


def stamp_ns(stamp: str) -> int:
    """Write time (wall-clock ns) recorded in a part stamp."""
    return int(stamp[:16], 16)


def quarantine_dir(root: Path, ds: DatasetId) -> Path:
    """Where rows failing the quality gates of ``ds`` are kept (mirrors the data layout)."""
    path = quarantine_root(root) / ds.data_type.value / f"exchange={ds.exchange}" / f"symbol={ds.symbol.slug}"
    return path / f"span={ds.span.label}" if ds.span is not None else path


def parse_dataset_dir(root: Path, path: Path) -> DatasetId | None:
    """DatasetId for a dataset directory under ``root`` (see :func:`dataset_dir`), or None if foreign."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if len(parts) not in (3, 4):
        return None
    try:
        data_type = DataType.parse(parts[0])
        if not (parts[1].startswith("exchange=") and parts[2].startswith("symbol=")):
            return None
        span = None
        if len(parts) == 4:
            if not parts[3].startswith("span="):
                return None
            span = Span.parse(parts[3][5:])
        symbol = Symbol.from_slug(parts[2][7:])
        return DatasetId(parts[1][9:], symbol, data_type, span)
    except ValueError:
        return None
