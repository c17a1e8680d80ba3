"""The SPEC §6 snapshot tables — customer_value, value_model, quality_drivers, service_levels —
from a snapshot's inputs: pure transforms around the two numerical steps (model fits and
scores, relative weights).

Two ways in, one computation:
- `value_snapshot(interactions, survey_responses, as_of, settings)`: everything in one process;
- bucketed: each bucket computes `purchase_summary` and `service_counts` (per customer,
  transforms/), the combine step concatenates them and calls `value_snapshot_from_parts`.
Both give the same tables: the parts are sorted and the fits see their inputs in one order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from servio.config import Settings
from servio.key_drivers import relative_weights
from servio.schemas.catalog import ItemCatalog
from servio.schemas.snapshot_tables import VALUE_MODEL
from servio.transforms.drivers import MIN_RESPONSES, driver_responses, quality_drivers
from servio.transforms.service import service_counts, service_levels
from servio.transforms.value import customer_value, purchase_summary
from servio.value_model import (
    BG_NBD,
    GAMMA_GAMMA,
    FitResult,
    bg_nbd_scores,
    expected_spend,
    fit_bg_nbd,
    fit_gamma_gamma,
)

VALUE_BATCH_ROWS = 1_000_000  # customer_value rows computed (and written) at a time
SCORE_SCHEMA = {
    "customer_id": pl.String,
    "p_alive": pl.Float64,
    "expected_purchases": pl.Float64,
    "expected_spend": pl.Float64,
}


@dataclass(frozen=True)
class ValueSnapshot:
    """The four tables of one as-of date, and the fits behind them (for the run summary)."""

    customer_value: pl.DataFrame
    value_model: pl.DataFrame
    quality_drivers: pl.DataFrame
    service_levels: pl.DataFrame
    fits: tuple[FitResult, ...]

    @property
    def unconverged(self) -> tuple[FitResult, ...]:
        """Fits whose outputs were NOT used (their value columns are null): show these."""
        return tuple(f for f in self.fits if not f.converged)

    def warnings(self) -> list[str]:
        """One line per fit that was not used, for the run summary."""
        horizon = next(c for c in self.customer_value.columns if c.startswith("expected_purch"))
        return fit_warnings(self.fits, horizon)

    def tables(self) -> dict[str, pl.DataFrame]:
        return {
            "customer_value": self.customer_value,
            "value_model": self.value_model,
            "quality_drivers": self.quality_drivers,
            "service_levels": self.service_levels,
        }


def value_snapshot(
    interactions: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: dt.date,
    settings: Settings,
) -> ValueSnapshot:
    """The four SPEC §6 tables as of `as_of` from the curated interactions and responses."""
    window = settings.window_days
    summary = purchase_summary(interactions, survey_responses, as_of, window_days=window)
    counts = service_counts(interactions, as_of, window_days=window)
    return value_snapshot_from_parts(summary.collect(), counts, survey_responses, as_of, settings)


def value_snapshot_from_parts(
    summary: pl.DataFrame,
    service: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: dt.date,
    settings: Settings,
) -> ValueSnapshot:
    """The whole-population step: `summary` and `service` are every customer's
    `purchase_summary` and `service_counts` rows (any order, e.g. bucket by bucket
    concatenated; survey_responses may be the whole table: only the window is read).
    Two halves, which a snapshot's combine step calls one after the other, writing and
    dropping the first's table before the second: `customer_values`, `population_tables`."""
    frames, fits = customer_values(summary, as_of, settings)
    value = pl.concat(frames)
    drivers, levels = population_tables(service, survey_responses, as_of, settings)
    return ValueSnapshot(value, value_model_rows(fits, as_of), drivers, levels, fits)


def customer_values(
    summary: pl.DataFrame, as_of: dt.date, settings: Settings, *, rows: int = VALUE_BATCH_ROWS
) -> tuple[Iterator[pl.DataFrame], tuple[FitResult, FitResult]]:
    """The `customer_value` table from every customer's `purchase_summary` row, in frames of
    `rows` customers in customer_id order (the table is the frames concatenated: a snapshot
    writes them one by one and never holds the whole table), and the fits behind it."""
    summary = summary.sort("customer_id")
    horizon = settings.value_horizon_days
    scores, fits = score_customers(summary, horizon)

    def frames() -> Iterator[pl.DataFrame]:
        ids = scores["customer_id"]
        for start in range(0, max(summary.height, 1), rows):  # one frame when no customer
            customers, scored = summary.slice(start, rows), scores
            if customers.height:
                # Both sorted by customer_id: these customers' scores are one slice of them.
                first, last = customers["customer_id"][0], customers["customer_id"][-1]
                lo = ids.search_sorted(first, side="left")
                scored = scores.slice(lo, ids.search_sorted(last, side="right") - lo)
            yield customer_value(
                customers.lazy(),
                scored.lazy(),
                as_of,
                horizon_days=horizon,
                gross_margin_rate=settings.gross_margin_rate,
                annual_discount_rate=settings.annual_discount_rate,
            ).collect()

    return frames(), fits


