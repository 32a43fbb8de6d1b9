"""The archive backfill actor: bulk history files first, REST for the rest, one run.

``--source auto`` (default) and ``archive`` runs of a dataset whose exchange
publishes archives (``dccd.sources.archive``) go through :class:`ArchiveBackfiller`::

    open start (origin, last with nothing stored) ─► binary search of file probes ─► the first period held
    plan_archive(range, stored parts) ─► files ─┬─ per file (≤ concurrency downloads at once):
                                                 │   manifest says verified + cached?  ─► reuse, no request
                                                 │   GET .CHECKSUM, GET file ══stream══► temp file + SHA-256
                                                 │     (no file being parsed? parse it as it grows: GrowingFile;
                                                 │      its tables wait for the verdict below)
                                                 │   404 ─► recorded "missing": its period goes to REST
                                                 │   mismatch ─► fetched once more (a re-upload in flight),
                                                 │             then quarantined: its period FAILS, nothing lands
                                                 │   verified ─► manifest, cache
                                                 │   parse (pyarrow.csv, one file at a time, a worker thread one
                                                 │   table of ~500k rows ahead), minus rows already stored
                                                 │   ─► previous table written? ─► Batch(table) ─► Writer
                                                 └─ ArchiveFetched events (CLI bar, SSE, metrics)
    then (auto) REST Backfiller for each uncovered range [lo, hi) (newest days, partial days, 404s)

A file's rows reach the lake only through the run's writer and its quality
gates, as table batches (one lake part each), and only once the file verified;
parsing the next table overlaps writing the previous one, and no more than one
table waits for the writer, so a month of trades needs no more memory than a
day. After the archive phase the writer is drained and
the written files' cache copies are dropped (their manifest state becomes
``written``). A killed run leaves verified downloads in the cache: the next
run re-uses them without a request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pyarrow as pa
import structlog
import trio

from dccd.domain.plan import Shortfall
from dccd.domain.records import DataType
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import DccdError, TransportError, leaves, sole_leaf
from dccd.sources.archive import (
    ArchiveAdapter,
    ArchiveFile,
    Granularity,
    StreamingArchiveAdapter,
    archive_capability,
    market_of,
)
from dccd.sources.archive_plan import ArchivePlan, plan_archive, published_periods, uncovered
from dccd.storage import reader
from dccd.storage.archive_dedup import dedup_by_key, dedup_counted
from dccd.storage.archives import ArchiveStore, ManifestEntry
from dccd.storage.lake import Lake
from dccd.storage.runs import RunStore
from dccd.transport.archive import DownloadAborted, Fetched, GrowingFile, exists, fetch, open_archive_client

from .backfill import Backfiller, BackfillJob
from .clients import ClientPool
from .messages import ArchiveFetched, Batch, Message, RunLogged
from .progress import Progress

log = structlog.get_logger()


TABLE_ROWS = 500_000  # rows per table batch of a streamed file (~25 MB of trades): one lake part each


class ArchiveFailed(DccdError):
    """Archive files of a run failed verification (quarantined); their periods are not in the lake."""


class _Outcome(msgspec.Struct):
    file: ArchiveFile
    result: str  # verified | cached | missing | quarantined
    rows: int = 0
    bytes: int = 0
    detail: str = ""


class ArchiveBackfiller:
    """Runs one :class:`BackfillJob` from an exchange's archive, then REST for what it does not cover.

    Args:
        job, pool, lake, runs, send, wait_writable, emit: as :class:`~dccd.actors.backfill.Backfiller`.
        archive: the exchange's archive adapter.
        origin: the archive origin (``archive_url`` or the adapter's default).
        source: ``auto`` (REST fills the rest) or ``archive`` (the rest stays unfetched: partial).
        wait_idle: waits until the run's writer has written everything sent so far.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        job: BackfillJob,
        pool: ClientPool,
        lake: Lake,
        runs: RunStore,
        send: Callable[[Batch], None],
        wait_writable: Callable[[], Any],
        emit: Callable[[Message], None],
        *,
        archive: ArchiveAdapter,
        origin: str,
        source: str = "auto",
        wait_idle: Callable[[], Awaitable[None]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.job = job
        self.ds = job.dataset
        self.pool, self.lake, self.runs = pool, lake, runs
        self._send, self._wait_writable, self._emit = send, wait_writable, emit
        self.archive = archive
        self.origin = origin
        self.source = source
        self._wait_idle = wait_idle
        self._transport = transport
        self.store = ArchiveStore(lake.root)
        self.progress = Progress(job.run_id, "files", None, emit, runs)
        self.rest: list[Backfiller] = []
        self.shortfalls: list[Shortfall] = []
        self.outcomes: list[_Outcome] = []
        self.bytes_done = 0
        self.streamed = 0
        """Files whose rows were parsed while they downloaded (:meth:`_overlapped`)."""
        self._parse_limiter = trio.CapacityLimiter(1)  # one file's columns in memory at a time
        self._unresolved: str | None = None  # why an open start found no archive file (see _range)

    # -- what Operations reads ---------------------------------------------------------------------

    @property
    def partial(self) -> str | None:
        """Why the run is partial (archive-only gaps, REST shortfalls), or None."""
        parts = [s.summary() for s in self.shortfalls] + [p for bf in self.rest if (p := bf.partial)]
        return "; ".join(parts) or None

    async def save(self) -> None:
        """Persist progress and the archive counters in the run record."""
        await self.progress.save()
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.result] = counts.get(o.result, 0) + 1
        extra: dict[str, Any] = {
            "archive_files": len(self.outcomes),
            "archive_bytes": self.bytes_done,
            "archive_streamed": self.streamed,
            "archive_results": counts,
            "page_retries": sum(bf.page_retries for bf in self.rest),
            "pages": self.progress.pages + sum(bf.progress.pages for bf in self.rest),
        }
        if self.partial:
            extra["unavailable"] = self.partial
        await self.runs.aprogress(self.job.run_id, **extra)

    def _log(self, level: str, message: str, **fields: Any) -> None:
        getattr(log, level)(message, run_id=self.job.run_id, dataset=str(self.ds), **fields)
        self._emit(RunLogged(self.job.run_id, level, message + "".join(f" {k}={v}" for k, v in fields.items())))

    # -- the run -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Archive files for every whole missing period, then REST (``auto``) for the rest.

        Raises:
            ArchiveFailed: a file failed verification (after the rest of the run was done).
            DccdError: as :meth:`Backfiller.run`.
        """
        span = await self._range()
        if span is None and self.source == "archive":  # REST is not asked: say why nothing was fetched
            if self._unresolved is not None:
                end = min(self.job.end_ns, self.job.now_ns)
                reason = f"{self.ds.exchange}'s archive: {self._unresolved} (--source archive)"
                self.shortfalls.append(Shortfall(0, end, 0, end, reason, None, unit="ns"))
            return
        if span is None:  # nothing to plan from (``origin``, ``last`` with nothing stored): REST decides
            await self._rest_range(None, None)
            return
        start, end = span
        stored = await trio.to_thread.run_sync(self._stored_intervals, start, end)
        plan = plan_archive(self.archive, self.ds.symbol, self.ds.data_type, self.ds.span, start, end, self.job.now_ns, stored)  # fmt: skip
        # A partly stored period of a file without trade ids is merged (see ArchiveCapability.synthetic_ids),
        # unless that file's rows are what is stored (written before): then it is done, without a request.
        done = [f for f in plan.files if f.path in plan.merging and self._written(f)]
        if done:
            plan = msgspec.structs.replace(plan, files=tuple(f for f in plan.files if f not in done))
        self._log(
            "info", "archive.planned", files=len(plan.files), merging=len(plan.merging) - len(done),
            written_before=len(done), rest_ranges=len(plan.rest), origin=self.origin,
        )  # fmt: skip
        if not plan.files and not done:  # nothing whole to take from the archive: the plain REST run, unchanged
            if self.source == "auto":
                await self._rest_range(None, None)
                return
        elif plan.files:
            await self._fetch_all(plan)
        failed = [o for o in self.outcomes if o.result == "quarantined"]
        covered = [(o.file.start_ns, o.file.end_ns) for o in self.outcomes if o.result != "missing"]
        covered += [(f.start_ns, f.end_ns) for f in done]
        rest = uncovered(start, end, covered)
        if self.source == "archive":
            for lo, hi in rest:
                reason = f"{self.ds.exchange}'s archive has no files for this range (--source archive)"
                short = Shortfall(lo, hi, start, end, reason, None, unit="ns")
                self.shortfalls.append(short)
                await self.runs.aevent(self.job.run_id, "unavailable", lo, hi, reason)
        else:
            for lo, hi in rest:
                await self._rest_range(lo, hi)
        if failed:
            names = ", ".join(f"{o.file.name} ({o.detail})" for o in failed)
            raise ArchiveFailed(f"{len(failed)} archive file(s) failed verification and were quarantined: {names}")

    async def _range(self) -> tuple[int, int] | None:
        """The requested ``[start, end)`` in ns; None when the start is not a time yet."""
        end = min(self.job.end_ns, self.job.now_ns)
        span = self.ds.span
        if span is not None:
            end = span.align(end)  # the bar holding the end is not closed
        if isinstance(self.job.start, int):
            start = span.align_up(self.job.start) if span is not None else self.job.start
        elif self.job.start == "last" and (last := await self.lake.alast_ts(self.ds)) is not None:
            start = span.next(span.align(last)) if span is not None else last + 1
        elif self.job.start == "last" and self.ds.data_type is DataType.TRADES:
            if self.source == "archive":
                raise DccdError(f"{self.ds}: nothing stored yet, so 'last' has nothing to resume; give --start ISO or origin")  # fmt: skip
            return None  # a trade walk resumes after a stored trade: REST says there is none
        else:  # origin, or last with nothing stored: the archive's first file
            try:
                origin = await self._archive_origin(end)
            except TransportError as exc:
                if self.source != "auto":
                    raise
                self._log("warning", "archive.origin_unreachable", error=str(exc))  # REST finds the origin
                return None
            if origin is None:
                self._unresolved = "no file to start from (its first day is not known for this symbol)"
                return None
            start = span.align_up(origin) if span is not None else origin
        return (start, end) if start < end else None

    async def _archive_origin(self, end_ns: int) -> int | None:
        """Start of the first period the archive holds a file for, for this dataset, before ``end_ns``.

        Files exist from the symbol's listing on (Binance, Bybit, OKX answer 404 before it): a binary
        search over the published monthly periods (about 7 requests for 10 years), then over the daily
        ones after them when no monthly file holds data yet (a symbol listed this month). Each probe asks
        for the small checksum file where one is published, else the file's headers only. None: the
        archive holds nothing for it, or its files hold every symbol (BitMEX: a file's existence says
        nothing of a listing): REST decides the origin, as without archives.
        """
        caps = self.archive.archive_capabilities
        market = market_of(self.ds.symbol)
        searched_to = 0
        probes = 0
        async with open_archive_client(self.origin, max_connections=1, transport=self._transport) as client:

            async def held(granularity: Granularity, period_ns: int) -> bool:
                nonlocal probes
                probes += 1
                f = self.archive.archive_file(self.ds.symbol, self.ds.data_type, self.ds.span, granularity, period_ns)
                return await exists(client, f.checksum_path or f.path)

            for granularity in (Granularity.MONTHLY, Granularity.DAILY):
                cap = archive_capability(caps, self.ds.data_type, market, self.ds.span, granularity)
                if cap is None:
                    continue
                periods = published_periods(self.archive, cap, searched_to, end_ns, self.job.now_ns)
                if periods:
                    f = self.archive.archive_file(
                        self.ds.symbol, self.ds.data_type, self.ds.span, granularity, periods[0]
                    )
                    if f.native not in f.path:  # one file for every symbol (BitMEX): it says nothing of a listing
                        break
                lo, hi = 0, len(periods)  # the first period held is in periods[lo:hi], or none is (hi)
                while lo < hi:
                    mid = (lo + hi) // 2
                    if await held(granularity, periods[mid]):
                        hi = mid
                    else:
                        lo = mid + 1
                if lo < len(periods):
                    self._log("info", "archive.origin", origin=ns_to_iso(periods[lo]), probes=probes)
                    return periods[lo]
                if periods:  # none of these is held: the data starts after them
                    searched_to = self.archive.archive_period(granularity, periods[-1])[1]
        self._log("info", "archive.origin", origin=None, probes=probes)
        return None

    def _written(self, file: ArchiveFile) -> bool:
        """The manifest says this file's rows were written to the lake."""
        entry = self.store.get(self.store.key(self.ds.exchange, file.path))
        return entry is not None and entry.state == "written"

    def _synthetic_ids(self, file: ArchiveFile) -> bool:
        caps = self.archive.archive_capabilities
        cap = archive_capability(caps, file.data_type, file.market, self.ds.span, file.granularity)
        return cap is not None and cap.synthetic_ids

    def _stored_intervals(self, start: int, end: int) -> list[tuple[int, int]]:
        parts, _bad = reader.list_parts(self.lake.root, self.ds, start, end)
        return [(p.first_ts, p.last_ts) for p in parts]

    async def _rest_range(self, lo: int | None, hi: int | None) -> None:
        job = self.job if lo is None or hi is None else msgspec.structs.replace(self.job, start=lo, end_ns=hi)
        bf = Backfiller(job, self.pool, self.lake, self.runs, self._send, self._wait_writable, self._emit)
        self.rest.append(bf)
        if lo is not None and hi is not None:
            self._log("info", "archive.rest_range", start=ns_to_iso(lo), end=ns_to_iso(hi))
        await bf.run()

    # -- files -------------------------------------------------------------------------------------

    async def _fetch_all(self, plan: ArchivePlan) -> None:
        self.progress = Progress(self.job.run_id, "files", len(plan.files), self._emit, self.runs)
        await trio.to_thread.run_sync(self.store.sweep_temp)
        slots = trio.Semaphore(max(1, self.job.concurrency))
        written: list[tuple[_Outcome, Path]] = []
        n = max(1, self.job.concurrency)
        failed: DccdError | None = None
        try:
            async with (
                open_archive_client(self.origin, max_connections=n, transport=self._transport) as client,
                trio.open_nursery() as nursery,
            ):
                for file in plan.files:
                    await slots.acquire()  # bounded in flight: no more tasks than slots
                    nursery.start_soon(self._one, client, file, slots, written)
        except BaseExceptionGroup as group:
            # A failed file ends the run with its own error (the operation records DccdErrors as a failed
            # run; a group would read as a bug).
            found = leaves(group, skip=(trio.Cancelled,))
            errors = [e for e in found if isinstance(e, DccdError)]
            if not errors or len(errors) != len(found):
                raise
            failed = errors[0]
        if failed is not None:
            raise failed
        if written and self._wait_idle is not None:
            await self._wait_idle()  # the rows are durable: the cache copies can go
        for outcome, path in written:
            key = self.store.key(self.ds.exchange, outcome.file.path)
            entry = self.store.get(key)
            await trio.to_thread.run_sync(
                self.store.record,
                ManifestEntry(key, "written", entry.sha256 if entry else None, entry.size if entry else None,
                              entry.etag if entry else None, entry.last_modified if entry else None, outcome.rows),
            )  # fmt: skip
            path.unlink(missing_ok=True)
        self.progress.report()

    async def _one(
        self,
        client: httpx.AsyncClient,
        file: ArchiveFile,
        slots: trio.Semaphore,
        written: list[tuple[_Outcome, Path]],
    ) -> None:
        try:
            try:
                outcome, path = await self._download_and_load(client, file)
            except TransportError as exc:
                if self.source != "auto":
                    raise
                # The archive host failed after retries: REST serves this period (auto), like a 404.
                key = self.store.key(self.ds.exchange, file.path)
                outcome, path = await self._missing(key, file, f"unreachable: {exc}"), None
            if path is not None:
                written.append((outcome, path))
        finally:
            slots.release()
        self.outcomes.append(outcome)
        self.bytes_done += outcome.bytes
        self.progress.add(done=1, rows=outcome.rows, pages=1 if outcome.bytes else 0)
        self._emit(
            ArchiveFetched(
                self.job.run_id,
                self.ds.exchange,
                file.path,
                outcome.result,
                outcome.bytes,
                outcome.rows,
                len(self.outcomes),
                self.progress.total or 0,
                self.bytes_done,
            )
        )
        level = "warning" if outcome.result in ("missing", "quarantined") else "info"
        self._log(level, "archive.file_" + outcome.result, file=file.name, bytes=outcome.bytes, rows=outcome.rows)

    async def _download_and_load(self, client: httpx.AsyncClient, file: ArchiveFile) -> tuple[_Outcome, Path | None]:
        """The verified file on disk with its rows sent to the writer (``outcome.rows``), or why not.

        While no other file is being parsed, a streaming adapter parses the file as it downloads
        (:meth:`_overlapped`); otherwise the file is parsed once verified.
        """
        key = self.store.key(self.ds.exchange, file.path)
        streaming = isinstance(self.archive, StreamingArchiveAdapter) and file.path.endswith(".zip")
        if streaming and await trio.to_thread.run_sync(self.store.cached, key) is None:
            try:
                self._parse_limiter.acquire_nowait()
            except trio.WouldBlock:
                pass
            else:
                try:
                    return await self._overlapped(client, file, key)
                finally:
                    self._parse_limiter.release()
        outcome, path = await self._download(client, file)
        if path is not None:
            async with self._parse_limiter:
                outcome.rows = await self._load(file, path)
        return outcome, path

    async def _overlapped(self, client: httpx.AsyncClient, file: ArchiveFile, key: str) -> tuple[_Outcome, Path | None]:
        """Download and parse at once: the parser reads the temp file as it grows (:class:`GrowingFile`),
        and its tables wait until the download verified; a download that does not verify (404, checksum
        mismatch, failure) discards them, so nothing unverified reaches the writer. A parse cut short
        (the download restarted) or failing before any row was sent is done again from the verified file,
        which decides."""
        tail = GrowingFile(self.store.temp_path(key))
        done = trio.Event()
        got: list[tuple[_Outcome, Path | None]] = []
        failed: list[Exception] = []

        async def download() -> None:
            try:
                got.append(await self._download(client, file, tail))
            except Exception as exc:  # raised below, once the parse has stopped (a cancel propagates as it is)
                failed.append(exc)
            finally:
                if not got or got[0][1] is None:
                    tail.abort("the download ended without a verified file")
                done.set()

        async def verified() -> bool:
            # The rows read are those of the verified file only if its first attempt was the verified one.
            await done.wait()
            return bool(got) and got[0][1] is not None and tail.aborted is None

        sent = [0]
        error: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(download)
                try:
                    await self._load(file, tail, verified, sent)
                except _Unverified:
                    pass
                except Exception as exc:  # judged below, once the download's outcome is known
                    error = exc
        finally:
            await trio.to_thread.run_sync(tail.close)
        if failed:
            raise failed[0]
        outcome, path = got[0]
        if path is None:
            return outcome, None
        if error is not None or tail.aborted is not None:
            if sent[0]:
                raise error or ArchiveFailed(f"{file.name}: parse interrupted after {sent[0]} rows were written")
            self._log("info", "archive.parse_again", file=file.name, why=str(error or tail.aborted))
            outcome.rows = await self._load(file, path)
        else:
            outcome.rows = sent[0]
            self.streamed += 1
        return outcome, path

    async def _download(
        self, client: httpx.AsyncClient, file: ArchiveFile, tail: GrowingFile | None = None
    ) -> tuple[_Outcome, Path | None]:
        """Verified file on disk (re-used from the cache when the manifest has it), or why not.

        ``tail`` (optional) follows the first download attempt as it is written, and is finished once
        the file is complete on disk (verified or not).
        """
        key = self.store.key(self.ds.exchange, file.path)
        cached = await trio.to_thread.run_sync(self.store.cached, key)
        if cached is not None:
            return _Outcome(file, "cached"), cached
        temp = self.store.temp_path(key)
        got: Fetched | None = None
        expected: str | None = None
        for attempt in range(2):  # a mismatch is asked once more: a re-upload may have been in flight
            if file.checksum_path is not None:
                check = await fetch(client, file.checksum_path)
                if check.status == 404 or check.body is None:
                    return await self._missing(key, file, "no checksum file"), None
                expected = self.archive.parse_checksum(file, check.body)
            if attempt and tail is not None:
                tail.abort("the download is retried")  # the file is written again from its start
            got = await fetch(client, file.path, temp, watcher=tail if not attempt else None)
            if got.status == 404:
                return await self._missing(key, file, "404"), None
            if tail is not None and not attempt:
                tail.finish()
            if expected is None or got.sha256 == expected:
                break
            self._log("warning", "archive.checksum_mismatch", file=file.name, expected=expected, got=got.sha256)
        assert got is not None
        if expected is not None and got.sha256 != expected:
            where = await trio.to_thread.run_sync(self.store.quarantine, key, temp)
            detail = f"sha256 {got.sha256} != published {expected}; quarantined at {where}"
            await trio.to_thread.run_sync(
                self.store.record,
                ManifestEntry(key, "quarantined", got.sha256, got.size, got.etag, got.last_modified, detail=detail),
            )
            await self.runs.aevent(self.job.run_id, "archive_failed", file.start_ns, file.end_ns, f"{file.name}: {detail}")  # fmt: skip
            return _Outcome(file, "quarantined", bytes=got.size, detail=detail), None
        path = self.store.cache_path(key)
        await trio.to_thread.run_sync(_replace, temp, path)
        await trio.to_thread.run_sync(
            self.store.record, ManifestEntry(key, "verified", got.sha256, got.size, got.etag, got.last_modified)
        )
        return _Outcome(file, "verified", bytes=got.size), path

    async def _missing(self, key: str, file: ArchiveFile, why: str) -> _Outcome:
        await trio.to_thread.run_sync(self.store.record, ManifestEntry(key, "missing", detail=why))
        detail = f"{file.name} is not in the archive ({why}); REST fills it" if self.source == "auto" else why
        await self.runs.aevent(self.job.run_id, "archive_missing", file.start_ns, file.end_ns, detail)
        return _Outcome(file, "missing", detail=why)

    async def _load(
        self,
        file: ArchiveFile,
        source: Path | GrowingFile,
        ready: Callable[[], Awaitable[bool]] | None = None,
        sent: list[int] | None = None,
    ) -> int:
        """Parse the file (streamed in tables of ~:data:`TABLE_ROWS` when the adapter can), drop what is
        already stored, hand each table to the writer as it comes; returns rows sent.

        A worker thread parses (and dedups) continuously, one table ahead of this task, which hands each
        table to the writer once the previous one is written: parsing never waits for the Trio loop (a
        writer writing on the Trio thread would otherwise delay the next parse until its write ended).
        ``ready`` (a download in progress) is awaited before the first table is sent: False discards the
        rows (raises :class:`_Unverified`). ``sent[0]`` counts the rows sent, also when this fails.

        Raises:
            ProtocolDrift: the file does not parse (nothing more of it is sent).
        """
        t0 = trio.current_time()
        stored = bool(await trio.to_thread.run_sync(self._stored_intervals, file.start_ns, file.end_ns))
        send_ch, recv_ch = trio.open_memory_channel[pa.Table](0)
        sent = [0] if sent is None else sent

        async def produce() -> None:
            async with send_ch:
                await trio.to_thread.run_sync(self._produce, file, source, stored, send_ch)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                async with recv_ch:
                    async for table in recv_ch:
                        if ready is not None:
                            if not await ready():
                                raise _Unverified(file.name)
                            ready = None
                        # One table ahead at most: the writer's gate counts batches, and a table batch is
                        # 500k rows, so wait until the previous one is written (parsing this one overlapped it).
                        if self._wait_idle is not None:
                            await self._wait_idle()
                        await self._wait_writable()
                        self._send(Batch(self.ds, [], self.ds.exchange, "archive", table=table))
                        sent[0] += table.num_rows
        except BaseExceptionGroup as group:
            error = sole_leaf(group, skip=(trio.Cancelled,))
            if isinstance(error, Exception):
                raise error from None
            raise
        log.debug("archive.file_parsed", file=file.name, rows=sent[0], parse_s=round(trio.current_time() - t0, 3))
        return sent[0]

    def _produce(
        self, file: ArchiveFile, source: Path | GrowingFile, stored: bool, out: trio.MemorySendChannel[pa.Table]
    ) -> None:
        """(Worker thread) the file's tables minus stored rows, each sent to ``out`` as soon as it is parsed."""
        if isinstance(self.archive, StreamingArchiveAdapter):
            tables: Iterator[pa.Table] = self.archive.iter_archive(file, source, TABLE_ROWS)
        else:
            assert isinstance(source, Path)
            tables = iter([self.archive.parse_archive(file, source)])
        dedup = dedup_counted if self._synthetic_ids(file) else dedup_by_key
        try:
            for got in tables:
                table = got
                if stored:
                    table = dedup(self.lake, self.ds.data_type, table, self.ds, file.start_ns, file.end_ns)
                if table.num_rows:
                    trio.from_thread.run(out.send, table)
        except DownloadAborted as exc:  # pyarrow may hand the reader's error back wrapped: say it plainly
            raise ArchiveFailed(f"{file.name}: {exc}") from exc
        finally:
            close = getattr(tables, "close", None)
            if close is not None:
                close()


class _Unverified(Exception):
    """(internal) rows parsed during a download that did not verify: discarded."""


def _replace(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dest)
