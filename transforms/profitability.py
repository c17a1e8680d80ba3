"""Customer profitability (SPEC §4.2): profit after cost to serve, whale curve, Kaplan quadrant, RFM.

Also home of `cost_to_serve`, the activity-based cost of one contact that ingest stores on
every curated interaction (SPEC §4); the snapshot only sums those stored cents.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import polars as pl

from ..schemas.channels import ChannelRate
from ..schemas.snapshot_tables import CUSTOMER_PROFITABILITY
from ..schemas.table import MONEY

# handle_seconds is taken to the microsecond before any money is computed from it.
HANDLE_DECIMALS = 6
# More decimals in a configured rate would not fit the 38-digit working decimal.
MAX_RATE_DECIMALS = 12
# Ratios (whale curve, Kaplan) are exact quotients rounded to this many decimals, then to float64.
RATIO_DECIMALS = 20

# SPEC §4.2 RFM table as (R from, R to, F from, F to, segment). The rows cover each of the
# 25 (R, F) pairs exactly once, so no pair falls through and no pair has two segments.
RFM_SEGMENTS: tuple[tuple[int, int, int, int, str], ...] = (
    (1, 2, 1, 2, "hibernating"),
    (1, 2, 3, 4, "at_risk"),
    (1, 2, 5, 5, "cant_lose"),
    (3, 3, 1, 2, "about_to_sleep"),
    (3, 3, 3, 3, "need_attention"),
    (4, 5, 2, 3, "potential_loyalist"),
    (5, 5, 4, 5, "champions"),
    (3, 4, 4, 5, "loyal"),
    (4, 4, 1, 1, "promising"),
    (5, 5, 1, 1, "new"),
)
NO_PURCHASE = "no_purchase"


def cost_to_serve(
    channel: pl.Expr, handle_seconds: pl.Expr, rates: Mapping[str, ChannelRate]
) -> pl.Expr:
    """per_contact + per_minute × handle_seconds / 60 of the contact's channel, in cents (half-even).

    Exact to the cent, with no binary floating point in the money:
    - a rate is the decimal it was written as in the configuration (`Decimal(str(rate))`, the
      shortest text that reads back as the same float, so 0.9 is 0.9, not 0.900000000000000022);
    - handle_seconds (Float64) is rounded to the nearest microsecond. That recovers the exact
      decimal of any export value with at most 6 decimals (a float64 of at most 86 400 s is
      within 1e-11 s of it); finer values are rounded, so 5.4 s is 5.400000 s, not the
      binary 5.40000000000000035…;
    - the sum is computed in Decimal(38, s), s = rate decimals + 6 + 2. per_minute × handle is
      exact at s − 2 decimals, and the two extra decimals keep the division by 60 on the same
      side of every half cent as the exact quotient (a quotient that is not exactly on a half
      cent is at least 10^-(s-2) / 60 away from it), so `round(2)`, which is half-even on
      Decimal, gives the exactly rounded cents.
    A channel without a rate gives null.
    """
    per_contact = {name: _as_decimal(rate.per_contact) for name, rate in rates.items()}
    per_minute = {name: _as_decimal(rate.per_minute) for name, rate in rates.items()}
    rate_decimals = max((2, *(_decimals(v) for v in (*per_contact.values(), *per_minute.values()))))
    if rate_decimals > MAX_RATE_DECIMALS:
        worst = max(rates, key=lambda c: max(_decimals(per_contact[c]), _decimals(per_minute[c])))
        raise ValueError(
            f"cost_to_serve.{worst}: rates may have at most {MAX_RATE_DECIMALS} decimals, "
            f"got {rates[worst].per_contact} / {rates[worst].per_minute}"
        )
    working = pl.Decimal(38, rate_decimals + HANDLE_DECIMALS + 2)
    handle = handle_seconds.cast(pl.Decimal(38, HANDLE_DECIMALS)).cast(working)
    contact_cost = channel.replace_strict(per_contact, default=None, return_dtype=working)
    minute_cost = channel.replace_strict(per_minute, default=None, return_dtype=working)
    return (contact_cost + minute_cost * handle / 60).round(2).cast(MONEY)


def customer_profitability(
    interactions: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: dt.date,
    *,
    window_days: int,
) -> pl.LazyFrame:
    """One row per customer with an interaction or a response in (as_of − window_days, as_of].

    Money is summed exactly from the interactions' stored cents; a customer with responses
    only has zero money. The RFM columns describe purchases (interactions with revenue > 0)
    and are all null, monetary included, for a customer without one (`no_purchase`).
    """
    money = customer_money(interactions, survey_responses, as_of, window_days=window_days)
    return rank_customers(money, as_of)


def customer_money(
    interactions: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: dt.date,
    *,
    window_days: int,
) -> pl.LazyFrame:
    """The per-customer half of `customer_profitability`: money, profit, recency, frequency
    and monetary. Each row depends only on that customer's own rows, so a snapshot can compute
    it bucket by bucket (all of a customer's rows in one bucket) and concatenate the buckets."""
    window_start = as_of - dt.timedelta(days=window_days)

    def in_window(day: str) -> pl.Expr:
        return (pl.col(day) > window_start) & (pl.col(day) <= as_of)

    contacts = interactions.filter(in_window("interaction_date"))
    respondents = (
        survey_responses.filter(in_window("submitted_date")).select("customer_id").unique()
    )
    money = contacts.group_by("customer_id").agg(
        pl.col("revenue").sum(), pl.col("margin").sum(), pl.col("cost_to_serve").sum()
    )
    no_money = Decimal("0.00")
    return (
        # customers with a contact, and respondents without one (zero money)
        money.join(respondents, on="customer_id", how="full", coalesce=True)
        .with_columns(pl.col("revenue", "margin", "cost_to_serve").fill_null(no_money))
        .with_columns(profit=pl.col("margin") - pl.col("cost_to_serve"))
        .join(_purchases(contacts, as_of), on="customer_id", how="left")
    )


def rank_customers(customers: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    """The whole-population half of `customer_profitability`, over every customer's
    `customer_money` row: whale-curve ranks and shares, Kaplan quadrants (medians over all
    buying customers) and RFM quintile scores (ranks over all purchasers). The result does not
    depend on the order of the input rows."""
    return (
        # The output order, and the order in which equal profits and equal RFM values are
        # ranked. The only sort of the whole rows: the whale curve ranks a column.
        customers.sort("customer_id")
        .pipe(_whale_curve)
        .pipe(_kaplan_quadrant)
        .with_columns(
            # Most days since the last purchase is worst.
            r_score=_score(worst_first=-pl.col("recency_days")),
            f_score=_score(worst_first=pl.col("frequency")),
            m_score=_score(worst_first=pl.col("monetary")),
        )
        .with_columns(rfm_segment=_rfm_segment(pl.col("r_score"), pl.col("f_score")))
        .with_columns(as_of_date=pl.lit(as_of, dtype=pl.Date))
        .select(pl.col(name).cast(dtype) for name, dtype in CUSTOMER_PROFITABILITY.schema.items())
    )


def _whale_curve(customers: pl.LazyFrame) -> pl.LazyFrame:
    """profit_rank (1 = most profit; equal profits in row order), cumulative_profit_share and
    profit_segment. The cumulative profit is summed in rank order, then read back per row."""
    profit, rank = pl.col("profit"), pl.col("profit_rank")
    running = profit.sort_by(rank).cum_sum().gather(rank - 1)
    total = profit.sum()
    positive_total = profit.filter(profit > 0).sum()
    # The core is the shortest top of the ranking that reaches 80 % of the positive profit:
    # a customer is in it when the customers ranked above it have not reached 80 % yet.
    # Only positive profits climb the curve, so only they can be core. Compared in whole
    # cents as 5 × above < 4 × positive total: a Decimal product with 0.8 rounds to the cent.
    above = running - profit
    is_core = (profit > 0) & (5 * above < 4 * positive_total)
    return customers.with_columns(
        profit_rank=profit.rank("ordinal", descending=True).cast(pl.Int64)
    ).with_columns(
        cumulative_profit_share=_ratio(running, pl.when(total > 0).then(total)),
        profit_segment=pl.when(is_core)
        .then(pl.lit("core"))
        .when(profit > 0)
        .then(pl.lit("profitable"))
        .otherwise(pl.lit("unprofitable")),
    )


def _kaplan_quadrant(customers: pl.LazyFrame) -> pl.LazyFrame:
    """Cost-to-serve and margin ratios split at the buying customers' medians (ties are low)."""
    revenue = pl.when(pl.col("revenue") > 0).then(pl.col("revenue"))
    high_cost, high_margin = pl.col("high_cost"), pl.col("high_margin")
    return (
        customers.with_columns(
            cost_ratio=_ratio(pl.col("cost_to_serve"), revenue),
            margin_ratio=_ratio(pl.col("margin"), revenue),
        )
        .with_columns(
            high_cost=_above_median(pl.col("cost_ratio")),
            high_margin=_above_median(pl.col("margin_ratio")),
        )
        .with_columns(
            kaplan_quadrant=pl.when(high_margin & ~high_cost)
            .then(pl.lit("passive"))
            .when(high_margin & high_cost)
            .then(pl.lit("carriage_trade"))
            .when(~high_margin & ~high_cost)
            .then(pl.lit("bargain_basement"))
            .when(~high_margin & high_cost)
            .then(pl.lit("aggressive"))
        )
    )


def _above_median(ratio: pl.Expr) -> pl.Expr:
    # "midpoint" is the mean of the two middle values; nulls (no revenue) are not counted.
    return ratio > ratio.quantile(0.5, "midpoint")


def _purchases(contacts: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    """Recency, frequency and monetary of the purchases, one row per customer with a purchase."""
    return (
        contacts.filter(pl.col("revenue") > 0)
        .group_by("customer_id")
        .agg(
            recency_days=(pl.lit(as_of, dtype=pl.Date) - pl.col("interaction_date").max())
            .dt.total_days()
            .cast(pl.Int64),
            frequency=pl.col("interaction_date").n_unique().cast(pl.Int64),
            monetary=pl.col("revenue").sum(),
        )
    )


def _score(worst_first: pl.Expr) -> pl.Expr:
    """ceil(5 × rank ÷ n), ranking the n purchasers 1..n worst to best; null without a purchase.

    Equal values are ranked in row order ("ordinal"), which is by customer_id.
    """
    rank = worst_first.rank("ordinal").cast(pl.Int64)
    n = worst_first.count().cast(pl.Int64)
    return ((5 * rank + n - 1) // n).cast(pl.Int32)


def _rfm_segment(r_score: pl.Expr, f_score: pl.Expr) -> pl.Expr:
    return pl.coalesce(
        pl.when(r_score.is_null()).then(pl.lit(NO_PURCHASE)),
        *(
            pl.when(r_score.is_between(r_from, r_to) & f_score.is_between(f_from, f_to)).then(
                pl.lit(segment)
            )
            for r_from, r_to, f_from, f_to, segment in RFM_SEGMENTS
        ),
    )


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator ÷ denominator as float64: the exact quotient to 20 decimals, then the nearest float.

    A null denominator gives null. Not a float division: Polars divides by a scalar (the snapshot total) as a product with
    its reciprocal, which ends the whale curve at 0.9999999999999999; and equal fractions of
    different cents (3.30 ÷ 7.70, 0.30 ÷ 0.70) must give equal floats, or a tie at a Kaplan
    median would not be seen as one.
    """
    exact = numerator.cast(pl.Decimal(38, RATIO_DECIMALS)) / denominator
    return exact.cast(pl.Float64)


def _as_decimal(rate: float) -> Decimal:
    return Decimal(str(rate))


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # a configured rate is finite
    return max(0, -exponent)
