"""The report's words: money and numbers as text, and the one-line ledes and findings that
say what each chart shows for this snapshot."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import polars as pl

from servio.report.summaries import Headline

CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
Money = Callable[[float | Decimal | None], str]


def format_money(value: float | Decimal | None, currency: str, cents: bool = False) -> str:
    """'€1,235', '−€3', '1,235 CHF'; with `cents`, '€1,234.50' (a customer's own amounts)."""
    if value is None:
        return "—"
    sign = "−" if value < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(currency)
    digits = f"{abs(value):,.2f}" if cents else f"{abs(float(value)):,.0f}"
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency}"


def count(n: int, noun: str) -> str:
    """'1 customer', '1,204 customers'."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def whale_lede(profitability: pl.DataFrame, head: Headline) -> str:
    if head.top_share is None:
        return "Total profit is not positive, so the curve (share of total profit) is undefined."
    peak = profitability.select(pl.col("cumulative_profit_share").max()).item()
    lede = f"The most profitable 20 % of customers earn {head.top_share:.0%} of total profit."
    if peak is not None and peak > 1:
        lede += (
            f" The curve peaks at {peak:.0%}: the customers right of the peak cost more to "
            "serve than they earn."
        )
    return lede


def kaplan_lede(profitability: pl.DataFrame, money: Money) -> str:
    no_revenue = profitability.filter(pl.col("kaplan_quadrant").is_null())
    loss = no_revenue["profit"].cast(pl.Float64).sum() if no_revenue.height else 0.0
    return (
        "Split at the snapshot's medians of cost-to-serve and margin per unit of revenue. "
        f"Not shown: {no_revenue.height} customers without revenue (profit {money(loss)})."
    )


def gap_lede(gaps: pl.DataFrame) -> str:
    if gaps.is_empty():
        return "No survey gaps in this snapshot's window."
    worst = gaps.row(0, named=True)
    return (
        f"Shortfall is largest on {worst['dimension']} (mean gap {signed(worst['mean'])} over "
        f"{worst['customers']} customers). Below zero: perception fell short of expectation."
    )


def action_lede(matrix: pl.DataFrame, money: Money) -> str:
    retain = matrix.filter(pl.col("action") == "retain_now")
    return (
        f"Retain now: {int(retain['customers'].sum())} profitable customers whose service fell "
        f"below expectations, worth {money(retain['profit'].sum())} of profit."
    )


def findings(
    head: Headline,
    gaps: pl.DataFrame,
    matrix: pl.DataFrame,
    profitability: pl.DataFrame,
    money: Money,
) -> list[tuple[str, str]]:
    """Three one-line answers: who is most profitable, where service falls short, what to do."""
    unprofitable = profitability.filter(pl.col("profit") <= 0)
    loss = float(unprofitable["profit"].cast(pl.Float64).sum()) if unprofitable.height else 0.0
    core = profitability.filter(pl.col("profit_segment") == "core").height
    who = (
        f"{core} core customers earn 80 % of the positive profit"
        + (f"; the top 20 % earn {head.top_share:.0%} of the total" if head.top_share else "")
        + f". {unprofitable.height} customers are unprofitable ({money(loss)})."
    )
    if gaps.is_empty():
        where = "No survey gaps in this window: ask customers for feedback."
    else:
        worst = gaps.row(0, named=True)
        side_means = gaps.group_by("side").agg(pl.col("mean").mean()).sort("mean")
        side_text = ", ".join(f"{s} {signed(m)}" for s, m in side_means.iter_rows())
        where = (
            f"Largest shortfall: {worst['dimension']} ({worst['side']}, mean gap "
            f"{signed(worst['mean'])}). By side: {side_text}. "
            f"{head.below} of {head.rated} rated customers are below expectations."
        )
    by_action = matrix.group_by("action").agg(pl.col("customers").sum(), pl.col("profit").sum())
    counts = {a: (int(n), p) for a, n, p in by_action.iter_rows()}
    retain, retain_profit = counts.get("retain_now", (0, 0.0))
    what = (
        f"Retain now: {retain} profitable customers below expectations "
        f"({money(retain_profit)} profit at stake). "
        f"Grow {counts.get('grow', (0, 0))[0]}, ask {counts.get('ask_feedback', (0, 0))[0]} "
        f"for feedback, review terms with {counts.get('review_terms', (0, 0))[0]}."
    )
    return [
        ("Who is most profitable", who),
        ("Where service falls short", where),
        ("What to do", what),
    ]
