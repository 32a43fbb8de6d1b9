"""``POST /api/v1/query``: read-only SQL over the lake views, with a row and a time limit.

The statement is checked and run by :func:`dccd.storage.query.run_query` in a worker thread (at most
:data:`CONCURRENT_QUERIES` at once per app, on a limiter of their own so the lake's other reads keep their
threads). Its rows (at most ``max_rows``) are held until it finishes, so a refusal, an engine denial,
an error or a timeout is a 4xx with one line of JSON, never a half-sent body; then they stream in the
read formats of ``/api/v1/data``, each chunk encoded in a worker thread. A POST: when the server has a
token, the request needs it (:mod:`~dccd.web.auth`).
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import msgspec
import structlog
import trio
from litestar import Controller, post
from litestar.background_tasks import BackgroundTask
from litestar.params import JSONBody
from litestar.response import Stream
from prometheus_client import CollectorRegistry, Counter, Histogram

from dccd.errors import QueryError
from dccd.storage import query as q

from . import params
from .api_data import MEDIA_TYPES
from .context import WebContext
from .errors import ApiProblem, one_line

CONCURRENT_QUERIES = 2
"""Queries running at once per app (each may use every core); more wait, up to their own time limit."""
STATUS = {"refused": 400, "invalid": 400, "denied": 403, "missing": 404, "timeout": 422, "memory": 422}
"""HTTP status of each :class:`~dccd.errors.QueryError` kind (422: well-formed, but past a limit)."""
_END: Any = object()
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
log = structlog.get_logger("dccd.web")


class QueryBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /api/v1/query``: ``sql`` (one read-only DuckDB statement), optional format and limits."""

    sql: str
    format: str | None = None
    max_rows: int | None = None
    timeout_s: float | None = None
    as_of: str | int | None = None


class QueryMetrics:
    """``dccd_query_*`` of one app: answers by outcome, their durations, rows returned, truncated results."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dccd_query_requests",
            "SQL queries answered, by outcome (ok, or why not: refused, denied, invalid, timeout, memory, busy).",
            ["outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "dccd_query_duration_seconds",
            "Time from an SQL query's arrival to its result or refusal.",
            ["outcome"],
            registry=registry,
            buckets=_DURATION_BUCKETS,
        )
        self.rows = Counter("dccd_query_rows", "Rows returned by SQL queries.", registry=registry)
        self.truncated = Counter(
            "dccd_query_truncated", "SQL query results cut at their row limit (max_rows).", registry=registry
        )
        self.limiter = trio.CapacityLimiter(CONCURRENT_QUERIES)

    def observe(self, outcome: str, t0: float) -> None:
        """Count one answer with ``outcome``, started at ``time.monotonic()`` value ``t0``."""
        self.requests.labels(outcome).inc()
        self.duration.labels(outcome).observe(time.monotonic() - t0)


_per_app: weakref.WeakKeyDictionary[WebContext, QueryMetrics] = weakref.WeakKeyDictionary()


def query_metrics(ctx: WebContext) -> QueryMetrics:
    """The app's query metrics and limiter (registered in its registry on first use)."""
    found = _per_app.get(ctx)
    if found is None:
        found = _per_app[ctx] = QueryMetrics(ctx.metrics.registry)
    return found


def _limits(data: QueryBody) -> tuple[str, int, float]:
    fmt = params.choice(data.format, "format", q.FORMATS, "json")
    assert fmt is not None
    max_rows = q.DEFAULT_MAX_ROWS if data.max_rows is None else data.max_rows
    if not 1 <= max_rows <= q.MAX_ROWS:
        raise params.bad("max_rows", f"{max_rows} is not between 1 and {q.MAX_ROWS:,}")
    timeout_s = q.DEFAULT_TIMEOUT_S if data.timeout_s is None else data.timeout_s
    if not 0 < timeout_s <= q.MAX_TIMEOUT_S:
        raise params.bad("timeout_s", f"{timeout_s:g} is not above 0 and at most {q.MAX_TIMEOUT_S:g}")
    if not data.sql.strip():
        raise params.bad("sql", "required: one read-only DuckDB statement over the lake views")
    if isinstance(data.as_of, str) and not 0 < len(data.as_of) <= 80:
        raise params.bad("as_of", "a snapshot id, tag or ISO time (at most 80 characters)")
    return fmt, max_rows, timeout_s


