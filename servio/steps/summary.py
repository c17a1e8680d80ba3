"""What a run did, read back from the lake for people: the rows and files it quarantined, the
most frequent reasons, the rows per table (the CLI's summary, the flows' artifacts)."""

from __future__ import annotations

from datetime import date

import polars as pl

from servio.config import Settings
from servio.lake import Lake
from servio.schemas.snapshot_tables import CUSTOMER_SEGMENTS
from servio.schemas.tables import QUARANTINE, curated_tables

SNAPSHOT_PARTITION = "as_of_date"


def quarantined_in_run(lake: Lake, run_id: str) -> pl.DataFrame:
    """The rows and files this run quarantined, in file and row order."""
    return (
        lake.scan(QUARANTINE)
        .filter(pl.col("run_id") == run_id)
        .select("source_file", "row_number", "reason_codes", "reason_detail")
        .sort("source_file", "row_number", nulls_last=False)
        .collect()
    )


def top_reasons(quarantined: pl.DataFrame, limit: int = 10) -> list[tuple[str, int]]:
    """The most frequent reason codes (a row with several reasons counts for each)."""
    codes = quarantined.select(pl.col("reason_codes").str.split(";").alias("code")).explode("code")
    counted = codes.group_by("code").agg(pl.len()).sort(["len", "code"], descending=[True, False])
    return [(code, int(n)) for code, n in counted.head(limit).iter_rows()]


def table_row_counts(lake: Lake, settings: Settings) -> dict[str, int]:
    """Rows per curated table."""
    return {
        name: lake.scan(table).select(pl.len()).collect().item()
        for name, table in curated_tables(settings.catalog, settings.value_horizon_days).items()
    }


def snapshot_rows(lake: Lake, settings: Settings, as_of: date) -> dict[str, int]:
    """Rows per snapshot table (those partitioned by as-of date) in the partition of `as_of`."""
    return {
        name: lake.scan(table)
        .filter(pl.col(SNAPSHOT_PARTITION) == as_of)
        .select(pl.len())
        .collect()
        .item()
        for name, table in curated_tables(settings.catalog, settings.value_horizon_days).items()
        if table.partition_by == SNAPSHOT_PARTITION
    }


def customers_in_snapshot(lake: Lake, as_of: date) -> int:
    """Customers of the published snapshot of `as_of`."""
    segments = lake.scan(CUSTOMER_SEGMENTS).filter(pl.col("as_of_date") == as_of)
    return int(segments.select(pl.len()).collect().item())
