"""The report's "Which customers" section: the top customers per action (and per profit
segment × service level cell) as table cards, cut from `customers.customer_list`, the frame
`servio export` writes in full."""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal

import polars as pl

from servio.report.blocks import Block, Cell, More, Note, Row, Table, TableCard
from servio.report.customers import TOP_CUSTOMERS, TopList, top_lists
from servio.report.words import Money, count, format_money, signed

ACTION_TITLES = {
    "retain_now": "Retain now",
    "grow": "Grow",
    "ask_feedback": "Ask for feedback",
    "reduce_cost_to_serve": "Reduce cost to serve",
    "review_terms": "Review terms",
}
ACTION_MEANING = {
    "retain_now": "Profitable customers whose service fell below expectations.",
    "grow": "Profitable customers served as they expected, or better.",
    "ask_feedback": "Profitable customers without a survey gap in the window.",
    "reduce_cost_to_serve": "Unprofitable customers served above expectations.",
    "review_terms": "Unprofitable customers served below or as expected, or not rated.",
}
SECTION_LEDE = (
    f"Per action, the {TOP_CUSTOMERS} most profitable customers (by profit rank), the "
    "dimension where their service fell furthest short (the lowest dimension gap; ties: "
    "alphabetical) and the channel of most of their contacts in the window (ties: "
    "alphabetical). Every customer of an action, one row each, with these columns and "
    "more: servio export --action ACTION --format csv (columns: docs/EXPORT.md)."
)


def customer_blocks(customers: pl.DataFrame, currency: str) -> list[Block]:
    """One card per action, its cells' lists folded under it."""
    money: Money = functools.partial(format_money, currency=currency, cents=True)
    with_value = customers["p_alive"].is_not_null().any()
    blocks: list[Block] = []
    for whole, cells in top_lists(customers):
        action = whole.action
        title = f"{ACTION_TITLES.get(action, action)}: {count(whole.customers, 'customer')}"
        if whole.customers == 0:
            blocks.append(
                Note(title, f"{ACTION_MEANING[action]} None in this snapshot.", id=_id(whole))
            )
            continue
        by_cell = " · ".join(
            f"{c.profit_segment} × {c.service_level} {c.customers:,}" for c in cells
        )
        blocks.append(
            TableCard(
                id=_id(whole),
                title=title,
                ledes=[f"{ACTION_MEANING[action]} By cell: {by_cell}."],
                table=_table(whole, money, with_value),
                more=_more(whole),
                details_title=f"Top {TOP_CUSTOMERS} per cell" if len(cells) > 1 else "",
                details=[
                    (
                        f"{c.profit_segment} × {c.service_level} ({count(c.customers, 'customer')})",
                        _table(c, money, with_value),
                        _more(c),
                    )
                    for c in cells
                ]
                if len(cells) > 1
                else [],
                wide=True,
            )
        )
    return blocks


def _id(group: TopList) -> str:
    cell = f"-{group.profit_segment}-{group.service_level}" if group.profit_segment else ""
    return f"customers-{group.action}{cell}"


def _more(group: TopList) -> More | None:
    if group.rest <= 0:
        return None
    return More(f"… and {group.rest:,} more:", f"servio export --action {group.action}")


def _table(group: TopList, money: Money, with_value: bool) -> Table:
    whole_action = group.profit_segment is None  # a cell's table needs no cell column
    headers = ["#", "customer", *(["segment × level"] if whole_action else []), "profit"]
    headers += ["service gap", "worst dimension", "main channel"]
    headers += ["p alive"] if with_value else []
    rows = []
    for rank, row in enumerate(group.top.iter_rows(named=True), start=1):
        cells = [
            Cell(str(rank), css_class="rank"),
            Cell(row["customer_id"], row["customer_id"], "id"),
            *([Cell(f"{row['profit_segment']} × {row['service_level']}")] if whole_action else []),
            Cell(money(row["profit"]), _exact(row["profit"]), "num"),
            _float_cell(row["service_gap"], signed),
            Cell(
                f"{row['worst_dimension']} ({signed(row['worst_dimension_gap'])})"
                if row["worst_dimension"] is not None
                else "—",
                row["worst_dimension"] or "",
            ),
            Cell(
                f"{row['main_channel']} ({row['main_channel_contacts']} of {row['n_interactions']})"
                if row["main_channel"] is not None
                else "—",
                row["main_channel"] or "",
            ),
        ]
        if with_value:
            cells.append(_float_cell(row["p_alive"], lambda v: f"{v:.0%}"))
        rows.append(Row(cells, key=row["customer_id"]))
    return Table(headers, rows, css_class="customers", id=f"{_id(group)}-table")


def _exact(value: Decimal | float | None) -> str:
    return "" if value is None else str(value)


def _float_cell(value: float | None, text: Callable[[float], str]) -> Cell:
    if value is None:
        return Cell("—", "", "num")
    return Cell(text(value), repr(value), "num")
