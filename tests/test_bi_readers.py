"""Every curated table, read the way analysts read it — Polars `scan_delta`, pandas and
pyarrow through `deltalake`, DuckDB through the catalog file and through the log's file list,
Spark through the file list — has the rows its Delta log counts and the types of SPEC §4
(UTC microsecond timestamps, decimal(18,2) money, a typed partition key); every data file
matches its table's contract; and every Python and SQL snippet of the README and of every
page in docs/ runs against the lake.

One real lake per module: generated exports run through the pipeline steps (no Prefect).
The Spark tests skip, saying why, when pyspark or a Java runtime is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from servio.config import Settings
from servio.lake.delta import arrow_file_schema, table_schema
from servio.lake.files import ROW_GROUP_ROWS
from servio.lake.lake import Lake
from servio.schemas.table import MONEY, TIMESTAMP, CuratedTable
from servio.schemas.tables import curated_tables
from tests import lakes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
TABLES = curated_tables(Settings().catalog)
TABLE_NAMES = sorted(TABLES)


# ---------------------------------------------------------------------------------------
# the lake


@dataclass(frozen=True)
class BuiltLake:
    settings: Settings
    lake: Lake
    root: Path  # holds data/curated: where the docs' snippets run

    def table(self, name: str) -> CuratedTable:
        return curated_tables(self.settings.catalog)[name]

    def table_dir(self, name: str) -> Path:
        return self.lake.table_dir(self.table(name))

    def delta(self, name: str) -> DeltaTable:
        return DeltaTable(str(self.table_dir(name)))

    def logged_rows(self, name: str) -> dict[str, int]:
        """Rows per partition as the Delta log counts them (add actions' numRecords)."""
        actions = pa.table(self.delta(name).get_add_actions(flatten=True)).to_pylist()
        key = self.table(name).partition_by
        counts: dict[str, int] = {}
        for action in actions:
            value = _text(action[f"partition.{key}"]) if key else ""
            counts[value] = counts.get(value, 0) + action["num_records"]
        return counts


def build_lake(root: Path) -> BuiltLake:
    settings, lake = lakes.build_lake(root)
    (root / "data").mkdir()
    (root / "data" / "curated").symlink_to(Path(settings.curated_root).resolve())
    return BuiltLake(settings, lake, root)


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


def _duckdb_view(con: Any, source: str, table: CuratedTable) -> TableView:
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


def read_duckdb_catalog(built: BuiltLake, name: str) -> TableView:
    with duckdb.connect(str(built.lake.catalog_path), read_only=True) as con:
        return _duckdb_view(con, name, built.table(name))


def read_duckdb_file_uris(built: BuiltLake, name: str) -> TableView:
    table = built.table(name)
    files = built.delta(name).file_uris()
    hive = (
        f", hive_partitioning = true, hive_types = {{'{table.partition_by}': "
        f"{'DATE' if table.schema[table.partition_by] == pl.Date else 'VARCHAR'}}}"
        if table.partition_by
        else ""
    )
    source = f"read_parquet({files}, union_by_name = true{hive})"
    return _duckdb_view(duckdb.connect(), source, table)


def read_pyarrow_deltalake(built: BuiltLake, name: str) -> TableView:
    return _arrow_view(built.delta(name).to_pyarrow_dataset().to_table(), built.table(name))


def read_pandas_deltalake(built: BuiltLake, name: str) -> TableView:
    table = built.table(name)
    frame = built.delta(name).to_pandas()
    types = {}
    for column, dtype in frame.dtypes.items():
        values = frame[column].dropna()
        # object columns hold Python objects; name them by what they hold (e.g. Decimal)
        held = (
            f"[{type(values.iloc[0]).__name__}]" if str(dtype) == "object" and len(values) else ""
        )
        types[str(column)] = f"{dtype}{held}"
    key = table.partition_by
    if key is None:
        rows = {"": len(frame)}
    else:
        sizes = frame.groupby(key, observed=True).size()
        rows = {_text(value): int(n) for value, n in sizes.items()}
    bounds = {}
    for column in _timestamp_columns(table):
        micros = frame[column].dropna().astype("int64")  # the column's own unit: µs expected
        bounds[column] = (int(micros.min()), int(micros.max()))
    totals = {column: sum(frame[column].dropna(), Decimal(0)) for column in _money_columns(table)}
    return TableView(rows, types, bounds, totals)


def read_polars_scan_delta(built: BuiltLake, name: str) -> TableView:
    table = built.table(name)
    frame = pl.scan_delta(str(built.table_dir(name)))
    types = {column: str(dtype) for column, dtype in frame.collect_schema().items()}
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


def read_files_directly(built: BuiltLake, name: str) -> TableView:
    """The reference: each file of the current version on its own (pyarrow), the partition
    value from its folder name."""
    table = built.table(name)
    pieces = []
    for path in sorted(built.delta(name).file_uris()):
        data = pq.ParquetFile(path).read()
        if table.partition_by:
            value = Path(path).parent.name.removeprefix(f"{table.partition_by}=")
            data = data.append_column(table.partition_by, pa.array([value] * data.num_rows))
        pieces.append(data)
    return _arrow_view(pa.concat_tables(pieces), table)


Reader = Callable[[BuiltLake, str], TableView]
READERS: dict[str, tuple[Reader, ReaderTypes]] = {
    "duckdb_catalog": (
        read_duckdb_catalog,
        ReaderTypes("TIMESTAMP WITH TIME ZONE", "DECIMAL(18,2)", "DATE", "VARCHAR"),
    ),
    "duckdb_file_uris": (
        read_duckdb_file_uris,
        ReaderTypes("TIMESTAMP WITH TIME ZONE", "DECIMAL(18,2)", "DATE", "VARCHAR"),
    ),
    "pyarrow_deltalake": (
        read_pyarrow_deltalake,
        ReaderTypes("timestamp[us, tz=UTC]", "decimal128(18, 2)", "date32[day]", "string"),
    ),
    "pandas_deltalake": (
        read_pandas_deltalake,
        ReaderTypes("datetime64[us, UTC]", "object[Decimal]", "object[date]", "str"),
    ),
    "polars_scan_delta": (
        read_polars_scan_delta,
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
    reference = read_files_directly(built, name)
    logged = built.logged_rows(name)
    assert sum(view.rows_per_partition.values()) == sum(logged.values())
    assert view.rows_per_partition == logged == reference.rows_per_partition
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
# the files: each exactly the contract; a table folder holds its data and its log only


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
    assert portability_problems(arrow_file_schema(TABLES[name])) == []


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
    table_dir = built.table_dir(name)
    files = sorted(p for p in table_dir.rglob("*.parquet") if "_delta_log" not in p.parts)
    assert files, f"{name} has no published file"
    for path in files:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        assert portability_problems(schema) == [], path
        assert schema.equals(arrow_file_schema(table), check_metadata=False), path
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
def test_a_table_folder_holds_its_data_files_and_delta_log_only(
    built: BuiltLake, name: str
) -> None:
    table = built.table(name)
    table_dir = built.table_dir(name)
    log = built.delta(name)
    files = sorted(
        p.relative_to(table_dir).as_posix()
        for p in table_dir.rglob("*")
        if p.is_file() and "_delta_log" not in p.parts
    )
    # One run publishes each table once: every data file is in the current version.
    assert files == sorted(Path(f).relative_to(table_dir).as_posix() for f in log.file_uris())
    assert {p.name for p in table_dir.iterdir() if p.is_dir()} - {"_delta_log"} == {
        f.split("/")[0] for f in files if "/" in f
    }
    if table.partition_by is None:
        assert all("/" not in f for f in files)
    else:
        prefix = f"{table.partition_by}="
        assert all(f.startswith(prefix) and f.count("/") == 1 for f in files)
    assert log.metadata().partition_columns == ([table.partition_by] if table.partition_by else [])
    assert log.metadata().description == table.grain
    assert log.metadata().configuration["servio.schemaVersion"] == str(table.schema_version)
    # The Delta schema is the contract, partition key included, in contract order.
    logged = pa.schema(log.schema().to_arrow())
    assert logged.equals(table_schema(table), check_metadata=False)


# ---------------------------------------------------------------------------------------
# the readers


@pytest.mark.parametrize("name", TABLE_NAMES)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_reader_sees_the_published_table(built: BuiltLake, reader: str, name: str) -> None:
    read, expected = READERS[reader]
    assert_reader_sees_the_table(read(built, name), expected, built, name)


def test_duckdb_catalog_names_the_latest_publication(built: BuiltLake) -> None:
    record = built.lake.publications()
    latest = record.filter(pl.col("publication") == record["publication"].max())
    with duckdb.connect(str(built.lake.catalog_path), read_only=True) as con:
        rows = con.execute(
            "SELECT publication, table_name, table_version FROM servio_publication"
        ).fetchall()
        views = {
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
    pinned = {
        (p, t, v)
        for p, t, v in latest.select("publication", "table_name", "table_version").iter_rows()
        if t in TABLES
    }
    assert set(rows) == pinned
    assert views == set(TABLES)


def test_a_glob_over_a_delta_table_double_counts_until_vacuum(tmp_path: Path) -> None:
    """Why docs/BI.md says not to glob: republish one partition, and the glob sees both."""
    from servio.lake.files import TableChange

    settings, lake = lakes.build_lake(tmp_path)
    table = curated_tables(settings.catalog)["interactions"]
    current = lake.scan(table).collect()
    day = current["interaction_date"].max()
    with lake.lock("again"):
        lake.publish(
            "again", [TableChange(table, {day: current.filter(pl.col("interaction_date") == day)})]
        )
    glob = f"{lake.table_dir(table).as_posix()}/**/*.parquet"
    globbed = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()
    assert globbed is not None
    same_day = current.filter(pl.col("interaction_date") == day).height
    assert globbed[0] == current.height + same_day  # the superseded file counted too
    assert (
        pl.scan_delta(str(lake.table_dir(table))).select(pl.len()).collect().item()
        == current.height
    )


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


def _spark_frame(spark: Any, built: BuiltLake, name: str) -> Any:
    """As docs/BI.md reads it: the log's file list, the table folder as basePath."""
    table = built.delta(name)
    reader = spark.read.option("basePath", table.table_uri).option("mergeSchema", "true")
    return reader.parquet(*table.file_uris())


def read_spark(spark: Any, built: BuiltLake, name: str) -> TableView:
    from pyspark.sql import functions as F

    table = built.table(name)
    frame = _spark_frame(spark, built, name)
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
    assert_reader_sees_the_table(read_spark(spark, built, name), SPARK_TYPES, built, name)


def test_spark_timestamps_are_utc_instants(spark: Any, built: BuiltLake) -> None:
    from pyspark.sql.types import TimestampNTZType, TimestampType

    frame = _spark_frame(spark, built, "interactions")
    stamps = [f for f in frame.schema.fields if f.name in ("started_at", "updated_at")]
    assert stamps
    assert all(isinstance(f.dataType, TimestampType) for f in stamps)
    assert not any(isinstance(f.dataType, TimestampNTZType) for f in stamps)


# ---------------------------------------------------------------------------------------
# every SQL and Python snippet of the README and docs/ runs

SNIPPET = re.compile(r"(<!-- not run[^>]*-->\n)?```(python|sql)\n(.*?)```", re.DOTALL)


def documents() -> list[str]:
    """The README and every page of docs/ (ARCHITECTURE.md, RELIABILITY.md hold no query)."""
    return ["README.md", *(p.relative_to(ROOT).as_posix() for p in sorted(ROOT.glob("docs/*.md")))]


def _snippets() -> list[Any]:
    found = []
    for doc in documents():
        text = (ROOT / doc).read_text(encoding="utf-8")
        for number, match in enumerate(SNIPPET.finditer(text), start=1):
            if match.group(1):
                continue  # needs what this machine lacks (delta-spark): said on the page
            language, code = match.group(2), textwrap.dedent(match.group(3))
            found.append(pytest.param(language, code, id=f"{doc}#{number}"))
    return found


@pytest.mark.parametrize(("language", "code"), _snippets())
def test_every_documented_snippet_runs(
    request: pytest.FixtureRequest,
    built: BuiltLake,
    language: str,
    code: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(built.root)  # the snippets read data/curated
    if "pyspark" in code:
        request.getfixturevalue("spark")  # the module's loopback session: getOrCreate finds it
    if language == "python":
        namespace: dict[str, Any] = {"__name__": "snippet"}
        exec(compile(code, "snippet", "exec"), namespace)
        return
    with duckdb.connect() as con:
        if "ATTACH" not in code:  # the README's queries run in `duckdb data/curated/servio.duckdb`
            con.execute("ATTACH 'data/curated/servio.duckdb' AS servio (READ_ONLY); USE servio")
        con.execute(code).fetchall()  # every statement runs; the last one's rows are fetched


def test_every_snippet_is_in_a_language_the_runner_knows() -> None:
    """A fence spelled another way (```py, ```duckdb) would silently escape the test above."""
    for doc in documents():
        text = (ROOT / doc).read_text(encoding="utf-8")
        languages = set(re.findall(r"^```(\S+)", text, re.MULTILINE))
        # Not run: shell commands, configuration, and Power BI's M (needs Power BI).
        others = {"bash", "toml", "text", "mermaid", "json", "powerquery"}
        assert languages <= {"python", "sql", *others}, doc
