"""Service levels per channel (SPEC §6 `service_levels`): queue targets, first-contact
resolution, and the snapshot's overall NPS, CSAT and CES on every row.

Pure Polars. `service_counts` is per customer (a bucket of customers can compute it) and
small (contacts counted per channel and queue time); `service_levels` adds them up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from ..schemas.channels import CHANNELS
from ..schemas.snapshot_tables import SERVICE_LEVELS
from .quality import contact_outcomes

ALL_CHANNELS = "all"


def service_counts(interactions: pl.LazyFrame, as_of: dt.date, *, window_days: int) -> pl.LazyFrame:
    """The window's contacts counted per (channel, queue_seconds): `n_interactions` and
    `n_first_contact_resolution` — the contacts that count as resolved at first contact
    exactly as in `customer_quality`'s fcr_rate (the same function, `contact_outcomes`).

    Everything `service_levels` needs, percentiles included, and small: queue times repeat.
    A contact's flag depends on its own customer's window contacts only, so a bucket of
    customers can count its contacts; the buckets' counts are then simply concatenated.
    """
    window_start = as_of - dt.timedelta(days=window_days)
    day = pl.col("interaction_date")
    window_contacts = interactions.filter(day > window_start, day <= as_of).select(
        "customer_id",
        "interaction_id",
        "started_at",
        "reason",
        "is_resolved",
        "channel",
        "queue_seconds",
    )
    return (
        contact_outcomes(window_contacts)
        .group_by("channel", "queue_seconds")
        .agg(
            n_interactions=pl.len().cast(pl.Int64),
            n_first_contact_resolution=pl.col("is_first_contact_resolution").sum().cast(pl.Int64),
        )
        .sort("channel", "queue_seconds", nulls_last=False)
    )


def service_levels(
    counts: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: dt.date,
    *,
    window_days: int,
    sla_targets: Mapping[str, float | None],
) -> pl.LazyFrame:
    """One row per channel with a queue target (in `CHANNELS` order, even without a contact in
    the window), then `all` over every channel's contacts. `counts` are `service_counts`
    rows, whole or bucket by bucket (rows of equal channel and queue are added up).

    `sla_breach_rate` is the share of the contacts with a known queue time whose queue
    exceeds their channel's target (null queues are not counted; `all` counts the channels
    with a target only); null when no contact has a known queue. p50/p90 interpolate linearly
    between the closest ranks of the known queue times (numpy's default "linear"), computed
    exactly from the counts. `nps` = 100 × (promoters − detractors) ÷ responses with a score,
    `csat_mean` and `ces_mean` over the window's responses, the same on every row.
    """
    unknown = sorted(set(sla_targets) - set(CHANNELS))
    if unknown:
        raise ValueError(f"sla: unknown channel {unknown[0]!r}")
    targets = {c: float(t) for c in CHANNELS if (t := sla_targets.get(c)) is not None}
    queue, n = pl.col("queue_seconds"), pl.col("n_interactions")
    judged = (
        counts.group_by("channel", "queue_seconds")
        .agg(pl.col("n_interactions", "n_first_contact_resolution").sum())
        .with_columns(
            is_breach=queue
            > pl.col("channel").replace_strict(targets, default=None, return_dtype=pl.Float64)
        )
    )
    known = n.filter(pl.col("is_breach").is_not_null()).sum()
    figures = (
        n.sum().cast(pl.Int64).alias("n_interactions"),
        pl.when(known > 0)
        .then(n.filter(pl.col("is_breach")).sum() / known)
        .alias("sla_breach_rate"),
        _quantile(0.5).alias("p50_queue_seconds"),
        _quantile(0.9).alias("p90_queue_seconds"),
        pl.when(n.sum() > 0)
        .then(pl.col("n_first_contact_resolution").sum() / n.sum())
        .alias("fcr_rate"),
    )
    targeted = pl.LazyFrame({"channel": list(targets)}, schema={"channel": pl.String})
    per_channel = targeted.join(
        judged.filter(pl.col("channel").is_in(list(targets))).group_by("channel").agg(*figures),
        on="channel",
        how="left",
    )
    overall = judged.select(pl.lit(ALL_CHANNELS).alias("channel"), *figures)
    order = {name: position for position, name in enumerate([*targets, ALL_CHANNELS])}
    return (
        pl.concat([per_channel, overall], how="vertical_relaxed")
        .with_columns(pl.col("n_interactions").fill_null(0))
        .join(_survey_figures(survey_responses, as_of, window_days), how="cross")
        .with_columns(as_of_date=pl.lit(as_of, pl.Date))
        .select(pl.col(name).cast(dtype) for name, dtype in SERVICE_LEVELS.schema.items())
        .sort(pl.col("channel").replace_strict(order, return_dtype=pl.Int32))
    )


def _survey_figures(
    survey_responses: pl.LazyFrame, as_of: dt.date, window_days: int
) -> pl.LazyFrame:
    window_start = as_of - dt.timedelta(days=window_days)
    day = pl.col("submitted_date")
    nps = pl.col("nps")
    scored = nps.is_not_null().sum()
    # Counts of booleans are unsigned: subtract them as signed integers.
    promoters, detractors = ((nps >= 9).sum().cast(pl.Int64), (nps <= 6).sum().cast(pl.Int64))
    return survey_responses.filter(day > window_start, day <= as_of).select(
        nps=pl.when(scored > 0).then(100 * (promoters - detractors).cast(pl.Float64) / scored),
        csat_mean=pl.col("csat").cast(pl.Float64).mean(),
        ces_mean=pl.col("ces").cast(pl.Float64).mean(),
    )


def _quantile(q: float) -> pl.Expr:
    """The q-quantile of the known queue times, each repeated `n_interactions` times, with
    linear interpolation between the closest ranks: position h = (N − 1)·q on the sorted
    values (0-based), value = v[⌊h⌋] + (h − ⌊h⌋)·(v[⌊h⌋ + 1] − v[⌊h⌋]); null when N = 0."""
    is_known = pl.col("queue_seconds").is_not_null()
    order = pl.col("queue_seconds").filter(is_known)
    values = order.sort()
    n = pl.col("n_interactions").filter(is_known).sort_by(order)
    total = n.sum()
    position = (total - 1).cast(pl.Float64) * q
    low = position.floor()
    high = pl.min_horizontal(low + 1, total - 1)
    reached = n.cum_sum()

    def value_at(rank: pl.Expr) -> pl.Expr:
        return values.filter(reached > rank).first()

    low_value = value_at(low)
    return pl.when(total > 0).then(low_value + (position - low) * (value_at(high) - low_value))
