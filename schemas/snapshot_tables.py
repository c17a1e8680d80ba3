"""The snapshot tables (SPEC §4.2, §6): one partition per as-of date, computed whole from the
curated tables of the window (D − window_days, D]."""

from __future__ import annotations

import polars as pl

from .catalog import ItemCatalog
from .table import MONEY, Column, CuratedTable


def customer_quality_table(catalog: ItemCatalog) -> CuratedTable:
    gaps = tuple(
        Column(f"{dim}_gap", pl.Float64, f"Mean over the window's responses of the {dim} gap.")
        for dim in catalog.dimensions
    )
    return CuratedTable(
        name="customer_quality",
        grain="One row per as_of_date × customer_id with activity in the window.",
        key=("as_of_date", "customer_id"),
        partition_by="as_of_date",
        columns=(
            Column("as_of_date", pl.Date, "Snapshot date D; the window is (D − window_days, D]."),
            Column("customer_id", pl.String, "The customer."),
            Column(
                "n_responses", pl.Int64, "Survey responses submitted in the window (0 if none)."
            ),
            *gaps,
            Column(
                "technical_gap",
                pl.Float64,
                "Mean over responses of the item gap on technical items (WHAT the customer got).",
            ),
            Column(
                "functional_gap",
                pl.Float64,
                "Mean over responses of the item gap on functional items (HOW it reached them).",
            ),
            Column(
                "service_gap",
                pl.Float64,
                "Mean over responses of the weighted dimension gap (weights renormalised over answered dimensions).",
            ),
            Column(
                "service_level",
                pl.String,
                "exceeded if service_gap > band, below if < −band, met otherwise (±band is met), unknown without a gap.",
            ),
            Column(
                "nps_last",
                pl.Int32,
                "NPS of the latest response that has one (latest by submitted_at, then response_id).",
            ),
            Column("nps_last_group", pl.String, "promoter / passive / detractor of nps_last."),
            Column("csat_mean", pl.Float64, "Mean CSAT, 1–5."),
            Column("ces_mean", pl.Float64, "Mean customer effort, 1–7."),
            Column("n_interactions", pl.Int64, "Contacts started in the window (0 if none)."),
            Column(
                "fcr_rate",
                pl.Float64,
                "Share of contacts resolved with no same-reason contact in the next 7 days (null reason never matches).",
            ),
            Column(
                "repeat_contact_rate_7d",
                pl.Float64,
                "Share of contacts followed by any contact of the customer in the next 7 days.",
            ),
            Column("avg_queue_seconds", pl.Float64, "Mean queue time, seconds."),
            Column("avg_handle_seconds", pl.Float64, "Mean handle time, seconds."),
        ),
    )


CUSTOMER_PROFITABILITY = CuratedTable(
    name="customer_profitability",
    grain="One row per as_of_date × customer_id with activity in the window.",
    key=("as_of_date", "customer_id"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D; the window is (D − window_days, D]."),
        Column("customer_id", pl.String, "The customer."),
        Column(
            "revenue",
            MONEY,
            "Sum of the window's interaction revenue, refunds included; 0.00 for survey-only customers.",
        ),
        Column("margin", MONEY, "Sum of the per-interaction margins, refunds included."),
        Column(
            "cost_to_serve",
            MONEY,
            "Sum of per-contact costs: per_contact + per_minute × handle_seconds / 60, each rounded half-even.",
        ),
        Column("profit", MONEY, "margin − cost_to_serve, exact to the cent."),
        Column("profit_rank", pl.Int64, "1 = most profitable; ties by customer_id."),
        Column(
            "cumulative_profit_share",
            pl.Float64,
            "Running profit in rank order ÷ total profit (the whale curve); null when the total ≤ 0.",
        ),
        Column(
            "profit_segment",
            pl.String,
            "core = fewest top-ranked customers reaching ≥ 80 % of positive profit; profitable = other profit > 0; unprofitable = profit ≤ 0.",
        ),
        Column(
            "kaplan_quadrant",
            pl.String,
            "Revenue > 0 only: cost ÷ revenue vs margin ÷ revenue split at the medians (ties low): passive / carriage_trade / bargain_basement / aggressive.",
        ),
        Column(
            "recency_days",
            pl.Int64,
            "Days from the last purchase (revenue > 0) to D; null without a purchase.",
        ),
        Column("frequency", pl.Int64, "Distinct days with a purchase in the window."),
        Column("monetary", MONEY, "Sum of the purchases' revenue; null without a purchase."),
        Column(
            "r_score",
            pl.Int32,
            "ceil(5 × rank ÷ n) ranking purchasers by recency, 5 = most recent.",
        ),
        Column(
            "f_score",
            pl.Int32,
            "ceil(5 × rank ÷ n) ranking purchasers by frequency, 5 = most frequent.",
        ),
        Column(
            "m_score", pl.Int32, "ceil(5 × rank ÷ n) ranking purchasers by monetary, 5 = highest."
        ),
        Column(
            "rfm_segment", pl.String, "RFM segment from R and F; no_purchase without a purchase."
        ),
    ),
)

