"""Every curated table, read the way analysts read it — DuckDB, pyarrow, pandas, Polars and
Spark — has the manifest's rows and the types of SPEC §4 (UTC microsecond timestamps,
decimal(18,2) money, a readable partition key), and every file matches its table's contract.

One real lake per module: generated exports run through the pipeline steps (no Prefect).
The Spark tests skip, saying why, when pyspark or a Java runtime is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from schemas.tables import MONEY, TIMESTAMP, CuratedTable, curated_tables
from servio.config import Settings
from servio.storage import MANIFEST, PART_FILE, ROW_GROUP_ROWS, Lake
from tests import lakes

pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning"
)

TABLES = curated_tables(Settings().catalog)
TABLE_NAMES = sorted(TABLES)


# ---------------------------------------------------------------------------------------
# the lake


@dataclass(frozen=True)
class BuiltLake:
    settings: Settings
    lake: Lake

    def table(self, name: str) -> CuratedTable:
        return curated_tables(self.settings.catalog)[name]

    def table_dir(self, name: str) -> Path:
        return self.lake.table_dir(self.table(name))

    def manifest(self, name: str) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((self.table_dir(name) / MANIFEST).read_text())
        return manifest


def build_lake(root: Path) -> BuiltLake:
    return BuiltLake(*lakes.build_lake(root, "test-bi-readers"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltLake]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GX_ANALYTICS_ENABLED", "false")
        yield build_lake(tmp_path_factory.mktemp("bi-lake"))


# ---------------------------------------------------------------------------------------
# what a reader sees, reduced to facts that must agree across readers


@dataclass(frozen=True)
class TableView:
    rows_per_partition: dict[str, int]  # partition value as text; "" when unpartitioned
    column_types: dict[str, str]  # as the reader names them
    timestamp_bounds: dict[str, tuple[int, int]]  # (min, max) in epoch microseconds
    money_totals: dict[str, Decimal]


@dataclass(frozen=True)
class ReaderTypes:
    """How a reader names the contract's types (observed; docs/BI.md has the table)."""

    timestamp: str
    money: str
    date_key: str
    text_key: str


def _timestamp_columns(table: CuratedTable) -> list[str]:
    return [c.name for c in table.columns if c.dtype == TIMESTAMP]


def _money_columns(table: CuratedTable) -> list[str]:
    return [c.name for c in table.columns if c.dtype == MONEY]


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _arrow_view(data: pa.Table, table: CuratedTable) -> TableView:
    key = table.partition_by
    if key is None:
        rows = {"": data.num_rows}
    else:
        counts = pc.value_counts(data[key]).to_pylist()
        rows = {_text(item["values"]): item["counts"] for item in counts}
    bounds = {}
    for name in _timestamp_columns(table):
        extremes = pc.min_max(data[name].cast(pa.int64())).as_py()
        bounds[name] = (extremes["min"], extremes["max"])
    totals = {name: pc.sum(data[name]).as_py() for name in _money_columns(table)}
    types = {field.name: str(field.type) for field in data.schema}
    return TableView(rows, types, bounds, totals)


def _glob(table_dir: Path) -> str:
    return f"{table_dir.as_posix()}/**/*.parquet"


def read_duckdb(table_dir: Path, table: CuratedTable) -> TableView:
    source = f"read_parquet('{_glob(table_dir)}', hive_partitioning = true)"
    con = duckdb.connect()
    described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    types = {row[0]: row[1] for row in described}
    key = f"CAST({table.partition_by} AS VARCHAR)" if table.partition_by else "''"
    rows = dict(con.execute(f"SELECT {key}, count(*) FROM {source} GROUP BY ALL").fetchall())
    stamps, money = _timestamp_columns(table), _money_columns(table)
    aggregates = [f"epoch_us(min({c})), epoch_us(max({c}))" for c in stamps]
    aggregates += [f"sum({c})" for c in money]
    values = (
        con.execute(f"SELECT {', '.join(aggregates)} FROM {source}").fetchall()[0]
        if aggregates
        else ()
    )
    bounds = {c: (values[2 * i], values[2 * i + 1]) for i, c in enumerate(stamps)}
    totals = {c: values[2 * len(stamps) + i] for i, c in enumerate(money)}
    return TableView(rows, types, bounds, totals)


