"""Service quality gaps (SPEC §4.1) per survey response and the `customer_quality` snapshot (§4.2).

Pure Polars: LazyFrame in, LazyFrame out. The item catalog and the dimension weights are
arguments (they come from the configuration), never literals.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import polars as pl

from ..schemas.catalog import QUALITY_SIDES, Item, ItemCatalog
from ..schemas.snapshot_tables import customer_quality_table

REPEAT_HORIZON = datetime.timedelta(days=7)
# A service gap is a weighted mean of whole-number answers: one that is exactly ±band can come
# out of float arithmetic as 0.5000000000000001 (weights 0.2 are not exact in binary). Such
# rounding noise must not turn `met` into `exceeded` or `below`.
BAND_TOLERANCE = 1e-9


def survey_response_scores(
    responses: pl.LazyFrame, catalog: ItemCatalog, weights: Mapping[str, float]
) -> pl.LazyFrame:
    """Add the SPEC §4.1 scores to standardised survey responses. One row per input row.

    Per dimension d: `<d>_expectation` and `<d>_perception` (means of the answered items) and
    `<d>_gap` (mean of the item gaps perception − expectation, over items with both answered).
    `technical_gap` / `functional_gap` average the item gaps of every item on that side (a mean
    over items, not over dimension means). `service_gap` weights the dimension gaps over the
    dimensions that have one: Σ w_d·gap_d ÷ Σ w_d; it is null when no dimension has a gap, or
    when every dimension that has one weighs 0 (there is nothing to weight). Perception-only
    responses (SERVPERF) keep their perception scores and get null gaps.
    """
    missing = [d for d in catalog.dimensions if d not in weights]
    if missing:
        raise ValueError(f"weights: no weight for dimension(s) {', '.join(missing)}")

    def item_gap(item: Item) -> pl.Expr:
        # Null unless both are answered: a null propagates through the subtraction.
        return pl.col(item.perception_column) - pl.col(item.expectation_column)

    per_dimension: list[pl.Expr] = []
    for dimension in catalog.dimensions:
        items = catalog.items_of(dimension)
        per_dimension += [
            _mean_of_answered([pl.col(i.expectation_column) for i in items]).alias(
                f"{dimension}_expectation"
            ),
            _mean_of_answered([pl.col(i.perception_column) for i in items]).alias(
                f"{dimension}_perception"
            ),
            _mean_of_answered([item_gap(i) for i in items]).alias(f"{dimension}_gap"),
        ]
    per_side = [
        _mean_of_answered([item_gap(i) for i in catalog.items_on_side(side)]).alias(f"{side}_gap")
        for side in QUALITY_SIDES
    ]

    weighted_sum = pl.sum_horizontal(pl.col(f"{d}_gap") * weights[d] for d in catalog.dimensions)
    answered_weight = pl.sum_horizontal(
        pl.when(pl.col(f"{d}_gap").is_not_null()).then(pl.lit(weights[d], pl.Float64))
        for d in catalog.dimensions
    )
    service_gap = (
        pl.when(answered_weight > 0).then(weighted_sum / answered_weight).alias("service_gap")
    )

    return (
        responses.with_columns(per_dimension)
        .with_columns(*per_side, service_gap)
        .with_columns(nps_group(pl.col("nps")).alias("nps_group"))
    )


def nps_group(nps: pl.Expr) -> pl.Expr:
    """promoter 9–10, passive 7–8, detractor 0–6; null when there is no score."""
    return (
        pl.when(nps >= 9)
        .then(pl.lit("promoter"))
        .when(nps >= 7)
        .then(pl.lit("passive"))
        .when(nps.is_not_null())
        .then(pl.lit("detractor"))
    )


def customer_quality(
    interactions: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: datetime.date,
    *,
    window_days: int,
    band: float,
    catalog: ItemCatalog,
) -> pl.LazyFrame:
    """The `customer_quality` snapshot as of D. One row per customer_id with at least one
    interaction or survey response in the window (D − window_days, D], sorted by customer_id.

    The window is taken on the UTC dates `interaction_date` and `submitted_date`; nothing
    outside it is read, so a contact after D never makes an earlier one a repeat.

    Survey side: gaps are the means, over the window's responses, of the per-response gaps
    already on `survey_responses` (nulls ignored); `service_level` compares the mean
    `service_gap` with ±band (exactly ±band is `met`, give or take `BAND_TOLERANCE` of float
    rounding; no gap is `unknown`). `nps_last` is the NPS of the latest response that has one,
    latest by (submitted_at, response_id). `n_responses` is 0 for a customer with interactions
    only.

    Interaction side: a contact at t is *followed within 7 days* by another contact of the
    same customer that starts in (t, t + 7 days], taken literally: a contact with the same
    `started_at` and a larger `interaction_id` comes later in the (started_at,
    interaction_id) order but does not start after t, so it is neither a repeat nor a
    same-reason recontact. `fcr_rate` is the share of the customer's window contacts that are
    resolved and not followed within 7 days by a contact with the same reason (a null reason
    matches nothing); `repeat_contact_rate_7d` is the share followed within 7 days by any
    contact. Both rates, and the averages, are null for a customer without interactions;
    `n_interactions` is then 0.
    """
    window_end = as_of
    window_start = as_of - datetime.timedelta(days=window_days)  # excluded
    schema = customer_quality_table(catalog).schema

    window_contacts = interactions.filter(
        pl.col("interaction_date") > window_start, pl.col("interaction_date") <= window_end
    )
    contacts = (
        contact_outcomes(
            window_contacts.select(
                "customer_id",
                "interaction_id",
                "started_at",
                "reason",
                "is_resolved",
                "queue_seconds",
                "handle_seconds",
            )
        )
        .group_by("customer_id")
        .agg(
            n_interactions=pl.len().cast(pl.Int64),
            fcr_rate=pl.col("is_first_contact_resolution").mean(),
            repeat_contact_rate_7d=pl.col("is_repeated_7d").mean(),
            avg_queue_seconds=pl.col("queue_seconds").mean(),
            avg_handle_seconds=pl.col("handle_seconds").mean(),
        )
    )

    window_responses = survey_responses.filter(
        pl.col("submitted_date") > window_start, pl.col("submitted_date") <= window_end
    )
    gap_columns = [f"{d}_gap" for d in catalog.dimensions]
    gap_columns += ["technical_gap", "functional_gap", "service_gap"]
    # The means sum floats, and Polars' grouped mean adds a group's values in an order that
    # depends on how the rows arrive (chunks, sortedness). Each customer's values are
    # therefore collected in ascending order and averaged as a list, so the same responses
    # give the same bits whatever their order (file order, or customer-hash buckets).
    responses = (
        window_responses.group_by("customer_id")
        .agg(
            pl.len().cast(pl.Int64).alias("n_responses"),
            *[_in_order(column) for column in gap_columns],
            pl.col("nps")
            .sort_by("submitted_at", "response_id")
            .drop_nulls()
            .last()
            .alias("nps_last"),
            _in_order("csat").alias("csat_mean"),
            _in_order("ces").alias("ces_mean"),
        )
        .with_columns(pl.col(*gap_columns, "csat_mean", "ces_mean").list.mean())
    )

    return (
        responses.join(contacts, on="customer_id", how="full", coalesce=True)
        .with_columns(
            pl.lit(as_of, pl.Date).alias("as_of_date"),
            pl.col("n_responses", "n_interactions").fill_null(0),
            _service_level(pl.col("service_gap"), band).alias("service_level"),
            nps_group(pl.col("nps_last")).alias("nps_last_group"),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
        .sort("customer_id")
    )


def contact_outcomes(window_contacts: pl.LazyFrame) -> pl.LazyFrame:
    """Each of the window's contacts with `is_repeated_7d` (followed within 7 days by any
    contact of the same customer) and `is_first_contact_resolution` (resolved, and not followed
    within 7 days by a contact of the same customer with the same reason; a null reason matches
    nothing). The contacts must all be inside the window: nothing else is looked at. The
    definition behind `fcr_rate` and `repeat_contact_rate_7d`, wherever they are averaged
    (per customer here, per channel in `service_levels`).

    Needs customer_id, interaction_id, started_at, reason, is_resolved; keeps every column
    and adds none other. Rows come out grouped by customer, in (reason, started_at,
    interaction_id) order within a customer.
    """
    # `_followed_within` needs each customer's contacts together, in time order; any order of
    # the customers does. Sorting on a hash of customer_id first is ~1.5× faster than on the
    # string alone (10M rows), and customer_id right after it keeps two customers whose hashes
    # collide apart. Rows tied on started_at get the same answer whatever their order; the
    # last sort still ends on interaction_id so that the float sums behind the averages do not
    # depend on the input's row order.
    return (
        window_contacts.with_columns(_customer_hash=pl.col("customer_id").hash())
        .sort("_customer_hash", "customer_id", "started_at")
        .with_columns(is_repeated_7d=_followed_within(REPEAT_HORIZON, ["customer_id"]))
        .sort("_customer_hash", "customer_id", "reason", "started_at", "interaction_id")
        .with_columns(
            is_first_contact_resolution=pl.col("is_resolved")
            & ~_followed_within(REPEAT_HORIZON, ["customer_id", "reason"])
        )
        .drop("_customer_hash")
    )


def _in_order(column: str) -> pl.Expr:
    """A group's non-null values of `column`, ascending (averaged later as a list)."""
    return pl.col(column).drop_nulls().sort()