CUSTOMER_SEGMENTS = CuratedTable(
    name="customer_segments",
    grain="One row per as_of_date × customer_id with activity in the window.",
    key=("as_of_date", "customer_id"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("customer_id", pl.String, "The customer."),
        Column("profit_segment", pl.String, "From customer_profitability."),
        Column(
            "service_level",
            pl.String,
            "From customer_quality; unknown when the customer has no gap.",
        ),
        Column("rfm_segment", pl.String, "From customer_profitability."),
        Column(
            "action",
            pl.String,
            "What to do: retain_now / grow / ask_feedback (core, profitable) or reduce_cost_to_serve / review_terms (unprofitable).",
        ),
    ),
)


DEFAULT_HORIZON_DAYS = 365  # the setting value_horizon_days' default (servio.config)


def expected_purchases_column(horizon_days: int) -> str:
    """`expected_purchases_<h>d`: the column's name carries the horizon it was scored for."""
    return f"expected_purchases_{horizon_days}d"


def customer_value_table(horizon_days: int) -> CuratedTable:
    """SPEC §6 `customer_value`; `horizon_days` is the setting `value_horizon_days`."""
    value_note = "null without a purchase or when the fit did not converge"
    return CuratedTable(
        name="customer_value",
        grain="One row per as_of_date × customer_id with activity in the window.",
        key=("as_of_date", "customer_id"),
        partition_by="as_of_date",
        columns=(
            Column("as_of_date", pl.Date, "Snapshot date D; the window is (D − window_days, D]."),
            Column("customer_id", pl.String, "The customer."),
            Column(
                "x",
                pl.Int64,
                "Repeat purchases: distinct purchase days (revenue > 0) in the window − 1; null without a purchase.",
            ),
            Column("t_x", pl.Int64, "Days from the first to the last purchase day."),
            Column("T", pl.Int64, "Days from the first purchase day to D."),
            Column(
                "avg_repeat_spend",
                pl.Float64,
                "Mean purchase revenue per repeat purchase day (first purchase day excluded), unrounded; null when x = 0.",
            ),
            Column(
                "p_alive",
                pl.Float64,
                f"BG/NBD probability that the customer is still active at D; {value_note}.",
            ),
            Column(
                expected_purchases_column(horizon_days),
                pl.Float64,
                f"BG/NBD expected purchase days in (D, D + {horizon_days}]; {value_note}.",
            ),
            Column(
                "expected_spend",
                pl.Float64,
                f"Gamma-Gamma expected revenue per purchase day (x = 0: the population mean), unrounded; {value_note}.",
            ),
            Column(
                "clv",
                MONEY,
                "expected purchases × expected spend × gross_margin_rate ÷ (1 + annual_discount_rate)^(h ÷ 730), half-even cents.",
            ),
            Column(
                "value_at_risk",
                MONEY,
                "margin in the snapshot (as in customer_profitability) × (1 − p_alive), half-even cents.",
            ),
        ),
    )


