"""The lake's files: where servio keeps its control files, the change a publication makes
(`TableChange`), and how a partition's rows become the data file a table commits unchanged."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from servio import faults, objectstore
from servio.lake import delta
from servio.schemas.table import CuratedTable
from servio.schemas.tables import LAKE_STATE, PUBLICATIONS

ROW_GROUP_ROWS = delta.ROW_GROUP_ROWS
# A row group also closes at this much Arrow data, so wide rows (quarantine's raw records,
# ~0.5 KB each) do not hold a million rows in memory: at 100M that held ~2 GB.
ROW_GROUP_BYTES = 64 * 2**20
# Rows a LazyFrame yields per batch on its way into a partition file (row groups gather them).
WRITE_BATCH_ROWS = 32_768
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "row_group_size": ROW_GROUP_ROWS,
    "use_dictionary": True,
    "write_statistics": True,
}
CONTROL = "_servio"
PLAN = f"{CONTROL}/publication.json"
STAGING_OWNER = "_owner.json"
CATALOG_FILE = "servio.duckdb"
CONTROL_TABLES = (LAKE_STATE.name, PUBLICATIONS.name)  # Delta tables under _servio/
PartitionValue = date | str | None  # None: the table is not partitioned
# A partition's new rows: a frame, or a Parquet file already in the table's file format
# (`write_partition_file`), which is moved or uploaded as it is, so a big publication neither
# holds every partition in memory nor writes its rows twice; None or no rows deletes it.
PartitionRows = pl.DataFrame | Path | None


@dataclass
class TableChange:
    """New contents of some partitions of one table; a None frame deletes the partition."""

    table: CuratedTable
    partitions: dict[PartitionValue, PartitionRows] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    table: str
    partitions_written: int
    partitions_deleted: int
    rows_written: int


def partition_text(value: PartitionValue) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def to_arrow(frame: pl.DataFrame, table: CuratedTable) -> pa.Table:
    """Cast to the table's file schema: plain string (never string_view), µs UTC, decimal(18,2)."""
    schema = delta.arrow_file_schema(table)
    ordered = frame.select(schema.names)
    return ordered.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(schema)


def write_partition_file(
    rows: pl.DataFrame | pl.LazyFrame | pa.Table | Iterator[pl.DataFrame],
    table: CuratedTable,
    path: Path,
    *,
    sync: bool = True,
) -> Path:
    """Write one partition's rows as the data file `Lake.publish` will commit unchanged
    (the table's file schema and Parquet options; synced, since it is moved, not copied).
    A LazyFrame, or an iterator of frames, is written batch by batch (row groups of up to
    `ROW_GROUP_ROWS` rows or `ROW_GROUP_BYTES`), so the partition need not fit in memory; an
    Arrow table must already be in the file schema (`to_arrow`). `sync=False` leaves the
    fsync to the caller (`sync_partition_file`), which must do it before the file is handed
    to `Lake.publish`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(rows, pa.Table):
            if rows.schema != delta.arrow_file_schema(table):
                raise ValueError(f"{table.name}: rows not in the file schema ({rows.schema})")
            _write_parquet([rows], rows.schema, path)
        elif isinstance(rows, pl.DataFrame):
            _write_parquet([to_arrow(rows, table)], delta.arrow_file_schema(table), path)
        else:
            batches = _spooled(rows, path) if isinstance(rows, pl.LazyFrame) else rows
            _write_parquet(
                (to_arrow(batch, table) for batch in batches),
                delta.arrow_file_schema(table),
                path,
            )
    except OSError as exc:  # typically ENOSPC: it happens before any publication
        raise _unpublished(exc, path) from exc
    return sync_partition_file(path) if sync else path


def _spooled(rows: pl.LazyFrame, path: Path) -> Iterator[pl.DataFrame]:
    """A LazyFrame's rows a batch at a time in bounded memory. Polars' streaming engine runs
    ahead of a slow consumer (`collect_batches` and `sink_batches` held 1 GB of 2M quarantine
    rows while the writer encoded them, 0.4 GB when the batches were dropped at once), so the
    rows are sunk natively to a spool file beside `path` first and read back a batch at a time."""
    spool = path.with_name(f"{path.name}.spool")
    try:
        rows.sink_parquet(spool, compression="lz4", engine="streaming")
        for batch in pq.ParquetFile(spool).iter_batches(batch_size=WRITE_BATCH_ROWS):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            yield frame
    finally:
        spool.unlink(missing_ok=True)


def sync_partition_file(path: Path) -> Path:
    """fsync a written partition file (`write_partition_file` does, unless `sync=False`: its
    caller syncs many at once on threads, since an fsync waits on the disk, not the CPU, and
    the kernel's journal commits concurrent fsyncs of one file system together)."""
    try:
        objectstore.fsync(path)
    except OSError as exc:  # EIO, ENOSPC on delayed allocation: still before any publication
        raise _unpublished(exc, path) from exc
    return path


def _unpublished(exc: OSError, path: Path) -> OSError:
    return OSError(
        exc.errno,
        f"{exc.strerror or exc} while writing {path}; nothing was published, the tables "
        "are unchanged: free space and run again",
    )


def _write_parquet(batches: Iterable[pa.Table], schema: pa.Schema, path: Path) -> None:
    faults.checkpoint("writing_partition_file", path=path)
    options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
    with pq.ParquetWriter(path, schema, **options) as writer:
        # Small batches are gathered into row groups of ROW_GROUP_ROWS, or fewer rows when
        # they reach ROW_GROUP_BYTES first (a row group never spans two write_table calls);
        # bigger ones are split.
        held: list[pa.Table] = []
        for batch in batches:
            held.append(batch)
            rows = sum(t.num_rows for t in held)
            size = sum(t.nbytes for t in held)
            group = min(ROW_GROUP_ROWS, max(1, rows * ROW_GROUP_BYTES // max(size, 1)))
            if rows >= group:
                gathered = pa.concat_tables(held)  # no copy: the chunks are kept
                whole = rows - rows % group
                writer.write_table(gathered.slice(0, whole), row_group_size=group)
                held = [gathered.slice(whole)] if whole < rows else []
        if held:
            writer.write_table(pa.concat_tables(held), row_group_size=ROW_GROUP_ROWS)
