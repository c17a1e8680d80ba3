"""What the report and `servio export` read: the lake → frames. The only module of the
report that touches the lake; everything after it takes frames.

Every table is read at one publication (`Lake.pinned()`): one consistent lake, even while
a run publishes (docs/BI.md, "One consistent view of several tables").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from servio.config import Settings
from servio.lake import Lake
from servio.report.customers import customer_list, main_channels
from servio.report.summaries import top_share_expr
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
    value_tables,
)
from servio.schemas.table import CuratedTable
from servio.schemas.tables import INGEST_LEDGER, INTERACTIONS, QUARANTINE


@dataclass(frozen=True)
class ValueTables:
    """The SPEC §6 tables of one snapshot; a frame is empty when the table has no
    partition for it (not computed for this snapshot, or not published at all)."""

    customer_value: pl.DataFrame
    value_model: pl.DataFrame
    quality_drivers: pl.DataFrame
    service_levels: pl.DataFrame


@dataclass(frozen=True)
class SnapshotTables:
    """The per-customer snapshot tables of one as-of date (plus SPEC §6's when published)."""

    as_of: date
    profitability: pl.DataFrame
    quality: pl.DataFrame
    segments: pl.DataFrame
    value: ValueTables


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, read at one publication."""

    snapshot: SnapshotTables
    customers: pl.DataFrame  # customer_list: one row per customer of the snapshot
    trends: pl.DataFrame  # snapshot_trends
    service_trends: pl.DataFrame  # service_levels of every snapshot up to as_of
    ledger: pl.DataFrame
    quarantine: pl.DataFrame  # source, row_number, reason_codes only: no raw values
    data_docs_index: Path | None  # Great Expectations Data Docs, when built


def read_report_data(lake: Lake, settings: Settings, as_of: date | None = None) -> ReportData:
    """The report's frames for the snapshot `as_of` (default: the latest one)."""
    lake = lake.pinned()
    snapshot = read_snapshot(lake, settings, as_of)
    service = value_tables(settings.value_horizon_days)["service_levels"]
    return ReportData(
        snapshot=snapshot,
        customers=read_customer_list(lake, settings, snapshot),
        trends=snapshot_trends(lake, snapshot.as_of),
        service_trends=lake.scan(service)
        .filter(pl.col("as_of_date") <= snapshot.as_of)
        .sort("as_of_date", "channel")
        .collect(),
        ledger=lake.scan(INGEST_LEDGER).collect(),
        quarantine=lake.scan(QUARANTINE).select("source", "row_number", "reason_codes").collect(),
        data_docs_index=docs if (docs := lake.data_docs_index).exists() else None,
    )


def read_snapshot(lake: Lake, settings: Settings, as_of: date | None = None) -> SnapshotTables:
    """The snapshot tables as of `as_of` (default: the latest snapshot). Pin the lake first
    (`lake.pinned()`) when several reads must agree."""
    as_of = snapshot_date(lake, as_of)
    value = value_tables(settings.value_horizon_days)
    return SnapshotTables(
        as_of=as_of,
        profitability=_partition(lake, CUSTOMER_PROFITABILITY, as_of),
        quality=_partition(lake, customer_quality_table(settings.catalog), as_of),
        segments=_partition(lake, CUSTOMER_SEGMENTS, as_of),
        value=ValueTables(
            customer_value=_partition(lake, value["customer_value"], as_of),
            value_model=_partition(lake, value["value_model"], as_of),
            quality_drivers=_partition(lake, value["quality_drivers"], as_of),
            service_levels=_partition(lake, value["service_levels"], as_of),
        ),
    )


def read_customer_list(lake: Lake, settings: Settings, snapshot: SnapshotTables) -> pl.DataFrame:
    """Which customers: one row per customer of the snapshot with its action, profit, gap,
    worst dimension and main channel (`customers.customer_list`). The report's lists and
    `servio export` both come from here."""
    start = snapshot.as_of - timedelta(days=settings.window_days)
    contacts = lake.scan(INTERACTIONS).filter(
        pl.col("interaction_date") > start, pl.col("interaction_date") <= snapshot.as_of
    )
    return customer_list(
        segments=snapshot.segments,
        profitability=snapshot.profitability,
        quality=snapshot.quality,
        channels=main_channels(contacts).collect(),
        value=snapshot.value.customer_value if value_usable(snapshot.value) else None,
        dimensions=settings.catalog.dimensions,
    )


def read_export(
    lake: Lake, settings: Settings, as_of: date | None = None
) -> tuple[date, pl.DataFrame]:
    """The snapshot date and its customer list, read at the latest publication."""
    lake = lake.pinned()
    snapshot = read_snapshot(lake, settings, as_of)
    return snapshot.as_of, read_customer_list(lake, settings, snapshot)


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


def value_usable(value: ValueTables) -> bool:
    """customer_value's figures are shown only beside the value_model that says how they
    were fitted (a fit that did not converge left them null; without the model row we
    cannot tell)."""
    return not value.customer_value.is_empty() and not value.value_model.is_empty()
