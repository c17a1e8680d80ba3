"""The SPEC §6 sections of the report: customer value, what drives quality, service levels.

Each reads its tables' partition for the snapshot; a table without one gets a "not computed
for this snapshot" note instead of charts. A model fit that did not converge is named as
such in a warning, with none of its numbers (its columns are null in customer_value).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal

import polars as pl

from servio.report import value, value_charts
from servio.report.blocks import Block, Cell, Note, Row, Section, Specs, Table, TableCard
from servio.report.data import ReportData, value_usable
from servio.report.words import Money, count, format_money, signed

NOT_COMPUTED = "{table} has no rows for {as_of}: not computed for this snapshot."
PARAMETER_NAMES = {"alpha": "α", "gamma": "γ"}


def value_sections(specs: Specs, data: ReportData, currency: str) -> list[Section]:
    return [
        Section("value", "Customer value", _value_blocks(specs, data, currency)),
        Section("drivers", "What drives quality", _driver_blocks(specs, data)),
        Section("service-levels", "Service levels per channel", _service_blocks(specs, data)),
    ]


def _value_blocks(specs: Specs, data: ReportData, currency: str) -> list[Block]:
    money: Money = functools.partial(format_money, currency=currency)
    snapshot = data.snapshot
    tables, as_of = snapshot.value, snapshot.as_of.isoformat()
    if tables.customer_value.is_empty():
        return [Note("Customer value", NOT_COMPUTED.format(table="customer_value", as_of=as_of))]
    if not value_usable(tables):
        return [
            Note(
                "Customer value",
                f"customer_value has rows for {as_of} but value_model has none: how they were "
                "fitted is unknown, so none is shown.",
                warning=True,
            )
        ]
    statuses = value.model_status(tables.value_model)
    blocks: list[Block] = [
        Note(
            f"{value.MODEL_NAMES.get(s.model, s.model)} did not converge",
            f"The {s.model} fit over {count(s.n_customers, 'customer')} did not converge, so "
            f"{value.MODEL_COLUMNS.get(s.model, 'its columns')} were not computed for this "
            "snapshot and are not shown: a fit that did not converge is never used.",
            warning=True,
            id=f"unconverged-{s.model}",
        )
        for s in statuses
        if not s.converged
    ]
    customer_value = tables.customer_value
    histogram = value.clv_histogram(customer_value)
    if not histogram.is_empty():
        scored = customer_value["clv"].drop_nulls().cast(pl.Float64)
        median = scored.median()
        blocks.append(
            specs.add(
                "clv",
                "Customer lifetime value",
                f"{count(scored.len(), 'customer')} with a CLV, median "
                f"{money(median if isinstance(median, float) else None)}: expected margin over the value "
                "horizon, discounted. The last bar includes the top 1 %.",
                value_charts.clv_chart(histogram, currency),
            )
        )
    points, scored_customers = value.p_alive_points(
        customer_value, snapshot.profitability, snapshot.segments
    )
    if scored_customers:
        sample = (
            f" A sample of {points.height:,} of {scored_customers:,}, every k-th by id."
            if points.height < scored_customers
            else ""
        )
        blocks.append(
            specs.add(
                "p-alive",
                "Still active? p_alive against profit",
                "Each dot a customer with a purchase: right, probably still active; left, "
                f"probably gone — a profitable customer on the left needs winning back.{sample}",
                value_charts.p_alive_chart(points, currency),
            )
        )
    at_risk = value.top_value_at_risk(customer_value, snapshot.profitability, snapshot.segments)
    if not at_risk.is_empty():
        cents = functools.partial(format_money, currency=currency, cents=True)
        blocks.append(_at_risk_card(at_risk, cents))
    blocks.append(_models_card(statuses))
    return blocks


def _at_risk_card(at_risk: pl.DataFrame, money: Money) -> TableCard:
    rows = [
        Row(
            [
                Cell(str(rank), css_class="rank"),
                Cell(r["customer_id"], r["customer_id"], "id"),
                Cell(money(r["value_at_risk"]), _text(r["value_at_risk"]), "num"),
                Cell(f"{r['p_alive']:.0%}", repr(r["p_alive"]), "num"),
                Cell(money(r["clv"]), _text(r["clv"]), "num"),
                Cell(money(r["profit"]), _text(r["profit"]), "num"),
                Cell(r["action"] or "—"),
            ],
            key=r["customer_id"],
        )
        for rank, r in enumerate(at_risk.iter_rows(named=True), start=1)
    ]
    headers = ["#", "customer", "value at risk", "p alive", "CLV", "profit", "action"]
    return TableCard(
        id="value-at-risk",
        title="Largest value at risk",
        ledes=[
            "Value at risk = the customer's margin in the window × (1 − p_alive): what they "
            "brought and may stop bringing. Largest first (ties: by id)."
        ],
        table=Table(headers, rows, css_class="customers", id="value-at-risk-table"),
    )


def _models_card(statuses: list[value.ModelStatus]) -> TableCard:
    rows = []
    for s in statuses:
        if s.converged:
            params = ", ".join(
                f"{PARAMETER_NAMES.get(k, k)} = {v:.4g}" for k, v in s.params.items()
            )
            loglik = f"{s.log_likelihood:,.1f}" if s.log_likelihood is not None else "—"
        else:
            params, loglik = "not converged: not used", "—"
        rows.append(
            Row(
                [
                    Cell(value.MODEL_NAMES.get(s.model, s.model)),
                    Cell(f"{s.n_customers:,}", str(s.n_customers), "num"),
                    Cell(loglik, css_class="num"),
                    Cell(params),
                ],
                css_class="" if s.converged else "bad",
            )
        )
    return TableCard(
        id="value-models",
        title="Fitted models",
        ledes=["Maximum-likelihood fits of this snapshot (value_model); time unit: days."],
        table=Table(["model", "customers", "log-likelihood", "parameters"], rows),
    )


def _driver_blocks(specs: Specs, data: ReportData) -> list[Block]:
    frame = data.snapshot.value.quality_drivers
    as_of = data.snapshot.as_of.isoformat()
    if frame.is_empty():
        return [
            Note(
                "Importance–performance", NOT_COMPUTED.format(table="quality_drivers", as_of=as_of)
            )
        ]
    drivers = value.drivers(frame)
    responses = int(drivers.select(pl.col("n_responses").max()).item() or 0)
    blocks: list[Block] = []
    if drivers["importance"].is_null().any():
        blocks.append(
            Note(
                "Importance–performance",
                f"Importance is not computed: {count(responses, 'response')} with an NPS score "
                "and every dimension's perception (30 needed), or NPS did not vary.",
                id="drivers-missing",
            )
        )
    else:
        fix = drivers.filter(pl.col("quadrant") == "fix_first")["dimension"].to_list()
        blocks.append(
            specs.add(
                "drivers",
                "Importance–performance",
                f"What moves NPS (Johnson's relative weights over {responses:,} responses) "
                "against how well it is done, split at the means. Fix first: "
                + (", ".join(fix) if fix else "none")
                + ".",
                value_charts.drivers_chart(drivers),
            )
        )
    rows = [
        Row(
            [
                Cell(r["dimension"]),
                _num(r["importance"], lambda v: f"{v:.3f}"),
                _num(r["performance"], lambda v: f"{v:.2f}"),
                _num(r["mean_gap"], signed),
                Cell((r["quadrant"] or "—").replace("_", " "), r["quadrant"] or ""),
            ],
            key=r["dimension"],
        )
        for r in drivers.iter_rows(named=True)
    ]
    blocks.append(
        TableCard(
            id="drivers-table",
            title="Dimensions and quadrants",
            ledes=[
                "Fix first: important and below average; keep up: important and done well; "
                "possible overkill: done well but matters less; low priority: neither."
            ],
            table=Table(["dimension", "importance", "performance", "mean gap", "quadrant"], rows),
        )
    )
    return blocks


def _service_blocks(specs: Specs, data: ReportData) -> list[Block]:
    frame = data.snapshot.value.service_levels
    as_of = data.snapshot.as_of.isoformat()
    if frame.is_empty():
        return [Note("Service levels", NOT_COMPUTED.format(table="service_levels", as_of=as_of))]
    levels = value.service_levels_now(frame)
    overall = frame.filter(pl.col("channel") == "all").row(0, named=True)
    scores = [
        f"NPS {overall['nps']:+.0f}" if overall["nps"] is not None else None,
        f"CSAT {overall['csat_mean']:.2f}" if overall["csat_mean"] is not None else None,
        f"effort {overall['ces_mean']:.2f}" if overall["ces_mean"] is not None else None,
    ]
    blocks: list[Block] = [
        specs.add(
            "service-levels",
            "SLA breaches per channel",
            "Share of contacts with a known queue time above the channel's [sla] target; "
            "all = every channel with a target. Snapshot-wide: "
            + (", ".join(s for s in scores if s) or "no survey score")
            + ".",
            value_charts.service_levels_chart(levels),
        )
    ]
    dates = data.service_trends["as_of_date"].n_unique()
    if dates >= 2:
        blocks.append(
            specs.add(
                "service-trends",
                "Service levels across snapshots",
                f"The {dates} snapshots up to {as_of} with service levels.",
                value_charts.service_trends_chart(
                    data.service_trends, value.experience_trend(data.service_trends)
                ),
                wide=True,
            )
        )
    else:
        blocks.append(
            Note(
                "Service levels across snapshots",
                f"Only one snapshot up to {as_of} has service levels; trends appear with more.",
            )
        )
    return blocks


def _num(number: float | None, text: Callable[[float], str]) -> Cell:
    if number is None:
        return Cell("—", "", "num")
    return Cell(text(number), repr(number), "num")


def _text(amount: Decimal | None) -> str:
    return "" if amount is None else str(amount)
