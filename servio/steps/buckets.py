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
  (`value_snapshot_from_parts`): the BG/NBD and Gamma-Gamma fits over every purchaser, the
  key drivers over the window's responses, the service levels from the summed counts.
  Memory: one table at a time, each written to its partition file as soon as it is
  computed and dropped (`Lake.publish` then moves the files); `customer_quality`, which has
  no whole-population figure, never comes into memory whole: the buckets' parts, each
  sorted by customer_id, are merged batch by batch into the file.

The combine step runs the same code as a single-process snapshot on the same customer rows,
so any bucket count gives the same tables. With one bucket nothing is shuffled: the bucket
task reads the lake directly. Tasks hand each other staging paths, never DataFrames; with a
Dask cluster the staging files must be reachable from every worker: they are under the
lake (`Lake.staging_file`), on local disk or object storage alike.

The bucket hash is Polars' `hash(seed=0)`, stable within one Polars version (pinned in
constraints.txt): every worker of a cluster must run the same version.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from servio import objectstore
from servio.config import Settings
from servio.lake import Lake, write_partition_file
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
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
from servio.value_snapshot import value_snapshot_from_parts

HASH_SEED = 0


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
    """Split the rows of the dates [first, last] by customer bucket into staging files."""
    files: dict[tuple[str, int], str] = {}
    written = 0
    for name, table in job.sources().items():
        day = table.partition_by
        assert day is not None
        rows = (
            job.lake.scan(table)
            .filter(pl.col(day).is_between(first, last))
            .with_columns(bucket_of(pl.col("customer_id"), job.buckets).alias("_bucket"))
            .collect()
        )
        for (bucket,), part in rows.partition_by("_bucket", as_dict=True).items():
            path = job.staging_file("shuffle", name, f"b{bucket:05d}-p{index:05d}.parquet")
            part.drop("_bucket").write_parquet(path)
            files[(name, int(bucket))] = path
            written += _size(path)
    return ShuffleOutput(files, written)


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
    # Sorted by customer_id: the combine step merges the buckets' quality parts in order.
    quality.sort("customer_id").write_parquet(paths["quality"])
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

    def write(name: str, rows: pl.LazyFrame) -> None:
        files[name] = write_partition_file(rows, tables[name], folder / f"{name}.parquet")

    # Each bucket's part is sorted by customer_id and holds other customers than the others:
    # merged in order, the rows come out as one sort of all of them would give them.
    quality = [pl.scan_parquet(o.quality_path) for o in ordered]
    write("customer_quality", _merged(quality, "customer_id"))
    money = pl.concat([pl.scan_parquet(o.money_path) for o in ordered])
    profitability = rank_customers(money, job.as_of).collect()
    write("customer_profitability", profitability.lazy())
    levels = pl.concat([q.select("as_of_date", "customer_id", "service_level") for q in quality])
    segments = customer_segments(
        profitability.select("as_of_date", "customer_id", "profit_segment", "rfm_segment").lazy(),
        levels,
    ).collect()
    del profitability
    write("customer_segments", segments.lazy())
    actions = dict(segments.group_by("action").agg(pl.len()).sort("action").iter_rows())
    customers = segments.height
    del segments
    value = value_snapshot_from_parts(
        pl.concat([pl.read_parquet(o.summary_path) for o in ordered]),
        pl.concat([pl.read_parquet(o.service_path) for o in ordered]),
        # The window's responses, read from the lake whatever the bucket count (the key
        # drivers are one whole-population computation over them).
        job.lake.scan(survey_responses_table(settings.catalog)),
        job.as_of,
        settings,
    )
    for name, frame in value.tables().items():
        write(name, frame.lazy())
    return Combined(files, customers, actions, tuple(value.warnings()), shuffle_bytes)


def _merged(parts: list[pl.LazyFrame], key: str) -> pl.LazyFrame:
    """Frames each sorted by `key`, merged into one sorted frame (a streaming merge)."""
    assert parts, "a snapshot has at least one bucket"
    return functools.reduce(lambda left, right: left.merge_sorted(right, key), parts)
