"""What drives quality (SPEC §6 `quality_drivers`): an importance–performance analysis of the
window's survey responses, one row per dimension.

Pure Polars. The importances (Johnson's relative weights of the perceptions in explaining
NPS) need an eigen-decomposition, done outside `transforms/` (servio/key_drivers.py) on the
frame `driver_responses` returns; they come back here as a mapping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from ..schemas.catalog import ItemCatalog
from ..schemas.snapshot_tables import QUALITY_DRIVERS

MIN_RESPONSES = 30  # SPEC §6: fewer qualifying responses → no importance, no quadrant
# Two float means that are mathematically equal can differ in their last bits; a value within
# this relative distance of the mean is "equal to the mean", hence low.
TIE_TOLERANCE = 1e-9


def driver_responses(
    survey_responses: pl.LazyFrame, as_of: dt.date, *, window_days: int, catalog: ItemCatalog
) -> pl.LazyFrame:
    """The window's responses that have an NPS score and every dimension's perception:
    response_id, nps, `<d>_perception` and `<d>_gap` per dimension, sorted by response_id
    (so that every float sum over them is taken in one order)."""
    window_start = as_of - dt.timedelta(days=window_days)
    day = pl.col("submitted_date")
    perceptions = [f"{d}_perception" for d in catalog.dimensions]
    gaps = [f"{d}_gap" for d in catalog.dimensions]
    return (
        survey_responses.filter(day > window_start, day <= as_of)
        .select("response_id", "nps", *perceptions, *gaps)
        .drop_nulls(["nps", *perceptions])
        .sort("response_id")
    )


def quality_drivers(
    responses: pl.LazyFrame,
    importances: Mapping[str, float] | None,
    as_of: dt.date,
    *,
    catalog: ItemCatalog,
) -> pl.LazyFrame:
    """One row per catalog dimension, in catalog order.

    `responses` are `driver_responses`; `importances` the relative weight of each dimension
    (None when they could not be computed). `performance` and `mean_gap` are the means of the
    dimension's perception and gap over the responses (nulls ignored). With fewer than
    `MIN_RESPONSES` responses, or no importances, `importance` and `quadrant` are null. The
    quadrant splits at the means over the dimensions of importance and performance, a value
    equal to its mean counting as low: fix_first (high importance, low performance), keep_up
    (high, high), possible_overkill (low, high), low_priority (low, low).
    """
    dimensions = list(catalog.dimensions)
    if importances is not None and set(importances) != set(dimensions):
        raise ValueError(f"importances: one per dimension ({', '.join(dimensions)})")
    n = pl.len().cast(pl.Int64)
    order = {name: position for position, name in enumerate(dimensions)}
    per_dimension = [
        responses.select(
            dimension=pl.lit(d),
            performance=pl.col(f"{d}_perception").cast(pl.Float64).mean(),
            mean_gap=pl.col(f"{d}_gap").cast(pl.Float64).mean(),
            n_responses=n,
        )
        for d in dimensions
    ]
    weights = pl.LazyFrame(
        {
            "dimension": dimensions,
            "importance": [None if importances is None else importances[d] for d in dimensions],
        },
        schema={"dimension": pl.String, "importance": pl.Float64},
    )
    importance = pl.when(pl.col("n_responses") >= MIN_RESPONSES).then(pl.col("importance"))
    high_importance = _above_mean(pl.col("importance"))
    high_performance = _above_mean(pl.col("performance"))
    return (
        pl.concat(per_dimension)
        .join(weights, on="dimension", how="left")
        .with_columns(importance=importance)
        .with_columns(
            quadrant=pl.when(pl.col("importance").is_null().any())
            .then(pl.lit(None, pl.String))
            .when(high_importance & ~high_performance)
            .then(pl.lit("fix_first"))
            .when(high_importance & high_performance)
            .then(pl.lit("keep_up"))
            .when(~high_importance & high_performance)
            .then(pl.lit("possible_overkill"))
            .otherwise(pl.lit("low_priority")),
            as_of_date=pl.lit(as_of, pl.Date),
        )
        .select(pl.col(name).cast(dtype) for name, dtype in QUALITY_DRIVERS.schema.items())
        .sort(pl.col("dimension").replace_strict(order, return_dtype=pl.Int32))
    )


def _above_mean(value: pl.Expr) -> pl.Expr:
    mean = value.mean()
    return (value - mean) > TIE_TOLERANCE * mean.abs()
