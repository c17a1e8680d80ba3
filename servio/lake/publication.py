"""Exactly-once publications across Delta tables: stage, commit point, roll forward.

Delta commits one table at a time, and a servio publication changes several (the curated
rows, quarantine and the ledger; or the three snapshot tables and the lake state). A
publication N is made whole by rolling forward:

1. **Stage**: each new partition file is written whole (the table's Arrow types, zstd) under
   `_servio/staging/<run>/publish/`, outside every table, with its Delta statistics read
   from its own footer.
2. **Commit point**: `_servio/publication.json` (the plan) names N and, per table, its staged
   files and the partitions they replace; written atomically (one rename, or one PUT).
3. **Apply**: per table, the files are moved (on S3: copied) into the table's folder and
   committed (replaceWhere) with the Delta application transaction `txn(servio, N)`; a table
   whose `transaction_version("servio")` is already ≥ N is skipped. Then one row per table
   goes to `_servio/publications` (txn N too): every table's version after N. The DuckDB
   catalog is rebuilt from it, the plan deleted, then the staging (one bulk delete on S3).

Killed before step 2, the tables are as they were (the next run drops the staging); killed
in step 3, the next run's `Lake.recover()` applies the same plan, which commits exactly the
tables not yet done. Readers pinning the latest publication never see a partial one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from servio import faults
from servio.lake import catalog, delta
from servio.lake.files import (
    CONTROL_TABLES,
    PLAN,
    PartitionRows,
    PartitionValue,
    Published,
    TableChange,
    partition_text,
    to_arrow,
    write_partition_file,
)
from servio.schemas.table import CuratedTable
from servio.schemas.tables import LAKE_STATE, PUBLICATIONS

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from servio.lake import Lake

log = logging.getLogger("servio.lake.publication")


def publish(
    lake: Lake, run_id: str, changes: list[TableChange], state: Mapping[str, object] | None = None
) -> list[Published]:
    """Replace the given partitions of several tables as one publication, exactly once
    across tables (module docstring). `state` entries are merged into the lake state
    (`_servio/state`) in the same publication, so what a run remembers about its work
    (e.g. snapshot fingerprints) never disagrees with the data."""
    number = last_publication(lake) + 1
    if state:
        merged = {**lake.state(), **state}
        values = [json.dumps(v, default=str) for v in merged.values()]
        rows = pl.DataFrame({"key": list(merged), "value": values}, schema=LAKE_STATE.schema).sort(
            "key"
        )
        changes = [*changes, TableChange(LAKE_STATE, {None: rows})]
    scratch = lake.scratch_dir(run_id) / "publish"
    try:
        entries, report = [], []
        for change in _one_per_table(changes):
            entry, published = _stage(lake, change, number, run_id, scratch)
            if change.partitions:
                entries.append(entry)
                report.append(published)
        plan = {
            "publication": number,
            "run_id": run_id,
            "tables": entries,
        }
        faults.checkpoint("before_publication_commit")
        lake.store.write_json(PLAN, plan)  # the commit point
    except OSError as exc:  # typically ENOSPC: say what it means for the tables
        lake.store.delete_tree(lake.staging_key(run_id, "publish"))
        shutil.rmtree(scratch, ignore_errors=True)
        raise OSError(
            exc.errno,
            f"{exc.strerror or exc} while staging run {run_id}'s publication to "
            f"{lake.root}; nothing was published, the tables are unchanged: free space "
            "and run again",
        ) from exc
    faults.checkpoint("after_publication_commit")
    apply(lake, plan)
    shutil.rmtree(scratch, ignore_errors=True)
    for item in report:
        log.info(
            "published %s (publication %d): %d partitions written (%d rows), %d deleted",
            item.table,
            number,
            item.partitions_written,
            item.rows_written,
            item.partitions_deleted,
        )
    return report


def _stage(
    lake: Lake, change: TableChange, number: int, run_id: str, scratch: Path
) -> tuple[dict[str, Any], Published]:
    """Stage one table's new files; its entry of the plan."""
    table = change.table
    files: list[dict[str, Any]] = []
    replace: list[str] = []
    written = deleted = rows = 0
    for value, rows_or_file in change.partitions.items():
        text = partition_text(value) if table.partition_by else None
        if text is not None:
            replace.append(text)
        local = _local_file(rows_or_file, table, scratch, value)
        folder = f"{table.partition_by}={text}/" if table.partition_by else ""
        name = f"part-{number:05d}-{uuid.uuid4().hex[:12]}.parquet"
        described = delta.describe_file(local, folder + name, text) if local else None
        if local is None or described is None or described.rows == 0:
            deleted += 1
            continue
        # Staged flat (one folder per table): fewer folders to create and remove.
        staged = lake.staging_key(run_id, "publish", table.name, name)
        lake.store.put_file(local, staged)
        faults.checkpoint("partition_staged")
        files.append({"staged": staged, **described.__dict__})
        written += 1
        rows += described.rows
    entry = {
        "name": table.name,
        "location": lake.location(table.name),
        "partition_by": table.partition_by,
        "schema": delta.delta_schema_json(table),
        "description": table.grain,
        "configuration": delta.configuration(table),
        "replace": sorted(replace) if table.partition_by else None,
        "files": files,
    }
    return entry, Published(table.name, written, deleted, rows)


