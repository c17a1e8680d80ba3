"""Customer segments (SPEC §4.2): what the CRM team should do next with each customer."""

from __future__ import annotations

import polars as pl

from ..schemas.snapshot_tables import CUSTOMER_SEGMENTS

# SPEC §4.2 action table as (profit segments, service levels, action); the rows cover each
# profit_segment × service_level pair exactly once.
ACTIONS: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("core", "profitable"), ("below",), "retain_now"),
    (("core", "profitable"), ("met", "exceeded"), "grow"),
    (("core", "profitable"), ("unknown",), "ask_feedback"),
    (("unprofitable",), ("exceeded",), "reduce_cost_to_serve"),
    (("unprofitable",), ("below", "met", "unknown"), "review_terms"),
)
UNKNOWN_LEVEL = "unknown"


def customer_segments(profitability: pl.LazyFrame, quality: pl.LazyFrame) -> pl.LazyFrame:
    """One row per customer_profitability row: its profit and RFM segments, service level and action.

    Both snapshots cover the same customers by the SPEC; a customer that is missing from the
    quality snapshot has no known gap, so its service level is `unknown`.
    """
    key = ["as_of_date", "customer_id"]
    service_levels = quality.select(*key, "service_level")
    return (
        profitability.select(*key, "profit_segment", "rfm_segment")
        .join(service_levels, on=key, how="left", validate="1:1")
        .with_columns(pl.col("service_level").fill_null(UNKNOWN_LEVEL))
        .with_columns(action=_action(pl.col("profit_segment"), pl.col("service_level")))
        .select(pl.col(name).cast(dtype) for name, dtype in CUSTOMER_SEGMENTS.schema.items())
        .sort(key)
    )


def _action(profit_segment: pl.Expr, service_level: pl.Expr) -> pl.Expr:
    return pl.coalesce(
        pl.when(profit_segment.is_in(segments) & service_level.is_in(levels)).then(pl.lit(action))
        for segments, levels, action in ACTIONS
    )