VALUE_MODEL = CuratedTable(
    name="value_model",
    grain="One row per as_of_date × model: the snapshot's fitted customer-value models.",
    key=("as_of_date", "model"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("model", pl.String, "bg_nbd (purchase and dropout) or gamma_gamma (spend)."),
        Column("r", pl.Float64, "BG/NBD: shape of the purchase-rate gamma (time unit: days)."),
        Column("alpha", pl.Float64, "BG/NBD: scale of the purchase-rate gamma, days."),
        Column("a", pl.Float64, "BG/NBD: dropout-probability beta, a."),
        Column("b", pl.Float64, "BG/NBD: dropout-probability beta, b."),
        Column("p", pl.Float64, "Gamma-Gamma: shape of the per-purchase spend gamma."),
        Column("q", pl.Float64, "Gamma-Gamma: shape of the customers' spend-scale gamma."),
        Column("gamma", pl.Float64, "Gamma-Gamma: scale of the customers' spend-scale gamma."),
        Column(
            "n_customers",
            pl.Int64,
            "Customers fitted (BG/NBD: with a purchase; Gamma-Gamma: x > 0).",
        ),
        Column(
            "log_likelihood", pl.Float64, "Log-likelihood at the estimates; null if not fitted."
        ),
        Column(
            "converged",
            pl.Boolean,
            "The optimiser converged to an interior maximum; if false, no customer is scored with it.",
        ),
    ),
)

QUALITY_DRIVERS = CuratedTable(
    name="quality_drivers",
    grain="One row per as_of_date × dimension: an importance–performance analysis of NPS.",
    key=("as_of_date", "dimension"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("dimension", pl.String, "Quality dimension of the item catalog."),
        Column(
            "importance",
            pl.Float64,
            "Johnson's relative weight of the dimension's perception in explaining NPS (the dimensions' weights sum to R²); null under 30 responses.",
        ),
        Column("performance", pl.Float64, "Mean perception over the qualifying responses."),
        Column("mean_gap", pl.Float64, "Mean dimension gap over the qualifying responses."),
        Column(
            "n_responses",
            pl.Int64,
            "Window responses with an NPS score and every dimension's perception.",
        ),
        Column(
            "quadrant",
            pl.String,
            "Split at the means of importance and performance (equal = low): fix_first, keep_up, possible_overkill, low_priority; null under 30 responses.",
        ),
    ),
)

SERVICE_LEVELS = CuratedTable(
    name="service_levels",
    grain="One row per as_of_date × channel with a queue target, plus channel = 'all'.",
    key=("as_of_date", "channel"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("channel", pl.String, "A channel with an [sla] queue target, or all."),
        Column("n_interactions", pl.Int64, "Contacts started in the window."),
        Column(
            "sla_breach_rate",
            pl.Float64,
            "Share of contacts with a known queue time above the target (all: over channels with a target).",
        ),
        Column("p50_queue_seconds", pl.Float64, "Median queue time (linear interpolation)."),
        Column(
            "p90_queue_seconds", pl.Float64, "90th percentile of queue time (linear interpolation)."
        ),
        Column("fcr_rate", pl.Float64, "First-contact resolution, as in customer_quality."),
        Column(
            "nps",
            pl.Float64,
            "Snapshot-wide: % promoters − % detractors over the window's responses with a score.",
        ),
        Column("csat_mean", pl.Float64, "Snapshot-wide mean CSAT of the window's responses."),
        Column(
            "ces_mean", pl.Float64, "Snapshot-wide mean customer effort of the window's responses."
        ),
    ),
)


def value_tables(horizon_days: int) -> dict[str, CuratedTable]:
    """The SPEC §6 snapshot tables, by name (published with the customer_* snapshot)."""
    tables = (customer_value_table(horizon_days), VALUE_MODEL, QUALITY_DRIVERS, SERVICE_LEVELS)
    return {t.name: t for t in tables}
