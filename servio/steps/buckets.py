"""A snapshot computed in customer-hash buckets, each an independent task (SPEC §5).

    shuffle (one task per range of date partitions) → bucket (one task per bucket) → combine

- **shuffle**: a task reads one range of the window's date partitions of `interactions` and
  `survey_responses` and writes its rows split by `bucket = hash(customer_id) mod B` to
  staging. All of a customer's rows land in one bucket, whichever task wrote them.
- **bucket**: a task reads its bucket's files and computes every per-customer figure:
  `customer_quality` in full (it has no whole-population figure), `customer_money`
  (money, profit, recency, frequency, monetary), and for SPEC §6 the `purchase_summary`
  (x, t_x, T, repeat spend) and `service_counts` (contacts per channel and queue time).
- **combine** (the flow's process): computes the whole-population figures over the buckets'
  customer rows — one row per customer, so a tenth of the interactions at the default data
  shape — with `rank_customers`: whale-curve ranks and cumulative shares (one sort of all
  customers by profit), Kaplan medians, RFM quintile ranks. Then the segments, which join
  the two snapshots customer by customer; and the SPEC §6 tables
  (the halves of `value_snapshot_from_parts`): the BG/NBD and Gamma-Gamma fits over every purchaser, the
  key drivers over the window's responses, the service levels from the summed counts.
  Memory: one table at a time, each written to its partition file as soon as it is
  computed and dropped (`Lake.publish` then moves the files); a later table reads what it
  needs of an earlier one back from its file (the segments, the profitability's segment
  columns). `customer_quality`, which has no whole-population figure, never comes into
  memory whole: the buckets' parts, each sorted by customer_id, are merged a batch of each
  at a time into the file (`merge_sorted_files`). The value tables come in two halves
  (`customer_values`, then `population_tables`), the first written and dropped before the
  second reads the window's responses.

The combine step runs the same code as a single-process snapshot on the same customer rows,
so any bucket count gives the same tables. With one bucket nothing is shuffled: the bucket
task reads the lake directly. Tasks hand each other staging paths, never DataFrames; with a
Dask cluster the staging files must be reachable from every worker: they are under the
lake (`Lake.staging_file`), on local disk or object storage alike.

The bucket hash is Polars' `hash(seed=0)`, stable within one Polars version (pinned in
constraints.txt): every worker of a cluster must run the same version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from servio import objectstore
from servio.config import Settings
from servio.lake import Lake, write_partition_file
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
    expected_purchases_column,
    value_tables,
)
from servio.schemas.sources import source_tables
from servio.schemas.table import CuratedTable
from servio.schemas.tables import survey_responses_table
from servio.steps.context import Mapper, in_order
from servio.transforms.profitability import customer_money, rank_customers
from servio.transforms.quality import customer_quality
from servio.transforms.segments import customer_segments
from servio.transforms.service import service_counts
from servio.transforms.value import purchase_summary
from servio.value_snapshot import (
    customer_values,
    fit_warnings,
    population_tables,
    value_model_rows,
)

HASH_SEED = 0
# A bucket's customer_quality part is written in row groups of this many rows, and the combine
# step reads each part this many rows at a time while it merges them: it holds a few batches
# per bucket, never a whole part (memory bounded whatever the population).
MERGE_ROW_GROUP_ROWS = 65_536
MERGE_BATCH_ROWS = 16_384
# A shuffle task's rows in memory at a time: whole days until there are this many (at the
# 100M scale a task's range holds 6.5M interactions, which peaked at 7.2 GB read at once).
SHUFFLE_BATCH_ROWS = 1_000_000
SEGMENT_BATCH_ROWS = 262_144  # profitability rows joined to their quality rows at a time


@dataclass(frozen=True)
class SnapshotJob:
    """Everything a shuffle or bucket task needs, small enough to send to a worker."""

    settings: Settings
    lake: Lake
    run_id: str
    as_of: dt.date

    @property
    def buckets(self) -> int:
        return self.settings.snapshot_buckets

    @property
    def window_start(self) -> dt.date:  # excluded
        return self.as_of - dt.timedelta(days=self.settings.window_days)

    def staging_file(self, *parts: str) -> str:
        """A file of this snapshot's staging, on the lake's storage (reachable by workers)."""
        return self.lake.staging_file(self.run_id, "snapshot", self.as_of.isoformat(), *parts)

    def sources(self) -> dict[str, CuratedTable]:
        return source_tables(self.settings.catalog)


@dataclass(frozen=True)
class ShuffleOutput:
    files: dict[tuple[str, int], str]  # (source, bucket) → staged file
    bytes_written: int


@dataclass(frozen=True)
class BucketOutput:
    bucket: int
    quality_path: str
    money_path: str
    summary_path: str  # purchase_summary (SPEC §6)
    service_path: str  # service_counts (SPEC §6)
    customers: int


@dataclass(frozen=True)
class Combined:
    files: dict[str, Path]  # table name → the as-of partition's file, in the table's format
    customers: int
    actions: dict[str, int]  # customers per action
    warnings: tuple[str, ...]  # value models that did not converge (ValueSnapshot.warnings)
    shuffle_bytes: int


def bucket_of(customer_id: pl.Expr, buckets: int) -> pl.Expr:
    return (customer_id.hash(seed=HASH_SEED) % buckets).cast(pl.Int32)


def snapshot_tables(settings: Settings) -> dict[str, CuratedTable]:
    """The tables a snapshot publishes a partition of, by name."""
    tables = (
        customer_quality_table(settings.catalog),
        CUSTOMER_PROFITABILITY,
        CUSTOMER_SEGMENTS,
        *value_tables(settings.value_horizon_days).values(),
    )
    return {t.name: t for t in tables}


def compute(job: SnapshotJob, mapper: Mapper[Any] = in_order) -> Combined:
    """The snapshot tables for `job.as_of`, computed bucket by bucket through `mapper` and
    written to their partition files by the combine step."""
    shuffled: list[ShuffleOutput] = []
    if job.buckets > 1:
        ranges = date_ranges(job)
        shuffled = mapper(shuffle, [(job, index, lo, hi) for index, (lo, hi) in ranges])
    outputs: list[BucketOutput] = mapper(
        reduce_bucket, [(job, b, shuffled) for b in range(job.buckets)]
    )
    return combine(job, outputs, sum(s.bytes_written for s in shuffled))


def date_ranges(job: SnapshotJob) -> list[tuple[int, tuple[dt.date, dt.date]]]:
    """The window's published dates split into about `buckets` contiguous ranges, one per
    shuffle task (so a task holds a range of days, never the whole window)."""
    days: set[dt.date] = set()
    for table in job.sources().values():
        for text in job.lake.partitions(table):
            day = dt.date.fromisoformat(text)
            if job.window_start < day <= job.as_of:
                days.add(day)
    ordered = sorted(days)
    if not ordered:
        return []
    size = math.ceil(len(ordered) / job.buckets)
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    return list(enumerate((chunk[0], chunk[-1]) for chunk in chunks))


def shuffle(job: SnapshotJob, index: int, first: dt.date, last: dt.date) -> ShuffleOutput:
    """Split the rows of the dates [first, last] by customer bucket into staging files: one
    file per bucket, in date order, written a few days at a time (up to about
    `SHUFFLE_BATCH_ROWS` rows in memory, whatever the range holds)."""
    files: dict[tuple[str, int], str] = {}
    for name, table in job.sources().items():
        day = table.partition_by
        assert day is not None
        rows = job.lake.scan(table)
        with contextlib.ExitStack() as open_files:
            writers: dict[int, pq.ParquetWriter] = {}
            for batch in _day_batches(rows, day, first, last):
                split = batch.with_columns(
                    bucket_of(pl.col("customer_id"), job.buckets).alias("_b")
                )
                for (bucket,), part in split.partition_by("_b", as_dict=True).items():
                    arrow = part.drop("_b").to_arrow(compat_level=pl.CompatLevel.oldest())
                    if bucket not in writers:
                        path = job.staging_file(
                            "shuffle", name, f"b{bucket:05d}-p{index:05d}.parquet"
                        )
                        filesystem, key = objectstore.open_root(path)
                        handle = open_files.enter_context(filesystem.open(key, "wb"))
                        writers[int(bucket)] = open_files.enter_context(
                            pq.ParquetWriter(handle, arrow.schema, compression="zstd")
                        )
                        files[(name, int(bucket))] = path
                    writers[int(bucket)].write_table(arrow)
    return ShuffleOutput(files, sum(_size(path) for path in files.values()))


def _day_batches(
    rows: pl.LazyFrame, day: str, first: dt.date, last: dt.date
) -> Iterator[pl.DataFrame]:
    """The rows of the dates [first, last], in date order, a few whole days at a time: days
    are gathered until they hold `SHUFFLE_BATCH_ROWS` rows (a partition is read alone)."""
    held: list[pl.DataFrame] = []
    count = 0
    for offset in range((last - first).days + 1):
        date = first + dt.timedelta(days=offset)
        rows_of_day = rows.filter(pl.col(day) == date).collect()
        if rows_of_day.height:
            held.append(rows_of_day)
            count += rows_of_day.height
        if count >= SHUFFLE_BATCH_ROWS:
            yield pl.concat(held)
            held, count = [], 0
    if held:
        yield pl.concat(held)


def reduce_bucket(
    job: SnapshotJob, bucket: int, shuffled: Sequence[ShuffleOutput] = ()
) -> BucketOutput:
    """Every per-customer figure of one bucket's customers, written to staging. `shuffled`
    are the shuffle tasks' outputs (in task order); none with one bucket (reads the lake)."""
    frames = {
        name: _bucket_rows(job, name, table, bucket, shuffled)
        for name, table in job.sources().items()
    }
    settings = job.settings
    quality = customer_quality(
        frames["interactions"],
        frames["survey_responses"],
        job.as_of,
        window_days=settings.window_days,
        band=settings.service_level_band,
        catalog=settings.catalog,
    ).collect()
    money = customer_money(
        frames["interactions"],
        frames["survey_responses"],
        job.as_of,
        window_days=settings.window_days,
    ).collect()
    summary = purchase_summary(
        frames["interactions"],
        frames["survey_responses"],
        job.as_of,
        window_days=settings.window_days,
        money=money.lazy(),  # computed once per bucket, for both tables
    ).collect()
    service = service_counts(
        frames["interactions"], job.as_of, window_days=settings.window_days
    ).collect()
    paths = {
        name: job.staging_file("buckets", f"{name}-{bucket:05d}.parquet")
        for name in ("quality", "money", "summary", "service")
    }
    write_quality_part(quality, paths["quality"])
    money.write_parquet(paths["money"])
    summary.write_parquet(paths["summary"])
    service.write_parquet(paths["service"])
    return BucketOutput(
        bucket,
        paths["quality"],
        paths["money"],
        paths["summary"],
        paths["service"],
        quality.height,
    )


