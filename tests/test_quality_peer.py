"""Cross-check: the Polars `customer_quality` against an independent DuckDB SQL peer on a
realistic random data set (repeats within 7 days, shared reasons, ties, partial and
perception-only surveys, timestamps on the window's edges).
"""

from __future__ import annotations

import datetime

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmarks.peer_quality import peer_customer_quality
from servio.config import Settings
from servio.schemas.snapshot_tables import customer_quality_table
from servio.schemas.tables import INTERACTIONS, survey_responses_table
from servio.transforms.quality import customer_quality, survey_response_scores

SETTINGS = Settings(window_days=60, service_level_band=0.5)  # the default catalog and weights
WEIGHTS = {
    # 0.2 each is inexact in binary: a mean gap of exactly ±band comes out a rounding error
    # away from it, on either side.
    "default": SETTINGS.weights,
    # Uneven, so that a weight applied to the wrong dimension shows.
    "uneven": {
        "tangibles": 0.125,
        "reliability": 0.375,
        "responsiveness": 0.25,
        "assurance": 0.15,
        "empathy": 0.1,
    },
}
CATALOG = SETTINGS.catalog
AS_OF = datetime.date(2026, 11, 27)
N_CUSTOMERS = 2_000
N_SURVEY_ONLY_CUSTOMERS = 200
N_FIRST_CONTACTS = 14_000
N_FOLLOW_UPS = 6_000
N_RESPONSES = 3_000
REASONS = np.array(["billing", "order", "complaint", "info", None], dtype=object)
US_PER_HOUR = 3_600 * 10**6
US_PER_DAY = 24 * US_PER_HOUR


def _micros(day: datetime.date) -> int:
    midnight = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
    return int(midnight.timestamp()) * 10**6


WINDOW_START_US = _micros(AS_OF - datetime.timedelta(days=SETTINGS.window_days - 1))
AFTER_D_US = _micros(AS_OF + datetime.timedelta(days=1))


def _instants(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mostly spread from 10 days before the window to 5 days after D; a quarter within
    two hours either side of the window's first midnight or of the midnight ending D."""
    spread = rng.integers(WINDOW_START_US - 10 * US_PER_DAY, AFTER_D_US + 5 * US_PER_DAY, n)
    edge = np.where(rng.random(n) < 0.5, WINDOW_START_US, AFTER_D_US)
    near_edge = edge + rng.integers(-2 * US_PER_HOUR, 2 * US_PER_HOUR, n)
    return np.where(rng.random(n) < 0.25, near_edge, spread)


def _customer_ids(numbers: np.ndarray) -> pl.Series:
    return pl.Series([f"c{n:05d}" for n in numbers], dtype=pl.String)


def _shuffled_ids(rng: np.random.Generator, prefix: str, n: int) -> pl.Series:
    """Unique ids in an order unrelated to time, so ties on a timestamp break both ways."""
    return pl.Series([f"{prefix}{n:06d}" for n in rng.permutation(n)], dtype=pl.String)


def _with_utc_date(frame: pl.DataFrame, instant: str, date: str) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(instant).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    ).with_columns(pl.col(instant).dt.date().alias(date))


def _random_interactions(rng: np.random.Generator) -> pl.DataFrame:
    first_customer = rng.integers(0, N_CUSTOMERS, N_FIRST_CONTACTS)
    first_start = _instants(rng, N_FIRST_CONTACTS)
    first_reason = REASONS[rng.integers(0, len(REASONS), N_FIRST_CONTACTS)]

    # Follow-ups of a random earlier contact: same instant, exactly 7 days, 7 days + 1 µs,
    # or anywhere within 10 days; mostly for the same reason.
    base = rng.integers(0, N_FIRST_CONTACTS, N_FOLLOW_UPS)
    delay = np.select(
        [rng.random(N_FOLLOW_UPS) < p for p in (0.1, 0.15, 0.15)],
        [0, 7 * US_PER_DAY, 7 * US_PER_DAY + 1],
        default=rng.integers(1, 10 * US_PER_DAY, N_FOLLOW_UPS),
    )
    follow_reason = np.where(
        rng.random(N_FOLLOW_UPS) < 0.6,
        first_reason[base],
        REASONS[rng.integers(0, len(REASONS), N_FOLLOW_UPS)],
    )

    n = N_FIRST_CONTACTS + N_FOLLOW_UPS
    queue = rng.exponential(90.0, n)
    frame = pl.DataFrame(
        {
            "interaction_id": _shuffled_ids(rng, "i", n),
            "customer_id": _customer_ids(np.concatenate([first_customer, first_customer[base]])),
            "started_at": np.concatenate([first_start, first_start[base] + delay]),
            "handle_seconds": rng.exponential(400.0, n),
            "queue_seconds": pl.Series(queue).set(pl.Series(rng.random(n) < 0.1), None),
            "is_resolved": rng.random(n) < 0.7,
            "reason": pl.Series(np.concatenate([first_reason, follow_reason]), dtype=pl.String),
        }
    )
    frame = _with_utc_date(frame, "started_at", "interaction_date")
    return frame.select(
        pl.col(name) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in INTERACTIONS.schema.items()
    )


