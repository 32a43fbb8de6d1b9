"""The import actor: a dccd 3.x data directory into the lake as one run, through a writer actor.

``dccd import PATH`` (and embedders) call :func:`run_import` inside a service::

    run record (operation "import", state running) ── discover 3.x files (worker thread)
        per file: wait until the writer has written the previous file (the next file's
        dedup must see it) ─► read, normalise, fix, drop rows the lake holds (worker thread)
        ─► Batch(table) ─► Writer actor (quality gates, atomic parts, provenance import:dccd-3)
        ─► run progress: files, rows read / imported / fixed / quarantined / skipped / dropped
    writer drained ─► run finished: succeeded, or failed when a file could not be read

Decisions (what 3.x got wrong, how rows are keyed) live in :mod:`dccd.storage.importer`;
this module owns the loop, the writer and the run record.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import structlog
import trio

from dccd.storage.importer import (
    TRANSPORT,
    ImportReport,
    V3File,
    check_source,
    count_written,
    discover,
    prepare_file,
)
from dccd.storage.runs import RunRecord, RunState
from dccd.storage.writer import Provenance

from .messages import Batch, RunStateChanged

if TYPE_CHECKING:
    from dccd.domain import DatasetId

    from .service import Service

log = structlog.get_logger()

OPERATION = "import"


def progress_fields(report: ImportReport, files_total: int | None = None) -> dict[str, Any]:
    """The run record's progress of an import: its counts (rows unless named files)."""
    fields: dict[str, Any] = {
        "unit": "files",
        "done": report.files + len(report.files_failed),
        "rows_read": report.rows_read,
        "imported": report.rows_imported,
        "fixed": sum(report.fixed.values()),
        "fixed_kinds": dict(sorted(report.fixed.items())),
        "quarantined": report.rows_quarantined,
        "quarantined_rules": dict(sorted(report.quarantined.items())),
        "skipped": report.rows_skipped,
        "dropped": sum(report.dropped.values()),
        "dropped_reasons": dict(sorted(report.dropped.items())),
        "datasets": len(report.datasets),
        "files_ignored": len(report.files_ignored),
        "files_failed": [f"{p}: {r}" for p, r in report.files_failed],
    }
    if files_total is not None:
        fields["total"] = files_total
    return fields


async def run_import(svc: Service, path: Path, *, high: int = 2) -> tuple[RunRecord, ImportReport]:
    """Import the 3.x data directory ``path`` into the service's lake as one run; see the module docstring.

    Returns:
        The finished run record and the report (the run's progress holds the same counts).

    Raises:
        ImportFailed: ``path`` is not a 3.x data directory (no run is recorded).
    """
    ops = svc.operations
    lake, runs = ops.lake, ops.runs
    report = ImportReport()
    files: list[V3File] = await trio.to_thread.run_sync(_discover, path, lake.root, report)
    run_id = await runs.acreate(OPERATION)
    await runs.aprogress(run_id, source=str(path), **progress_fields(report, len(files)))
    await runs.astart(run_id)
    svc.emit(RunStateChanged(run_id, OPERATION, RunState.RUNNING, str(path)))
    provenance = {ds: Provenance(ds.exchange, TRANSPORT, run_id) for ds in {f.dataset for f in files}}

    def write(dataset: DatasetId, table: Any) -> Any:
        result = lake.write_table(dataset, table, provenance[dataset])
        count_written(report, result)
        runs.add_rows(run_id, result.rows_written, result.rows_quarantined)
        return result

    state, error = RunState.SUCCEEDED, None
    writer = await svc.start_writer(f"writer:{run_id}", write, high=high)
    try:
        for v3 in files:
            await writer.wait_idle()  # the previous file is in the lake: this file's dedup sees it
            await runs.aprogress(run_id, **progress_fields(report))  # (the writer is idle: its counts are final)
            try:
                table = await trio.to_thread.run_sync(prepare_file, v3, lake.root, report)
            except (OSError, pa.ArrowException) as exc:
                report.files_failed.append((str(v3.path.relative_to(path)), f"{type(exc).__name__}: {exc}"))
                table = None
            if table is not None:
                await writer.put(Batch(v3.dataset, [], v3.dataset.exchange, TRANSPORT, table=table))
        await writer.wait_idle()
        if report.files_failed:
            state, error = RunState.FAILED, f"{len(report.files_failed)} file(s) could not be read"
    except trio.Cancelled:
        state, error = RunState.CANCELLED, "cancelled"
        raise
    finally:
        with trio.CancelScope(shield=True):
            await svc.stop_actor(writer.name)
            if writer.lost_rows and state is RunState.SUCCEEDED:
                state, error = RunState.FAILED, f"{writer.lost_rows} rows could not be written"
            await runs.aprogress(run_id, **progress_fields(report))
            await runs.afinish(run_id, state, error=error)
            svc.emit(RunStateChanged(run_id, OPERATION, state, str(path), error, report.rows_imported))
            log.info("import.finished", run_id=run_id, state=state, source=str(path), **report.to_dict())
    record = await runs.aget(run_id)
    assert record is not None
    return record, report


def _discover(path: Path, lake_root: Path, report: ImportReport) -> list[V3File]:
    check_source(path, lake_root)
    return discover(path, report)


__all__ = ["OPERATION", "progress_fields", "run_import"]
