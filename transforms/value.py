"""Customer value (SPEC §6): the purchase summary a BG/NBD and Gamma-Gamma fit needs, and the
`customer_value` table assembled from it and the models' per-customer scores.

Pure Polars. The fits and the scores (hypergeometric functions, an optimiser) are numerical
work outside `transforms/` (servio/value_model.py); they come in here as a frame of scores.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from ..schemas.snapshot_tables import customer_value_table, expected_purchases_column
from ..schemas.table import MONEY
from .profitability import customer_money

# A float amount is read as its nearest 12-decimal value, then rounded half-even to the cent:
# so 2.675 (binary 2.67499999…) is the 2.675 a reader sees, and rounds to 2.68.
FLOAT_MONEY_DECIMALS = 12
DAYS_PER_DISCOUNT_YEAR = 730  # SPEC §6: (1 + rate)^(h ÷ 730), the horizon's midpoint in years


def purchase_summary(
    interactions: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: dt.date,
    *,
    window_days: int,
    money: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per customer of the snapshot (an interaction or a response in the window),
    sorted by customer_id, with what the value models need:

    - `margin`: the customer's margin in the snapshot, exactly as `customer_profitability`
      has it (it is computed by the same function);
    - over purchases (interactions with revenue > 0), a purchase day being a UTC date with at
      least one: `x` = purchase days − 1, `t_x` = days from the first to the last purchase day,
      `T` = days from the first purchase day to D, `repeat_revenue` = the purchase revenue of
      every purchase day but the first, and `avg_repeat_spend` = repeat_revenue ÷ x, a float
      (SPEC §6 rounds only clv and value_at_risk to cents; null when x = 0). All null for a customer without a purchase.

    Each row depends on that customer's rows only: a snapshot can compute it bucket by bucket.
    `money`: `customer_money` of the same inputs, when the caller has computed it already
    (a snapshot's bucket does, for customer_profitability); computed here otherwise.
    """
    window_start = as_of - dt.timedelta(days=window_days)
    day = pl.col("interaction_date")
    purchase_days = (
        interactions.filter(day > window_start, day <= as_of, pl.col("revenue") > 0)
        .group_by("customer_id", "interaction_date")
        .agg(pl.col("revenue").sum())
    )
    first_day = day.min()
    purchases = purchase_days.group_by("customer_id").agg(
        x=(pl.len() - 1).cast(pl.Int64),
        t_x=(day.max() - first_day).dt.total_days().cast(pl.Int64),
        T=(pl.lit(as_of, pl.Date) - first_day).dt.total_days().cast(pl.Int64),
        repeat_revenue=pl.col("revenue").sum() - pl.col("revenue").sort_by(day).first(),
    )
    if money is None:
        money = customer_money(interactions, survey_responses, as_of, window_days=window_days)
    customers = money.select("customer_id", "margin")
    average = pl.col("repeat_revenue").cast(pl.Float64) / pl.col("x")
    return (
        customers.join(purchases, on="customer_id", how="left")
        .with_columns(
            avg_repeat_spend=pl.when(pl.col("x") > 0).then(average),
            repeat_revenue=pl.col("repeat_revenue").cast(MONEY),
            margin=pl.col("margin").cast(MONEY),
        )
        .sort("customer_id")
    )


def customer_value(
    summary: pl.LazyFrame,
    scores: pl.LazyFrame,
    as_of: dt.date,
    *,
    horizon_days: int,
    gross_margin_rate: float,
    annual_discount_rate: float,
) -> pl.LazyFrame:
    """The `customer_value` table: one row per `purchase_summary` row, sorted by customer_id.

    `scores` has customer_id, p_alive, expected_purchases (in (D, D + horizon_days]) and
    expected_spend (floats) for the customers the models scored; a customer missing from it,
    or with null scores (no purchase, or a model that did not converge), gets null value
    columns. clv = expected_purchases × expected_spend × gross_margin_rate ÷
    (1 + annual_discount_rate)^(horizon_days ÷ 730); value_at_risk = margin × (1 − p_alive);
    both are money in half-even cents; expected_spend stays the model's float.
    """
    discount = (1 + annual_discount_rate) ** (horizon_days / DAYS_PER_DISCOUNT_YEAR)
    schema = customer_value_table(horizon_days).schema
    expected = pl.col("expected_purchases")
    clv = expected * pl.col("expected_spend") * gross_margin_rate / discount
    at_risk = pl.col("margin").cast(pl.Float64) * (1 - pl.col("p_alive"))
    return (
        summary.join(
            scores.select("customer_id", "p_alive", "expected_purchases", "expected_spend"),
            on="customer_id",
            how="left",
            validate="1:1",
        )
        .with_columns(
            as_of_date=pl.lit(as_of, pl.Date),
            clv=money(clv),
            value_at_risk=money(at_risk),
            **{expected_purchases_column(horizon_days): expected},
        )
        .select(pl.col(name).cast(dtype) for name, dtype in schema.items())
        .sort("customer_id")
    )


def money(amount: pl.Expr) -> pl.Expr:
    """A float amount in half-even cents (NaN and null give null)."""
    finite = pl.when(amount.is_finite()).then(amount)
    return finite.cast(pl.Decimal(38, FLOAT_MONEY_DECIMALS)).round(2).cast(MONEY)