def write_quality_part(quality: pl.DataFrame, path: str) -> None:
    """A bucket's customer_quality rows, sorted by customer_id: the combine step merges the
    buckets' parts in order, a row group at a time."""
    quality.sort("customer_id").write_parquet(path, row_group_size=MERGE_ROW_GROUP_ROWS)


def _bucket_rows(
    job: SnapshotJob,
    name: str,
    table: CuratedTable,
    bucket: int,
    shuffled: Sequence[ShuffleOutput],
) -> pl.LazyFrame:
    if job.buckets == 1:
        return job.lake.scan(table)
    # In shuffle-task order, i.e. date order, as a whole-table scan reads them.
    files = [out.files[(name, bucket)] for out in shuffled if (name, bucket) in out.files]
    if not files:
        return pl.LazyFrame(schema=table.schema)
    return pl.scan_parquet(files)


def _size(path: str) -> int:
    filesystem, key = objectstore.open_root(path)  # the process's one S3 session, or local
    return int(filesystem.size(key))


def combine(job: SnapshotJob, outputs: Sequence[BucketOutput], shuffle_bytes: int) -> Combined:
    """The whole-population figures over the buckets' customer rows, one table at a time,
    each written to its partition file (in a local scratch folder) as soon as it is done."""
    ordered = sorted(outputs, key=lambda o: o.bucket)
    settings = job.settings
    tables = snapshot_tables(settings)
    folder = job.lake.scratch_dir(job.run_id) / "snapshot" / job.as_of.isoformat()
    files: dict[str, Path] = {}

    def write(name: str, rows: pl.LazyFrame | Iterator[pl.DataFrame]) -> None:
        files[name] = write_partition_file(rows, tables[name], folder / f"{name}.parquet")

    # Each bucket's part is sorted by customer_id and holds other customers than the others:
    # merged in order, the rows come out as one sort of all of them would give them.
    write(
        "customer_quality",
        merge_sorted_files([o.quality_path for o in ordered], "customer_id"),
    )
    money = pl.concat([pl.scan_parquet(o.money_path) for o in ordered])
    write("customer_profitability", rank_customers(money, job.as_of))
    write(
        "customer_segments",
        segments_in_step(job.as_of, files["customer_profitability"], files["customer_quality"]),
    )
    segments = pl.scan_parquet(files["customer_segments"])
    actions = dict(segments.group_by("action").agg(pl.len()).sort("action").collect().iter_rows())
    customers = sum(actions.values())
    # SPEC §6: the customer_value table, written and dropped before the population tables.
    values, fits = customer_values(
        pl.concat([pl.read_parquet(o.summary_path) for o in ordered]), job.as_of, settings
    )
    write("customer_value", values)
    del values  # and with it the summary and the scores
    drivers, service_levels_rows = population_tables(
        pl.concat([pl.scan_parquet(o.service_path) for o in ordered]),
        # The window's responses, read from the lake whatever the bucket count (the key
        # drivers are one whole-population computation over them).
        job.lake.scan(survey_responses_table(settings.catalog)),
        job.as_of,
        settings,
    )
    write("value_model", value_model_rows(fits, job.as_of).lazy())
    write("quality_drivers", drivers.lazy())
    write("service_levels", service_levels_rows.lazy())
    warnings = fit_warnings(fits, expected_purchases_column(settings.value_horizon_days))
    return Combined(files, customers, actions, tuple(warnings), shuffle_bytes)