def read_pyarrow(table_dir: Path, table: CuratedTable) -> TableView:
    return _arrow_view(
        ds.dataset(table_dir, format="parquet", partitioning="hive").to_table(), table
    )


def read_pandas(table_dir: Path, table: CuratedTable) -> TableView:
    frame = pd.read_parquet(table_dir)
    types = {}
    for name, dtype in frame.dtypes.items():
        values = frame[name].dropna()
        # object columns hold Python objects; name them by what they hold (e.g. Decimal)
        held = (
            f"[{type(values.iloc[0]).__name__}]"
            if pd.api.types.is_object_dtype(dtype) and len(values)
            else ""
        )
        types[str(name)] = f"{dtype}{held}"
    key = table.partition_by
    if key is None:
        rows = {"": len(frame)}
    else:
        sizes = frame.groupby(key, observed=True).size()
        rows = {_text(value): int(n) for value, n in sizes.items()}
    bounds = {}
    for name in _timestamp_columns(table):
        micros = frame[name].dropna().astype("int64")  # the column's own unit: µs expected
        bounds[name] = (int(micros.min()), int(micros.max()))
    totals = {name: sum(frame[name].dropna(), Decimal(0)) for name in _money_columns(table)}
    return TableView(rows, types, bounds, totals)


def read_polars(table_dir: Path, table: CuratedTable) -> TableView:
    frame = pl.scan_parquet(_glob(table_dir), hive_partitioning=True)
    types = {name: str(dtype) for name, dtype in frame.collect_schema().items()}
    key = pl.col(table.partition_by).cast(pl.String) if table.partition_by else pl.lit("")
    rows = dict(frame.group_by(key.alias("partition")).len().collect().iter_rows())
    stamps, money = _timestamp_columns(table), _money_columns(table)
    aggregates = [
        expr
        for c in stamps
        for expr in (
            pl.col(c).dt.epoch("us").min().alias(f"{c}.min"),
            pl.col(c).dt.epoch("us").max().alias(f"{c}.max"),
        )
    ] + [pl.col(c).sum() for c in money]
    values = frame.select(aggregates).collect().row(0, named=True) if aggregates else {}
    bounds = {c: (values[f"{c}.min"], values[f"{c}.max"]) for c in stamps}
    totals = {c: values[c] for c in money}
    return TableView(rows, types, bounds, totals)


def read_files_directly(table_dir: Path, table: CuratedTable) -> TableView:
    """The reference: each file on its own, partition value from its folder name."""
    pieces = []
    for path in sorted(table_dir.rglob("*.parquet")):
        data = pq.ParquetFile(path).read()
        if table.partition_by:
            value = path.parent.name.removeprefix(f"{table.partition_by}=")
            data = data.append_column(table.partition_by, pa.array([value] * data.num_rows))
        pieces.append(data)
    return _arrow_view(pa.concat_tables(pieces), table)


Reader = Callable[[Path, CuratedTable], TableView]
READERS: dict[str, tuple[Reader, ReaderTypes]] = {
    "duckdb": (
        read_duckdb,
        ReaderTypes("TIMESTAMP WITH TIME ZONE", "DECIMAL(18,2)", "DATE", "VARCHAR"),
    ),
    "pyarrow": (
        read_pyarrow,
        # hive partitioning infers only int32 or string; pass a typed partitioning for date32
        ReaderTypes("timestamp[us, tz=UTC]", "decimal128(18, 2)", "string", "string"),
    ),
    "pandas": (
        read_pandas,
        ReaderTypes("datetime64[us, UTC]", "object[Decimal]", "category", "category"),
    ),
    "polars": (
        read_polars,
        ReaderTypes(
            "Datetime(time_unit='us', time_zone='UTC')",
            "Decimal(precision=18, scale=2)",
            "Date",
            "String",
        ),
    ),
}
SPARK_TYPES = ReaderTypes("timestamp", "decimal(18,2)", "date", "string")


