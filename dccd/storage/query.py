"""Read-only SQL from users over the lake views, with a row limit and a time limit, and its encodings.

Two barriers, so neither alone has to be perfect:

1. Before anything runs, the text must parse (DuckDB's own parser, ``extract_statements``) into exactly one
   statement of type SELECT (which covers ``WITH``, ``FROM``-first, ``VALUES``, ``DESCRIBE``, ``SUMMARIZE``,
   ``SHOW``) or an ``EXPLAIN [ANALYZE]`` of one. COPY, ATTACH, INSTALL/LOAD, SET/RESET/PRAGMA,
   CREATE, INSERT/UPDATE/DELETE/MERGE, EXPORT, CALL, transactions and several statements are refused
   with a message naming the statement type.
2. The statement runs on a database of its own (:func:`dccd.storage.views.open_views` with ``lockdown``)
   whose engine can open the pinned parts and nothing else (``enable_external_access=false``,
   ``allowed_directories`` = the pin tree), loads no extension and refuses any setting change
   (``lock_configuration``).

The time limit interrupts DuckDB (``interrupt()`` from a timer thread) when it runs past the deadline;
the row limit stops fetching after ``max_rows`` rows and says the result was truncated. The result is held
(at most ``max_rows`` rows) before it is encoded, so an error or a timeout is a clean refusal, never a
half-sent body.

Known limit: one scalar call building a huge value (``repeat('x', 10^9)``) allocates outside DuckDB's
memory limit and cannot be interrupted mid-call; it is cut off when the call returns.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dccd.errors import QueryError, StorageError
from dccd.storage import reader
from dccd.storage.reader import BadFile
from dccd.storage.views import DEFAULT_MEMORY_LIMIT, LakeViews, open_views, snapshots_module, views_named

FORMATS: Final[tuple[str, ...]] = ("json", "jsonl", "csv", "parquet", "arrow")
DEFAULT_MAX_ROWS: Final[int] = 100_000
MAX_ROWS: Final[int] = 1_000_000
DEFAULT_TIMEOUT_S: Final[float] = 30.0
MAX_TIMEOUT_S: Final[float] = 600.0
MAX_SQL_CHARS: Final[int] = 100_000
_BATCH_ROWS = 65_536
_EXPLAIN = re.compile(r"\s*explain(\s+analy[sz]e)?\s", re.IGNORECASE)
_ALLOWED = "only one read-only query is allowed (SELECT, WITH, FROM, VALUES, DESCRIBE, SUMMARIZE, EXPLAIN)"

Kind = Literal["refused", "denied", "invalid", "timeout", "memory"]


@dataclass(frozen=True)
class QueryResult:
    """A finished query: at most ``max_rows`` rows, whether more existed, and what it read."""

    table: pa.Table
    truncated: bool
    max_rows: int
    elapsed_s: float
    parts: dict[str, int] = field(default_factory=dict)
    skipped: list[BadFile] = field(default_factory=list)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_sql(sql: str) -> str:
    """The one read-only statement ``sql`` holds (see the module docstring), checked before anything runs.

    Raises:
        QueryError: ``refused`` (several statements, a statement type that is not a query, too long) or
            ``invalid`` (empty, does not parse).
    """
    if len(sql) > MAX_SQL_CHARS:
        raise QueryError("refused", f"the statement is {len(sql):,} characters; at most {MAX_SQL_CHARS:,}")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError("invalid", _first_line(exc)) from None
    if not statements:
        raise QueryError("invalid", "no statement (the SQL is empty)")
    if len(statements) > 1:
        raise QueryError("refused", f"{len(statements)} statements: {_ALLOWED}")
    try:
        kind = statements[0].type
    except ValueError:  # a type the Python enum does not know (UPDATE EXTENSIONS): not a query either
        raise QueryError("refused", f"a statement that is not a query: {_ALLOWED}") from None
    if kind == duckdb.StatementType.EXPLAIN:
        m = _EXPLAIN.match(sql)
        if m is None:
            raise QueryError("refused", f"an EXPLAIN that does not start the statement: {_ALLOWED}")
        check_sql(sql[m.end() :])  # EXPLAIN ANALYZE runs what it explains: that must be a query too
    elif kind != duckdb.StatementType.SELECT:
        raise QueryError("refused", f"{kind.name} statements are not allowed: {_ALLOWED}")
    return sql


def _classify(exc: duckdb.Error, timed_out: bool) -> QueryError:
    line = _first_line(exc)
    if isinstance(exc, duckdb.InterruptException) or timed_out:
        return QueryError("timeout", "")
    if isinstance(exc, duckdb.PermissionException):
        return QueryError("denied", f"not allowed: {line}")
    if isinstance(exc, duckdb.InvalidInputException) and "configuration has been locked" in line:
        return QueryError("denied", f"not allowed: {line}")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryError("memory", line)
    return QueryError("invalid", line)


def run_query(
    root: Path | str,
    sql: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
    started: float | None = None,
    as_of: str | int | None = None,
) -> QueryResult:
    """Check and run one read-only statement over the lake views of ``root`` (blocking; call it in a thread).

    Args:
        root: the lake root.
        sql: DuckDB SQL naming the views ``trades``, ``ohlc``, ``book``, ``funding``, ``oi``, ``signals``.
        max_rows: rows kept; more make the result ``truncated``.
        timeout_s: wall time from the call (planning included) after which the query is interrupted.
        memory_limit / threads: the query's DuckDB limits.
        started: the ``time.monotonic()`` the time limit counts from (default: now), e.g. a request's arrival.
        as_of: a snapshot id, tag or ISO time (see :func:`dccd.storage.views.open_views`).

    Raises:
        QueryError: refused before running, denied by the engine, invalid, past the time or memory limit,
            ``missing`` (``as_of`` names no snapshot).
        StorageError: the lake kept changing under the planning.
    """
    t0 = time.monotonic() if started is None else started
    check_sql(sql)
    snapshots = snapshots_module()
    not_found = snapshots.SnapshotNotFound if snapshots is not None else ()
    try:
        with open_views(root, views_named(sql), memory_limit=memory_limit, threads=threads, as_of=as_of) as views:
            return _run(views, sql, max_rows, timeout_s, t0, memory_limit)
    except not_found as exc:
        raise QueryError("missing", f"as_of: {exc}") from None
    except StorageError as exc:
        if as_of is not None and str(exc).startswith("as_of:"):
            raise QueryError("invalid", str(exc)) from None
        raise


def _run(views: LakeViews, sql: str, max_rows: int, timeout_s: float, t0: float, memory_limit: str) -> QueryResult:
    """Run ``sql`` on open views with its limits (see :func:`run_query`)."""
    con = views.con
    fired = threading.Event()

    def _interrupt() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(max(0.0, timeout_s - (time.monotonic() - t0)), _interrupt)
    timer.start()
    try:
        table, truncated = _fetch(con, sql, max_rows)
    except duckdb.Error as exc:
        error = _classify(exc, fired.is_set())
        if error.kind == "timeout":
            raise QueryError("timeout", f"the query ran past its time limit of {timeout_s:g}s") from None
        if error.kind == "memory":
            raise QueryError(
                "memory", f"the query needs more than its memory limit of {memory_limit}: {error}"
            ) from None
        raise error from None
    finally:
        timer.cancel()
        timer.join()
    elapsed = time.monotonic() - t0
    if fired.is_set():  # finished as the timer fired: the answer is whole, but past the limit
        raise QueryError("timeout", f"the query ran past its time limit of {timeout_s:g}s")
    return QueryResult(table, truncated, max_rows, elapsed, views.parts, views.skipped)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int) -> tuple[pa.Table, bool]:
    """At most ``max_rows`` rows of ``sql`` and whether there were more (fetching stops right after)."""
    arrow = con.sql(sql).to_arrow_reader(_BATCH_ROWS)
    kept: list[pa.RecordBatch] = []
    rows = 0
    for batch in arrow:
        if rows + batch.num_rows > max_rows:
            kept.append(batch.slice(0, max_rows - rows))
            return pa.Table.from_batches(kept, schema=arrow.schema), True
        kept.append(batch)
        rows += batch.num_rows
    return pa.Table.from_batches(kept, schema=arrow.schema), False


# -- encodings ---------------------------------------------------------------------------------


def encode(table: pa.Table, fmt: str) -> Iterator[bytes]:
    """``table`` as byte chunks in ``fmt`` (one of :data:`FORMATS`); ``json`` is one array of objects.

    Raises:
        ValueError: unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"{fmt!r} is not a query format ({' '.join(FORMATS)})")
    if fmt in ("json", "jsonl"):
        return _json(table, as_array=fmt == "json")
    return _arrow_written(table, fmt)