def merge_sorted_files(paths: Sequence[str], key: str) -> Iterator[pl.DataFrame]:
    """The rows of Parquet files each sorted by `key`, merged into one sorted sequence of
    frames. A k-way merge that holds one batch of each file at a time: each round takes,
    from every file's batch, the rows up to the smallest last key among the batches — every
    row of every file up to that key is in the batches, since each file is sorted — and
    yields them sorted. Rows with equal keys in two files may come in any order (a
    snapshot's buckets hold distinct customers).

    PyArrow reads the files: it reads a batch when asked for it. Polars' `merge_sorted` and
    `collect_batches` read ahead of the consumer, so merging 16 parts of 10M customers held
    2.5-5 GB (benchmarks/snapshot_memory.py)."""
    readers = [_batches(path) for path in paths]
    heads = [next(reader, None) for reader in readers]
    while live := [(i, head) for i, head in enumerate(heads) if head is not None]:
        bound = min(head[key][-1] for _, head in live)
        taken = []
        for i, head in live:
            upto = head[key].search_sorted(bound, side="right")
            taken.append(head.slice(0, upto))
            heads[i] = head.slice(upto) if upto < head.height else next(readers[i], None)
        yield pl.concat(taken).sort(key)


def segments_in_step(
    as_of: dt.date, profitability: Path, quality: Path, rows: int = SEGMENT_BATCH_ROWS
) -> Iterator[pl.DataFrame]:
    """`customer_segments` of the written customer_profitability and customer_quality
    partition files, a batch of profitability rows at a time. Both files are sorted by
    customer_id, so the quality rows a batch joins are the next ones up to its last
    customer_id: read in step, the two files are never in memory whole."""
    date = pl.lit(as_of, pl.Date).alias("as_of_date")  # a partition file has no key
    key = "customer_id"
    levels = _batches(str(quality), [key, "service_level"], rows)
    pending = next(levels, None)
    for batch in _batches(str(profitability), [key, "profit_segment", "rfm_segment"], rows):
        last = batch[key][-1]
        taken = [pl.DataFrame(schema={key: pl.String, "service_level": pl.String})]
        while pending is not None:
            upto = pending[key].search_sorted(last, side="right")
            taken.append(pending.slice(0, upto))
            if upto < pending.height:
                pending = pending.slice(upto)
                break
            pending = next(levels, None)
        yield customer_segments(
            batch.lazy().with_columns(date), pl.concat(taken).lazy().with_columns(date)
        ).collect()


def _batches(
    path: str, columns: list[str] | None = None, rows: int | None = None
) -> Iterator[pl.DataFrame]:
    """The file's rows (or `columns`), `rows` at a time (default `MERGE_BATCH_ROWS`)."""
    filesystem, name = objectstore.open_root(path)
    with filesystem.open(name, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(
            batch_size=rows or MERGE_BATCH_ROWS, columns=columns
        ):
            if batch.num_rows:
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame
