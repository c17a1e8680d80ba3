"""Summaries of the SPEC §6 tables for the report (pure Polars/numpy): the fitted models'
status, the CLV distribution, p_alive against profit, the largest values at risk, the
importance–performance matrix and service levels per channel.

A fit that did not converge scores nobody (its columns are null in customer_value); the
report shows that it did not converge, and never its parameters or any number from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from servio.value_model import BG_NBD, GAMMA_GAMMA

CLV_BINS = 24
CLV_TOP_QUANTILE = 0.99  # the histogram's last bar holds everything above this quantile
SCATTER_POINTS = 1_500  # p_alive against profit: at most this many customers drawn
TOP_AT_RISK = 10
MODEL_NAMES = {BG_NBD: "BG/NBD (purchases, dropout)", GAMMA_GAMMA: "Gamma-Gamma (spend)"}
MODEL_PARAMS = {BG_NBD: ("r", "alpha", "a", "b"), GAMMA_GAMMA: ("p", "q", "gamma")}
# What a model that did not converge leaves null (ValueSnapshot.warnings says the same).
MODEL_COLUMNS = {
    BG_NBD: "p_alive, expected purchases, CLV and value at risk",
    GAMMA_GAMMA: "expected spend and CLV",
}
QUADRANT_ORDER = ("fix_first", "keep_up", "possible_overkill", "low_priority")


@dataclass(frozen=True)
class ModelStatus:
    model: str
    converged: bool
    n_customers: int
    log_likelihood: float | None
    params: dict[str, float]  # empty unless converged: an unconverged fit shows no numbers


def model_status(value_model: pl.DataFrame) -> list[ModelStatus]:
    """One entry per value_model row, BG/NBD first."""
    statuses = []
    for row in value_model.sort("model").iter_rows(named=True):
        model = row["model"]
        converged = bool(row["converged"])
        params = {p: row[p] for p in MODEL_PARAMS.get(model, ())} if converged else {}
        statuses.append(
            ModelStatus(
                model=model,
                converged=converged,
                n_customers=int(row["n_customers"] or 0),
                log_likelihood=row["log_likelihood"] if converged else None,
                params=params,
            )
        )
    order = list(MODEL_NAMES)
    return sorted(statuses, key=lambda s: order.index(s.model) if s.model in order else 99)


def clv_histogram(customer_value: pl.DataFrame, bins: int = CLV_BINS) -> pl.DataFrame:
    """Customers per CLV bar (bin_start, bin_end, customers); values above the
    `CLV_TOP_QUANTILE` quantile are counted in the last bar (`is_top` true) so one
    outlier does not squeeze the rest into a single bar. Empty without a CLV."""
    values = customer_value["clv"].drop_nulls().cast(pl.Float64).to_numpy()
    schema = {
        "bin_start": pl.Float64,
        "bin_end": pl.Float64,
        "customers": pl.Int64,
        "is_top": pl.Boolean,
    }
    if values.size == 0:
        return pl.DataFrame(schema=schema)
    low = min(float(values.min()), 0.0)
    high = float(np.quantile(values, CLV_TOP_QUANTILE))
    if high <= low:
        high = float(values.max())
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(np.clip(values, low, high), edges)
    beyond = bool((values > high).any())
    return pl.DataFrame(
        {
            "bin_start": edges[:-1],
            "bin_end": edges[1:],
            "customers": counts.astype(np.int64),
            "is_top": [beyond and i == bins - 1 for i in range(bins)],
        },
        schema=schema,
    )


def p_alive_points(
    customer_value: pl.DataFrame,
    profitability: pl.DataFrame,
    segments: pl.DataFrame,
    points: int = SCATTER_POINTS,
) -> tuple[pl.DataFrame, int]:
    """(customer_id, p_alive, profit, action) of at most `points` scored customers — every
    k-th by customer_id when there are more — and how many were scored."""
    scored = (
        customer_value.filter(pl.col("p_alive").is_not_null())
        .select("customer_id", "p_alive")
        .join(
            profitability.select("customer_id", pl.col("profit").cast(pl.Float64)),
            on="customer_id",
        )
        .join(segments.select("customer_id", "action"), on="customer_id", how="left")
        .sort("customer_id")
    )
    if scored.height <= points:
        return scored, scored.height
    step = math.ceil(scored.height / points)
    return scored.gather_every(step), scored.height


def top_value_at_risk(
    customer_value: pl.DataFrame,
    profitability: pl.DataFrame,
    segments: pl.DataFrame,
    n: int = TOP_AT_RISK,
) -> pl.DataFrame:
    """The `n` customers with the largest value at risk (ties: customer_id), with p_alive,
    clv, profit and action."""
    return (
        customer_value.filter(pl.col("value_at_risk").is_not_null())
        .select("customer_id", "value_at_risk", "p_alive", "clv")
        .join(profitability.select("customer_id", "profit"), on="customer_id", how="left")
        .join(segments.select("customer_id", "action"), on="customer_id", how="left")
        .sort(["value_at_risk", "customer_id"], descending=[True, False])
        .head(n)
    )


def drivers(quality_drivers: pl.DataFrame) -> pl.DataFrame:
    """The importance–performance rows (catalog order, as published)."""
    return quality_drivers.select(
        "dimension", "importance", "performance", "mean_gap", "n_responses", "quadrant"
    )


def service_levels_now(service_levels: pl.DataFrame) -> pl.DataFrame:
    """Per channel (as published: phone … web, then all) its breach rate and queue times."""
    return service_levels.select(
        "channel",
        "n_interactions",
        "sla_breach_rate",
        "p50_queue_seconds",
        "p90_queue_seconds",
        "fcr_rate",
    )


def experience_trend(service_trends: pl.DataFrame) -> pl.DataFrame:
    """Per snapshot: the snapshot-wide NPS, CSAT and CES (carried on the channel = 'all' row)."""
    return (
        service_trends.filter(pl.col("channel") == "all")
        .select("as_of_date", "nps", "csat_mean", "ces_mean")
        .sort("as_of_date")
    )
