"""The Polars transforms against the independent DuckDB SQL peer (benchmarks/peer_profitability.py).

Money and labels must match exactly, floats within 1e-9, on realistic random data and on the
edge cases of SPEC §4.2.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from decimal import Decimal

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from benchmarks.peer_profitability import peer_customer_profitability, peer_customer_segments
from servio.schemas.catalog import load_catalog
from servio.schemas.channels import CHANNELS, DEFAULT_RATES
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
)
from servio.schemas.table import MONEY
from servio.schemas.tables import INTERACTIONS, survey_responses_table
from servio.transforms.profitability import cost_to_serve, customer_profitability
from servio.transforms.segments import customer_segments

AS_OF = dt.date(2026, 11, 27)
WINDOW_DAYS = 365
FLOATS = ["cumulative_profit_share"]
CATALOG = load_catalog()
SURVEY_SCHEMA = survey_responses_table(CATALOG).schema
QUALITY_SCHEMA = customer_quality_table(CATALOG).schema


def with_schema(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Every column of a curated schema, in order; those the test does not set are null."""
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


def money_from_cents(cents: pl.Expr) -> pl.Expr:
    return (cents.cast(pl.Decimal(38, 2)) / 100).cast(MONEY)


def random_interactions(rng: np.random.Generator, n_customers: int, n_rows: int) -> pl.DataFrame:
    """Heavy-tailed sales, refunds, many contacts without a sale, a few very active customers."""
    weights = 1.0 / np.arange(1, n_customers + 1) ** 0.7
    customer = rng.choice(n_customers, size=n_rows, p=weights / weights.sum())
    days_ago = rng.integers(
        -20, WINDOW_DAYS + 60, size=n_rows
    )  # some after D, some before the window
    kind = rng.choice(3, size=n_rows, p=[0.55, 0.38, 0.07])  # no sale, sale, refund
    list_price = rng.choice([999, 1999, 4900, 9900], size=n_rows)  # equal amounts make ties
    heavy = np.round(rng.lognormal(mean=3.0, sigma=1.4, size=n_rows) * 100).astype(np.int64) + 1
    sale = np.where(rng.random(n_rows) < 0.3, list_price, heavy)
    revenue = np.select([kind == 1, kind == 2], [sale, -np.minimum(sale, 20_000)], 0)
    # mostly the default 40 % margin, sometimes an exported margin (possibly a loss)
    exported = np.round(revenue * rng.uniform(-0.3, 0.8, size=n_rows)).astype(np.int64)
    margin = np.where(rng.random(n_rows) < 0.8, (revenue * 4) // 10, exported)
    handle = np.round(rng.exponential(300.0, size=n_rows), 3)
    started = [
        dt.datetime.combine(AS_OF - dt.timedelta(days=int(d)), dt.time(), tzinfo=dt.UTC)
        + dt.timedelta(seconds=int(s))
        for d, s in zip(days_ago, rng.integers(0, 86_400, size=n_rows), strict=True)
    ]
    frame = pl.DataFrame(
        {
            "interaction_id": [f"I{n:07d}" for n in range(n_rows)],
            "customer_id": [f"C{c:05d}" for c in customer],
            "channel": rng.choice(CHANNELS, size=n_rows),
            "started_at": pl.Series(started, dtype=INTERACTIONS.schema["started_at"]),
            "handle_seconds": handle,
            "is_resolved": rng.random(n_rows) < 0.7,
            "revenue_cents": revenue,
            "margin_cents": margin,
            "currency": "EUR",
        }
    ).with_columns(
        interaction_date=pl.col("started_at").dt.date(),
        revenue=money_from_cents(pl.col("revenue_cents")),
        margin=money_from_cents(pl.col("margin_cents")),
        cost_to_serve=cost_to_serve(pl.col("channel"), pl.col("handle_seconds"), DEFAULT_RATES),
        updated_at=pl.col("started_at"),
    )
    return with_schema(frame, INTERACTIONS.schema)


def random_survey_responses(
    rng: np.random.Generator, n_customers: int, n_survey_only: int, n_rows: int
) -> pl.DataFrame:
    from_customers = [f"C{c:05d}" for c in rng.integers(0, n_customers, size=n_rows)]
    survey_only = [f"S{c:04d}" for c in rng.integers(0, n_survey_only, size=n_rows)]
    pick = rng.random(n_rows) < 0.7
    days_ago = rng.integers(-10, WINDOW_DAYS + 30, size=n_rows)
    frame = pl.DataFrame(
        {
            "response_id": [f"R{n:06d}" for n in range(n_rows)],
            "customer_id": np.where(pick, from_customers, survey_only),
            "submitted_date": [AS_OF - dt.timedelta(days=int(d)) for d in days_ago],
            "nps": rng.integers(0, 11, size=n_rows),
        }
    )
    return with_schema(frame, SURVEY_SCHEMA)


@pytest.fixture(scope="module")
def lake() -> Iterator[tuple[duckdb.DuckDBPyConnection, pl.DataFrame, pl.DataFrame]]:
    rng = np.random.default_rng(20261127)
    interactions = random_interactions(rng, n_customers=3_000, n_rows=30_000)
    responses = random_survey_responses(rng, n_customers=3_000, n_survey_only=600, n_rows=2_000)
    con = duckdb.connect()
    con.register("interactions", interactions)
    con.register("survey_responses", responses)
    yield con, interactions, responses
    con.close()


def assert_same_snapshot(ours: pl.DataFrame, peer: pl.DataFrame) -> None:
    assert peer.schema == CUSTOMER_PROFITABILITY.schema
    assert_frame_equal(ours.drop(FLOATS), peer.drop(FLOATS), check_exact=True)
    assert_frame_equal(
        ours.select(FLOATS), peer.select(FLOATS), check_exact=False, rel_tol=0, abs_tol=1e-9
    )


def test_profitability_matches_the_peer_on_realistic_data(
    lake: tuple[duckdb.DuckDBPyConnection, pl.DataFrame, pl.DataFrame],
) -> None:
    con, interactions, responses = lake
    ours = customer_profitability(
        interactions.lazy(), responses.lazy(), AS_OF, window_days=WINDOW_DAYS
    ).collect()
    peer = peer_customer_profitability(
        con, "interactions", "survey_responses", AS_OF, window_days=WINDOW_DAYS
    )
    assert_same_snapshot(ours, peer)

    # the data reaches every branch, or the comparison would prove little
    assert set(ours["profit_segment"]) == {"core", "profitable", "unprofitable"}
    assert set(ours["kaplan_quadrant"].drop_nulls()) == {
        "passive",
        "carriage_trade",
        "bargain_basement",
        "aggressive",
    }
    assert set(ours["rfm_segment"]) == {
        "hibernating",
        "at_risk",
        "cant_lose",
        "about_to_sleep",
        "need_attention",
        "potential_loyalist",
        "champions",
        "loyal",
        "promising",
        "new",
        "no_purchase",
    }
    assert ours.height > 3_000  # survey-only customers too
    assert ours.filter(pl.col("customer_id").str.starts_with("S")).height > 100
    assert (ours["revenue"] < 0).sum() > 0 and (ours["revenue"] == 0).sum() > 0
    assert ours["profit"].is_duplicated().sum() > 0
    for column in ("recency_days", "frequency", "monetary"):
        assert ours[column].drop_nulls().is_duplicated().sum() > 0, column


def test_profitability_matches_the_peer_when_no_profit_is_positive(
    lake: tuple[duckdb.DuckDBPyConnection, pl.DataFrame, pl.DataFrame],
) -> None:
    con, interactions, responses = lake
    costly = interactions.with_columns(margin=pl.lit(Decimal("-1.00"), MONEY))
    con.register("costly_interactions", costly)
    ours = customer_profitability(
        costly.lazy(), responses.lazy(), AS_OF, window_days=WINDOW_DAYS
    ).collect()
    peer = peer_customer_profitability(
        con, "costly_interactions", "survey_responses", AS_OF, window_days=WINDOW_DAYS
    )
    assert_same_snapshot(ours, peer)
    assert set(ours["profit_segment"]) == {"unprofitable"}


def test_segments_match_the_peer(
    lake: tuple[duckdb.DuckDBPyConnection, pl.DataFrame, pl.DataFrame],
) -> None:
    con, interactions, responses = lake
    profitability = customer_profitability(
        interactions.lazy(), responses.lazy(), AS_OF, window_days=WINDOW_DAYS
    ).collect()
    rng = np.random.default_rng(7)
    levels = rng.choice(["below", "met", "exceeded", "unknown"], size=profitability.height)
    quality = pl.concat(
        [
            # most customers have a quality row; a few do not (→ unknown)
            profitability.select("as_of_date", "customer_id")
            .with_columns(service_level=pl.Series(levels))
            .filter(pl.Series(rng.random(profitability.height) < 0.97)),
            # the day before: must not be joined
            profitability.select(
                as_of_date=pl.col("as_of_date") - pl.duration(days=1),
                customer_id="customer_id",
                service_level=pl.lit("below"),
            ),
        ]
    ).pipe(with_schema, QUALITY_SCHEMA)
    con.register("profitability", profitability)
    con.register("quality", quality)

    ours = customer_segments(profitability.lazy(), quality.lazy()).collect()
    peer = peer_customer_segments(con, "profitability", "quality")
    assert peer.schema == CUSTOMER_SEGMENTS.schema
    assert_frame_equal(ours, peer, check_exact=True)
    assert ours["action"].n_unique() == 5


# --- small cases: the edges of SPEC §4.2, hypothesis and literal -------------------------


def small_interactions(rows: list[tuple[str, int, int, int, int]]) -> pl.DataFrame:
    """(customer_id, days_ago, revenue, margin, cost_to_serve in cents)."""
    frame = pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "interaction_date": [AS_OF - dt.timedelta(days=r[1]) for r in rows],
            "revenue": [r[2] for r in rows],
            "margin": [r[3] for r in rows],
            "cost_to_serve": [r[4] for r in rows],
        },
        schema={
            "customer_id": pl.String,
            "interaction_date": pl.Date,
            "revenue": pl.Int64,
            "margin": pl.Int64,
            "cost_to_serve": pl.Int64,
        },
    ).with_columns(money_from_cents(pl.col(c)) for c in ("revenue", "margin", "cost_to_serve"))
    return with_schema(frame, INTERACTIONS.schema)


