"""What the report reads: the lake → frames. The only module of the
report that touches the lake; everything after it takes frames.

Every table is read at one publication (`Lake.pinned()`): one consistent lake, even while
a run publishes (docs/BI.md, "One consistent view of several tables").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from schemas.tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    INGEST_LEDGER,
    QUARANTINE,
    CuratedTable,
    customer_quality_table,
)
from servio.config import Settings
from servio.report.summaries import top_share_expr
from servio.storage import Lake


@dataclass(frozen=True)
class SnapshotTables:
    """The per-customer snapshot tables of one as-of date."""

    as_of: date
    profitability: pl.DataFrame
    quality: pl.DataFrame
    segments: pl.DataFrame


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, read at one publication."""

    snapshot: SnapshotTables
    trends: pl.DataFrame  # snapshot_trends
    ledger: pl.DataFrame
    quarantine: pl.DataFrame  # source, row_number, reason_codes only: no raw values
    data_docs_index: Path | None  # Great Expectations Data Docs, when built


def read_report_data(lake: Lake, settings: Settings, as_of: date | None = None) -> ReportData:
    """The report's frames for the snapshot `as_of` (default: the latest one)."""
    lake = lake.pinned()
    snapshot = read_snapshot(lake, settings, as_of)
    return ReportData(
        snapshot=snapshot,
        trends=snapshot_trends(lake, snapshot.as_of),
        ledger=lake.scan(INGEST_LEDGER).collect(),
        quarantine=lake.scan(QUARANTINE).select("source", "row_number", "reason_codes").collect(),
        data_docs_index=docs if (docs := lake.data_docs_dir / "index.html").exists() else None,
    )


def read_snapshot(lake: Lake, settings: Settings, as_of: date | None = None) -> SnapshotTables:
    """The snapshot tables as of `as_of` (default: the latest snapshot). Pin the lake first
    (`lake.pinned()`) when several reads must agree."""
    as_of = snapshot_date(lake, as_of)
    return SnapshotTables(
        as_of=as_of,
        profitability=_partition(lake, CUSTOMER_PROFITABILITY, as_of),
        quality=_partition(lake, customer_quality_table(settings.catalog), as_of),
        segments=_partition(lake, CUSTOMER_SEGMENTS, as_of),
    )


def snapshot_date(lake: Lake, as_of: date | None) -> date:
    """`as_of`, or the latest snapshot; a ValueError naming the published ones otherwise."""
    available = lake.partitions(CUSTOMER_SEGMENTS)
    if not available:
        raise ValueError(
            f"no snapshot to report on in {lake.root}: the customer_segments table has no "
            "as_of_date partition yet; run `servio run` first"
        )
    if as_of is None:
        return date.fromisoformat(available[-1])
    if as_of.isoformat() not in available:
        raise ValueError(
            f"no snapshot as of {as_of.isoformat()} in {lake.root}; published snapshots: "
            f"{', '.join(available)} (publish one with `servio run --as-of {as_of.isoformat()}`)"
        )
    return as_of


def snapshot_trends(lake: Lake, as_of: date) -> pl.DataFrame:
    """Per published as_of_date up to `as_of`: customers, total profit, top-20 % share, share below."""
    profit = (
        lake.scan(CUSTOMER_PROFITABILITY)
        .filter(pl.col("as_of_date") <= as_of)
        .group_by("as_of_date")
        .agg(
            pl.len().cast(pl.Int64).alias("customers"),
            pl.col("profit").cast(pl.Float64).sum().alias("total_profit"),
            top_share_expr(),
        )
    )
    levels = (
        lake.scan(CUSTOMER_SEGMENTS)
        .filter(pl.col("as_of_date") <= as_of)
        .group_by("as_of_date")
        .agg(
            (pl.col("service_level") == "below").sum().alias("below"),
            pl.col("service_level").is_in(["below", "met", "exceeded"]).sum().alias("rated"),
        )
    )
    return (
        profit.join(levels, on="as_of_date", how="left")
        .with_columns(
            pl.when(pl.col("rated") > 0)
            .then(pl.col("below") / pl.col("rated"))
            .alias("share_below")
        )
        .sort("as_of_date")
        .collect()
    )


def _partition(lake: Lake, table: CuratedTable, as_of: date) -> pl.DataFrame:
    return lake.scan(table).filter(pl.col("as_of_date") == as_of).collect()
