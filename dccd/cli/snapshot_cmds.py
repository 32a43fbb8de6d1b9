"""Snapshot and catalog commands: ``dccd snapshot create|list|diff|drop|prune|export``, ``dccd catalog rebuild|status``."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec
from rich.table import Table

from dccd.cli.common import EXIT_FAILED, EXIT_USAGE, common_options, fail
from dccd.cli.lake_cmds import _console, _lake
from dccd.domain.timeutil import ns_to_iso
from dccd.storage import catalog, snapshots
from dccd.storage.snapshots import SnapshotNotFound


def _ts(ns: int | None) -> str:
    return ns_to_iso(ns) if ns is not None else ""


@click.group("snapshot")
@common_options
def snapshot_group() -> None:
    """Versioned snapshots of the lake: reproducible reads (``dccd read --as-of``)."""


@snapshot_group.command("create")
@common_options
@click.option("--tag", default=None, help="A name for it (kept forever by retention).")
@click.option("--note", default=None, help="Free text stored with it.")
@click.option("--keep", type=int, default=None, help="Then keep only the newest N untagged snapshots.")
def create_cmd(tag: str | None, note: str | None, keep: int | None) -> None:
    """Take a snapshot of everything committed now."""
    lake = _lake()
    try:
        snap = lake.create_snapshot(tag=tag, note=note, keep=keep)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    label = f" tag {snap.tag}" if snap.tag else ""
    click.echo(f"snapshot {snap.snapshot_id}{label} at {ns_to_iso(snap.time_ns)}")


@snapshot_group.command("list")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(as_json: bool) -> None:
    """Retained snapshots with their datasets, parts, rows and size."""
    items = _lake().list_snapshots()
    if as_json:
        click.echo(msgspec.json.encode(items).decode())
        return
    table = Table(title=f"{len(items)} snapshot(s)")
    for col in ("id", "tag", "time", "datasets", "parts", "rows", "MB", "note"):
        table.add_column(col, justify="right" if col in ("id", "datasets", "parts", "rows", "MB") else "left")
    for s in items:
        table.add_row(
            str(s.snapshot_id), s.tag or "", s.time, str(s.datasets), str(s.parts), f"{s.rows:,}",
            f"{s.bytes / 1e6:.1f}", s.note or "",
        )  # fmt: skip
    _console().print(table)


@snapshot_group.command("diff")
@common_options
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def diff_cmd(a: str, b: str, as_json: bool) -> None:
    """Datasets, rows and ts ranges added and removed from snapshot A to snapshot B (ids, tags or ISO times)."""
    lake = _lake()
    try:
        items = lake.snapshot_diff(a, b)
    except SnapshotNotFound as exc:
        fail(str(exc), EXIT_USAGE)
    if as_json:
        click.echo(msgspec.json.encode(items).decode())
        return
    if not items:
        click.echo("no differences")
        return
    table = Table(title=f"{a} -> {b}")
    for col in ("dataset", "status", "+rows", "added range", "-rows", "removed range", "+parts", "-parts"):
        table.add_column(col, justify="right" if col.startswith(("+", "-")) else "left")
    for d in items:
        table.add_row(
            d.dataset, d.status, f"{d.rows_added:,}", f"{_ts(d.added_first_ts)} .. {_ts(d.added_last_ts)}"
            if d.rows_added else "", f"{d.rows_removed:,}",
            f"{_ts(d.removed_first_ts)} .. {_ts(d.removed_last_ts)}" if d.rows_removed else "",
            str(d.parts_added), str(d.parts_removed),
        )  # fmt: skip
    _console().print(table)


@snapshot_group.command("drop")
@common_options
@click.argument("snapshot")
def drop_cmd(snapshot: str) -> None:
    """Drop one snapshot (id, tag or ISO time) and delete the parts only it needed."""
    try:
        snap, deleted = _lake().drop_snapshot(snapshot)
    except SnapshotNotFound as exc:
        fail(str(exc), EXIT_USAGE)
    click.echo(f"dropped snapshot {snap.snapshot_id}; {len(deleted)} part(s) deleted")


@snapshot_group.command("prune")
@common_options
@click.option("--keep", type=int, required=True, help="Keep the newest N untagged snapshots (tags are kept).")
def prune_cmd(keep: int) -> None:
    """Retention: drop all but the newest N untagged snapshots and delete the parts no snapshot needs."""
    if keep < 0:
        fail("--keep must be 0 or more", EXIT_USAGE)
    dropped, deleted = _lake().prune_snapshots(keep)
    click.echo(f"dropped {len(dropped)} snapshot(s); {len(deleted)} part(s) deleted")


@snapshot_group.command("export")
@common_options
@click.argument("snapshot")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_cmd(snapshot: str, directory: Path) -> None:
    """Write SNAPSHOT (id, tag or ISO time) to DIRECTORY as Hive Parquet plus manifest.json (DuckDB reads it alone)."""
    try:
        manifest = _lake().export_snapshot(snapshot, directory)
    except SnapshotNotFound as exc:
        fail(str(exc), EXIT_USAGE)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    files = sum(len(d["files"]) for d in manifest["datasets"])
    rows = sum(int(d["rows"]) for d in manifest["datasets"])
    click.echo(
        f"snapshot {manifest['snapshot_id']}: {len(manifest['datasets'])} dataset(s), {files} file(s), {rows:,} rows -> {directory}"
    )


@click.group("catalog")
@common_options
def catalog_group() -> None:
    """The lake's catalog of parts ({root}/_dccd/catalog.db)."""


