"""An additive column is a compatible change: partitions written before it existed and
partitions written after read together as one table, the old rows carrying nulls — with
DuckDB (`union_by_name`), a pyarrow dataset given the current schema, pandas, and Polars.

The older schema is simulated by publishing some partitions of `interactions` through a
copy of its `CuratedTable` that lacks `agent_id`. Old partitions are the earlier dates, so
the first file a reader meets is an old one: the case where readers that take the first
file's columns go wrong. One real lake per module (the pipeline steps, no Prefect).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from schemas.tables import INTERACTIONS, CuratedTable
from servio.storage import MANIFEST, PART_FILE, Lake, TableChange
from tests import lakes

ADDED = "agent_id"  # the additive column: absent from the older schema
KEY = "interaction_id"
PARTITION = "interaction_date"
OLDER = dataclasses.replace(
    INTERACTIONS, columns=tuple(c for c in INTERACTIONS.columns if c.name != ADDED)
)


def build_lake(root: Path) -> Lake:
    return lakes.build_lake(root, "test-schema-evolution")[1]


@dataclasses.dataclass(frozen=True)
class EvolvedTable:
    lake: Lake
    old_partitions: list[date]  # written with OLDER: no agent_id in their files
    expected: pl.DataFrame  # interaction_id, interaction_date, agent_id as readers should see

    @property
    def table_dir(self) -> Path:
        return self.lake.table_dir(INTERACTIONS)

    @property
    def glob(self) -> str:
        return f"{self.table_dir.as_posix()}/**/*.parquet"


@pytest.fixture(scope="module")
def evolved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvolvedTable]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GX_ANALYTICS_ENABLED", "false")
        lake = build_lake(tmp_path_factory.mktemp("evolution-lake"))
    current = lake.scan(INTERACTIONS).collect()
    dates = sorted(current[PARTITION].unique().to_list())
    old_partitions = dates[: len(dates) // 2]
    with lake.lock("older-schema"):
        lake.publish(
            "older-schema",
            [
                TableChange(
                    OLDER, {d: current.filter(pl.col(PARTITION) == d) for d in old_partitions}
                )
            ],
        )
    expected = current.select(
        KEY,
        PARTITION,
        pl.when(pl.col(PARTITION).is_in(old_partitions))
        .then(None)
        .otherwise(pl.col(ADDED))
        .alias(ADDED),
    ).sort(KEY)
    yield EvolvedTable(lake, old_partitions, expected)


def _check(seen: pl.DataFrame, evolved: EvolvedTable) -> None:
    assert_frame_equal(seen.select(KEY, PARTITION, ADDED).sort(KEY), evolved.expected)


def current_arrow_schema(table: CuratedTable) -> pa.Schema:
    """The table's columns as a reader should see them, partition key (a date) included."""
    assert table.partition_by is not None
    return table.arrow_file_schema.append(pa.field(table.partition_by, pa.date32()))


def test_the_lake_really_holds_both_schemas(evolved: EvolvedTable) -> None:
    files = sorted(evolved.table_dir.glob(f"{PARTITION}=*/{PART_FILE}"))
    old_names = {f"{PARTITION}={d.isoformat()}" for d in evolved.old_partitions}
    for path in files:
        schema = pq.ParquetFile(path).schema_arrow
        contract = OLDER if path.parent.name in old_names else INTERACTIONS
        assert schema.equals(contract.arrow_file_schema, check_metadata=False), path
    assert files[0].parent.name in old_names  # readers meet an old file first
    assert evolved.expected[ADDED].null_count() > 0
    assert evolved.expected[ADDED].drop_nulls().len() > 0


def test_an_additive_column_keeps_the_schema_version(evolved: EvolvedTable) -> None:
    import json

    manifest = json.loads((evolved.table_dir / MANIFEST).read_text())
    assert manifest["schema_version"] == INTERACTIONS.schema_version == OLDER.schema_version
    assert manifest["row_count"] == evolved.expected.height


def test_duckdb_reads_both_schemas_by_name(evolved: EvolvedTable) -> None:
    con = duckdb.connect()
    rows = con.execute(
        f"""
        SELECT {KEY}, {PARTITION}, {ADDED}
        FROM read_parquet('{evolved.glob}', hive_partitioning = true, union_by_name = true)
        """
    ).fetchall()
    seen = pl.DataFrame(
        rows, schema={KEY: pl.String, PARTITION: pl.Date, ADDED: pl.String}, orient="row"
    )
    _check(seen, evolved)


def test_duckdb_without_union_by_name_takes_the_first_files_columns(
    evolved: EvolvedTable,
) -> None:
    """Why docs/BI.md says `union_by_name = true`: the first file here lacks agent_id."""
    with pytest.raises(duckdb.BinderException, match=ADDED):
        duckdb.connect().execute(
            f"SELECT {ADDED} FROM read_parquet('{evolved.glob}', hive_partitioning = true)"
        ).fetchall()


def test_pyarrow_dataset_reads_both_schemas_with_the_current_schema(
    evolved: EvolvedTable,
) -> None:
    partitioning = ds.partitioning(pa.schema([(PARTITION, pa.date32())]), flavor="hive")
    dataset = ds.dataset(
        evolved.table_dir,
        format="parquet",
        partitioning=partitioning,
        schema=current_arrow_schema(INTERACTIONS),
    )
    data = dataset.to_table(columns=[KEY, PARTITION, ADDED])
    _check(pl.DataFrame(pl.from_arrow(data)), evolved)


def test_pyarrow_dataset_without_a_schema_takes_the_first_files_columns(
    evolved: EvolvedTable,
) -> None:
    dataset = ds.dataset(evolved.table_dir, format="parquet", partitioning="hive")
    assert ADDED not in dataset.schema.names


def test_pandas_reads_both_schemas_with_the_current_schema(evolved: EvolvedTable) -> None:
    frame = pd.read_parquet(
        evolved.table_dir,
        columns=[KEY, PARTITION, ADDED],
        schema=current_arrow_schema(INTERACTIONS),
    )
    _check(pl.from_pandas(frame), evolved)


def test_polars_reads_both_schemas_with_the_current_schema(evolved: EvolvedTable) -> None:
    frame = pl.scan_parquet(
        evolved.glob,
        hive_partitioning=True,
        schema=INTERACTIONS.file_schema,
        missing_columns="insert",
    )
    _check(frame.collect(), evolved)


def test_polars_without_a_schema_takes_the_first_files_columns(evolved: EvolvedTable) -> None:
    with pytest.raises(pl.exceptions.SchemaError, match=ADDED):
        pl.scan_parquet(evolved.glob, hive_partitioning=True).collect()


def test_lake_scan_reads_both_schemas(evolved: EvolvedTable) -> None:
    _check(evolved.lake.scan(INTERACTIONS).collect(), evolved)
