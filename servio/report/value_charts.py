"""Frames → Vega-Lite specs for the SPEC §6 sections: the CLV distribution, p_alive against
profit, the importance–performance matrix, and service levels per channel and over time."""

from __future__ import annotations

import altair as alt
import polars as pl

from servio.report.charts import ACTION_COLORS, CHART_WIDTH, category_color

QUADRANT_COLORS = {
    "fix_first": "#d7301f",
    "keep_up": "#2b8a3e",
    "possible_overkill": "#f08c00",
    "low_priority": "#868e96",
}
CHANNEL_COLORS = {
    "phone": "#1b6ca8",
    "chat": "#2b8a3e",
    "email": "#845ef7",
    "visit": "#f08c00",
    "web": "#c2255c",
    "all": "#212529",
}


def clv_chart(histogram: pl.DataFrame, currency: str) -> alt.TopLevelMixin:
    data = histogram.with_columns(
        pl.when(pl.col("is_top"))
        .then(pl.lit("top 1 % included"))
        .otherwise(pl.lit(""))
        .alias("note")
    )
    return (
        alt.Chart(data)
        # No cornerRadiusEnd: Vega-Lite then draws binned bars zero pixels wide.
        .mark_bar(color="#1b6ca8", binSpacing=1)
        .encode(
            x=alt.X(
                "bin_start:Q", bin="binned", title=f"Customer lifetime value ({currency})"
            ).axis(format="~s"),
            x2="bin_end:Q",
            y=alt.Y("customers:Q", title="Customers"),
            tooltip=[
                alt.Tooltip("bin_start:Q", format=",.0f", title=f"from ({currency})"),
                alt.Tooltip("bin_end:Q", format=",.0f", title=f"to ({currency})"),
                "customers:Q",
                alt.Tooltip("note:N", title=" "),
            ],
        )
        .properties(width=CHART_WIDTH, height=220)
    )


def p_alive_chart(points: pl.DataFrame, currency: str) -> alt.TopLevelMixin:
    dots = (
        alt.Chart(points)
        .mark_circle(size=28, opacity=0.65)
        .encode(
            x=alt.X("p_alive:Q", title="Probability still active (p_alive)")
            .axis(format=".0%")
            .scale(domain=[0, 1]),
            y=alt.Y("profit:Q", title=f"Profit in the window ({currency})").axis(format="~s"),
            color=category_color("action", ACTION_COLORS, title="Action"),
            tooltip=[
                "customer_id:N",
                alt.Tooltip("p_alive:Q", format=".0%"),
                alt.Tooltip("profit:Q", format=",.0f", title=f"profit ({currency})"),
                "action:N",
            ],
        )
    )
    zero = alt.Chart(pl.DataFrame({"y": [0.0]})).mark_rule(color="#adb5bd").encode(y="y:Q")
    return alt.layer(zero, dots).properties(width=CHART_WIDTH, height=260)


def drivers_chart(drivers: pl.DataFrame) -> alt.TopLevelMixin:
    """Importance (y) against performance (x), split at their means into the quadrants."""
    means = pl.DataFrame(
        {
            "performance": [drivers["performance"].mean()],
            "importance": [drivers["importance"].mean()],
        }
    )
    base = alt.Chart(drivers).encode(
        x=alt.X("performance:Q", title="Performance: mean perception (1–7)").scale(zero=False),
        y=alt.Y("importance:Q", title="Importance: relative weight in NPS").scale(zero=False),
    )
    points = base.mark_point(filled=True, size=140, opacity=0.9).encode(
        color=category_color("quadrant", QUADRANT_COLORS, title="Quadrant"),
        tooltip=[
            "dimension:N",
            "quadrant:N",
            alt.Tooltip("importance:Q", format=".3f"),
            alt.Tooltip("performance:Q", format=".2f"),
            alt.Tooltip("mean_gap:Q", format="+.2f", title="mean gap"),
            alt.Tooltip("n_responses:Q", title="responses"),
        ],
    )
    labels = base.mark_text(align="left", dx=9, dy=-7, fontSize=12).encode(text="dimension:N")
    split = alt.Chart(means)
    vertical = split.mark_rule(strokeDash=[4, 3], color="#868e96").encode(x="performance:Q")
    horizontal = split.mark_rule(strokeDash=[4, 3], color="#868e96").encode(y="importance:Q")
    return alt.layer(vertical, horizontal, points, labels).properties(
        width=CHART_WIDTH - 60, height=260
    )


