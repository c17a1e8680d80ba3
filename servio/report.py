"""The run report: one self-contained HTML page, read from the curated tables, that shows at a
glance who is most profitable, where service falls short, what to do, and how clean the data was.

Charts are Vega-Lite specs built with Altair; the Vega, Vega-Lite and vega-embed JavaScript
comes from `vl-convert-python` and is embedded once, so the file opens with no network.
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from servio.config import Settings
from servio.lake import Lake
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
)
from servio.schemas.table import CuratedTable
from servio.schemas.tables import INGEST_LEDGER, QUARANTINE
from servio.transforms.segments import ACTIONS

TOP_SHARE = 0.2  # "share of profit from the top 20 % of customers"
WHALE_POINTS = 400  # the whale curve is thinned to about this many points
TOP_REASONS = 15
NO_REVENUE = "no_revenue"  # kaplan_quadrant is null for customers without revenue
# Matrix axes in the order of the SPEC's action table.
PROFIT_SEGMENTS = tuple(dict.fromkeys(s for segments, _, _ in ACTIONS for s in segments))
SERVICE_LEVELS = tuple(dict.fromkeys(level for _, levels, _ in ACTIONS for level in levels))
QUADRANTS = {  # quadrant: (cost-to-serve ratio, margin ratio), relative to the snapshot medians
    "passive": ("low", "high"),
    "carriage_trade": ("high", "high"),
    "bargain_basement": ("low", "low"),
    "aggressive": ("high", "low"),
}
ACTION_COLORS = {
    "retain_now": "#d7301f",
    "grow": "#2b8a3e",
    "ask_feedback": "#4c78a8",
    "reduce_cost_to_serve": "#f08c00",
    "review_terms": "#845ef7",
}
SEGMENT_COLORS = {"core": "#1b6ca8", "profitable": "#6baed6", "unprofitable": "#e8590c"}
SIDE_COLORS = {"technical": "#c2255c", "functional": "#1c7ed6"}
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
EMBED_OPTIONS = {
    "renderer": "svg",
    "actions": False,
}
CHART_WIDTH = 470
LEDGER_HEADERS = {
    "rows_read": "rows read",
    "rows_valid": "valid",
    "rows_quarantined": "quarantined",
}


@dataclass(frozen=True)
class Headline:
    """The four numbers at the top of the report, for one snapshot."""

    customers: int
    total_profit: Decimal
    top_share: float | None  # share of total profit earned by the top 20 % (None: total ≤ 0)
    below: int  # customers whose service fell below expectations
    rated: int  # customers with a known service level


@dataclass
class Section:
    """A titled group of charts and notes on the page."""

    title: str
    blocks: list[str] = field(default_factory=list)


def default_report_path(lake: Lake) -> Path:
    """Where `servio run` and `servio report` put the report: beside the tables, not among them."""
    return lake.site_dir / "report.html"


def write_report(lake: Lake, settings: Settings, out_path: Path, as_of: date | None = None) -> Path:
    """Write the HTML report for the snapshot `as_of` (default: the latest one); return its path.
    Every table is read at the latest publication's versions: one consistent lake, even
    while a run publishes (docs/BI.md, "One consistent view of several tables")."""
    out_path = Path(out_path)
    lake = lake.pinned()
    as_of = _snapshot_date(lake, as_of)
    profitability = _snapshot(lake, CUSTOMER_PROFITABILITY, as_of)
    quality = _snapshot(lake, customer_quality_table(settings.catalog), as_of)
    segments = _snapshot(lake, CUSTOMER_SEGMENTS, as_of)
    ledger = lake.scan(INGEST_LEDGER).collect()
    quarantine = lake.scan(QUARANTINE).select("source", "row_number", "reason_codes").collect()

    money = functools.partial(format_money, currency=settings.currency)
    head = headline(profitability, segments)
    gaps = gap_by_dimension(quality, settings)
    sides = gap_by_side(quality, segments)
    matrix = action_matrix(profitability, segments)
    trends = snapshot_trends(lake, as_of)
    reasons = quarantine_reasons(quarantine)
    specs: dict[str, dict[str, Any]] = {}

    def chart(key: str, title: str, lede: str, spec: alt.TopLevelMixin, wide: bool = False) -> str:
        specs[key] = _themed(spec)
        return _chart_block(key, title, lede, wide)

    profitable = [
        chart("whale", "Whale curve", _whale_lede(profitability, head), whale_chart(profitability)),
        chart(
            "profit-segment",
            "Profit by profit segment",
            "Core customers earn 80 % of the positive profit; unprofitable ones cost more to "
            "serve than their margin.",
            profit_segment_chart(profit_by_segment(profitability), settings.currency),
        ),
        chart(
            "kaplan",
            "Profit by Kaplan quadrant",
            _kaplan_lede(profitability, money),
            kaplan_chart(profit_by_quadrant(profitability), settings.currency),
        ),
        chart(
            "rfm",
            "RFM segments",
            "Customers and their purchase revenue (monetary) per recency–frequency segment, "
            "most revenue first.",
            rfm_chart(rfm_segments(profitability), settings.currency),
        ),
    ]
    service = [
        chart(
            "gap-dimension",
            "Service gap by dimension",
            _gap_lede(gaps),
            gap_dimension_chart(gaps),
        ),
        chart(
            "gap-side",
            "Technical vs functional gap",
            "WHAT customers get (technical) against HOW it reaches them (functional), per "
            "profit segment. Left of zero: perception fell short of expectation.",
            gap_side_chart(sides),
        ),
    ]
    action = [
        chart(
            "action-matrix",
            "Action matrix: service level × profit segment",
            _action_lede(matrix, money),
            action_matrix_chart(matrix, settings.currency),
            wide=True,
        ),
    ]
    if trends.height >= 2:
        trend_blocks = [
            chart(
                "trends",
                "Trends across snapshots",
                f"The {trends.height} snapshots up to {as_of.isoformat()}.",
                trends_chart(trends, settings.currency),
                wide=True,
            )
        ]
    else:
        trend_blocks = [
            _note_block(
                "Trends across snapshots",
                f"Only one snapshot up to {as_of.isoformat()}; trends appear once "
                "`servio run --as-of` or a backfill has published more than one as_of_date.",
            )
        ]
    quality_blocks = [_ledger_block(ledger, lake, out_path)]
    if reasons.height:
        quality_blocks.append(
            chart(
                "quarantine-reasons",
                "Quarantined rows by reason",
                f"The {min(TOP_REASONS, reasons['reason_code'].n_unique())} most frequent "
                "rules broken; a row may break several.",
                quarantine_chart(reasons),
            )
        )
    else:
        quality_blocks.append(_note_block("Quarantined rows by reason", "No row was quarantined."))

    sections = [
        Section("Who is most profitable", profitable),
        Section("Where service falls short", service),
        Section("What to do", action),
        Section("Trends", trend_blocks),
        Section("Data quality", quality_blocks),
    ]
    page = _page(
        as_of=as_of,
        settings=settings,
        head=head,
        findings=_findings(head, gaps, matrix, profitability, money),
        sections=sections,
        specs=specs,
        money=money,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(out_path.name + ".tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, out_path)
    return out_path


# ---------------------------------------------------------------------------------------
# reading


def _snapshot_date(lake: Lake, as_of: date | None) -> date:
    available = lake.partitions(CUSTOMER_SEGMENTS)
    if not available:
        raise ValueError(
            f"no snapshot to report on in {lake.root}: the customer_segments table has no "
            "as_of_date partition yet; run `servio run` first"
        )
    if as_of is None:
        return date.fromisoformat(available[-1])
    if as_of.isoformat() not in available:
        raise ValueError(
            f"no snapshot as of {as_of.isoformat()} in {lake.root}; published snapshots: "
            f"{', '.join(available)} (publish one with `servio run --as-of {as_of.isoformat()}`)"
        )
    return as_of


def _snapshot(lake: Lake, table: CuratedTable, as_of: date) -> pl.DataFrame:
    return lake.scan(table).filter(pl.col("as_of_date") == as_of).collect()


# ---------------------------------------------------------------------------------------
# summaries: small frames, one per chart


def headline(profitability: pl.DataFrame, segments: pl.DataFrame) -> Headline:
    total = profitability["profit"].sum() if profitability.height else Decimal(0)
    levels = segments["service_level"]
    return Headline(
        customers=profitability.height,
        total_profit=Decimal(total),
        top_share=top_profit_share(profitability),
        below=int((levels == "below").sum()),
        rated=int(levels.is_in(["below", "met", "exceeded"]).sum()),
    )


def top_profit_share(profitability: pl.DataFrame, share: float = TOP_SHARE) -> float | None:
    """Share of total profit earned by the top `share` of customers by profit_rank."""
    if profitability.is_empty():
        return None
    value = profitability.select(_top_share(share)).item()
    return None if value is None else float(value)


def _top_share(share: float = TOP_SHARE) -> pl.Expr:
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
    return _complete(
        profitability.group_by("profit_segment").agg(
            pl.len().alias("customers"), _money_sum("profit")
        ),
        "profit_segment",
        PROFIT_SEGMENTS,
    )


def profit_by_quadrant(profitability: pl.DataFrame) -> pl.DataFrame:
    summary = (
        profitability.with_columns(pl.col("kaplan_quadrant").fill_null(NO_REVENUE))
        .group_by("kaplan_quadrant")
        .agg(pl.len().alias("customers"), _money_sum("profit"), _money_sum("revenue"))
    )
    return _complete(summary, "kaplan_quadrant", (*QUADRANTS, NO_REVENUE))


def gap_by_dimension(quality: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Mean and spread of the customers' gap per dimension, worst (lowest mean) first."""
    catalog = settings.catalog
    long = quality.select([pl.col(f"{d}_gap").alias(d) for d in catalog.dimensions]).unpivot(
        variable_name="dimension", value_name="gap"
    )
    sides = pl.DataFrame(
        {
            "dimension": list(catalog.dimensions),
            "side": [catalog.side_of(d) for d in catalog.dimensions],
        }
    )
    return _spread(long, ["dimension"]).join(sides, on="dimension").sort("mean", "dimension")


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
    return _spread(long, ["profit_segment", "side"]).sort("profit_segment", "side")


