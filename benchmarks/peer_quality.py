"""An independent DuckDB SQL reading of SPEC §4.1–4.2 `customer_quality`, to cross-check and
benchmark the Polars transform. It shares nothing with `transforms/quality.py`: it scores the
responses itself from the raw `exp_<item>` / `perc_<item>` answers, in long form.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import duckdb
import polars as pl

from servio.schemas.catalog import ItemCatalog

# A fixed duration: `INTERVAL 7 DAY` on a TIMESTAMPTZ follows the session time zone's
# calendar (167 or 169 hours across a DST change); the spec means 7 × 24 h in UTC.
SEVEN_DAYS_SQL = "INTERVAL 168 HOUR"
# A gap of exactly ±band is `met`; float rounding (1e-16) of a weighted mean must not move it.
BAND_TOLERANCE = 1e-9


def peer_customer_quality(
    con: duckdb.DuckDBPyConnection,
    interactions: str,
    survey_responses: str,
    as_of: datetime.date,
    *,
    window_days: int,
    band: float,
    catalog: ItemCatalog,
    weights: Mapping[str, float],
) -> pl.DataFrame:
    """`customer_quality` as of `as_of` from the DuckDB tables or views named; one row per
    customer with an interaction or a response in (as_of − window_days, as_of], by customer_id.
    """
    sql = _QUERY.format(
        interactions=_identifier(interactions),
        survey_responses=_identifier(survey_responses),
        catalog_rows=",\n        ".join(
            f"({_text(i.code)}, {_text(i.dimension)}, {_text(i.side)})" for i in catalog.items
        ),
        weight_rows=",\n        ".join(
            f"({_text(d)}, CAST({_text(repr(float(weights[d])))} AS DOUBLE))"
            for d in catalog.dimensions
        ),
        item_answers="\n        UNION ALL ".join(
            f"SELECT response_id, {_text(i.code)} AS item, "
            f"{_identifier(i.expectation_column)} AS expectation, "
            f"{_identifier(i.perception_column)} AS perception FROM window_responses"
            for i in catalog.items
        ),
        dimension_pivot=",\n            ".join(
            f"max(gap) FILTER (WHERE dimension = {_text(d)}) AS {_identifier(d + '_gap')}"
            for d in catalog.dimensions
        ),
        customer_dimension_gaps=",\n        ".join(
            f"avg(s.{_identifier(d + '_gap')}) AS {_identifier(d + '_gap')}"
            for d in catalog.dimensions
        ),
        output_dimension_gaps=",\n    ".join(
            f"s.{_identifier(d + '_gap')}" for d in catalog.dimensions
        ),
        seven_days=SEVEN_DAYS_SQL,
    )
    params = {
        "as_of": as_of,
        "window_start": as_of - datetime.timedelta(days=window_days),
        "band": float(band),
        "band_tolerance": BAND_TOLERANCE,
    }
    return con.sql(sql, params=params).pl()


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_QUERY = """
WITH
catalog(item, dimension, side) AS (
    VALUES
        {catalog_rows}
),
dimension_weight(dimension, weight) AS (
    VALUES
        {weight_rows}
),
window_responses AS (
    SELECT * FROM {survey_responses}
    WHERE submitted_date > $window_start AND submitted_date <= $as_of
),
item_answers AS (
        {item_answers}
),
item_gap AS (  -- null unless both expectation and perception are answered
    SELECT a.response_id, c.dimension, c.side, a.perception - a.expectation AS gap
    FROM item_answers AS a JOIN catalog AS c USING (item)
),
dimension_gap AS (
    SELECT response_id, dimension, avg(gap) AS gap
    FROM item_gap
    GROUP BY response_id, dimension
),
response_dimension_gaps AS (
    SELECT response_id,
            {dimension_pivot}
    FROM dimension_gap
    GROUP BY response_id
),
response_side_gaps AS (
    SELECT response_id,
           avg(gap) FILTER (WHERE side = 'technical') AS technical_gap,
           avg(gap) FILTER (WHERE side = 'functional') AS functional_gap
    FROM item_gap
    GROUP BY response_id
),
response_service_gap AS (  -- weights renormalised over the dimensions that have a gap
    SELECT g.response_id,
           sum(w.weight * g.gap) FILTER (WHERE g.gap IS NOT NULL)
             / nullif(sum(w.weight) FILTER (WHERE g.gap IS NOT NULL), 0) AS service_gap
    FROM dimension_gap AS g JOIN dimension_weight AS w USING (dimension)
    GROUP BY g.response_id
),
survey_side AS (
    SELECT r.customer_id,
           count(*) AS n_responses,
        {customer_dimension_gaps},
           avg(t.technical_gap) AS technical_gap,
           avg(t.functional_gap) AS functional_gap,
           avg(v.service_gap) AS service_gap,
           avg(r.csat) AS csat_mean,
           avg(r.ces) AS ces_mean
    FROM window_responses AS r
    LEFT JOIN response_dimension_gaps AS s USING (response_id)
    LEFT JOIN response_side_gaps AS t USING (response_id)
    LEFT JOIN response_service_gap AS v USING (response_id)
    GROUP BY r.customer_id
),
latest_nps AS (
    SELECT customer_id, nps AS nps_last
    FROM (
        SELECT customer_id, nps,
               row_number() OVER (
                   PARTITION BY customer_id ORDER BY submitted_at DESC, response_id DESC
               ) AS recency
        FROM window_responses
        WHERE nps IS NOT NULL
    )
    WHERE recency = 1
),
window_contacts AS (
    SELECT * FROM {interactions}
    WHERE interaction_date > $window_start AND interaction_date <= $as_of
),
contact_flags AS (
    SELECT a.customer_id, a.is_resolved, a.queue_seconds, a.handle_seconds,
           EXISTS (
               SELECT 1 FROM window_contacts AS b
               WHERE b.customer_id = a.customer_id
                 AND b.started_at > a.started_at
                 AND b.started_at <= a.started_at + {seven_days}
           ) AS is_repeated,
           EXISTS (  -- "=" never matches a null reason
               SELECT 1 FROM window_contacts AS b
               WHERE b.customer_id = a.customer_id
                 AND b.reason = a.reason
                 AND b.started_at > a.started_at
                 AND b.started_at <= a.started_at + {seven_days}
           ) AS is_recontacted_for_same_reason
    FROM window_contacts AS a
),
contact_side AS (
    SELECT customer_id,
           count(*) AS n_interactions,
           CAST(count(*) FILTER (WHERE is_resolved AND NOT is_recontacted_for_same_reason) AS DOUBLE)
             / count(*) AS fcr_rate,
           CAST(count(*) FILTER (WHERE is_repeated) AS DOUBLE) / count(*) AS repeat_contact_rate_7d,
           avg(queue_seconds) AS avg_queue_seconds,
           avg(handle_seconds) AS avg_handle_seconds
    FROM contact_flags
    GROUP BY customer_id
),
customers AS (
    SELECT customer_id FROM survey_side
    UNION
    SELECT customer_id FROM contact_side
)
SELECT
    CAST($as_of AS DATE) AS as_of_date,
    c.customer_id,
    coalesce(s.n_responses, 0) AS n_responses,
    {output_dimension_gaps},
    s.technical_gap,
    s.functional_gap,
    s.service_gap,
    CASE
        WHEN s.service_gap IS NULL THEN 'unknown'
        WHEN s.service_gap > $band + $band_tolerance THEN 'exceeded'
        WHEN s.service_gap < -$band - $band_tolerance THEN 'below'
        ELSE 'met'
    END AS service_level,
    n.nps_last,
    CASE
        WHEN n.nps_last >= 9 THEN 'promoter'
        WHEN n.nps_last >= 7 THEN 'passive'
        WHEN n.nps_last >= 0 THEN 'detractor'
    END AS nps_last_group,
    s.csat_mean,
    s.ces_mean,
    coalesce(i.n_interactions, 0) AS n_interactions,
    i.fcr_rate,
    i.repeat_contact_rate_7d,
    i.avg_queue_seconds,
    i.avg_handle_seconds
FROM customers AS c
LEFT JOIN survey_side AS s USING (customer_id)
LEFT JOIN latest_nps AS n USING (customer_id)
LEFT JOIN contact_side AS i USING (customer_id)
ORDER BY c.customer_id
"""
