"""Standardised, valid raw records → rows of the curated `interactions` and `survey_responses`
tables (SPEC §1.3, §1.4, §4): one function per table, named after it; `curated_rows` finds it
by the table a source is published to (`servio.schemas.sources`)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import polars as pl

from ..schemas.sources import Curation
from ..schemas.table import MONEY, CuratedTable
from ..schemas.tables import INTERACTIONS, survey_responses_table
from .profitability import cost_to_serve
from .quality import survey_response_scores


def interactions(valid: pl.LazyFrame, curation: Curation, source_file: str) -> pl.LazyFrame:
    """Curated interaction rows (without `source_seq`, which publishing assigns)."""
    rates, gross_margin_rate, currency = (
        curation.rates,
        curation.gross_margin_rate,
        curation.currency,
    )
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


def survey_responses(valid: pl.LazyFrame, curation: Curation, source_file: str) -> pl.LazyFrame:
    """Curated survey rows with per-dimension scores and gaps (without `source_seq`)."""
    catalog, weights = curation.catalog, curation.weights
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


Curate = Callable[[pl.LazyFrame, Curation, str], pl.LazyFrame]
CURATORS: dict[str, Curate] = {
    INTERACTIONS.name: interactions,
    "survey_responses": survey_responses,
}


def curated_rows(
    table: CuratedTable, valid: pl.LazyFrame, curation: Curation, source_file: str
) -> pl.LazyFrame:
    """The rows of `table` from one file's valid standardised records."""
    return CURATORS[table.name](valid, curation, source_file)