def action_matrix(profitability: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    """Every profit_segment × service_level cell with its action, customers and profit."""
    cells = (
        segments.select("customer_id", "profit_segment", "service_level")
        .join(profitability.select("customer_id", "profit"), on="customer_id", how="left")
        .group_by("profit_segment", "service_level")
        .agg(pl.len().alias("customers"), _money_sum("profit"))
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
        .agg(pl.len().alias("customers"), _money_sum("monetary"))
        .sort(["monetary", "rfm_segment"], descending=[True, False])
    )


def snapshot_trends(lake: Lake, as_of: date) -> pl.DataFrame:
    """Per published as_of_date up to `as_of`: customers, total profit, top-20 % share, share below."""
    profit = (
        lake.scan(CUSTOMER_PROFITABILITY)
        .filter(pl.col("as_of_date") <= as_of)
        .group_by("as_of_date")
        .agg(
            pl.len().cast(pl.Int64).alias("customers"),
            pl.col("profit").cast(pl.Float64).sum().alias("total_profit"),
            _top_share(),
        )
    )
    levels = (
        lake.scan(CUSTOMER_SEGMENTS)
        .filter(pl.col("as_of_date") <= as_of)
        .group_by("as_of_date")
        .agg(
            (pl.col("service_level") == "below").sum().alias("below"),
            pl.col("service_level").is_in(["below", "met", "exceeded"]).sum().alias("rated"),
        )
    )
    return (
        profit.join(levels, on="as_of_date", how="left")
        .with_columns(
            pl.when(pl.col("rated") > 0)
            .then(pl.col("below") / pl.col("rated"))
            .alias("share_below")
        )
        .sort("as_of_date")
        .collect()
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


def _spread(long: pl.DataFrame, by: list[str]) -> pl.DataFrame:
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


def _money_sum(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64).sum().alias(column)


def _complete(summary: pl.DataFrame, key: str, order: Sequence[str]) -> pl.DataFrame:
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


# ---------------------------------------------------------------------------------------
# charts (Vega-Lite via Altair)


def whale_chart(profitability: pl.DataFrame) -> alt.TopLevelMixin:
    curve = whale_points(profitability)
    top = top_profit_share(profitability)
    base = alt.Chart(curve).encode(
        x=alt.X("rank_share:Q", title="Share of customers, most profitable first")
        .axis(format="%")
        .scale(domain=[0, 1]),
        y=alt.Y("cumulative_profit_share:Q", title="Cumulative share of total profit").axis(
            format="%"
        ),
    )
    line = base.mark_area(
        line={"color": "#1b6ca8", "strokeWidth": 2.5}, color="#1b6ca8", opacity=0.12
    ).encode(
        tooltip=[
            alt.Tooltip("rank_share:Q", title="customers", format=".0%"),
            alt.Tooltip("cumulative_profit_share:Q", title="profit", format=".0%"),
        ]
    )
    full = alt.Chart(pl.DataFrame({"y": [1.0]})).mark_rule(strokeDash=[4, 4], color="#868e96")
    layers: list[Any] = [line, full.encode(y="y:Q")]
    if top is not None:
        marker = pl.DataFrame(
            {"x": [TOP_SHARE], "y": [top], "y0": [0.0], "label": [f"top 20 %: {top:.0%}"]}
        )
        point = alt.Chart(marker).encode(x="x:Q", y="y:Q")
        layers += [
            point.mark_rule(color="#d7301f", strokeDash=[2, 2]).encode(y="y0:Q", y2="y:Q"),
            point.mark_point(color="#d7301f", filled=True, size=70),
            point.mark_text(align="left", dx=8, dy=-8, fontWeight="bold", color="#d7301f").encode(
                text="label:N"
            ),
        ]
    return alt.layer(*layers).properties(width=CHART_WIDTH, height=260)


def profit_segment_chart(summary: pl.DataFrame, currency: str) -> alt.TopLevelMixin:
    data = summary.with_columns(
        (
            pl.col("customers").cast(pl.String)
            + " customers · "
            + pl.col("profit").map_elements(
                lambda v: format_money(v, currency), return_dtype=pl.String
            )
        ).alias("label")
    )
    base = alt.Chart(data).encode(
        y=alt.Y("profit_segment:N", title=None, sort=list(PROFIT_SEGMENTS)),
        x=alt.X("profit:Q", title=f"Profit ({currency})").axis(format="~s"),
    )
    bars = base.mark_bar(cornerRadiusEnd=3, height=34).encode(
        color=_category_color("profit_segment", SEGMENT_COLORS),
        tooltip=[
            "profit_segment:N",
            "customers:Q",
            alt.Tooltip("profit:Q", format=",.0f", title=f"profit ({currency})"),
        ],
    )
    text = base.mark_text(align="left", dx=6, color="#343a40").encode(
        x=alt.X("max_zero:Q"), text="label:N"
    )
    return alt.layer(bars, text.transform_calculate(max_zero="max(datum.profit, 0)")).properties(
        width=CHART_WIDTH - 170, height=150
    )


def kaplan_chart(summary: pl.DataFrame, currency: str) -> alt.TopLevelMixin:
    quadrants = summary.filter(pl.col("kaplan_quadrant") != NO_REVENUE).with_columns(
        pl.col("kaplan_quadrant")
        .replace_strict({q: c for q, (c, _) in QUADRANTS.items()})
        .alias("cost_ratio"),
        pl.col("kaplan_quadrant")
        .replace_strict({q: m for q, (_, m) in QUADRANTS.items()})
        .alias("margin_ratio"),
        pl.col("kaplan_quadrant").str.replace_all("_", " ").alias("name"),
        (
            pl.col("customers").cast(pl.String)
            + " customers · "
            + pl.col("profit").map_elements(
                lambda v: format_money(v, currency), return_dtype=pl.String
            )
        ).alias("detail"),
    )
    reach = max(1.0, float(quadrants.select(pl.col("profit").abs().max()).item() or 0.0))
    base = alt.Chart(quadrants).encode(
        x=alt.X("cost_ratio:N", sort=["low", "high"], title="Cost to serve ÷ revenue").axis(
            labelAngle=0, labelExpr="datum.value + ' cost'"
        ),
        y=alt.Y("margin_ratio:N", sort=["high", "low"], title="Margin ÷ revenue").axis(
            labelExpr="datum.value + ' margin'"
        ),
    )
    cells = base.mark_rect(cornerRadius=4, stroke="white", strokeWidth=3).encode(
        color=alt.Color("profit:Q", title=f"Profit ({currency})")
        .scale(scheme="redblue", domain=[-reach, reach])
        .legend(format="~s"),
        tooltip=[
            alt.Tooltip("name:N", title="quadrant"),
            "customers:Q",
            alt.Tooltip("profit:Q", format=",.0f", title=f"profit ({currency})"),
            alt.Tooltip("revenue:Q", format=",.0f", title=f"revenue ({currency})"),
        ],
    )
    name = base.mark_text(dy=-9, fontSize=14, fontWeight="bold").encode(text="name:N")
    detail = base.mark_text(dy=10, fontSize=11).encode(text="detail:N")
    return alt.layer(cells, name, detail).properties(width=CHART_WIDTH - 110, height=220)


def _spread_layers(
    data: pl.DataFrame, y: alt.Y, color: alt.Color, y_offset: alt.YOffset | None = None
) -> alt.TopLevelMixin:
    base = alt.Chart(data).encode(y=y, color=color)
    if y_offset is not None:
        base = base.encode(yOffset=y_offset)
    tooltip = [
        alt.Tooltip("customers:Q", title="customers with a gap"),
        alt.Tooltip("mean:Q", format="+.2f"),
        alt.Tooltip("q1:Q", format="+.2f", title="25th percentile"),
        alt.Tooltip("median:Q", format="+.2f"),
        alt.Tooltip("q3:Q", format="+.2f", title="75th percentile"),
    ]
    gap_axis = alt.X("p10:Q", title="Perception − expectation (10th–90th percentile, IQR, mean)")
    whisker = base.mark_rule(strokeWidth=1.5).encode(x=gap_axis, x2="p90:Q")
    box = base.mark_bar(height={"band": 0.6}, opacity=0.55).encode(
        x="q1:Q", x2="q3:Q", tooltip=tooltip
    )
    median = base.mark_tick(color="white", thickness=2, size=14).encode(x="median:Q")
    mean = base.mark_point(filled=True, size=60, shape="diamond", opacity=1).encode(
        x="mean:Q", tooltip=tooltip
    )
    zero = alt.Chart(pl.DataFrame({"x": [0.0]})).mark_rule(color="#495057", strokeDash=[4, 3])
    return alt.layer(whisker, box, median, mean, zero.encode(x="x:Q"))


def gap_dimension_chart(gaps: pl.DataFrame) -> alt.TopLevelMixin:
    order = gaps["dimension"].to_list()
    return _spread_layers(
        gaps,
        y=alt.Y("dimension:N", sort=order, title=None),
        color=_category_color("side", SIDE_COLORS, title="Quality side"),
    ).properties(width=CHART_WIDTH - 130, height=220)


def gap_side_chart(sides: pl.DataFrame) -> alt.TopLevelMixin:
    order = [*PROFIT_SEGMENTS, "all customers"]
    return _spread_layers(
        sides,
        y=alt.Y("profit_segment:N", sort=order, title=None),
        color=_category_color("side", SIDE_COLORS, title="Quality side"),
        y_offset=alt.YOffset("side:N", sort=list(SIDE_COLORS)),
    ).properties(width=CHART_WIDTH - 130, height=240)


def action_matrix_chart(matrix: pl.DataFrame, currency: str) -> alt.TopLevelMixin:
    data = matrix.with_columns(
        pl.col("action").str.replace_all("_", " ").alias("action_label"),
        (
            pl.col("customers").cast(pl.String)
            + " customers · "
            + pl.col("profit").map_elements(
                lambda v: format_money(v, currency), return_dtype=pl.String
            )
        ).alias("detail"),
    )
    base = alt.Chart(data).encode(
        x=alt.X("service_level:N", sort=list(SERVICE_LEVELS), title="Service level").axis(
            labelAngle=0, orient="top", labelFontSize=13, labelFontWeight="bold"
        ),
        y=alt.Y("profit_segment:N", sort=list(PROFIT_SEGMENTS), title="Profit segment").axis(
            labelFontSize=13, labelFontWeight="bold"
        ),
    )
    cells = base.mark_rect(cornerRadius=5, stroke="white", strokeWidth=4).encode(
        color=_category_color("action", ACTION_COLORS),  # each cell names its action
        tooltip=[
            "profit_segment:N",
            "service_level:N",
            "action:N",
            "customers:Q",
            alt.Tooltip("profit:Q", format=",.0f", title=f"profit ({currency})"),
        ],
    )
    label = base.mark_text(dy=-9, fontWeight="bold", color="white", fontSize=15).encode(
        text="action_label:N"
    )
    detail = base.mark_text(dy=11, color="white", fontSize=12).encode(text="detail:N")
    return alt.layer(cells, label, detail).properties(width=880, height=240)


def rfm_chart(rfm: pl.DataFrame, currency: str) -> alt.TopLevelMixin:
    order = rfm["rfm_segment"].to_list()
    y = alt.Y("rfm_segment:N", sort=order, title=None)
    base = alt.Chart(rfm).encode(
        y=y,
        tooltip=[
            "rfm_segment:N",
            "customers:Q",
            alt.Tooltip("monetary:Q", format=",.0f", title=f"monetary ({currency})"),
        ],
    )
    customers = base.mark_bar(color="#74c0fc", cornerRadiusEnd=2).encode(
        x=alt.X("customers:Q", title="Customers")
    )
    monetary = base.mark_bar(color="#1b6ca8", cornerRadiusEnd=2).encode(
        x=alt.X("monetary:Q", title=f"Monetary ({currency})").axis(format="~s"),
        y=alt.Y("rfm_segment:N", sort=order, title=None, axis=None),
    )
    return alt.hconcat(
        customers.properties(width=150, height=230), monetary.properties(width=180, height=230)
    )


def trends_chart(trends: pl.DataFrame, currency: str) -> alt.TopLevelMixin:
    data = trends.with_columns(pl.col("as_of_date").cast(pl.String))
    x = alt.X("as_of_date:T", title=None).axis(format="%d %b", labelAngle=0)

    def panel(column: str, title: str, fmt: str, color: str) -> alt.Chart:
        return (
            alt.Chart(data)
            .mark_line(point={"color": color, "size": 50}, color=color, strokeWidth=2.5)
            .encode(
                x=x,
                y=alt.Y(f"{column}:Q", title=None).axis(format=fmt),
                tooltip=[
                    alt.Tooltip("as_of_date:T", title="as of"),
                    alt.Tooltip(f"{column}:Q", format=fmt, title=title),
                ],
            )
            .properties(title=title, width=190, height=140)
        )

    return alt.hconcat(
        panel("customers", "Customers", ",d", "#495057"),
        panel("total_profit", f"Total profit ({currency})", "~s", "#1b6ca8"),
        panel("top_share", "Profit share of the top 20 %", ".0%", "#2b8a3e"),
        panel("share_below", "Share of rated customers below", ".0%", "#d7301f"),
    )


def quarantine_chart(reasons: pl.DataFrame) -> alt.TopLevelMixin:
    top = (
        reasons.group_by("reason_code")
        .agg(pl.col("rows").sum())
        .sort(["rows", "reason_code"], descending=[True, False])
        .head(TOP_REASONS)
    )
    data = reasons.join(top.select("reason_code"), on="reason_code", how="semi")
    return (
        alt.Chart(data)
        .mark_bar(cornerRadiusEnd=2)
        .encode(
            y=alt.Y("reason_code:N", sort=top["reason_code"].to_list(), title=None),
            x=alt.X("rows:Q", title="Quarantined rows", stack="zero"),
            color=alt.Color("source:N", title="Source").scale(
                domain=["interactions", "surveys", "unknown"],
                range=["#1b6ca8", "#f08c00", "#868e96"],
            ),
            tooltip=["reason_code:N", "source:N", "rows:Q"],
        )
        .properties(width=CHART_WIDTH - 150, height=max(60, 18 * top.height))
    )


def _category_color(column: str, colors: dict[str, str], title: str | None = None) -> alt.Color:
    color = alt.Color(f"{column}:N", title=title).scale(
        domain=list(colors), range=list(colors.values())
    )
    return color.legend(orient="bottom") if title else color.legend(None)


def _themed(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec = (
        chart.configure(
            font="system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif",
            background="transparent",
        )
        .configure_view(stroke=None)
        .configure_axis(
            labelColor="#495057", titleColor="#495057", gridColor="#e9ecef", domainColor="#adb5bd"
        )
        .configure_legend(labelColor="#495057", titleColor="#495057")
        .to_dict()
    )
    return dict(spec)


# ---------------------------------------------------------------------------------------
# words


def format_money(value: float | Decimal | None, currency: str) -> str:
    if value is None:
        return "—"
    amount = float(value)
    sign = "−" if amount < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(currency)
    digits = f"{abs(amount):,.0f}"
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency}"


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _whale_lede(profitability: pl.DataFrame, head: Headline) -> str:
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


def _kaplan_lede(profitability: pl.DataFrame, money: Any) -> str:
    no_revenue = profitability.filter(pl.col("kaplan_quadrant").is_null())
    loss = no_revenue["profit"].cast(pl.Float64).sum() if no_revenue.height else 0.0
    return (
        "Split at the snapshot's medians of cost-to-serve and margin per unit of revenue. "
        f"Not shown: {no_revenue.height} customers without revenue (profit {money(loss)})."
    )


def _gap_lede(gaps: pl.DataFrame) -> str:
    if gaps.is_empty():
        return "No survey gaps in this snapshot's window."
    worst = gaps.row(0, named=True)
    return (
        f"Shortfall is largest on {worst['dimension']} (mean gap {_signed(worst['mean'])} over "
        f"{worst['customers']} customers). Below zero: perception fell short of expectation."
    )


def _action_lede(matrix: pl.DataFrame, money: Any) -> str:
    retain = matrix.filter(pl.col("action") == "retain_now")
    return (
        f"Retain now: {int(retain['customers'].sum())} profitable customers whose service fell "
        f"below expectations, worth {money(retain['profit'].sum())} of profit."
    )


def _findings(
    head: Headline,
    gaps: pl.DataFrame,
    matrix: pl.DataFrame,
    profitability: pl.DataFrame,
    money: Any,
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
        side_text = ", ".join(f"{s} {_signed(m)}" for s, m in side_means.iter_rows())
        where = (
            f"Largest shortfall: {worst['dimension']} ({worst['side']}, mean gap "
            f"{_signed(worst['mean'])}). By side: {side_text}. "
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


# ---------------------------------------------------------------------------------------
# HTML


def _chart_block(key: str, title: str, lede: str, wide: bool = False) -> str:
    return (
        f'<figure class="card{" wide" if wide else ""}" id="chart-{key}">'
        f"<h3>{html.escape(title)}</h3>"
        f'<p class="lede">{html.escape(lede)}</p>'
        f'<div class="vis" id="vis-{key}" data-chart="{key}"></div>'
        "</figure>"
    )


def _note_block(title: str, text: str) -> str:
    return (
        f'<figure class="card note"><h3>{html.escape(title)}</h3>'
        f'<p class="lede">{html.escape(text)}</p></figure>'
    )


def _ledger_block(ledger: pl.DataFrame, lake: Lake, out_path: Path) -> str:
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
        .sort("source")
    )
    columns = list(by_source.columns)
    total = {c: by_source[c].sum() for c in columns[1:]}
    rows = [dict(zip(columns, r, strict=True)) for r in by_source.iter_rows()]
    rows.append({"source": "all", **total})
    header = "".join(f"<th>{html.escape(LEDGER_HEADERS.get(c, c))}</th>" for c in columns)
    body = "".join(
        f'<tr class="{"total" if r["source"] == "all" else ""}">'
        + "".join(_cell(r[c]) for c in columns)
        + "</tr>"
        for r in rows
    )
    read = int(total["rows_read"] or 0)
    quarantined = int(total["rows_quarantined"] or 0)
    share = f"{quarantined / read:.1%}" if read else "—"
    rejected = ledger.filter(pl.col("status") == "rejected").select("source_file", "reason")
    rejected_html = (
        "<p class='lede'>Rejected files:</p><ul class='rejected'>"
        + "".join(
            f"<li><code>{html.escape(f)}</code> — {html.escape(r or '')}</li>"
            for f, r in rejected.iter_rows()
        )
        + "</ul>"
        if rejected.height
        else ""
    )
    docs_index = lake.data_docs_dir / "index.html"
    if docs_index.exists():
        link = Path(os.path.relpath(docs_index.resolve(), out_path.resolve().parent)).as_posix()
        docs = (
            f'<p class="lede">Every rule and its results: '
            f'<a href="{html.escape(link)}">Great Expectations Data Docs</a>.</p>'
        )
    else:
        docs = '<p class="lede">No Great Expectations Data Docs have been built yet.</p>'
    return (
        '<figure class="card" id="ledger"><h3>Ingested files and rows</h3>'
        f'<p class="lede">All {ledger.height} landed files so far: {quarantined:,} of '
        f"{read:,} rows ({share}) quarantined; rows read = valid + quarantined for every file."
        f"</p><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
        f"{rejected_html}{docs}</figure>"
    )


def _cell(value: object) -> str:
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _card(label: str, value: str, note: str, tone: str = "") -> str:
    return (
        f'<div class="kpi {tone}"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{html.escape(value)}</div>'
        f'<div class="note">{html.escape(note)}</div></div>'
    )


def _page(
    *,
    as_of: date,
    settings: Settings,
    head: Headline,
    findings: Iterable[tuple[str, str]],
    sections: Iterable[Section],
    specs: dict[str, dict[str, Any]],
    money: Any,
) -> str:
    below_share = f"{head.below / head.rated:.0%} of rated" if head.rated else "none rated"
    cards = "".join(
        [
            _card(
                "Customers",
                f"{head.customers:,}",
                f"active in the {settings.window_days}-day window",
            ),
            _card(
                "Total profit",
                money(head.total_profit),
                "margin − cost to serve",
                "bad" if head.total_profit <= 0 else "",
            ),
            _card(
                "Profit from the top 20 %",
                _percent(head.top_share),
                "of total profit, by profit rank",
            ),
            _card(
                "Below expectations",
                f"{head.below:,}",
                f"customers ({below_share})",
                "bad" if head.below else "",
            ),
        ]
    )
    finding_html = "".join(
        f"<li><strong>{html.escape(title)}.</strong> {html.escape(text)}</li>"
        for title, text in findings
    )
    section_html = "".join(
        f'<section><h2>{html.escape(s.title)}</h2><div class="grid">{"".join(s.blocks)}</div>'
        "</section>"
        for s in sections
    )
    specs_json = _script_safe(json.dumps(specs, separators=(",", ":"), allow_nan=False))
    options_json = json.dumps(EMBED_OPTIONS)
    title = f"servio report — as of {as_of.isoformat()}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="as-of-date" content="{as_of.isoformat()}">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script>{vega_bundle()}</script>
</head>
<body data-charts="pending">
<header>
<h1>servio report <span class="asof">as of {as_of.isoformat()}</span></h1>
<p class="sub">Customers active in the {settings.window_days} days up to {as_of.isoformat()},
money in {html.escape(settings.currency)}, service gap = perception − expectation on a 1–7
scale. Built from the curated tables; no personal data.</p>
</header>
<div class="kpis">{cards}</div>
<ul class="findings">{finding_html}</ul>
{section_html}
<footer>servio · snapshot {as_of.isoformat()} · window {settings.window_days} days ·
service-level band ±{settings.service_level_band:g}</footer>
<script>
const specs = {specs_json};
const embedOptions = {options_json};
Promise.allSettled(Object.entries(specs).map(([key, spec]) => {{
  const target = document.getElementById("vis-" + key);
  return vegaEmbed(target, spec, embedOptions).catch((error) => {{
    console.error("chart " + key + " failed to draw:", error);
    target.textContent = "This chart failed to draw: " + error;
    throw error;
  }});
}})).then((results) => {{
  const failed = results.filter((r) => r.status === "rejected").length;
  document.body.dataset.charts = failed ? "failed" : "drawn";
}});
</script>
</body>
</html>
"""


def _script_safe(json_text: str) -> str:
    """JSON that cannot close the <script> element it is embedded in ("<\\/" is "</" in JSON)."""
    return json_text.replace("</", "<\\/")


@functools.cache
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script defining `window.vegaEmbed` (offline)."""
    import vl_convert

    version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])
    bundle = str(vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;", vl_version=version))
    if "</script" in bundle.lower():  # would end the inline <script> element early
        raise RuntimeError("the vl-convert JavaScript bundle cannot be inlined: it has </script")
    return bundle


_CSS = """
:root { --ink:#212529; --muted:#6c757d; --line:#e9ecef; --bad:#d7301f; --accent:#1b6ca8; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1240px; padding: 28px 32px 40px; color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  background: #f8f9fa; }
h1 { margin: 0 0 4px; font-size: 26px; }
h1 .asof { color: var(--accent); font-weight: 600; margin-left: 8px; }
h2 { font-size: 19px; margin: 30px 0 12px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 0 0 4px; }
.sub, .lede, footer { color: var(--muted); font-size: 13px; margin: 0 0 10px; }
.kpis { display: grid; grid-template-columns: repeat(4, 1fr); gap: 14px; margin: 18px 0 14px; }
.kpi { background: white; border-radius: 10px; padding: 14px 18px; border-left: 5px solid var(--accent);
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.kpi.bad { border-left-color: var(--bad); }
.kpi .label { font-size: 13px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.kpi .value { font-size: 30px; font-weight: 700; margin: 2px 0; }
.kpi.bad .value { color: var(--bad); }
.kpi .note { font-size: 12px; color: var(--muted); }
.findings { background: white; border-radius: 10px; padding: 12px 18px 12px 34px; margin: 0;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.findings li { margin: 4px 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 16px; }
.card { background: white; border-radius: 10px; padding: 16px 18px; margin: 0;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); min-width: 0; overflow-x: auto; }
.card.note { opacity: .85; }
.card.wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0 10px; }
th, td { padding: 5px 6px; border-bottom: 1px solid var(--line); text-align: left; }
th { color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 700; border-top: 2px solid var(--line); }
ul.rejected { font-size: 13px; margin: 0 0 8px; }
footer { margin-top: 28px; }
@media (max-width: 900px) { .kpis { grid-template-columns: repeat(2, 1fr); } }
"""
