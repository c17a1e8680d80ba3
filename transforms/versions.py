"""Which version of a key wins (SPEC §4): the latest version time, then the later file
(`source_seq`, the ingestion order), then the later record in that file (`source_row`)."""

from __future__ import annotations

import polars as pl

from ..schemas.raw import SOURCE_ROW
from ..schemas.table import CuratedTable

LINEAGE_ORDER = ("source_seq", SOURCE_ROW)  # identifies a version; breaks version-time ties
IS_LATEST = "is_latest"


def version_column(table: CuratedTable) -> str:
    """The column whose latest value wins among versions of one key."""
    if table.version_column is None:
        raise ValueError(f"{table.name} has no version column: its rows have no versions")
    return table.version_column


def latest_versions(rows: pl.LazyFrame, table: CuratedTable) -> pl.LazyFrame:
    """Mark the winning version of each key: latest version time, then the later file, then
    the later record in that file. Adds the boolean column `is_latest`."""
    key = list(table.key)
    order = [version_column(table), *LINEAGE_ORDER]
    newest = pl.int_range(pl.len()).over(key, order_by=order) == pl.len().over(key) - 1
    return rows.with_columns(newest.alias(IS_LATEST))


def superseded(versions: pl.LazyFrame, table: CuratedTable) -> pl.LazyFrame:
    """The versions that lose to a later one, as (source_seq, source_row, partition value).
    `versions` holds every version of the keys in question (key, version and lineage
    columns and the partition column at least)."""
    part = table.partition_by
    if part is None:
        raise ValueError(f"{table.name} is not partitioned: its versions are not merged")
    ranked = latest_versions(versions, table)
    return ranked.filter(~pl.col(IS_LATEST)).select(*LINEAGE_ORDER, part)


def version_columns(table: CuratedTable) -> list[str]:
    """The narrow columns that decide which version wins, and where each one lives."""
    part = table.partition_by
    if part is None:
        raise ValueError(f"{table.name} is not partitioned: its versions are not merged")
    return [*table.key, version_column(table), *LINEAGE_ORDER, part]
