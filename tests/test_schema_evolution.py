"""An additive column is a compatible change: partitions written before it existed and
partitions written after read together as one table, the old rows carrying nulls — with the
Delta readers (Polars `scan_delta`, pyarrow and pandas through `deltalake`), the DuckDB
catalog, DuckDB over the log's file list (`union_by_name`), and `Lake.scan`.

The older schema is simulated by publishing some partitions of `interactions` through a
copy of its `CuratedTable` that lacks `agent_id`. Old partitions are the earlier dates, so
the first file a reader meets is an old one: the case where readers that take the first
file's columns go wrong. A second lake is created by the older contract and then meets the
current one: servio adds the column to the Delta schema. One real lake per module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from servio.lake.delta import arrow_file_schema
from servio.lake.files import TableChange
from servio.lake.lake import Lake
from servio.schemas.tables import INTERACTIONS
from tests import lakes

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

ADDED = "agent_id"  # the additive column: absent from the older schema
KEY = "interaction_id"
PARTITION = "interaction_date"
OLDER = dataclasses.replace(
    INTERACTIONS, columns=tuple(c for c in INTERACTIONS.columns if c.name != ADDED)
)


def build_lake(root: Path) -> Lake:
    return lakes.build_lake(root)[1]


@dataclasses.dataclass(frozen=True)
class EvolvedTable:
    lake: Lake
    old_partitions: list[date]  # written with OLDER: no agent_id in their files
    expected: pl.DataFrame  # interaction_id, interaction_date, agent_id as readers should see

    @property
    def table_dir(self) -> Path:
        return self.lake.table_dir(INTERACTIONS)

    @property
    def files(self) -> list[str]:
        """The current version's files, oldest partition first."""
        return sorted(DeltaTable(str(self.table_dir)).file_uris())


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


def test_the_lake_really_holds_both_schemas(evolved: EvolvedTable) -> None:
    old_names = {f"{PARTITION}={d.isoformat()}" for d in evolved.old_partitions}
    for path in evolved.files:
        schema = pq.ParquetFile(path).schema_arrow
        contract = OLDER if Path(path).parent.name in old_names else INTERACTIONS
        assert schema.equals(arrow_file_schema(contract), check_metadata=False), path
    assert Path(evolved.files[0]).parent.name in old_names  # readers meet an old file first
    assert evolved.expected[ADDED].null_count() > 0
    assert evolved.expected[ADDED].drop_nulls().len() > 0


def test_an_additive_column_keeps_the_delta_schema_and_the_schema_version(
    evolved: EvolvedTable,
) -> None:
    table = DeltaTable(str(evolved.table_dir))
    assert ADDED in [field.name for field in table.schema().fields]  # not dropped by OLDER
    version = table.metadata().configuration["servio.schemaVersion"]
    assert version == str(INTERACTIONS.schema_version) == str(OLDER.schema_version)


def test_polars_scan_delta_reads_both_schemas(evolved: EvolvedTable) -> None:
    _check(pl.scan_delta(str(evolved.table_dir)).collect(), evolved)


def test_pyarrow_through_deltalake_reads_both_schemas(evolved: EvolvedTable) -> None:
    data = (
        DeltaTable(str(evolved.table_dir))
        .to_pyarrow_dataset()
        .to_table(columns=[KEY, PARTITION, ADDED])
    )
    _check(pl.DataFrame(pl.from_arrow(data)), evolved)


def test_pandas_through_deltalake_reads_both_schemas(evolved: EvolvedTable) -> None:
    frame = DeltaTable(str(evolved.table_dir)).to_pandas(columns=[KEY, PARTITION, ADDED])
    _check(pl.from_pandas(frame), evolved)


def test_the_duckdb_catalog_reads_both_schemas(evolved: EvolvedTable) -> None:
    with duckdb.connect(str(evolved.lake.catalog_path), read_only=True) as con:
        rows = con.execute(f"SELECT {KEY}, {PARTITION}, {ADDED} FROM interactions").fetchall()
    seen = pl.DataFrame(
        rows, schema={KEY: pl.String, PARTITION: pl.Date, ADDED: pl.String}, orient="row"
    )
    _check(seen, evolved)


def test_duckdb_over_the_file_list_reads_both_schemas_by_name(evolved: EvolvedTable) -> None:
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT {KEY}, {PARTITION}, {ADDED} FROM read_parquet({evolved.files}, "
            "hive_partitioning = true, union_by_name = true)"
        )
        .fetchall()
    )
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
            f"SELECT {ADDED} FROM read_parquet({evolved.files}, hive_partitioning = true)"
        ).fetchall()


def test_lake_scan_reads_both_schemas(evolved: EvolvedTable) -> None:
    _check(evolved.lake.scan(INTERACTIONS).collect(), evolved)


def test_a_new_column_is_added_to_the_delta_schema_and_reads_null_before(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    day = date(2026, 1, 1)
    first = pl.DataFrame(
        {KEY: ["a"], PARTITION: [day], ADDED: ["x"]}, schema_overrides={PARTITION: pl.Date}
    )
    full = first.select(
        pl.col(n).cast(t) if n in first.columns else pl.lit(None, t).alias(n)
        for n, t in INTERACTIONS.schema.items()
    )
    lake.publish("old", [TableChange(OLDER, {day: full.drop(ADDED)})])
    assert ADDED not in [f.name for f in lake.delta_table(INTERACTIONS.name).schema().fields]
    next_day = date(2026, 1, 2)
    newer = full.with_columns(pl.lit(next_day).alias(PARTITION), pl.lit("b").alias(KEY))
    lake.publish("new", [TableChange(INTERACTIONS, {next_day: newer})])
    fields = [f.name for f in lake.delta_table(INTERACTIONS.name).schema().fields]
    # Delta appends an added column (reordering would need column mapping); readers by name
    # and `Lake.scan` (contract order) do not mind.
    assert fields == [n for n in INTERACTIONS.schema.names() if n != ADDED] + [ADDED]
    seen = pl.scan_delta(str(lake.table_dir(INTERACTIONS))).select(KEY, ADDED).sort(KEY).collect()
    assert seen.rows() == [("a", None), ("b", "x")]
