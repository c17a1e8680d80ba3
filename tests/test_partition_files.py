"""How a partition's rows become its data file: row groups bounded in rows and in bytes (wide
rows such as quarantine's raw records must not hold a million rows in memory), and a
LazyFrame written through a spool file that never outlives the write."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from servio.lake import files
from servio.schemas.tables import LAKE_STATE


@settings(max_examples=60, deadline=None)
@given(
    widths=st.lists(st.integers(0, 400), min_size=1, max_size=200),
    batch=st.integers(1, 40),
    cap_rows=st.integers(1, 80),
    cap_bytes=st.integers(64, 8_000),
)
def test_row_groups_hold_every_row_in_order_within_both_bounds(
    tmp_path_factory: pytest.TempPathFactory,
    widths: list[int],
    batch: int,
    cap_rows: int,
    cap_bytes: int,
) -> None:
    state = pl.DataFrame(
        {"key": [f"k{n}" for n in range(len(widths))], "value": ["v" * w for w in widths]}
    )
    batches = [state.slice(start, batch) for start in range(0, state.height, batch)]
    biggest_batch = max(files.to_arrow(b, LAKE_STATE).nbytes for b in batches)
    path = tmp_path_factory.mktemp("groups") / "state.parquet"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "ROW_GROUP_ROWS", cap_rows)
        patch.setattr(files, "ROW_GROUP_BYTES", cap_bytes)
        files.write_partition_file(iter(batches), LAKE_STATE, path)

    assert_frame_equal(pl.read_parquet(path), state)
    written = pq.ParquetFile(path)
    for group in range(written.num_row_groups):
        rows = written.read_row_group(group)
        assert rows.num_rows <= cap_rows
        # What was held before it was written: under the cap, plus the batch that reached it.
        assert rows.nbytes <= cap_bytes + biggest_batch


def test_wide_rows_close_a_row_group_long_before_row_group_rows(tmp_path: Path) -> None:
    width = 2_000
    state = pl.DataFrame({"key": [f"k{n}" for n in range(3_000)], "value": "v" * width})
    path = files.write_partition_file(state.lazy(), LAKE_STATE, tmp_path / "state.parquet")

    written = pq.ParquetFile(path)
    assert written.num_row_groups == 1  # 6 MB: one group of 3,000 rows
    assert_frame_equal(pl.read_parquet(path), state)

    many = pl.concat([state] * 20)  # 120 MB of values
    path = files.write_partition_file(many.lazy(), LAKE_STATE, tmp_path / "many.parquet")
    written = pq.ParquetFile(path)
    sizes = [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)]
    assert len(sizes) >= 2
    assert max(sizes) * width <= files.ROW_GROUP_BYTES
    assert sum(sizes) == many.height


def test_a_lazy_partition_leaves_no_spool_file_written_or_failed(tmp_path: Path) -> None:
    rows = pl.LazyFrame({"key": ["a", "b"], "value": ["1", "x"]})
    files.write_partition_file(rows, LAKE_STATE, tmp_path / "ok.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.parquet"]

    failing = rows.with_columns(pl.col("value").cast(pl.Int64).cast(pl.String))
    with pytest.raises(pl.exceptions.InvalidOperationError):
        files.write_partition_file(failing, LAKE_STATE, tmp_path / "failed.parquet")
    assert not list(tmp_path.glob("*.spool"))
