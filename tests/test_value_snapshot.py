"""The four SPEC §6 tables from a real lake (generated exports through the pipeline steps,
no Prefect): their schemas, converged fits on sample data, and the same tables whatever the
number of customer-hash buckets the per-customer parts are computed in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from servio.config import Settings
from servio.schemas.snapshot_tables import value_tables
from servio.schemas.tables import INTERACTIONS, survey_responses_table
from servio.steps.buckets import bucket_of
from servio.transforms.service import service_counts
from servio.transforms.value import purchase_summary
from servio.value_snapshot import ValueSnapshot, value_snapshot, value_snapshot_from_parts
from tests import lakes

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Inputs:
    settings: Settings
    interactions: pl.DataFrame
    survey_responses: pl.DataFrame
    as_of: dt.date


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inputs]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GX_ANALYTICS_ENABLED", "false")
        settings, lake = lakes.build_lake(tmp_path_factory.mktemp("value-lake"))
    interactions = lake.scan(INTERACTIONS).collect()
    responses = lake.scan(survey_responses_table(settings.catalog)).collect()
    yield Inputs(settings, interactions, responses, interactions["interaction_date"].max())


@pytest.fixture(scope="module")
def whole(inputs: Inputs) -> ValueSnapshot:
    return value_snapshot(
        inputs.interactions.lazy(), inputs.survey_responses.lazy(), inputs.as_of, inputs.settings
    )


def test_the_four_tables_have_their_schemas(inputs: Inputs, whole: ValueSnapshot) -> None:
    declared = value_tables(inputs.settings.value_horizon_days)
    for name, frame in whole.tables().items():
        assert frame.schema == declared[name].schema, name
        assert frame["as_of_date"].unique().to_list() == [inputs.as_of]
        key = list(declared[name].key)
        assert frame.select(key).is_duplicated().sum() == 0, name


def test_sample_data_gives_converged_fits_and_scored_buyers(whole: ValueSnapshot) -> None:
    assert whole.unconverged == (), [f.message for f in whole.unconverged]
    buyers = whole.customer_value.filter(pl.col("x").is_not_null())
    assert buyers.height > 50
    assert buyers["p_alive"].null_count() == 0
    assert buyers["p_alive"].min() < 0.5 < buyers["p_alive"].max()  # some have left
    assert whole.value_model["n_customers"][0] == buyers.height
    assert whole.quality_drivers["importance"].null_count() == 0
    assert whole.service_levels["channel"].to_list() == ["phone", "chat", "email", "visit", "all"]


def test_every_customer_of_the_snapshot_is_in_customer_value(
    inputs: Inputs, whole: ValueSnapshot
) -> None:
    start = inputs.as_of - dt.timedelta(days=inputs.settings.window_days)
    customers = pl.concat(
        [
            inputs.interactions.filter(pl.col("interaction_date") > start)["customer_id"],
            inputs.survey_responses.filter(pl.col("submitted_date") > start)["customer_id"],
        ]
    ).unique()
    assert sorted(customers.to_list()) == whole.customer_value["customer_id"].to_list()


@pytest.mark.parametrize("buckets", [2, 5])
def test_bucketed_parts_give_the_same_tables(
    inputs: Inputs, whole: ValueSnapshot, buckets: int
) -> None:
    window = inputs.settings.window_days
    summaries, counts = [], []
    for bucket in reversed(range(buckets)):  # any order of the buckets
        mine = bucket_of(pl.col("customer_id"), buckets) == bucket
        interactions = inputs.interactions.lazy().filter(mine)
        responses = inputs.survey_responses.lazy().filter(mine)
        summaries.append(
            purchase_summary(interactions, responses, inputs.as_of, window_days=window).collect()
        )
        counts.append(service_counts(interactions, inputs.as_of, window_days=window).collect())
    bucketed = value_snapshot_from_parts(
        pl.concat(summaries),
        pl.concat(counts).lazy(),
        inputs.survey_responses.lazy(),
        inputs.as_of,
        inputs.settings,
    )
    for name, frame in whole.tables().items():
        assert_frame_equal(bucketed.tables()[name], frame, check_exact=True)
    assert bucketed.fits == whole.fits


def test_a_later_horizon_renames_the_column_and_raises_expectations(
    inputs: Inputs, whole: ValueSnapshot
) -> None:
    settings = inputs.settings.model_copy(update={"value_horizon_days": 730})
    longer = value_snapshot(
        inputs.interactions.lazy(), inputs.survey_responses.lazy(), inputs.as_of, settings
    ).customer_value
    assert "expected_purchases_730d" in longer.columns
    pairs = (
        longer.select("expected_purchases_730d")
        .hstack(whole.customer_value.select("expected_purchases_365d"))
        .drop_nulls()
    )
    assert (pairs["expected_purchases_730d"] >= pairs["expected_purchases_365d"]).all()