@catalog_group.command("rebuild")
@common_options
def rebuild_cmd() -> None:
    """Derive the catalog's current parts from the files (after losing catalog.db, or to re-check it)."""
    lake = _lake()
    res = snapshots.rebuild(lake.root)
    orphans = snapshots.retained_orphans(lake.root)
    click.echo(f"catalog rebuilt: {res.registered} part(s) registered, {res.ended} gone part(s) ended")
    if orphans:
        click.echo(
            f"note: {len(orphans)} retained part(s) no snapshot knows, under {lake.root / '_dccd' / 'retained'}",
            err=True,
        )


@catalog_group.command("status")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(as_json: bool) -> None:
    """Current parts, rows and bytes per dataset, retained parts and snapshots."""
    lake = _lake()
    if not catalog.exists(lake.root):
        fail(
            f"no catalog in {lake.root} yet (it is created by the first write; `dccd catalog rebuild` makes one)",
            EXIT_FAILED,
        )
    live = catalog.files_at(lake.root, None)
    with catalog.transaction(lake.root, write=False) as con:
        retained = con.execute(
            "SELECT count(*), coalesce(sum(file_size_bytes), 0) FROM data_file WHERE end_snapshot IS NOT NULL"
        ).fetchone()
    per: dict[str, list[int]] = {}
    for f in live:
        acc = per.setdefault(f.dataset, [0, 0, 0])
        acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + f.rows, acc[2] + f.size
    doc = {
        "last_snapshot": catalog.last_snapshot(lake.root),
        "snapshots": len(lake.list_snapshots()),
        "retained_parts": retained[0],
        "retained_bytes": retained[1],
        "datasets": [{"dataset": k, "parts": v[0], "rows": v[1], "bytes": v[2]} for k, v in sorted(per.items())],
    }
    if as_json:
        click.echo(msgspec.json.encode(doc).decode())
        return
    click.echo(
        f"commit id {doc['last_snapshot']}, {doc['snapshots']} snapshot(s), {retained[0]} retained part(s) ({retained[1] / 1e6:.1f} MB)"
    )
    for d in doc["datasets"]:
        click.echo(f"  {d['dataset']}: {d['parts']} part(s), {d['rows']:,} rows, {d['bytes'] / 1e6:.1f} MB")


COMMANDS = (snapshot_group, catalog_group)
