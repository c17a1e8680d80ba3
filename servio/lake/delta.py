"""The table format: Delta Lake through delta-rs (`deltalake`), for local and `s3://` lakes.

servio writes each partition's data file itself (pyarrow: the table's exact Arrow types, zstd,
bounded row groups; `files.write_partition_file`) and commits it as a Delta *add action*
whose statistics come from the file's own Parquet footer. A commit replaces the given
partitions (`mode="overwrite"` with partition filters: Delta's replaceWhere) and carries an
application transaction `txn(appId="servio", version=<publication>)`, so a commit replayed
after a crash is recognised (`DeltaTable.transaction_version`) and skipped.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction

from servio.schemas.table import Column, CuratedTable, DType

APP_ID = "servio"  # the Delta application id of every servio commit
ROW_GROUP_ROWS = 1_000_000
# What delta-rs itself writes (compaction, the publication records): zstd, as servio's files.
WRITER = WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)
# Statistics of longer strings would bloat the log for little pruning (delta-rs truncates at 32).
MAX_STRING_STAT = 64
_DECIMAL = re.compile(r'"__decimal__([-0-9.E+]+)"')


def arrow_type(dtype: DType) -> pa.DataType:
    """The Arrow type every BI reader understands for a curated column (no views, no large types)."""
    if isinstance(dtype, pl.Decimal):
        return pa.decimal128(dtype.precision or 38, dtype.scale)
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp(dtype.time_unit or "us", tz=dtype.time_zone)
    if isinstance(dtype, type):
        dtype = dtype()
    simple: dict[type[pl.DataType], pa.DataType] = {
        pl.String: pa.string(),
        pl.Int64: pa.int64(),
        pl.Int32: pa.int32(),
        pl.Float64: pa.float64(),
        pl.Boolean: pa.bool_(),
        pl.Date: pa.date32(),
    }
    return simple[type(dtype)]


def arrow_file_schema(table: CuratedTable) -> pa.Schema:
    """The columns stored inside the table's Parquet files (the partition key is in the path)."""
    return _arrow_schema(table.columns, table.partition_by)


@functools.cache  # asked once per partition file written: a big ingest writes hundreds
def _arrow_schema(columns: tuple[Column, ...], leave_out: str | None) -> pa.Schema:
    return pa.schema([(c.name, arrow_type(c.dtype)) for c in columns if c.name != leave_out])


def table_schema(table: CuratedTable) -> pa.Schema:
    """Every column in contract order, the partition key included (Delta keeps partition
    values in the log, not in the files)."""
    return pa.schema([(name, arrow_type(dtype)) for name, dtype in table.schema.items()])


def delta_schema_json(table: CuratedTable) -> str:
    return str(DeltaSchema.from_arrow(table_schema(table)).to_json())


def open_table(
    url: str, options: dict[str, str] | None, version: int | None = None
) -> DeltaTable | None:
    """The table at `version` (latest if None), or None when no Delta table is there yet."""
    try:
        return DeltaTable(url, version=version, storage_options=options)
    except TableNotFoundError:
        return None


def configuration(table: CuratedTable) -> dict[str, str]:
    """Table properties: servio's contract facts, and statistics kept for every column (delta-rs
    keeps the first 32 only by default; servio's catalog and readers' pruning use them all)."""
    return {
        "delta.dataSkippingNumIndexedCols": "-1",
        "servio.key": ",".join(table.key),
        "servio.schemaVersion": str(table.schema_version),
    }