async def _chunks(it: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The encoder's chunks, each made in a worker thread; the encoder closes however the response ends."""
    try:
        while True:
            chunk = await trio.to_thread.run_sync(next, it, _END)
            if chunk is _END:
                return
            yield chunk
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(close)


class QueryController(Controller):
    """``POST /api/v1/query``."""

    path = "/api/v1/query"
    tags = ("query",)

    @post("", status_code=200, summary="Run read-only SQL over the lake views")
    async def run(self, ctx: WebContext, data: JSONBody[QueryBody]) -> Stream:
        """One read-only DuckDB statement over the views ``trades``, ``ohlc``, ``book``, ``funding``, ``oi`` and
        ``signals`` (deduplicated, with partition columns), answered in ``format`` (json, jsonl, csv, parquet,
        arrow). At most ``max_rows`` rows (``X-Dccd-Truncated: true`` when there were more) within ``timeout_s``.

        ``as_of`` (a snapshot id, tag or ISO time) reads the market data the lake held then (404 when it names
        no snapshot). Refused statements (not one query) and parse errors answer 400, files or settings the
        engine refuses 403, a query past its time or memory limit 422, too many queries at once 429.
        """
        t0 = time.monotonic()
        metrics = query_metrics(ctx)
        fmt, max_rows, timeout_s = _limits(data)
        root = ctx.stored.lake_root
        if root is None:
            raise ApiProblem(503, "storage", "the lake is not available in this service")
        try:
            q.check_sql(data.sql)  # refused without waiting for a slot
            with trio.move_on_after(timeout_s) as waiting:
                await metrics.limiter.acquire()
            if waiting.cancelled_caught:
                metrics.observe("busy", t0)
                raise ApiProblem(
                    429,
                    "sql",
                    f"all {metrics.limiter.total_tokens:g} query slots stayed busy for the whole {timeout_s:g}s time limit",
                )
            try:  # the thread is not abandoned: the query's own timer ends it by its deadline
                run = functools.partial(
                    q.run_query, root, data.sql, max_rows=max_rows, timeout_s=timeout_s, started=t0, as_of=data.as_of
                )
                result = await trio.to_thread.run_sync(run, limiter=trio.CapacityLimiter(1))
            finally:
                metrics.limiter.release()
        except QueryError as exc:
            metrics.observe(exc.kind, t0)
            log.info("query.refused", kind=exc.kind, error=one_line(str(exc)))
            field, _, text = str(exc).partition(": ") if str(exc).startswith("as_of: ") else ("sql", "", str(exc))
            raise ApiProblem(STATUS.get(exc.kind, 400), field, text) from None
        metrics.observe("ok", t0)
        metrics.rows.inc(result.table.num_rows)
        if result.truncated:
            metrics.truncated.inc()
        log.info("query.answered", rows=result.table.num_rows, truncated=result.truncated, elapsed_s=result.elapsed_s)
        body = _chunks(q.encode(result.table, fmt))

        async def _aclose() -> None:  # Litestar may leave the generator suspended on disconnect
            await body.aclose()

        headers = {
            "X-Dccd-Rows": str(result.table.num_rows),
            "X-Dccd-Truncated": "true" if result.truncated else "false",
            "X-Dccd-Max-Rows": str(max_rows),
            "X-Dccd-Elapsed-S": f"{result.elapsed_s:.3f}",
            "X-Dccd-Skipped-Files": str(len(result.skipped)),
        }
        if fmt in ("csv", "parquet", "arrow"):
            ext = {"arrow": "arrows"}.get(fmt, fmt)
            headers["Content-Disposition"] = f'attachment; filename="query.{ext}"'
        return Stream(body, media_type=MEDIA_TYPES[fmt], headers=headers, background=BackgroundTask(_aclose))