def assert_reader_sees_the_table(
    view: TableView, expected: ReaderTypes, built: BuiltLake, name: str
) -> None:
    table = built.table(name)
    manifest = built.manifest(name)
    reference = read_files_directly(built.table_dir(name), table)
    assert sum(view.rows_per_partition.values()) == manifest["row_count"]
    assert view.rows_per_partition == manifest["partitions"] == reference.rows_per_partition
    assert view.timestamp_bounds == reference.timestamp_bounds  # same instants, in µs
    assert view.money_totals == reference.money_totals  # exact to the cent
    for column in _timestamp_columns(table):
        assert view.column_types[column] == expected.timestamp, column
    for column in _money_columns(table):
        assert view.column_types[column] == expected.money, column
    if table.partition_by:
        is_date = table.schema[table.partition_by] == pl.Date
        key_type = expected.date_key if is_date else expected.text_key
        assert view.column_types[table.partition_by] == key_type


# ---------------------------------------------------------------------------------------
# the files: one per partition, each exactly the contract


FORBIDDEN = {
    "string_view": pa.types.is_string_view,
    "binary_view": pa.types.is_binary_view,
    "large_string": pa.types.is_large_string,
    "large_binary": pa.types.is_large_binary,
    "unsigned": pa.types.is_unsigned_integer,
    "duration": pa.types.is_duration,
    "dictionary (categorical)": pa.types.is_dictionary,
    "list": lambda t: pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t),
    "struct": pa.types.is_struct,
    "map": pa.types.is_map,
}


def portability_problems(schema: pa.Schema) -> list[str]:
    """Types some BI reader mishandles (SPEC §4): none may appear in a curated file."""
    problems = [
        f"{field.name}: {kind}"
        for field in schema
        for kind, matches in FORBIDDEN.items()
        if matches(field.type)
    ]
    for field in schema:
        if pa.types.is_timestamp(field.type) and (field.type.unit, field.type.tz) != ("us", "UTC"):
            problems.append(f"{field.name}: {field.type} is not timestamp[us, UTC]")
        if pa.types.is_decimal(field.type) and field.type != pa.decimal128(18, 2):
            problems.append(f"{field.name}: {field.type} is not decimal(18,2)")
    return problems


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_the_contract_uses_only_portable_types(name: str) -> None:
    assert portability_problems(TABLES[name].arrow_file_schema) == []


def test_portability_check_catches_what_readers_mishandle() -> None:
    bad = pa.schema(
        [
            ("a", pa.string_view()),
            ("b", pa.large_string()),
            ("c", pa.uint32()),
            ("d", pa.duration("us")),
            ("e", pa.dictionary(pa.int32(), pa.string())),
            ("f", pa.list_(pa.int64())),
            ("g", pa.timestamp("ns", tz="UTC")),
            ("h", pa.timestamp("us")),
            ("i", pa.decimal128(38, 9)),
        ]
    )
    assert [p.split(":")[0] for p in portability_problems(bad)] == list("abcdefghi")


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_every_file_is_exactly_the_contract(built: BuiltLake, name: str) -> None:
    table = built.table(name)
    files = sorted(built.table_dir(name).rglob("*.parquet"))
    assert files, f"{name} has no published file"
    for path in files:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        assert portability_problems(schema) == [], path
        assert schema.equals(table.arrow_file_schema, check_metadata=False), path
        metadata = parquet.metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            assert row_group.num_rows <= ROW_GROUP_ROWS
            for column in range(row_group.num_columns):
                assert row_group.column(column).compression == "ZSTD"
        # Non-Arrow readers (Spark, Power BI, Trino) go by the Parquet logical type.
        for index in range(len(parquet.schema)):
            column = parquet.schema.column(index)
            if column.name in _timestamp_columns(table):
                logical = json.loads(column.logical_type.to_json())
                assert logical["isAdjustedToUTC"] is True
                assert logical["timeUnit"] == "microseconds"


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_one_data_file_per_partition_and_nothing_else(built: BuiltLake, name: str) -> None:
    table = built.table(name)
    table_dir = built.table_dir(name)
    manifest = built.manifest(name)
    entries = sorted(p.relative_to(table_dir).as_posix() for p in table_dir.rglob("*"))
    files = [e for e in entries if (table_dir / e).is_file()]
    if table.partition_by is None:
        assert files == [MANIFEST, PART_FILE]
        assert manifest["partitions"] == {
            "": pq.ParquetFile(table_dir / PART_FILE).metadata.num_rows
        }
        return
    folders = [e for e in entries if (table_dir / e).is_dir()]
    prefix = f"{table.partition_by}="
    assert all(f.startswith(prefix) and "/" not in f for f in folders)
    assert files == sorted([MANIFEST, *(f"{folder}/{PART_FILE}" for folder in folders)])
    footer_rows = {
        folder.removeprefix(prefix): pq.ParquetFile(
            table_dir / folder / PART_FILE
        ).metadata.num_rows
        for folder in folders
    }
    assert manifest["partitions"] == footer_rows
    assert manifest["row_count"] == sum(footer_rows.values())
    assert manifest["partition_by"] == table.partition_by
    assert manifest["schema_version"] == table.schema_version


