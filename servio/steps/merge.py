"""Merging staged files into their curated table (part of publishing an ingest): which
versions lose to a later one, and each touched partition written once as the lake's file.

Memory stays bounded for big inputs: versions are ranked only for rows whose key hash occurs
twice among the table's and the batch's rows (8 bytes per row to find them); the touched
partitions are merged in groups of consecutive partitions of about `MERGE_GROUP_FIELDS` values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from servio.lake import Lake, PartitionRows, PartitionValue, TableChange, write_partition_file
from servio.lake.files import partition_text, sync_partition_file, to_arrow
from servio.schemas.table import CuratedTable
from servio.schemas.tables import QUARANTINE
from servio.steps.context import rows_within
from servio.steps.errors import ReconciliationError
from servio.steps.staging import StagedFile
from servio.transforms import versions

# Values (rows, existing + new, × the table's columns) of the partitions merged together in one
# step of `merge_source`: 1 M interactions (17 columns) or 232,876 survey responses (73).
# Counted in rows alone, a group of 1 M survey responses took the 100M ingest from 3.0 to 3.7 GB.
MERGE_GROUP_FIELDS = 17_000_000
# Partition files written at once (threads: the work releases the GIL).
WRITERS = min(4, os.cpu_count() or 1)
# Written partition files fsynced at once (threads: an fsync waits on the disk, not the CPU,
# and the kernel commits concurrent fsyncs of one file system in one journal commit).
SYNCERS = 16


def merge_source(
    lake: Lake, table: CuratedTable, batch: list[tuple[int, StagedFile]], scratch: Path
) -> tuple[TableChange | None, dict[int, int], dict[int, int], int]:
    """Merge a batch into one table; returns the change, rows superseded per file (this run),
    current rows per file, and the table's row count after the merge.

    Memory stays bounded for big inputs: versions are ranked only for rows whose key hash
    occurs twice among the table's and the batch's rows (8 bytes per row to find them); the
    touched partitions are merged in groups of consecutive partitions holding about
    `MERGE_GROUP_FIELDS` values (existing kept rows + new winners, read with the partition filter
    pushed into the scans), and each partition is written once, as the file `Lake.publish`
    moves into place.
    """
    existing = lake.scan(table)
    part = table.partition_by
    assert part is not None
    existing_counts = (
        existing.group_by(part, "source_seq").agg(pl.len()).collect(engine="streaming")
    )
    per_file = _sums(existing_counts, "source_seq")
    if not batch:
        return None, {}, per_file, sum(per_file.values())
    lineage = list(versions.LINEAGE_ORDER)
    new = pl.concat(
        [
            pl.scan_parquet(path).with_columns(pl.lit(seq, pl.Int64).alias("source_seq"))
            for seq, s in batch
            for path in lake.staged_parts(s.valid_path)
        ]
    )
    new_counts_by_part = new.group_by(part, "source_seq").agg(pl.len()).collect(engine="streaming")
    new_counts = _sums(new_counts_by_part, "source_seq")
    losers = _superseded(existing, new, table, sum(per_file.values()) + sum(new_counts.values()))
    existing_losers = losers.filter(~pl.col("source_seq").is_in([seq for seq, _ in batch]))
    # Existing losers leave their partitions; new rows (winners and losers alike) touch theirs.
    touched = set(losers.get_column(part).to_list()) | set(
        new_counts_by_part.get_column(part).to_list()
    )
    rows_by_part = _sums(pl.concat([existing_counts, new_counts_by_part]), part)
    partitions: dict[PartitionValue, PartitionRows] = {}
    group_rows = rows_within(MERGE_GROUP_FIELDS, len(table.schema))
    for group in _partition_groups(sorted(touched, key=partition_text), rows_by_part, group_rows):
        # The range lets scans skip files and row groups by their statistics.
        in_group = pl.col(part).is_between(group[0], group[-1]) & pl.col(part).is_in(
            pl.Series(group, dtype=table.schema[part]).implode()
        )
        kept = (
            existing.filter(in_group)
            .join(existing_losers.lazy().select(lineage), on=lineage, how="anti")
            .collect()
        )
        arrived = (
            new.filter(in_group)
            .join(losers.lazy().select(lineage), on=lineage, how="anti")
            .select(kept.columns)
            .collect()
        )
        # Sorted by partition, then key, and converted to the file schema once: each
        # partition is a slice of it (per partition, a sort and a conversion cost more than
        # encoding the file at 1M rows over 366 days).
        merged = pl.concat([kept, arrived]).sort(part, *table.key)
        del kept, arrived
        runs = merged.select(pl.col(part).rle()).unnest(part).select("value", "len")
        rows = to_arrow(merged, table)
        del merged
        nonempty: dict[PartitionValue, pa.Table] = {}
        start = 0
        for value, length in runs.iter_rows():
            nonempty[value] = rows.slice(start, length)
            start += length
        written = _write_partitions(nonempty, table, scratch / "merged")
        del rows, nonempty
        partitions |= {value: written.get(value) for value in group}  # None: deleted
    dropped = dict(losers.group_by("source_seq").agg(pl.len()).iter_rows())
    counts = {
        seq: per_file.get(seq, 0) + new_counts.get(seq, 0) - dropped.get(seq, 0)
        for seq in per_file.keys() | new_counts.keys()
    }
    counts = {seq: n for seq, n in counts.items() if n}
    return TableChange(table, partitions), dropped, counts, sum(counts.values())


def _write_partitions(
    writes: dict[PartitionValue, pa.Table], table: CuratedTable, folder: Path
) -> dict[PartitionValue, PartitionRows]:
    """Each partition's rows (sorted by key, in the file schema) written once as the lake's
    file (publishing moves it into place). Files are written `WRITERS` at a time: Parquet
    encoding releases the GIL, and a daily-partitioned ingest writes hundreds. Each written
    file is fsynced on one of `SYNCERS` threads while the writers go on; all are synced
    before this returns, so before any is handed to `Lake.publish`."""
    with ThreadPoolExecutor(SYNCERS, thread_name_prefix="servio-fsync") as syncing:

        def write(value: PartitionValue) -> Future[Path]:
            path = folder / f"{partition_text(value)}.parquet"
            written = write_partition_file(writes[value], table, path, sync=False)
            return syncing.submit(sync_partition_file, written)

        try:
            if len(writes) < 2:
                synced = {value: write(value) for value in writes}
            else:
                with ThreadPoolExecutor(WRITERS, thread_name_prefix="servio-merge") as pool:
                    futures = {value: pool.submit(write, value) for value in writes}
                    try:
                        synced = {value: future.result() for value, future in futures.items()}
                    except BaseException:
                        pool.shutdown(cancel_futures=True)  # the first failure ends it
                        raise
            return {value: future.result() for value, future in synced.items()}
        except BaseException:
            syncing.shutdown(cancel_futures=True)
            raise


def _sums(counts: pl.DataFrame, by: str) -> dict[Any, int]:
    """`len` summed per value of `by` in a (partition, source_seq, len) count frame."""
    return dict(counts.group_by(by).agg(pl.col("len").sum()).iter_rows())


def _partition_groups(
    values: list[PartitionValue], rows: dict[Any, int], limit: int
) -> Iterator[list[PartitionValue]]:
    """Consecutive partitions packed into groups of at most `limit` rows (a bigger partition
    is a group of its own)."""
    group: list[PartitionValue] = []
    size = 0
    for value in values:
        n = rows.get(value, 0)
        if group and size + n > limit:
            yield group
            group, size = [], 0
        group.append(value)
        size += n
    if group:
        yield group


def _superseded(
    existing: pl.LazyFrame, new: pl.LazyFrame, table: CuratedTable, rows: int
) -> pl.DataFrame:
    """The versions (existing or new) that lose to a later one: source_seq, source_row and
    partition. Only rows whose key hash repeats are ranked, with `versions.superseded`.
    `rows`: the existing and new rows together."""
    key = list(table.key)
    key_hash = pl.struct(key).hash().alias("_key_hash")
    ordered = _sorted_hashes([existing.select(key_hash), new.select(key_hash)], rows)
    repeated = pl.Series(np.unique(ordered[1:][ordered[1:] == ordered[:-1]])).implode()
    del ordered
    narrow = versions.version_columns(table)
    candidates = (
        pl.concat([existing.select(narrow), new.select(narrow)])
        .filter(key_hash.is_in(repeated))
        .collect(engine="streaming")  # only the repeated keys' rows are ever held
    )
    return versions.superseded(candidates.lazy(), table).collect()


def _sorted_hashes(columns: list[pl.LazyFrame], rows: int) -> np.ndarray:
    """The values of one-column UInt64 frames holding `rows` values together, sorted: one
    array of 8 bytes per row, filled a batch at a time and sorted in place (collecting the
    column and sorting a copy held twice that: 1.6 GB at the 100M benchmark)."""
    hashes = np.empty(rows, dtype=np.uint64)
    filled = 0
    for column in columns:
        for batch in column.collect_batches(maintain_order=False):
            values = batch.to_series().to_numpy()
            if filled + len(values) > rows:
                raise ReconciliationError(f"key hashes: more than the {rows} rows counted")
            hashes[filled : filled + len(values)] = values
            filled += len(values)
    if filled != rows:
        raise ReconciliationError(f"key hashes: {filled} rows, but {rows} were counted")
    hashes.sort()
    return hashes


def quarantine_change(
    lake: Lake, accepted: Iterable[StagedFile], scratch: Path
) -> TableChange | None:
    paths = [s.quarantine_path for s in accepted if s.quarantine_path]
    if not paths:
        return None
    new = pl.concat(
        [pl.scan_parquet(p) for path in paths for p in lake.staged_parts(path)],
        how="diagonal_relaxed",
    ).select(QUARANTINE.schema.names())
    sources = new.select(pl.col("source").unique()).collect().get_column("source").to_list()
    if not sources:
        return None
    # Streamed into each source's partition file: the existing rows, then the new ones.
    partitions: dict[PartitionValue, PartitionRows] = {
        source: write_partition_file(
            pl.concat(
                [
                    lake.scan(QUARANTINE).filter(pl.col("source") == source),
                    new.filter(pl.col("source") == source).cast(QUARANTINE.schema),
                ]
            ),
            QUARANTINE,
            scratch / f"{source}.parquet",
        )
        for source in sorted(sources)
    }
    return TableChange(QUARANTINE, partitions)
