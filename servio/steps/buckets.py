"""A snapshot computed in customer-hash buckets, each an independent task (SPEC §5).

    shuffle (one task per range of date partitions) → bucket (one task per bucket) → combine

- **shuffle**: a task reads one range of the window's date partitions of `interactions` and
  `survey_responses` and writes its rows split by `bucket = hash(customer_id) mod B` to
  staging. All of a customer's rows land in one bucket, whichever task wrote them.
- **bucket**: a task reads its bucket's files and computes every per-customer figure:
  `customer_quality` in full (it has no whole-population figure) and `customer_money`
  (money, profit, recency, frequency, monetary).
- **combine** (the flow's process): concatenates the buckets' customer rows — one row per
  customer, so a tenth of the interactions at the default data shape — and computes the
  whole-population figures on them with `rank_customers`: whale-curve ranks and cumulative
  shares (one sort of all customers by profit), Kaplan medians, RFM quintile ranks. Then the
  segments, which join the two snapshots customer by customer.

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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from servio import objectstore
from servio.config import Settings
from servio.lake import Lake
from servio.schemas.sources import source_tables
from servio.schemas.table import CuratedTable
from servio.steps.context import Mapper, in_order
from servio.transforms.profitability import customer_money, rank_customers
from servio.transforms.quality import customer_quality
from servio.transforms.segments import customer_segments

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
    customers: int


@dataclass(frozen=True)
class Combined:
    quality: pl.DataFrame
    profitability: pl.DataFrame
    segments: pl.DataFrame
    shuffle_bytes: int


def bucket_of(customer_id: pl.Expr, buckets: int) -> pl.Expr:
    return (customer_id.hash(seed=HASH_SEED) % buckets).cast(pl.Int32)


def compute(job: SnapshotJob, mapper: Mapper[Any] = in_order) -> Combined:
    """The three snapshot tables for `job.as_of`, computed bucket by bucket through `mapper`."""
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
    quality_path = job.staging_file("buckets", f"quality-{bucket:05d}.parquet")
    money_path = job.staging_file("buckets", f"money-{bucket:05d}.parquet")
    quality.write_parquet(quality_path)
    money.write_parquet(money_path)
    return BucketOutput(bucket, quality_path, money_path, quality.height)


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
    """Concatenate the buckets' customer rows and compute the whole-population figures."""
    ordered = sorted(outputs, key=lambda o: o.bucket)
    quality = pl.concat([pl.read_parquet(o.quality_path) for o in ordered]).sort("customer_id")
    money = pl.concat([pl.scan_parquet(o.money_path) for o in ordered])
    profitability = rank_customers(money, job.as_of).collect()
    segments = customer_segments(profitability.lazy(), quality.lazy()).collect()
    return Combined(quality, profitability, segments, shuffle_bytes)
