"""Service levels per channel (SPEC §6 `service_levels`): queue targets, first-contact
resolution, and the snapshot's overall NPS, CSAT and CES on every row.

Pure Polars. `service_contacts` is per customer (a bucket of customers can compute it);
`service_levels` aggregates every customer's contacts at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from schemas.tables import CHANNELS, SERVICE_LEVELS
from transforms.quality import contact_outcomes

ALL_CHANNELS = "all"


def service_contacts(
    interactions: pl.LazyFrame, as_of: dt.date, *, window_days: int
) -> pl.LazyFrame:
    """The window's contacts, one row each: channel, queue_seconds and
    `is_first_contact_resolution` exactly as `customer_quality`'s fcr_rate counts it (the same
    function). A contact's flag depends on its customer's other window contacts only, so a
    bucket of customers gives its contacts' rows; sorted by interaction_id."""
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
        .select("interaction_id", "channel", "queue_seconds", "is_first_contact_resolution")
        .sort("interaction_id")
    )


def service_levels(
    contacts: pl.LazyFrame,
    survey_responses: pl.LazyFrame,
    as_of: dt.date,
    *,
    window_days: int,
    sla_targets: Mapping[str, float | None],
) -> pl.LazyFrame:
    """One row per channel with a queue target (in `CHANNELS` order, even without a contact in
    the window), then `all` over every channel's contacts.

    `sla_breach_rate` is the share of the contacts with a known queue time whose queue
    exceeds their channel's target (null queues are not counted; `all` counts the channels
    with a target only); null when no contact has a known queue. p50/p90 interpolate linearly
    between the closest ranks of the known queue times. `nps` = 100 × (promoters −
    detractors) ÷ responses with a score, `csat_mean` and `ces_mean` over the window's
    responses, the same on every row.
    """
    unknown = sorted(set(sla_targets) - set(CHANNELS))
    if unknown:
        raise ValueError(f"sla: unknown channel {unknown[0]!r}")
    targets = {c: float(t) for c in CHANNELS if (t := sla_targets.get(c)) is not None}
    queue = pl.col("queue_seconds")
    judged = contacts.with_columns(
        is_breach=queue
        > pl.col("channel").replace_strict(targets, default=None, return_dtype=pl.Float64)
    )
    figures = (
        pl.len().cast(pl.Int64).alias("n_interactions"),
        pl.col("is_breach").mean().alias("sla_breach_rate"),
        queue.quantile(0.5, "linear").alias("p50_queue_seconds"),
        queue.quantile(0.9, "linear").alias("p90_queue_seconds"),
        pl.col("is_first_contact_resolution").mean().alias("fcr_rate"),
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
