"""Which customers: one row per customer of a snapshot, with what to do and why (pure Polars).

The report's top-N lists and `servio export` are both cuts of `customer_list`; its columns
are the export's, documented in docs/EXPORT.md (generated from `EXPORT_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from servio.report.summaries import ACTION_ORDER, PROFIT_SEGMENTS, SERVICE_LEVELS
from servio.schemas.table import MONEY

TOP_CUSTOMERS = 10  # customers listed per action (and per cell) in the report


@dataclass(frozen=True)
class ExportColumn:
    name: str
    dtype: pl.DataType
    description: str


EXPORT_COLUMNS: tuple[ExportColumn, ...] = (
    ExportColumn("as_of_date", pl.Date(), "Snapshot date D (ISO 8601, YYYY-MM-DD)."),
    ExportColumn("customer_id", pl.String(), "The customer, as in the exports."),
    ExportColumn(
        "action",
        pl.String(),
        "retain_now, grow, ask_feedback, reduce_cost_to_serve or review_terms (customer_segments).",
    ),
    ExportColumn("profit_segment", pl.String(), "core, profitable or unprofitable."),
    ExportColumn("service_level", pl.String(), "below, met, exceeded or unknown."),
    ExportColumn("rfm_segment", pl.String(), "RFM segment; no_purchase without a purchase."),
    ExportColumn(
        "profit_rank",
        pl.Int64(),
        "1 = most profitable in the snapshot; ties by customer_id. Rows are in this order "
        "within each action.",
    ),
    ExportColumn("profit", MONEY, "margin − cost_to_serve in the window, 2 decimals."),
    ExportColumn("revenue", MONEY, "Revenue in the window, refunds included, 2 decimals."),
    ExportColumn("cost_to_serve", MONEY, "Cost of the window's contacts, 2 decimals."),
    ExportColumn(
        "service_gap",
        pl.Float64(),
        "Perception − expectation, weighted over dimensions (1–7 scale); empty without a survey.",
    ),
    ExportColumn(
        "worst_dimension",
        pl.String(),
        "The dimension with the lowest (most negative) gap; ties: alphabetical; empty "
        "without a dimension gap.",
    ),
    ExportColumn("worst_dimension_gap", pl.Float64(), "That dimension's gap."),
    ExportColumn(
        "main_channel",
        pl.String(),
        "The channel of most of the customer's contacts in the window; ties: alphabetical; "
        "empty without a contact.",
    ),
    ExportColumn("main_channel_contacts", pl.Int64(), "Contacts on that channel in the window."),
    ExportColumn("n_interactions", pl.Int64(), "Contacts in the window (customer_quality)."),
    ExportColumn("n_responses", pl.Int64(), "Survey responses in the window."),
    ExportColumn(
        "p_alive",
        pl.Float64(),
        "Probability the customer is still active at D (customer_value); empty when not "
        "computed for this snapshot, without a purchase, or when the fit did not converge.",
    ),
    ExportColumn("clv", MONEY, "Customer lifetime value over the value horizon; empty as p_alive."),
    ExportColumn("value_at_risk", MONEY, "margin × (1 − p_alive), 2 decimals; empty as p_alive."),
)
EXPORT_SCHEMA = pl.Schema({c.name: c.dtype for c in EXPORT_COLUMNS})
# The customer_value columns the list carries (null when the snapshot has none).
_VALUE_SCHEMA: dict[str, pl.DataType] = {
    "p_alive": pl.Float64(),
    "clv": MONEY,
    "value_at_risk": MONEY,
}


def main_channels(contacts: pl.LazyFrame) -> pl.LazyFrame:
    """Per customer, the channel of most of its `contacts` (ties: alphabetical) and how many
    contacts that is. `contacts` are the interactions of the snapshot's window."""
    counts = contacts.group_by("customer_id", "channel").agg(
        pl.len().cast(pl.Int64).alias("main_channel_contacts")
    )
    most = pl.col("main_channel_contacts") == pl.col("main_channel_contacts").max().over(
        "customer_id"
    )
    return (
        counts.filter(most)
        .group_by("customer_id")
        .agg(pl.col("channel").min().alias("main_channel"), pl.col("main_channel_contacts").first())
    )