def _random_survey_responses(rng: np.random.Generator) -> pl.DataFrame:
    n = N_RESPONSES
    kind = rng.choice(["full", "perception_only", "scores_only"], n, p=[0.7, 0.2, 0.1])
    # Some respondents (c02000…) never contact the service in the data set.
    customers = rng.integers(0, N_CUSTOMERS + N_SURVEY_ONLY_CUSTOMERS, n)
    submitted = _instants(rng, n)
    # A tenth repeat another response's customer and instant: nps_last ties on submitted_at.
    twin = rng.random(n) < 0.1
    other = rng.integers(0, n, n)
    customers = np.where(twin, customers[other], customers)
    submitted = np.where(twin, submitted[other], submitted)

    answers: dict[str, pl.Series] = {}
    skipped_dimension = rng.choice([*CATALOG.dimensions, ""], n)
    for item in CATALOG.items:
        for column in (item.expectation_column, item.perception_column):
            unanswered = (
                (rng.random(n) < 0.2)
                | (kind == "scores_only")
                | (skipped_dimension == item.dimension)
                | ((kind == "perception_only") & (column == item.expectation_column))
            )
            values = pl.Series(rng.integers(1, 8, n), dtype=pl.Int32)
            answers[column] = values.set(pl.Series(unanswered), None)

    def score(low: int, high: int, null_share: float) -> pl.Series:
        values = pl.Series(rng.integers(low, high + 1, n), dtype=pl.Int32)
        return values.set(pl.Series(rng.random(n) < null_share), None)

    frame = pl.DataFrame(
        {
            "response_id": _shuffled_ids(rng, "r", n),
            "customer_id": _customer_ids(customers),
            "submitted_at": submitted,
            **answers,
            "nps": score(0, 10, 0.25),
            "csat": score(1, 5, 0.2),
            "ces": score(1, 7, 0.3),
        }
    )
    return _with_utc_date(frame, "submitted_at", "submitted_date")


@pytest.fixture(scope="module")
def lake() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Curated `interactions`, and standardised survey responses not yet scored."""
    rng = np.random.default_rng(20261127)
    return _random_interactions(rng), _random_survey_responses(rng)


def _both(
    interactions: pl.DataFrame,
    raw_responses: pl.DataFrame,
    weights: dict[str, float],
    as_of: datetime.date,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    table = survey_responses_table(CATALOG)
    scored = survey_response_scores(raw_responses.lazy(), CATALOG, weights).collect()
    survey_responses = scored.select(
        pl.col(name) if name in scored.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in table.schema.items()
    )
    ours = customer_quality(
        interactions.lazy(),
        survey_responses.lazy(),
        as_of,
        window_days=SETTINGS.window_days,
        band=SETTINGS.service_level_band,
        catalog=CATALOG,
    ).collect()
    # The peer sees the raw answers only, so it must score the responses itself.
    con = duckdb.connect()
    con.register("interactions", interactions.to_arrow())
    con.register("survey_responses_raw", raw_responses.to_arrow())
    peer = peer_customer_quality(
        con,
        "interactions",
        "survey_responses_raw",
        as_of,
        window_days=SETTINGS.window_days,
        band=SETTINGS.service_level_band,
        catalog=CATALOG,
        weights=weights,
    )
    con.close()
    return ours, peer


@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
@pytest.mark.parametrize("as_of", [AS_OF, AS_OF - datetime.timedelta(days=3)])
def test_polars_and_duckdb_agree(
    lake: tuple[pl.DataFrame, pl.DataFrame], weights: dict[str, float], as_of: datetime.date
) -> None:
    ours, peer = _both(*lake, weights, as_of)
    assert peer.schema == customer_quality_table(CATALOG).schema
    assert_frame_equal(ours, peer, check_exact=False, rel_tol=0.0, abs_tol=1e-9)


def test_the_random_data_set_exercises_the_edge_cases(
    lake: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    """Guards the cross-check against a data set too tame to tell the two apart."""
    interactions, raw_responses = lake
    ours, _ = _both(interactions, raw_responses, WEIGHTS["default"], AS_OF)
    levels = set(ours["service_level"].to_list())
    assert levels == {"exceeded", "met", "below", "unknown"}
    near_band = ours.filter(
        ((pl.col("service_gap").abs() - SETTINGS.service_level_band).abs() < 1e-12)
        & (pl.col("service_gap").abs() != SETTINGS.service_level_band)
    )
    assert near_band.height > 5  # gaps of exactly ±band, off by a rounding error
    assert set(ours["nps_last_group"].drop_nulls().to_list()) == {
        "promoter",
        "passive",
        "detractor",
    }
    assert ours.filter(pl.col("n_responses") == 0).height > 100
    assert ours.filter(pl.col("n_interactions") == 0).height > 100
    assert ours.filter(pl.col("repeat_contact_rate_7d") > 0).height > 500
    assert ours.filter(pl.col("fcr_rate") < pl.col("repeat_contact_rate_7d")).height > 100

    gaps = interactions.sort("started_at").select(
        "customer_id", "started_at", "interaction_date", "reason"
    )
    pairs = gaps.join(gaps, on="customer_id", suffix="_later").filter(
        pl.col("started_at_later") > pl.col("started_at")
    )
    delay = pl.col("started_at_later") - pl.col("started_at")
    assert pairs.filter(delay == datetime.timedelta(days=7)).height > 100
    assert pairs.filter(delay == datetime.timedelta(days=7, microseconds=1)).height > 100
    assert gaps.filter(pl.struct("customer_id", "started_at").is_duplicated()).height > 100
    edge_dates = [
        AS_OF - datetime.timedelta(days=SETTINGS.window_days),
        AS_OF + datetime.timedelta(days=1),
    ]
    assert gaps.filter(pl.col("interaction_date").is_in(edge_dates)).height > 500

    survey_responses = survey_response_scores(
        raw_responses.lazy(), CATALOG, WEIGHTS["default"]
    ).collect()
    perception_only = survey_responses.filter(
        pl.col("service_gap").is_null() & pl.col("reliability_perception").is_not_null()
    )
    assert perception_only.height > 300
    partial = survey_responses.filter(
        pl.col("service_gap").is_not_null()
        & pl.any_horizontal(pl.col(f"{d}_gap").is_null() for d in CATALOG.dimensions)
    )
    assert partial.height > 300
