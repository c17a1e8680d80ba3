"""The combine step's reads in step: the k-way merge of the buckets' sorted customer_quality
parts, and the segments joined a batch at a time."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from servio.steps import buckets
from servio.transforms.segments import customer_segments

# Distinct keys (a snapshot's buckets hold distinct customers), any text, each with the bucket
# it goes to; batches from one row up.
parts_of_keys = st.dictionaries(
    st.text(min_size=1, max_size=6), st.integers(0, 5), max_size=120
).map(lambda owners: sorted(owners.items()))


@settings(max_examples=60, deadline=None)
@given(keyed=parts_of_keys, batch=st.integers(1, 9))
def test_merged_parts_are_every_row_once_in_key_order(
    tmp_path_factory: pytest.TempPathFactory, keyed: list[tuple[str, int]], batch: int
) -> None:
    folder = tmp_path_factory.mktemp("parts")
    frame = pl.DataFrame(
        {
            "customer_id": [key for key, _ in keyed],
            "bucket": [bucket for _, bucket in keyed],
            "position": list(range(len(keyed))),
        },
        schema={"customer_id": pl.String, "bucket": pl.Int64, "position": pl.Int64},
    )
    paths = []
    for bucket in range(6):  # some buckets empty, as a small snapshot's are
        path = folder / f"quality-{bucket}.parquet"
        # Written in shuffled order: write_quality_part sorts, as the bucket task's does.
        part = frame.filter(pl.col("bucket") == bucket).sample(fraction=1.0, shuffle=True, seed=1)
        part.sort("customer_id").write_parquet(path, row_group_size=max(1, batch * 2 - 1))
        paths.append(str(path))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(buckets, "MERGE_BATCH_ROWS", batch)
        out = list(buckets.merge_sorted_files(paths, "customer_id"))

    # At most one batch of each of the 6 parts at a time.
    assert all(0 < f.height <= 6 * batch for f in out)
    merged = pl.concat(out) if out else frame.clear()
    assert_frame_equal(merged, frame.sort("customer_id"))


def test_write_quality_part_sorts_in_row_groups_the_merge_reads(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    quality = pl.DataFrame({"customer_id": [f"c{n:06d}" for n in range(70_000)][::-1]})
    path = tmp_path / "quality-00000.parquet"
    buckets.write_quality_part(quality, str(path))

    written = pq.ParquetFile(path)
    assert written.metadata.num_row_groups == 2  # 65,536 + 4,464 rows
    assert pl.read_parquet(path)["customer_id"].is_sorted()


def test_small_batches_are_written_in_row_groups_of_row_group_rows(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from servio.lake import files
    from servio.schemas.tables import LAKE_STATE

    rows = files.ROW_GROUP_ROWS
    state = pl.DataFrame({"key": [f"k{n}" for n in range(rows + 10)], "value": "v"})
    batches = (state.slice(start, 30_000) for start in range(0, state.height, 30_000))
    path = files.write_partition_file(batches, LAKE_STATE, tmp_path / "state.parquet")

    written = pq.ParquetFile(path)
    sizes = [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)]
    assert sizes == [rows, 10]
    assert_frame_equal(pl.read_parquet(path), state)


profit_segments = st.sampled_from(["core", "profitable", "unprofitable"])
levels_of = st.sampled_from(["below", "met", "exceeded", None])


@settings(max_examples=60, deadline=None)
@given(
    profitability=st.dictionaries(st.text(min_size=1, max_size=5), profit_segments, max_size=80),
    quality=st.dictionaries(st.text(min_size=1, max_size=5), levels_of, max_size=80),
    rows=st.integers(1, 9),
)
def test_segments_in_step_equal_the_segments_of_the_whole_files(
    tmp_path_factory: pytest.TempPathFactory,
    profitability: dict[str, str],
    quality: dict[str, str | None],
    rows: int,
) -> None:
    # Customers on one side only, too (a quality customer without profitability is not
    # segmented; a profitability customer without quality has an unknown service level).
    folder = tmp_path_factory.mktemp("segments")
    as_of = date(2026, 11, 26)
    profit = pl.DataFrame(
        {
            "customer_id": list(profitability),
            "profit_segment": list(profitability.values()),
            "rfm_segment": "new",
        },
        schema={"customer_id": pl.String, "profit_segment": pl.String, "rfm_segment": pl.String},
    ).sort("customer_id")
    levels = pl.DataFrame(
        {"customer_id": list(quality), "service_level": list(quality.values())},
        schema={"customer_id": pl.String, "service_level": pl.String},
    ).sort("customer_id")
    profit.write_parquet(folder / "p.parquet", row_group_size=max(1, rows - 1))
    levels.write_parquet(folder / "q.parquet", row_group_size=rows + 1)

    chunks = list(buckets.segments_in_step(as_of, folder / "p.parquet", folder / "q.parquet", rows))

    day = pl.lit(as_of, pl.Date).alias("as_of_date")
    whole = customer_segments(
        profit.lazy().with_columns(day), levels.lazy().with_columns(day)
    ).collect()
    assert_frame_equal(pl.concat(chunks) if chunks else whole.clear(), whole)


purchasers = st.one_of(
    st.none(),  # no purchase in the window
    st.tuples(st.integers(0, 12), st.integers(0, 300), st.integers(0, 60), st.integers(1, 9_999)),
)


@settings(max_examples=25, deadline=None)
@given(customers=st.lists(purchasers, max_size=60), rows=st.integers(1, 7))
def test_customer_value_frames_are_the_table_in_any_number_of_pieces(
    customers: list[tuple[int, int, int, int] | None], rows: int
) -> None:
    from decimal import Decimal

    from servio import value_snapshot
    from servio.config import Settings
    from servio.value_snapshot import customer_values

    def row(n: int, bought: tuple[int, int, int, int] | None) -> dict[str, object]:
        if bought is None:
            return {"customer_id": f"c{n:03d}", "margin": Decimal("0.00")}
        x, t_x, after, cents = bought
        t_x = t_x if x else 0
        repeat = Decimal(cents * x) / 100
        return {
            "customer_id": f"c{n:03d}",
            "margin": Decimal(cents) / 100,
            "x": x,
            "t_x": t_x,
            "T": t_x + after,
            "repeat_revenue": repeat,
            "avg_repeat_spend": float(repeat) / x if x else None,
        }

    schema = {
        "customer_id": pl.String,
        "margin": pl.Decimal(18, 2),
        "x": pl.Int64,
        "t_x": pl.Int64,
        "T": pl.Int64,
        "repeat_revenue": pl.Decimal(18, 2),
        "avg_repeat_spend": pl.Float64,
    }
    # Shuffled: customer_values sorts them.
    summary = pl.DataFrame(
        [row(n, bought) for n, bought in enumerate(customers)], schema=schema
    ).sample(fraction=1.0, shuffle=True, seed=3)
    as_of = date(2026, 11, 26)

    def scored(summary: pl.DataFrame, horizon: int) -> tuple[pl.DataFrame, tuple[()]]:
        # Every purchaser scored (random data seldom gives a converged fit): a score that
        # joins the wrong customer, or none, shows in the table.
        buyers = summary.filter(pl.col("x").is_not_null()).sort("customer_id")
        n = pl.int_range(1, pl.len() + 1).cast(pl.Float64)
        return buyers.select(
            "customer_id", p_alive=1 / n, expected_purchases=n, expected_spend=n * 2
        ), ()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(value_snapshot, "score_customers", scored)
        whole, _ = customer_values(summary, as_of, Settings(), rows=1_000_000)
        pieces, _ = customer_values(summary, as_of, Settings(), rows=rows)
        expected, got = list(whole), list(pieces)

    assert len(expected) == 1
    assert all(f.height <= rows for f in got)
    assert_frame_equal(pl.concat(got), expected[0], check_exact=True)
