"""Standardised, valid raw records → rows of the curated `interactions` and `survey_responses`
tables, and the merge that keeps only the latest version of each key (SPEC §1.3, §1.4, §4)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import polars as pl

from servio.config import ChannelRate
from servio.schemas.catalog import ItemCatalog
from servio.schemas.tables import INTERACTIONS, MONEY, CuratedTable, survey_responses_table
from servio.transforms.profitability import cost_to_serve
from servio.transforms.quality import survey_response_scores

LINEAGE_ORDER = ("source_seq", "source_row")


def interactions(
    valid: pl.LazyFrame,
    *,
    rates: Mapping[str, ChannelRate],
    gross_margin_rate: float,
    currency: str,
    source_file: str,
) -> pl.LazyFrame:
    """Curated interaction rows (without `source_seq`, which publishing assigns)."""
    revenue = pl.col("revenue").fill_null(Decimal("0")).cast(MONEY)
    default_margin = (revenue * pl.lit(Decimal(str(gross_margin_rate)))).round(2)
    return valid.with_columns(
        pl.col("started_at").dt.date().alias("interaction_date"),
        pl.col("resolved").alias("is_resolved"),
        revenue.alias("revenue"),
        pl.coalesce(pl.col("margin"), default_margin).cast(MONEY).alias("margin"),
        cost_to_serve(pl.col("channel"), pl.col("handle_seconds"), rates).alias("cost_to_serve"),
        pl.lit(currency).alias("currency"),
        pl.coalesce("updated_at", "started_at").alias("updated_at"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(None, pl.Int64).alias("source_seq"),
    ).select(pl.col(name).cast(dtype) for name, dtype in INTERACTIONS.schema.items())


def survey_responses(
    valid: pl.LazyFrame,
    *,
    catalog: ItemCatalog,
    weights: Mapping[str, float],
    source_file: str,
) -> pl.LazyFrame:
    """Curated survey rows with per-dimension scores and gaps (without `source_seq`)."""
    table = survey_responses_table(catalog)
    answers = [
        pl.col(name).cast(pl.Int32) for name in (*catalog.answer_columns, "nps", "csat", "ces")
    ]
    prepared = valid.with_columns(
        *answers,
        pl.col("submitted_at").dt.date().alias("submitted_date"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(None, pl.Int64).alias("source_seq"),
    )
    scored = survey_response_scores(prepared, catalog, weights)
    return scored.select(pl.col(name).cast(dtype) for name, dtype in table.schema.items())


def version_column(table: CuratedTable) -> str:
    return "updated_at" if table.name == INTERACTIONS.name else "submitted_at"


def latest_versions(rows: pl.LazyFrame, table: CuratedTable) -> pl.LazyFrame:
    """Mark the winning version of each key: latest version time, then the later file, then
    the later record in that file. Adds the boolean column `is_latest`."""
    key = list(table.key)
    order = [version_column(table), *LINEAGE_ORDER]
    newest = pl.int_range(pl.len()).over(key, order_by=order) == pl.len().over(key) - 1
    return rows.with_columns(newest.alias("is_latest"))