def _local_file(
    rows_or_file: PartitionRows, table: CuratedTable, scratch: Path, value: PartitionValue
) -> Path | None:
    """The partition's rows as a local file in the table's format (None: no rows)."""
    if rows_or_file is None or isinstance(rows_or_file, Path):
        return rows_or_file
    if rows_or_file.is_empty():
        return None
    path = scratch / table.name / f"{partition_text(value)}-{uuid.uuid4().hex[:8]}.parquet"
    return write_partition_file(rows_or_file, table, path)


def apply(lake: Lake, plan: Mapping[str, Any]) -> None:
    """Commit every table of the plan not yet committed, record the publication, rebuild
    the catalog, drop the plan. Idempotent: rerun after a crash anywhere in it."""
    number, run_id = plan["publication"], plan["run_id"]
    changed: dict[str, int] = {}  # table → its version holding publication `number`
    opened: dict[str, DeltaTable] = {}
    for entry in plan["tables"]:
        url = lake.store.url(entry["location"])
        table = opened[entry["name"]] = delta.ensure_table(url, lake.storage_options, entry)
        if delta.committed(table, number):  # committed before a crash: not again
            changed[entry["name"]] = int(table.version())
        else:
            # One listing per staging folder, not a HEAD per file (on S3, a request each).
            staged = _staged_names(lake, [item["staged"] for item in entry["files"]])
            for item in entry["files"]:
                target = f"{entry['location']}/{item['path']}"
                if item["staged"] in staged or not lake.store.exists(target):
                    lake.store.place(item["staged"], target)
            faults.checkpoint("before_table_commit")
            files = [
                delta.DataFile(**{k: v for k, v in f.items() if k != "staged"})
                for f in entry["files"]
            ]
            changed[entry["name"]] = delta.commit(
                table, files, entry["partition_by"], entry["replace"], number, run_id
            )
        faults.checkpoint("between_table_commits")
    record(lake, number, run_id, changed)
    faults.checkpoint("after_publication_record")
    write_catalog(lake, opened)
    lake.store.delete(PLAN)
    lake.store.delete_tree(lake.staging_key(run_id, "publish"))


def _staged_names(lake: Lake, keys: Iterable[str]) -> set[str]:
    """Which of the staged keys still exist. A key placed before a crash is gone from the
    staging on disk (renamed); on S3 it stays there until the publication is done."""
    folders = {key.rpartition("/")[0] for key in keys}
    return {f"{folder}/{name}" for folder in folders for name in lake.store.children(folder)}


def last_publication(lake: Lake) -> int:
    """The number of the latest publication (0 before the first): the record's txn version."""
    record = lake.delta_table(PUBLICATIONS.name)
    if record is None:
        return 0
    return int(record.transaction_version(delta.APP_ID) or 0)


def record(lake: Lake, number: int, run_id: str, changed: Mapping[str, int]) -> None:
    """Append publication `number`'s row per table (txn-idempotent): the version of every
    table of the lake after it — `changed`'s, and the previous record's for the others (only
    publications and maintenance, which records too, commit to a table)."""
    from deltalake import write_deltalake
    from deltalake.transaction import CommitProperties, Transaction

    url = lake.table_url(PUBLICATIONS.name)
    publications = delta.ensure_table(url, lake.storage_options, _spec(PUBLICATIONS))
    if delta.committed(publications, number):
        return
    versions = dict(sorted({**latest_versions(lake), **changed}.items()))
    now = datetime.now(UTC)
    rows = pl.DataFrame(
        {
            "publication": [number] * len(versions),
            "run_id": [run_id] * len(versions),
            "published_at": [now] * len(versions),
            "table_name": list(versions),
            "table_version": list(versions.values()),
            "changed": [name in changed for name in versions],
        },
        schema=PUBLICATIONS.schema,
    )
    write_deltalake(
        publications,
        to_arrow(rows, PUBLICATIONS),
        mode="append",
        writer_properties=delta.WRITER,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(delta.APP_ID, number)],
            custom_metadata={"servio.run_id": run_id, "servio.lake.publication": number},
        ),
    )


def latest_versions(lake: Lake) -> dict[str, int]:
    """Table → version in the latest recorded publication."""
    record = lake.scan(PUBLICATIONS)
    latest = record.filter(pl.col("publication") == pl.col("publication").max())
    return dict(latest.select("table_name", "table_version").collect().iter_rows())