# ---------------------------------------------------------------------------------------
# the readers


@pytest.mark.parametrize("name", TABLE_NAMES)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_reader_sees_the_published_table(built: BuiltLake, reader: str, name: str) -> None:
    read, expected = READERS[reader]
    view = read(built.table_dir(name), built.table(name))
    assert_reader_sees_the_table(view, expected, built, name)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local Spark session for the module, bound to loopback, UI off, tuned to start fast."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        pytest.skip(f"pyspark cannot be imported ({error}); Spark reader skipped")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime (java on PATH or JAVA_HOME); Spark reader skipped")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("servio-bi-readers")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "512m")
        # A short-lived JVM: the C1 compiler and serial GC halve start-up on small machines.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        # List partition folders in the driver instead of launching a job for > 32 of them.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def read_spark(spark: Any, table_dir: Path, table: CuratedTable) -> TableView:
    from pyspark.sql import functions as F

    frame = spark.read.parquet(str(table_dir))
    types = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    if table.partition_by is None:
        rows = {"": frame.count()}
    else:
        counted = frame.groupBy(table.partition_by).count().collect()
        rows = {_text(row[0]): row[1] for row in counted}
    stamps, money = _timestamp_columns(table), _money_columns(table)
    aggregates = [
        expr
        for c in stamps
        for expr in (
            F.unix_micros(F.min(c)).alias(f"{c}_min"),
            F.unix_micros(F.max(c)).alias(f"{c}_max"),
        )
    ] + [F.sum(c).alias(c) for c in money]
    values = frame.agg(*aggregates).collect()[0].asDict() if aggregates else {}
    bounds = {c: (values[f"{c}_min"], values[f"{c}_max"]) for c in stamps}
    totals = {c: values[c] for c in money}
    return TableView(rows, types, bounds, totals)


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_spark_sees_the_published_table(spark: Any, built: BuiltLake, name: str) -> None:
    view = read_spark(spark, built.table_dir(name), built.table(name))
    assert_reader_sees_the_table(view, SPARK_TYPES, built, name)


def test_spark_timestamps_are_utc_instants(spark: Any, built: BuiltLake) -> None:
    from pyspark.sql.types import TimestampNTZType, TimestampType

    frame = spark.read.parquet(str(built.table_dir("interactions")))
    stamps = [f for f in frame.schema.fields if f.name in ("started_at", "updated_at")]
    assert stamps
    assert all(isinstance(f.dataType, TimestampType) for f in stamps)
    assert not any(isinstance(f.dataType, TimestampNTZType) for f in stamps)


def test_pyarrow_reads_date_keys_as_dates_with_a_typed_partitioning(built: BuiltLake) -> None:
    table = built.table("interactions")
    partitioning = ds.partitioning(pa.schema([(table.partition_by, pa.date32())]), flavor="hive")
    data = ds.dataset(built.table_dir("interactions"), format="parquet", partitioning=partitioning)
    assert data.schema.field(table.partition_by).type == pa.date32()
    assert data.count_rows() == built.manifest("interactions")["row_count"]
