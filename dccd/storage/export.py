"""Streaming exports of a read: CSV, JSON lines, columnar JSON, Parquet, Arrow IPC.

Rows flow batch by batch from DuckDB to the output; nothing is materialised
whole in Python. JSON lines are rendered by DuckDB (``to_json``) so no Python
object is built per row. CSV keeps ``ts`` as int ns; floats print in shortest
round-trip form. ``columns`` yields one JSON object of column arrays per
batch (``{"ts": [...], "open": [...], ...}``, one line each): what a chart
loads, without a key per row.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, BinaryIO, Final

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dccd.storage.reader import Plan, iter_batches
from dccd.storage.schema import LOOSE_SCHEMAS
from dccd.storage.writer import parquet_options

_encode_json = msgspec.json.Encoder().encode
FORMATS: Final[tuple[str, ...]] = ("csv", "jsonl", "columns", "parquet", "arrow")


class _Sink:
    """A write-only file object collecting what pyarrow writers emit, drained per batch."""

    closed = False

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def write(self, data: Any) -> int:
        b = bytes(data)
        self._chunks.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class Export:
    """Iterable of byte chunks for one export; ``rows`` is final once iteration ends.

    Args:
        p: the read plan (see :func:`dccd.storage.reader.plan`).
        fmt: one of :data:`FORMATS`.
        batch_rows: rows per DuckDB batch (one output chunk each).
    """

    def __init__(self, p: Plan, fmt: str, *, batch_rows: int = 65_536) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"{fmt!r} is not an export format ({' '.join(FORMATS)})")
        self.plan, self.fmt, self.batch_rows = p, fmt, batch_rows
        self.rows = 0

    def __iter__(self) -> Generator[bytes, None, None]:
        if self.fmt == "jsonl":
            yield from self._jsonl()
            return
        if self.fmt == "columns":
            yield from self._columns()
            return
        sink = _Sink()
        schema = LOOSE_SCHEMAS[self.plan.data_type]
        writer: Any
        if self.fmt == "csv":
            writer = pacsv.CSVWriter(pa.PythonFile(sink, mode="w"), schema)
        elif self.fmt == "parquet":
            opts = {k: v for k, v in parquet_options(schema.names).items() if k != "row_group_size"}
            writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, **opts)  # a row group per batch
        else:
            writer = pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema)
        try:
            for batch in iter_batches(self.plan, self.batch_rows):
                writer.write_batch(batch.cast(schema))
                self.rows += batch.num_rows
                if chunk := sink.drain():
                    yield chunk
        finally:
            writer.close()
        if chunk := sink.drain():
            yield chunk

    def _jsonl(self) -> Iterator[bytes]:
        sql = f"SELECT to_json(t) || chr(10) AS line FROM ({self.plan.sql}) t"
        for batch in iter_batches(self.plan, self.batch_rows, sql=sql):
            self.rows += batch.num_rows
            yield "".join(batch.column(0).to_pylist()).encode()

    def _columns(self) -> Iterator[bytes]:
        for batch in iter_batches(self.plan, self.batch_rows):
            self.rows += batch.num_rows
            columns = dict(zip(batch.schema.names, (c.to_pylist() for c in batch.columns), strict=True))
            yield _encode_json(columns) + b"\n"

    def write_to(self, out: BinaryIO) -> int:
        """Write every chunk to a binary stream; return the row count."""
        for chunk in self:
            out.write(chunk)
        return self.rows