def service_levels_chart(levels: pl.DataFrame) -> alt.TopLevelMixin:
    order = levels["channel"].to_list()
    base = alt.Chart(levels).encode(
        y=alt.Y("channel:N", sort=order, title=None),
        tooltip=[
            "channel:N",
            alt.Tooltip("n_interactions:Q", title="contacts", format=","),
            alt.Tooltip("sla_breach_rate:Q", title="SLA breach rate", format=".1%"),
            alt.Tooltip("p50_queue_seconds:Q", title="median queue (s)", format=",.0f"),
            alt.Tooltip("p90_queue_seconds:Q", title="90th percentile queue (s)", format=",.0f"),
            alt.Tooltip("fcr_rate:Q", title="first-contact resolution", format=".0%"),
        ],
    )
    bars = base.mark_bar(cornerRadiusEnd=2, height=18).encode(
        x=alt.X("sla_breach_rate:Q", title="Share of contacts queued beyond the target")
        .axis(format=".0%")
        .scale(domain=[0, 1]),
        color=category_color("channel", CHANNEL_COLORS),
    )
    text = base.mark_text(align="left", dx=4, fontSize=11).encode(
        x="sla_breach_rate:Q", text=alt.Text("sla_breach_rate:Q", format=".0%")
    )
    return alt.layer(bars, text).properties(width=CHART_WIDTH - 120, height=32 * len(order))


def service_trends_chart(trends: pl.DataFrame, experience: pl.DataFrame) -> alt.TopLevelMixin:
    breach = trends.with_columns(pl.col("as_of_date").cast(pl.String))
    present = set(breach["channel"].to_list())
    colors = {c: v for c, v in CHANNEL_COLORS.items() if c in present}
    x = alt.X("as_of_date:T", title=None).axis(format="%d %b", labelAngle=0)
    rates = (
        alt.Chart(breach)
        .mark_line(point=True, strokeWidth=2)
        .encode(
            x=x,
            y=alt.Y("sla_breach_rate:Q", title=None).axis(format=".0%"),
            color=category_color("channel", colors, title="Channel"),
            tooltip=[
                alt.Tooltip("as_of_date:T", title="as of"),
                "channel:N",
                alt.Tooltip("sla_breach_rate:Q", format=".1%", title="SLA breach rate"),
            ],
        )
        .properties(title="SLA breach rate per channel", width=300, height=160)
    )
    scores = experience.with_columns(pl.col("as_of_date").cast(pl.String))

    def panel(column: str, title: str, fmt: str) -> alt.Chart:
        return (
            alt.Chart(scores)
            .mark_line(point={"color": "#495057"}, color="#495057", strokeWidth=2)
            .encode(
                x=x,
                y=alt.Y(f"{column}:Q", title=None).scale(zero=False),  # axis: Vega's ticks
                tooltip=[
                    alt.Tooltip("as_of_date:T", title="as of"),
                    alt.Tooltip(f"{column}:Q", format=fmt, title=title),
                ],
            )
            .properties(title=title, width=160, height=160)
        )

    return alt.hconcat(
        rates,
        panel("nps", "NPS (points)", "+.1f"),
        panel("csat_mean", "CSAT (1–5)", ".2f"),
        panel("ces_mean", "Effort (1–7)", ".2f"),
    )
