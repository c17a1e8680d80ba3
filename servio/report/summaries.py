"""The report's summaries: snapshot frames in, one small frame per chart out (pure Polars).

Nothing here reads the lake (`data.py` does); a summary has as many rows as its chart has
marks, never one per customer, so the page stays small at any number of customers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from servio.transforms.segments import ACTIONS

TOP_SHARE = 0.2  # "share of profit from the top 20 % of customers"
WHALE_POINTS = 400  # the whale curve is thinned to about this many points
NO_REVENUE = "no_revenue"  # kaplan_quadrant is null for customers without revenue
RATED_LEVELS = ("below", "met", "exceeded")
# Matrix axes and actions in the order of the SPEC's action table.
PROFIT_SEGMENTS = tuple(dict.fromkeys(s for segments, _, _ in ACTIONS for s in segments))
SERVICE_LEVELS = tuple(dict.fromkeys(level for _, levels, _ in ACTIONS for level in levels))
ACTION_ORDER = tuple(action for _, _, action in ACTIONS)
QUADRANTS = {  # quadrant: (cost-to-serve ratio, margin ratio), relative to the snapshot medians
    "passive": ("low", "high"),
    "carriage_trade": ("high", "high"),
    "bargain_basement": ("low", "low"),
    "aggressive": ("high", "low"),
}


@dataclass(frozen=True)
class Headline:
    """The four numbers at the top of the report, for one snapshot."""

    customers: int
    total_profit: Decimal
    top_share: float | None  # share of total profit earned by the top 20 % (None: total ≤ 0)
    below: int  # customers whose service fell below expectations
    rated: int  # customers with a known service level


def headline(profitability: pl.DataFrame, segments: pl.DataFrame) -> Headline:
    total = profitability["profit"].sum() if profitability.height else Decimal(0)
    levels = segments["service_level"]
    return Headline(
        customers=profitability.height,
        total_profit=Decimal(total),
        top_share=top_profit_share(profitability),
        below=int((levels == "below").sum()),
        rated=int(levels.is_in(RATED_LEVELS).sum()),
    )


def top_profit_share(profitability: pl.DataFrame, share: float = TOP_SHARE) -> float | None:
    """Share of total profit earned by the top `share` of customers by profit_rank."""
    if profitability.is_empty():
        return None
    value = profitability.select(top_share_expr(share)).item()
    return None if value is None else float(value)


def top_share_expr(share: float = TOP_SHARE) -> pl.Expr:
    """Aggregation: profit of the ceil(share × n) best-ranked customers ÷ total (null if ≤ 0)."""
    profit = pl.col("profit").cast(pl.Float64)
    top = profit.filter(pl.col("profit_rank") <= (pl.len() * share).ceil()).sum()
    return pl.when(profit.sum() > 0).then(top / profit.sum()).alias("top_share")


def whale_points(profitability: pl.DataFrame, points: int = WHALE_POINTS) -> pl.DataFrame:
    """(rank_share, cumulative_profit_share), thinned to about `points` rows, peak kept."""
    n = profitability.height
    curve = (
        profitability.filter(pl.col("cumulative_profit_share").is_not_null())
        .sort("profit_rank")
        .select(
            (pl.col("profit_rank") / n).alias("rank_share"),
            "cumulative_profit_share",
            "profit_rank",
        )
    )
    origin = pl.DataFrame(
        {"rank_share": [0.0], "cumulative_profit_share": [0.0], "profit_rank": [0]},
        schema=curve.schema,
    )
    if curve.height <= points:
        return pl.concat([origin, curve]).drop("profit_rank")
    step = math.ceil(curve.height / points)
    peak = curve["cumulative_profit_share"].arg_max()
    keep = (
        (pl.int_range(pl.len()) % step == 0)
        | (pl.int_range(pl.len()) == curve.height - 1)
        | (pl.int_range(pl.len()) == peak)
    )
    return pl.concat([origin, curve.filter(keep)]).drop("profit_rank")


def profit_by_segment(profitability: pl.DataFrame) -> pl.DataFrame:
    return complete(
        profitability.group_by("profit_segment").agg(
            pl.len().alias("customers"), money_sum("profit")
        ),
        "profit_segment",
        PROFIT_SEGMENTS,
    )


def profit_by_quadrant(profitability: pl.DataFrame) -> pl.DataFrame:
    summary = (
        profitability.with_columns(pl.col("kaplan_quadrant").fill_null(NO_REVENUE))
        .group_by("kaplan_quadrant")
        .agg(pl.len().alias("customers"), money_sum("profit"), money_sum("revenue"))
    )
    return complete(summary, "kaplan_quadrant", (*QUADRANTS, NO_REVENUE))


def gap_by_dimension(
    quality: pl.DataFrame, dimensions: Sequence[str], sides: Sequence[str]
) -> pl.DataFrame:
    """Mean and spread of the customers' gap per dimension (on its `side`), worst first."""
    long = quality.select([pl.col(f"{d}_gap").alias(d) for d in dimensions]).unpivot(
        variable_name="dimension", value_name="gap"
    )
    side_of = pl.DataFrame({"dimension": list(dimensions), "side": list(sides)})
    return spread(long, ["dimension"]).join(side_of, on="dimension").sort("mean", "dimension")