def ensure_table(url: str, options: dict[str, str] | None, spec: dict[str, Any]) -> DeltaTable:
    """Open the table, creating it (empty) or adding the contract's new nullable columns
    first; both are idempotent, so a publication rolled forward may run them again."""
    table = open_table(url, options)
    wanted = DeltaSchema.from_json(spec["schema"])
    if table is None:
        table = DeltaTable.create(
            url,
            wanted,
            mode="ignore",
            partition_by=[spec["partition_by"]] if spec["partition_by"] else None,
            name=spec["name"],
            description=spec["description"],
            configuration=spec["configuration"],
            storage_options=options,
            raise_if_key_not_exists=False,
        )
    have = {field.name for field in table.schema().fields}
    missing = [field for field in wanted.fields if field.name not in have]
    if missing:  # an additive change (docs/BI.md, "Schema evolution")
        table.alter.add_columns(missing)
    return table


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a table, described as its Delta add action will describe it."""

    path: str  # relative to the table's folder
    partition: str | None  # the partition value as text; None for an unpartitioned table
    size: int
    rows: int
    stats: str  # Delta statistics JSON: numRecords, nullCount, minValues, maxValues


def describe_file(local: Path, relative: str, partition: str | None) -> DataFile:
    """Size, rows and Delta statistics of a file, from its footer (nothing else is read)."""
    metadata = pq.read_metadata(local)
    return DataFile(relative, partition, local.stat().st_size, metadata.num_rows, _stats(metadata))


def _stats(metadata: pq.FileMetaData) -> str:
    """Delta statistics from the row groups' statistics: exact null counts, and min/max only
    where every row group has them and they are exact bounds (dates, timestamps, integers,
    decimals, short strings). Floats (NaN) and booleans get none: a missing bound only costs
    pruning, a wrong one would lose rows."""
    schema = metadata.schema.to_arrow_schema()
    groups = [metadata.row_group(g) for g in range(metadata.num_row_groups)]
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for index, field in enumerate(schema):
        null_count, low, high, bounded = 0, None, None, _has_bounds(field.type)
        # Timestamps by their raw integers: pyarrow's conversion imports pandas (0.4 s).
        raw = pa.types.is_timestamp(field.type)
        for group in groups:
            column = group.column(index)
            statistics = column.statistics
            if statistics is None or not statistics.has_null_count:
                break
            null_count += statistics.null_count
            if not bounded:
                continue
            if statistics.has_min_max:
                group_low = statistics.min_raw if raw else statistics.min
                group_high = statistics.max_raw if raw else statistics.max
                low = group_low if low is None else min(low, group_low)
                high = group_high if high is None else max(high, group_high)
            elif statistics.null_count != column.num_values:
                bounded = False  # values without bounds
        else:
            nulls[field.name] = null_count
            if bounded and low is not None and high is not None and _short(low) and _short(high):
                if raw:
                    low, high = _instant(low, field.type), _instant(high, field.type, up=True)
                lows[field.name], highs[field.name] = _json_value(low), _json_value(high)
    stats = {
        "numRecords": metadata.num_rows,
        "minValues": lows,
        "maxValues": highs,
        "nullCount": nulls,
    }
    # Decimals as exact JSON numbers (a float would round 16+ digit amounts).
    return _DECIMAL.sub(r"\1", json.dumps(stats, separators=(",", ":")))


def _instant(raw: int, kind: pa.TimestampType, up: bool = False) -> dt.datetime:
    """A raw timestamp statistic as a UTC instant, to the microsecond (Delta's precision);
    an upper bound is rounded up, never down."""
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]
    scaled = raw * 1_000_000
    microseconds = -(-scaled // per_second) if up else scaled // per_second
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=microseconds)


def _has_bounds(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_string(kind)
    )


def _short(value: object) -> bool:
    return not isinstance(value, str) or len(value) <= MAX_STRING_STAT


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"__decimal__{value}"
    return value


def every_file_has(table: DeltaTable, columns: list[str]) -> bool:
    """Whether every data file holds all these columns, by the log's statistics (a file's
    `nullCount` names each column it stores); False when a file has no statistics."""
    actions = pa.RecordBatchReader.from_stream(table.get_add_actions(flatten=True)).read_all()
    present = set(actions.column_names)  # (a list built anew at each access)
    for column in columns:
        name = f"null_count.{column}"
        if name not in present or actions[name].null_count:
            return False
    return True


def commit(
    table: DeltaTable,
    files: list[DataFile],
    partition_by: str | None,
    replace: list[str] | None,
    publication: int,
    run_id: str,
) -> int:
    """One Delta commit: the `replace` partitions (the whole table when unpartitioned) now hold
    exactly `files`, tagged txn(servio, publication). Returns the new table version."""
    now = int(time.time() * 1000)
    adds: list[AddAction | RemoveAction] = [
        AddAction(
            f.path,
            f.size,
            {partition_by: f.partition} if partition_by else {},
            now,
            True,
            f.stats,
        )
        for f in files
    ]
    table.create_write_transaction(
        adds,
        mode="overwrite",
        schema=table.schema(),
        partition_by=[partition_by] if partition_by else None,
        partition_filters=[(partition_by, "in", replace)] if partition_by else None,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(APP_ID, publication)],
            custom_metadata={"servio.run_id": run_id, "servio.lake.publication": publication},
        ),
    )
    table.update_incremental()
    return int(table.version())


def committed(table: DeltaTable | None, publication: int) -> bool:
    """Whether this table already holds publication `publication`'s commit (or a later one)."""
    if table is None:
        return False
    done = table.transaction_version(APP_ID)
    return done is not None and done >= publication


def maintain(table: DeltaTable, retention_hours: int) -> dict[str, int]:
    """Compact small files, write a checkpoint, drop expired log entries, and delete files no
    version younger than `retention_hours` references (and orphans of crashed writers)."""
    compacted = table.optimize.compact(writer_properties=WRITER)
    table.update_incremental()
    table.create_checkpoint()
    table.cleanup_metadata()
    deleted = table.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=False,  # the setting is validated (≥ 1 h) by servio
        full=True,
    )
    table.update_incremental()
    # (vacuum's own commits change no data file: only compaction gives new file lists)
    return {
        "files_compacted": int(compacted.get("numFilesRemoved", 0)),
        "files_deleted": len(deleted),
    }
