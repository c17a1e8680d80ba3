"""customer_profitability and customer_segments in DuckDB SQL, written from SPEC §4.2 alone.

An independent peer of `transforms.profitability` / `transforms.segments`: the tests compare
the two on random data, and the benchmark times one against the other. Each input is named by
any SQL relation: a registered table or view, or e.g. `read_parquet('data/curated/…/*.parquet')`.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl


def peer_customer_profitability(
    con: duckdb.DuckDBPyConnection,
    interactions: str,
    survey_responses: str,
    as_of: dt.date,
    *,
    window_days: int,
) -> pl.DataFrame:
    """The customer_profitability snapshot as of `as_of`, over (as_of − window_days, as_of]."""
    sql = f"""
    WITH
    contacts AS (
        SELECT customer_id, interaction_date, revenue, margin, cost_to_serve
        FROM {interactions}
        WHERE interaction_date > $as_of::DATE - $window_days::INTEGER
          AND interaction_date <= $as_of::DATE
    ),
    active AS (
        SELECT customer_id FROM contacts
        UNION
        SELECT customer_id FROM {survey_responses}
        WHERE submitted_date > $as_of::DATE - $window_days::INTEGER
          AND submitted_date <= $as_of::DATE
    ),
    money AS (
        SELECT a.customer_id,
               COALESCE(SUM(c.revenue), 0) AS revenue,
               COALESCE(SUM(c.margin), 0) AS margin,
               COALESCE(SUM(c.cost_to_serve), 0) AS cost_to_serve,
               COALESCE(SUM(c.margin), 0) - COALESCE(SUM(c.cost_to_serve), 0) AS profit
        FROM active AS a LEFT JOIN contacts AS c ON c.customer_id = a.customer_id
        GROUP BY a.customer_id
    ),
    whale AS (
        SELECT *,
               ROW_NUMBER() OVER by_profit AS profit_rank,
               SUM(profit) OVER (by_profit ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                   AS running_profit,
               SUM(profit) OVER () AS total_profit,
               SUM(CASE WHEN profit > 0 THEN profit ELSE 0 END) OVER () AS positive_profit
        FROM money
        WINDOW by_profit AS (ORDER BY profit DESC, customer_id ASC)
    ),
    core AS (
        -- the smallest k whose top-k profits reach 80 % of the positive profits
        SELECT COALESCE(MIN(profit_rank), 0) AS core_size
        FROM whale
        WHERE positive_profit > 0 AND running_profit >= 0.8 * positive_profit
    ),
    ratios AS (
        -- whole cents are exact in a double, so each quotient is the exact ratio correctly
        -- rounded, and equal fractions give equal doubles
        SELECT customer_id,
               CAST(cost_to_serve * 100 AS BIGINT)::DOUBLE / CAST(revenue * 100 AS BIGINT)::DOUBLE
                   AS cost_ratio,
               CAST(margin * 100 AS BIGINT)::DOUBLE / CAST(revenue * 100 AS BIGINT)::DOUBLE
                   AS margin_ratio
        FROM money
        WHERE revenue > 0
    ),
    quadrants AS (
        SELECT r.customer_id,
               CASE
                   WHEN r.margin_ratio > m.margin_median AND r.cost_ratio <= m.cost_median
                       THEN 'passive'
                   WHEN r.margin_ratio > m.margin_median THEN 'carriage_trade'
                   WHEN r.cost_ratio <= m.cost_median THEN 'bargain_basement'
                   ELSE 'aggressive'
               END AS kaplan_quadrant
        FROM ratios AS r,
             (SELECT median(cost_ratio) AS cost_median, median(margin_ratio) AS margin_median
              FROM ratios) AS m
    ),
    purchases AS (
        SELECT customer_id,
               date_diff('day', MAX(interaction_date), $as_of::DATE) AS recency_days,
               COUNT(DISTINCT interaction_date) AS frequency,
               SUM(revenue) AS monetary
        FROM contacts
        WHERE revenue > 0
        GROUP BY customer_id
    ),
    rfm AS (
        SELECT *,
               CEIL(5 * ROW_NUMBER() OVER (ORDER BY recency_days DESC, customer_id)
                    / COUNT(*) OVER ()) AS r_score,
               CEIL(5 * ROW_NUMBER() OVER (ORDER BY frequency ASC, customer_id)
                    / COUNT(*) OVER ()) AS f_score,
               CEIL(5 * ROW_NUMBER() OVER (ORDER BY monetary ASC, customer_id)
                    / COUNT(*) OVER ()) AS m_score
        FROM purchases
    )
    SELECT
        $as_of::DATE AS as_of_date,
        w.customer_id,
        CAST(w.revenue AS DECIMAL(18, 2)) AS revenue,
        CAST(w.margin AS DECIMAL(18, 2)) AS margin,
        CAST(w.cost_to_serve AS DECIMAL(18, 2)) AS cost_to_serve,
        CAST(w.profit AS DECIMAL(18, 2)) AS profit,
        CAST(w.profit_rank AS BIGINT) AS profit_rank,
        CASE WHEN w.total_profit > 0
             THEN CAST(w.running_profit * 100 AS BIGINT)::DOUBLE
                  / CAST(w.total_profit * 100 AS BIGINT)::DOUBLE
        END AS cumulative_profit_share,
        CASE WHEN w.profit_rank <= core.core_size THEN 'core'
             WHEN w.profit > 0 THEN 'profitable'
             ELSE 'unprofitable'
        END AS profit_segment,
        q.kaplan_quadrant,
        CAST(f.recency_days AS BIGINT) AS recency_days,
        CAST(f.frequency AS BIGINT) AS frequency,
        CAST(f.monetary AS DECIMAL(18, 2)) AS monetary,
        CAST(f.r_score AS INTEGER) AS r_score,
        CAST(f.f_score AS INTEGER) AS f_score,
        CAST(f.m_score AS INTEGER) AS m_score,
        CASE
            WHEN f.customer_id IS NULL THEN 'no_purchase'
            WHEN f.r_score <= 2 AND f.f_score <= 2 THEN 'hibernating'
            WHEN f.r_score <= 2 AND f.f_score <= 4 THEN 'at_risk'
            WHEN f.r_score <= 2 THEN 'cant_lose'
            WHEN f.r_score = 3 AND f.f_score <= 2 THEN 'about_to_sleep'
            WHEN f.r_score = 3 AND f.f_score = 3 THEN 'need_attention'
            WHEN f.r_score IN (3, 4) AND f.f_score >= 4 THEN 'loyal'
            WHEN f.r_score = 5 AND f.f_score >= 4 THEN 'champions'
            WHEN f.r_score = 4 AND f.f_score = 1 THEN 'promising'
            WHEN f.r_score = 5 AND f.f_score = 1 THEN 'new'
            WHEN f.r_score >= 4 AND f.f_score IN (2, 3) THEN 'potential_loyalist'
        END AS rfm_segment
    FROM whale AS w
    CROSS JOIN core
    LEFT JOIN quadrants AS q ON q.customer_id = w.customer_id
    LEFT JOIN rfm AS f ON f.customer_id = w.customer_id
    ORDER BY w.customer_id
    """
    return con.sql(sql, params={"as_of": as_of, "window_days": window_days}).pl()


def peer_customer_segments(
    con: duckdb.DuckDBPyConnection, profitability: str, quality: str
) -> pl.DataFrame:
    """The customer_segments rows of the profitability snapshot(s), with their quality levels."""
    sql = f"""
    WITH joined AS (
        SELECT p.as_of_date, p.customer_id, p.profit_segment, p.rfm_segment,
               COALESCE(q.service_level, 'unknown') AS service_level
        FROM {profitability} AS p
        LEFT JOIN {quality} AS q
          ON q.as_of_date = p.as_of_date AND q.customer_id = p.customer_id
    )
    SELECT as_of_date, customer_id, profit_segment, service_level, rfm_segment,
           CASE
               WHEN profit_segment IN ('core', 'profitable') THEN
                   CASE service_level
                       WHEN 'below' THEN 'retain_now'
                       WHEN 'met' THEN 'grow'
                       WHEN 'exceeded' THEN 'grow'
                       WHEN 'unknown' THEN 'ask_feedback'
                   END
               WHEN profit_segment = 'unprofitable' THEN
                   CASE WHEN service_level = 'exceeded' THEN 'reduce_cost_to_serve'
                        WHEN service_level IN ('below', 'met', 'unknown') THEN 'review_terms'
                   END
           END AS action
    FROM joined
    ORDER BY as_of_date, customer_id
    """
    return con.sql(sql).pl()
