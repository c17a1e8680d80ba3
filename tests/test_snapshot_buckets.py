"""A snapshot computed in customer-hash buckets equals the single-process snapshot, row for row."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from servio.config import Settings
from servio.lake.lake import Lake
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
    value_tables,
)
from servio.schemas.tables import INTERACTIONS, survey_responses_table
from servio.steps import buckets as snapshots
from servio.steps import sequence
from servio.steps.snapshot import latest_activity_date, snapshot_fingerprint
from servio.transforms.quality import customer_quality
from tests.lakes import build_lake
from tests.runs import run

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Lake]:
    return build_lake(tmp_path_factory.mktemp("buckets"))


def _tables(settings: Settings, lake: Lake, as_of: date) -> dict[str, pl.DataFrame]:
    tables = (
        customer_quality_table(settings.catalog),
        CUSTOMER_PROFITABILITY,
        CUSTOMER_SEGMENTS,
        *value_tables(settings.value_horizon_days).values(),
    )
    return {
        t.name: lake.scan(t).filter(pl.col("as_of_date") == as_of).sort(t.key[1:]).collect()
        for t in tables
    }


def _bucketed(settings: Settings, buckets: int) -> Settings:
    return settings.model_copy(update={"snapshot_buckets": buckets})


@pytest.mark.parametrize(
    ("buckets", "shuffle_batch_rows"),
    # A shuffle task reads its days in batches of rows: one day at a time, or all at once.
    [(2, snapshots.SHUFFLE_BATCH_ROWS), (7, 1)],
)
def test_bucketed_snapshot_equals_the_single_process_one(
    ingested: tuple[Settings, Lake],
    buckets: int,
    shuffle_batch_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshots, "SHUFFLE_BATCH_ROWS", shuffle_batch_rows)
    settings, lake = ingested
    as_of = latest_activity_date(lake, settings)
    assert as_of is not None
    single = _tables(settings, lake, as_of)  # published by build_lake with one bucket
    assert single["customer_segments"].height > 200

    plan = sequence.Plan(ingest=None, snapshot=as_of, force_snapshot=True, data_docs=False)
    summary = run(_bucketed(settings, buckets), plan=plan).snapshot
    assert summary is not None

    assert summary.shuffle_bytes > 0
    bucketed = _tables(settings, lake, as_of)
    for name, frame in single.items():
        assert frame.height > 0, name
        assert_frame_equal(bucketed[name], frame, check_exact=True)
    # The value models were fitted, and every purchaser scored, in both.
    assert single["value_model"]["converged"].to_list() == [True, True]
    assert single["customer_value"]["p_alive"].drop_nulls().len() > 100


def test_every_customer_lands_in_exactly_one_bucket(ingested: tuple[Settings, Lake]) -> None:
    settings, lake = ingested
    as_of = latest_activity_date(lake, settings)
    assert as_of is not None
    job = snapshots.SnapshotJob(_bucketed(settings, 5), lake, "20260101T000000Z-shuffle", as_of)
    try:
        ranges = snapshots.date_ranges(job)
        shuffled = [snapshots.shuffle(job, i, lo, hi) for i, (lo, hi) in ranges]
        assert len(shuffled) > 1  # several shuffle tasks, each over its own days
        outputs = [snapshots.reduce_bucket(job, b, shuffled) for b in range(job.buckets)]
        per_bucket = [
            pl.read_parquet(o.quality_path).select("customer_id").with_columns(bucket=o.bucket)
            for o in outputs
        ]
    finally:
        lake.discard_staging(job.run_id)
    customers = pl.concat(per_bucket)
    assert customers["customer_id"].is_unique().all()
    assert (customers["bucket"].n_unique()) == 5
    expected = lake.scan(customer_quality_table(settings.catalog)).filter(
        pl.col("as_of_date") == as_of
    )
    assert customers.height == expected.select(pl.len()).collect().item()


def test_how_the_work_runs_does_not_change_the_snapshot_fingerprint(
    ingested: tuple[Settings, Lake],
) -> None:
    settings, lake = ingested
    as_of = date(2026, 1, 1)
    same = settings.model_copy(update={"snapshot_buckets": 16, "dask_address": "tcp://h:8786"})
    assert snapshot_fingerprint(lake, same, as_of) == snapshot_fingerprint(lake, settings, as_of)
    computing = [
        {"window_days": 30},
        # the SPEC §6 settings compute the value tables
        {"value_horizon_days": 90},
        {"annual_discount_rate": 0.2},
        {"sla": {**settings.sla, "phone": 61.0}},
    ]
    for update in computing:
        different = settings.model_copy(update=update)
        assert snapshot_fingerprint(lake, different, as_of) != snapshot_fingerprint(
            lake, settings, as_of
        ), update


@pytest.mark.parametrize("seed", range(4))
def test_customer_quality_does_not_depend_on_the_order_rows_arrive_in(
    ingested: tuple[Settings, Lake], seed: int
) -> None:
    """Buckets hand the same rows over in other orders and chunks; float means must not
    notice (Polars' grouped mean does: it found a 1-ulp difference on S3)."""
    settings, lake = ingested
    as_of = latest_activity_date(lake, settings)
    assert as_of is not None
    interactions = lake.scan(INTERACTIONS).collect()
    responses = lake.scan(survey_responses_table(settings.catalog)).collect()

    def quality(i: pl.DataFrame, r: pl.DataFrame) -> pl.DataFrame:
        return customer_quality(
            i.lazy(),
            r.lazy(),
            as_of,
            window_days=settings.window_days,
            band=settings.service_level_band,
            catalog=settings.catalog,
        ).collect()

    def scrambled(frame: pl.DataFrame, chunk: int) -> pl.DataFrame:
        rows = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        parts = [rows.slice(i, chunk) for i in range(0, rows.height, chunk)]
        return pl.concat(parts, rechunk=False)

    assert_frame_equal(
        quality(scrambled(interactions, 53), scrambled(responses, 37)),
        quality(interactions, responses),
        check_exact=True,
    )