def population_tables(
    service: pl.LazyFrame, survey_responses: pl.LazyFrame, as_of: dt.date, settings: Settings
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`quality_drivers` over the window's responses and `service_levels` from every
    customer's `service_counts` rows."""
    window = settings.window_days
    responses = driver_responses(
        survey_responses, as_of, window_days=window, catalog=settings.catalog
    ).collect()
    drivers = quality_drivers(
        responses.lazy(),
        driver_importances(responses, settings.catalog),
        as_of,
        catalog=settings.catalog,
    ).collect()
    del responses
    levels = service_levels(
        service,
        survey_responses,
        as_of,
        window_days=window,
        sla_targets=settings.sla,
    ).collect()
    return drivers, levels


def score_customers(
    summary: pl.DataFrame, horizon_days: int
) -> tuple[pl.DataFrame, tuple[FitResult, FitResult]]:
    """Fit BG/NBD on the customers with a purchase and Gamma-Gamma on those with x > 0, then
    score every purchaser: p_alive, expected purchase days in (D, D + horizon_days] and
    expected spend. A model that did not converge scores nobody (its columns stay null)."""
    buyers = (
        summary.select("customer_id", "x", "t_x", "T", "repeat_revenue")
        .filter(pl.col("x").is_not_null())
        .sort("customer_id")
    )
    x = buyers["x"].cast(pl.Float64).to_numpy()
    t_x = buyers["t_x"].cast(pl.Float64).to_numpy()
    T = buyers["T"].cast(pl.Float64).to_numpy()
    repeat = buyers["repeat_revenue"].cast(pl.Float64).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_spend = np.where(x > 0, repeat / np.where(x > 0, x, 1.0), np.nan)
    purchases = fit_bg_nbd(x, t_x, T)
    spend = fit_gamma_gamma(x[x > 0], mean_spend[x > 0])
    nothing = np.full(len(x), np.nan)
    alive, expected = nothing, nothing
    if purchases.converged:
        alive, expected = bg_nbd_scores(purchases.params, horizon_days, x, t_x, T)
    spent = expected_spend(spend.params, x, mean_spend) if spend.converged else nothing
    scores = pl.DataFrame(
        {
            "customer_id": buyers["customer_id"],
            "p_alive": alive,
            "expected_purchases": expected,
            "expected_spend": spent,
        },
        schema=SCORE_SCHEMA,
    ).fill_nan(None)
    return scores, (purchases, spend)


def fit_warnings(fits: tuple[FitResult, ...], expected_purchases: str) -> list[str]:
    """One line per fit that did not converge (its outputs are not used), for the run
    summary; `expected_purchases` is the name of the horizon's expected purchases column."""
    nulls = {
        BG_NBD: f"p_alive, {expected_purchases}, clv, value_at_risk",
        GAMMA_GAMMA: "expected_spend, clv",
    }
    return [
        f"value model {fit.model} not converged ({fit.n_customers} customers: "
        f"{fit.message}); {nulls.get(fit.model, 'its columns')} left null"
        for fit in fits
        if not fit.converged
    ]


def driver_importances(responses: pl.DataFrame, catalog: ItemCatalog) -> dict[str, float] | None:
    """Johnson's relative weights of the dimensions' perceptions in explaining NPS over
    `driver_responses`; None under `MIN_RESPONSES` responses or when NPS does not vary."""
    if responses.height < MIN_RESPONSES:
        return None
    dimensions = list(catalog.dimensions)
    predictors = responses.select(f"{d}_perception" for d in dimensions).to_numpy()
    weights = relative_weights(predictors.astype(np.float64), responses["nps"].to_numpy())
    if weights is None:
        return None
    return dict(zip(dimensions, (float(w) for w in weights), strict=True))


def value_model_rows(fits: tuple[FitResult, ...], as_of: dt.date) -> pl.DataFrame:
    """The `value_model` rows: one per fit, its parameters in their columns (NaN → null)."""
    rows = [
        {
            "as_of_date": as_of,
            "model": fit.model,
            **{k: v for k, v in fit.params.items() if np.isfinite(v)},
            "n_customers": fit.n_customers,
            "log_likelihood": fit.log_likelihood,
            "converged": fit.converged,
        }
        for fit in fits
    ]
    return pl.DataFrame(rows, schema=VALUE_MODEL.schema)