def worst_dimensions(quality: pl.DataFrame, dimensions: Sequence[str]) -> pl.DataFrame:
    """Per customer with a dimension gap, the dimension with the lowest gap (ties: alphabetical)."""
    lowest = pl.min_horizontal(f"{d}_gap" for d in dimensions)
    # The first dimension, in alphabetical order, whose gap is the lowest one.
    first = pl.coalesce(
        pl.when(pl.col(f"{d}_gap") == pl.col("worst_dimension_gap")).then(pl.lit(d))
        for d in sorted(dimensions)
    )
    return (
        quality.select(
            "customer_id", lowest.alias("worst_dimension_gap"), *(f"{d}_gap" for d in dimensions)
        )
        .filter(pl.col("worst_dimension_gap").is_not_null())
        .select("customer_id", first.alias("worst_dimension"), "worst_dimension_gap")
    )


def customer_list(
    *,
    segments: pl.DataFrame,
    profitability: pl.DataFrame,
    quality: pl.DataFrame,
    channels: pl.DataFrame,
    value: pl.DataFrame | None,
    dimensions: Sequence[str],
) -> pl.DataFrame:
    """One row per customer of the snapshot (`segments`), in `EXPORT_COLUMNS`: by action (in
    the SPEC's order), then by profit_rank. `channels` is `main_channels` of the window's
    contacts; `value` the snapshot's customer_value, or None when it was not computed."""
    if value is None:
        value = pl.DataFrame(schema={"customer_id": pl.String, **_VALUE_SCHEMA})
    order = {action: i for i, action in enumerate(ACTION_ORDER)}
    rows = (
        segments.select(
            "as_of_date", "customer_id", "action", "profit_segment", "service_level", "rfm_segment"
        )
        .join(
            profitability.select(
                "customer_id", "profit_rank", "profit", "revenue", "cost_to_serve"
            ),
            on="customer_id",
            how="left",
        )
        .join(
            quality.select("customer_id", "service_gap", "n_interactions", "n_responses"),
            on="customer_id",
            how="left",
        )
        .join(worst_dimensions(quality, dimensions), on="customer_id", how="left")
        .join(channels, on="customer_id", how="left")
        .join(value.select("customer_id", *_VALUE_SCHEMA), on="customer_id", how="left")
    )
    return rows.sort(
        pl.col("action").replace_strict(order, default=len(order), return_dtype=pl.Int64),
        "profit_rank",
        "customer_id",
    ).select(pl.col(c.name).cast(c.dtype) for c in EXPORT_COLUMNS)


def for_action(customers: pl.DataFrame, action: str) -> pl.DataFrame:
    """The customers of one action (`all`: every customer), in export order."""
    return customers if action == "all" else customers.filter(pl.col("action") == action)


@dataclass(frozen=True)
class TopList:
    """The first `TOP_CUSTOMERS` customers of a group (an action, or one of its cells) by
    profit, and how many more the group has."""

    action: str
    profit_segment: str | None  # None: the whole action
    service_level: str | None
    customers: int
    top: pl.DataFrame

    @property
    def rest(self) -> int:
        return self.customers - self.top.height


def top_lists(
    customers: pl.DataFrame, n: int = TOP_CUSTOMERS
) -> list[tuple[TopList, list[TopList]]]:
    """Per action (SPEC order), its top `n` customers by profit, and per profit_segment ×
    service_level cell of that action that has customers, the cell's top `n` (cells in the
    action matrix's order)."""
    lists = []
    for action in ACTION_ORDER:
        group = for_action(customers, action)
        cells = [
            TopList(action, segment, level, cell.height, cell.head(n))
            for (segment, level), cell in group.partition_by(
                ["profit_segment", "service_level"], as_dict=True, maintain_order=True
            ).items()
        ]
        cells.sort(key=lambda c: _cell_order(c.profit_segment, c.service_level))
        lists.append((TopList(action, None, None, group.height, group.head(n)), cells))
    return lists


def _cell_order(segment: str | None, level: str | None) -> tuple[int, int]:
    def index(values: tuple[str, ...], value: str | None) -> int:
        return values.index(value) if value in values else len(values)

    return index(PROFIT_SEGMENTS, segment), index(SERVICE_LEVELS, level)