def gap_by_side(quality: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    """Spread of technical and functional gap per profit segment, plus all customers."""
    joined = quality.select("customer_id", "technical_gap", "functional_gap").join(
        segments.select("customer_id", "profit_segment"), on="customer_id", how="left"
    )
    long = pl.concat(
        [joined, joined.with_columns(pl.lit("all customers").alias("profit_segment"))]
    ).unpivot(
        on=["technical_gap", "functional_gap"],
        index="profit_segment",
        variable_name="side",
        value_name="gap",
    )
    long = long.with_columns(pl.col("side").str.strip_suffix("_gap"))
    return spread(long, ["profit_segment", "side"]).sort("profit_segment", "side")


def action_matrix(profitability: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    """Every profit_segment × service_level cell with its action, customers and profit."""
    cells = (
        segments.select("customer_id", "profit_segment", "service_level")
        .join(profitability.select("customer_id", "profit"), on="customer_id", how="left")
        .group_by("profit_segment", "service_level")
        .agg(pl.len().alias("customers"), money_sum("profit"))
    )
    grid = pl.DataFrame(
        [
            {"profit_segment": s, "service_level": level, "action": action}
            for segment_group, levels, action in ACTIONS
            for s in segment_group
            for level in levels
        ]
    )
    return (
        grid.join(cells, on=["profit_segment", "service_level"], how="left")
        .with_columns(pl.col("customers").fill_null(0), pl.col("profit").fill_null(0.0))
        .sort("profit_segment", "service_level")
    )


def rfm_segments(profitability: pl.DataFrame) -> pl.DataFrame:
    return (
        profitability.group_by("rfm_segment")
        .agg(pl.len().alias("customers"), money_sum("monetary"))
        .sort(["monetary", "rfm_segment"], descending=[True, False])
    )


def quarantine_reasons(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantined rows (or files) per reason code and source; codes are ';'-separated."""
    return (
        quarantine.select(
            "source",
            pl.col("reason_codes").fill_null("unknown").str.split(";").alias("reason_code"),
        )
        .explode("reason_code")
        .with_columns(pl.col("reason_code").str.strip_chars())
        .filter(pl.col("reason_code") != "")
        .group_by("reason_code", "source")
        .agg(pl.len().alias("rows"))
        .sort(["rows", "reason_code", "source"], descending=[True, False, False])
    )


def ledger_by_source(ledger: pl.DataFrame) -> pl.DataFrame:
    """Files per status and rows per source, then a total row (source = 'all')."""
    by_source = (
        ledger.group_by("source")
        .agg(
            pl.len().alias("files"),
            (pl.col("status") == "ingested").sum().alias("ingested"),
            (pl.col("status") == "rejected").sum().alias("rejected"),
            (pl.col("status") == "duplicate").sum().alias("duplicate"),
            pl.col("rows_read").sum(),
            pl.col("rows_valid").sum(),
            pl.col("rows_quarantined").sum(),
        )
        .with_columns(pl.exclude("source").cast(pl.Int64))
        .sort("source")
    )
    total = by_source.select(pl.lit("all").alias("source"), pl.exclude("source").sum())
    return pl.concat([by_source, total])


def spread(long: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Customers, mean and percentiles of `gap` per group (nulls ignored)."""
    gap = pl.col("gap")
    return (
        long.drop_nulls("gap")
        .group_by(by)
        .agg(
            pl.len().alias("customers"),
            gap.mean().alias("mean"),
            gap.quantile(0.10, "linear").alias("p10"),
            gap.quantile(0.25, "linear").alias("q1"),
            gap.median().alias("median"),
            gap.quantile(0.75, "linear").alias("q3"),
            gap.quantile(0.90, "linear").alias("p90"),
        )
    )


def money_sum(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64).sum().alias(column)


def complete(summary: pl.DataFrame, key: str, order: Sequence[str]) -> pl.DataFrame:
    """`summary` with a zero row for each expected key it lacks, in `order` (others last)."""
    rank = {name: i for i, name in enumerate(order)}
    missing = [name for name in order if name not in set(summary[key].to_list())]
    filler = pl.DataFrame({key: missing}).with_columns(
        pl.lit(0, dtype).alias(name) for name, dtype in summary.schema.items() if name != key
    )
    merged = pl.concat([summary, filler.select(summary.columns).cast(summary.schema)])
    return merged.sort(
        pl.col(key).replace_strict(rank, default=len(rank), return_dtype=pl.Int64), key
    )
