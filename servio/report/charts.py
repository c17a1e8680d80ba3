"""Frames → Vega-Lite specs (Altair), one function per chart of the report's first sections.

The §6 charts (customer value, drivers, service levels) are in `value_charts.py`; colours,
the theme and the offline JavaScript bundle are shared from here.
"""

from __future__ import annotations

import functools
from typing import Any

import altair as alt
import polars as pl

from servio.report.summaries import (
    NO_REVENUE,
    PROFIT_SEGMENTS,
    QUADRANTS,
    SERVICE_LEVELS,
    TOP_SHARE,
    top_profit_share,
    whale_points,
)
from servio.report.words import format_money

TOP_REASONS = 15
ACTION_COLORS = {
    "retain_now": "#d7301f",
    "grow": "#2b8a3e",
    "ask_feedback": "#4c78a8",
    "reduce_cost_to_serve": "#f08c00",
    "review_terms": "#845ef7",
}
SEGMENT_COLORS = {"core": "#1b6ca8", "profitable": "#6baed6", "unprofitable": "#e8590c"}
SIDE_COLORS = {"technical": "#c2255c", "functional": "#1c7ed6"}
EMBED_OPTIONS = {
    "renderer": "svg",
    "actions": False,
}
CHART_WIDTH = 470
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"


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
        color=category_color("profit_segment", SEGMENT_COLORS),
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
        color=category_color("side", SIDE_COLORS, title="Quality side"),
    ).properties(width=CHART_WIDTH - 130, height=220)


def gap_side_chart(sides: pl.DataFrame) -> alt.TopLevelMixin:
    order = [*PROFIT_SEGMENTS, "all customers"]
    return _spread_layers(
        sides,
        y=alt.Y("profit_segment:N", sort=order, title=None),
        color=category_color("side", SIDE_COLORS, title="Quality side"),
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
        color=category_color("action", ACTION_COLORS),  # each cell names its action
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


def category_color(column: str, colors: dict[str, str], title: str | None = None) -> alt.Color:
    color = alt.Color(f"{column}:N", title=title).scale(
        domain=list(colors), range=list(colors.values())
    )
    return color.legend(orient="bottom") if title else color.legend(None)


def themed(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec = (
        chart.configure(
            font=FONT,
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


@functools.cache
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script defining `window.vegaEmbed` (offline)."""
    import vl_convert

    version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])
    bundle = str(vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;", vl_version=version))
    if "</script" in bundle.lower():  # would end the inline <script> element early
        raise RuntimeError("the vl-convert JavaScript bundle cannot be inlined: it has </script")
    return bundle