def write_catalog(lake: Lake, opened: Mapping[str, DeltaTable] | None = None) -> Path | None:
    """The DuckDB catalog of the latest publication (`servio.lake.catalog`). `opened`: tables
    the caller holds open (those a publication just committed), used when at the version the
    publication records."""
    record = lake.publications()
    if record.is_empty():
        return None
    latest = record.filter(pl.col("publication") == record["publication"].max())
    tables = []
    for name, version in latest.select("table_name", "table_version").iter_rows():
        if name in CONTROL_TABLES:
            continue
        described = _catalog_table(lake, name, version, (opened or {}).get(name))
        if described is not None:
            tables.append(described)
    return catalog.write_catalog(
        lake.catalog_path,
        tables,
        int(latest["publication"][0]),
        latest["published_at"][0],
    )


# What the catalog says of a table at a version, by (table URL, version, its commit's hash):
# a table version never changes, and each publication changes a few tables, so a run's
# second catalog (and the next run's, in one process) opens only those. Local lakes only.
_DESCRIBED: OrderedDict[tuple[str, int, str], catalog.CatalogTable] = OrderedDict()
_DESCRIBED_SIZE = 64
_DESCRIBED_GUARD = threading.Lock()


def _catalog_table(
    lake: Lake, name: str, version: int, table: DeltaTable | None
) -> catalog.CatalogTable | None:
    """The catalog's view of table `name` at `version` (None: no such table)."""
    url = lake.table_url(name)
    commit = _commit_hash(lake, name, version)
    key = (url, version, commit) if commit is not None else None
    if key is not None:
        with _DESCRIBED_GUARD:
            if key in _DESCRIBED:
                _DESCRIBED.move_to_end(key)
                return _DESCRIBED[key]
    if table is None or table.version() != version:
        table = delta.open_table(url, lake.storage_options, version)
        if table is None:
            return None
    metadata = table.metadata()
    schema = pa.schema(table.schema().to_arrow())
    partition_by = next(iter(metadata.partition_columns), None)
    stored = [f.name for f in schema if f.name != partition_by]
    described = catalog.CatalogTable(
        name,
        version,
        sorted(table.file_uris()),
        schema,
        partition_by,
        uniform=delta.every_file_has(table, stored),
    )
    if key is not None:
        with _DESCRIBED_GUARD:
            _DESCRIBED[key] = described
            while len(_DESCRIBED) > _DESCRIBED_SIZE:
                _DESCRIBED.popitem(last=False)
    return described


def _commit_hash(lake: Lake, name: str, version: int) -> str | None:
    """The SHA-256 of the table's commit file of `version` (a table deleted and made again
    at the same place never matches an old entry); None on object storage or once the
    commit file was cleaned up."""
    if not lake.store.is_local:
        return None
    log_file = lake.store.local(lake.location(name)) / "_delta_log" / f"{version:020d}.json"
    try:
        return hashlib.sha256(log_file.read_bytes()).hexdigest()
    except OSError:
        return None


def maintain(lake: Lake, retention_hours: int) -> dict[str, dict[str, int]]:
    """Compact, checkpoint and vacuum every table (call under the lock, after
    `recover()`). Files that readers of the last `retention_hours` may still use stay."""
    names = sorted(set(latest_versions(lake)) | {PUBLICATIONS.name})
    done: dict[str, dict[str, int]] = {}
    compacted: dict[str, int] = {}
    for name in names:
        table = delta.open_table(lake.table_url(name), lake.storage_options)
        if table is not None:
            done[name] = delta.maintain(table, retention_hours)
            log.info("maintained %s: %s", name, done[name])
            if done[name]["files_compacted"] and name != PUBLICATIONS.name:
                compacted[name] = int(table.version())
    if compacted:
        # Compaction gave a data table a new version: record it, so the catalog (and
        # readers pinning the latest publication) stop naming the files it removed.
        record(lake, last_publication(lake) + 1, "maintenance", compacted)
    write_catalog(lake)  # also rewrites the files' absolute paths after a lake was moved
    return done


def _one_per_table(changes: Iterable[TableChange]) -> list[TableChange]:
    """One change per table (one Delta commit each), partitions of repeated tables merged."""
    merged: dict[str, TableChange] = {}
    for change in changes:
        known = merged.get(change.table.name)
        partitions = {**known.partitions, **change.partitions} if known else change.partitions
        merged[change.table.name] = TableChange(change.table, dict(partitions))
    return list(merged.values())


def _spec(table: CuratedTable) -> dict[str, Any]:
    return {
        "name": table.name,
        "partition_by": table.partition_by,
        "schema": delta.delta_schema_json(table),
        "description": table.grain,
        "configuration": delta.configuration(table),
    }