def _json(table: pa.Table, *, as_array: bool) -> Iterator[bytes]:
    """JSON lines rendered by DuckDB (``to_json``: no Python object per row; duplicate names get ``_1``)."""
    con = reader.connect()
    try:
        con.register("result_rows", table)
        lines = con.sql("SELECT to_json(r) AS line FROM result_rows r").to_arrow_reader(_BATCH_ROWS)
        if as_array:
            yield b"["
        first = True
        for batch in lines:
            text = "\n".join(batch.column(0).to_pylist())
            if as_array:
                text = text.replace("\n", ",")  # to_json escapes newlines inside strings
                if not text:
                    continue
                if not first:
                    text = "," + text
                first = False
            else:
                text += "\n"
            yield text.encode()
        if as_array:
            yield b"]"
    finally:
        con.close()


def _enc_hook(value: Any) -> Any:
    return str(value)  # dates, decimals, times: their text


def _flat(table: pa.Table) -> pa.Table:
    """Nested columns (lists, structs, maps) as JSON text: CSV has no other way to hold them."""
    columns = []
    for col in table.columns:
        if pa.types.is_nested(col.type):
            enc = msgspec.json.Encoder(enc_hook=_enc_hook)
            texts = [None if v is None else enc.encode(v).decode() for v in col.to_pylist()]
            columns.append(pa.array(texts, pa.string()))
        else:
            columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


class _Sink:
    """A write-only file collecting what a pyarrow writer emits, drained per batch."""

    closed = False

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pos = 0

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        self.pos += len(self.chunks[-1])
        return len(self.chunks[-1])

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def _arrow_written(table: pa.Table, fmt: str) -> Iterator[bytes]:
    if fmt == "csv":
        table = _flat(table)
    sink = _Sink()
    out = pa.PythonFile(sink, mode="w")
    writer: Any
    if fmt == "csv":
        writer = pacsv.CSVWriter(out, table.schema)
    elif fmt == "parquet":
        writer = pq.ParquetWriter(out, table.schema, compression="zstd")
    else:
        writer = pa.ipc.new_stream(out, table.schema)
    try:
        for batch in table.to_batches(_BATCH_ROWS):
            writer.write_batch(batch)
            if chunk := sink.drain():
                yield chunk
    finally:
        writer.close()
    if chunk := sink.drain():
        yield chunk