def small_responses(rows: list[tuple[str, int]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "customer_id": [c for c, _ in rows],
            "submitted_date": [AS_OF - dt.timedelta(days=d) for _, d in rows],
        },
        schema={"customer_id": pl.String, "submitted_date": pl.Date},
    )
    return with_schema(frame, SURVEY_SCHEMA)


@functools.cache
def small_case_connection() -> duckdb.DuckDBPyConnection:
    """One connection for every small case (each registers its own frames): connecting is slow."""
    return duckdb.connect()


def compare_small(
    rows: list[tuple[str, int, int, int, int]], responses: list[tuple[str, int]]
) -> pl.DataFrame:
    interactions, surveys = small_interactions(rows), small_responses(responses)
    con = small_case_connection()
    con.register("interactions", interactions)
    con.register("survey_responses", surveys)
    ours = customer_profitability(
        interactions.lazy(), surveys.lazy(), AS_OF, window_days=WINDOW_DAYS
    ).collect()
    assert_same_snapshot(
        ours,
        peer_customer_profitability(
            con, "interactions", "survey_responses", AS_OF, window_days=WINDOW_DAYS
        ),
    )
    return ours


@pytest.mark.parametrize(
    ("rows", "responses"),
    [
        pytest.param([("a", 0, 1000, 400, 100)], [], id="single customer"),
        pytest.param(
            [("a", 0, 0, 5000, 0), ("b", 1, 0, 3000, 0), ("c", 2, 0, 1500, 0), ("d", 3, 0, 500, 0)],
            [],
            id="80 % exactly hit",
        ),
        pytest.param(
            [("a", 0, 0, 2000, 0), ("b", 0, 0, 2000, 0), ("x", 0, 0, 6000, 0)],
            [],
            id="equal profits across the core boundary",
        ),
        pytest.param(
            [("a", 0, 100, 0, 200), ("b", 0, -500, -200, 0), ("c", 0, 0, 0, 0)],
            [("s", 0)],
            id="no positive profit",
        ),
        pytest.param([], [("s", 0), ("t", 3)], id="survey responses only"),
        pytest.param(
            [
                ("a", WINDOW_DAYS, 100, 40, 1),
                ("b", WINDOW_DAYS - 1, 100, 40, 1),
                ("c", -1, 5, 2, 0),
            ],
            [("d", WINDOW_DAYS), ("e", 0)],
            id="window ends",
        ),
        pytest.param(
            [("a", 0, 70, 30, 0), ("b", 0, 770, 330, 0), ("c", 0, 1000, 100, 0)],
            [],
            id="equal ratios from different cents",
        ),
    ],
)
def test_profitability_matches_the_peer_on_edge_cases(
    rows: list[tuple[str, int, int, int, int]], responses: list[tuple[str, int]]
) -> None:
    compare_small(rows, responses)


small_rows = st.lists(
    st.tuples(
        st.sampled_from("abcdefghijkl"),
        st.integers(-2, WINDOW_DAYS + 2),
        st.one_of(st.just(0), st.sampled_from([500, 1000, -500]), st.integers(-20_000, 90_000)),
        st.one_of(st.sampled_from([200, 400]), st.integers(-20_000, 40_000)),
        st.one_of(st.sampled_from([0, 100]), st.integers(0, 5_000)),
    ),
    max_size=40,
)


@pytest.mark.e2e  # a long property search: the slow set
@settings(max_examples=100, deadline=None)
@given(
    rows=small_rows,
    responses=st.lists(
        st.tuples(st.sampled_from("amxyz"), st.integers(-2, WINDOW_DAYS + 2)), max_size=5
    ),
)
def test_profitability_matches_the_peer_on_small_random_cases(
    rows: list[tuple[str, int, int, int, int]], responses: list[tuple[str, int]]
) -> None:
    compare_small(rows, responses)