def _mean_of_answered(values: Sequence[pl.Expr]) -> pl.Expr:
    """Mean of the non-null values as Float64; null when none is answered."""
    return pl.mean_horizontal(v.cast(pl.Float64) for v in values)


def _service_level(service_gap: pl.Expr, band: float) -> pl.Expr:
    return (
        pl.when(service_gap.is_null())
        .then(pl.lit("unknown"))
        .when(service_gap > band + BAND_TOLERANCE)
        .then(pl.lit("exceeded"))
        .when(service_gap < -band - BAND_TOLERANCE)
        .then(pl.lit("below"))
        .otherwise(pl.lit("met"))
    )


def _followed_within(horizon: datetime.timedelta, keys: Sequence[str]) -> pl.Expr:
    """Is the row's contact followed by a contact with the same `keys` that starts in
    (started_at, started_at + horizon]? Needs the rows of equal `keys` next to each other,
    sorted by started_at.

    Each row looks at the next row. When that row has the same keys and a later start, the
    answer is known. When it has the same keys and the same start (a tie), the answer is the
    one of the last row of the tie run, which shares this row's start: leave it null and
    backward-fill it from there. A null key (e.g. no reason) matches nothing.
    """
    started_at = pl.col("started_at")
    next_start = started_at.shift(-1)
    same_keys = pl.all_horizontal((pl.col(k) == pl.col(k).shift(-1)).fill_null(False) for k in keys)
    return (
        pl.when(~same_keys)
        .then(pl.lit(False))
        .when(next_start > started_at)
        .then(next_start <= started_at + horizon)
        .otherwise(pl.lit(None, pl.Boolean))
        .backward_fill()
    )
